"""Datasets: the paper's toy data, 2-D densities for flows, and readers for image data, batched from memory."""

from .densities import DENSITIES as DENSITIES
from .densities import checkerboard as checkerboard
from .densities import concentric_rings as concentric_rings
from .densities import eight_gaussians as eight_gaussians
from .densities import make_density as make_density
from .densities import pinwheel as pinwheel
from .densities import two_moons as two_moons
from .densities import two_spirals as two_spirals
from .images import DATASET_NAMES as DATASET_NAMES
from .images import NORMALIZATIONS as NORMALIZATIONS
from .images import ChecksumError as ChecksumError
from .images import ImageDataset as ImageDataset
from .images import ImageTransform as ImageTransform
from .images import channel_stats as channel_stats
from .images import download_dataset as download_dataset
from .images import load_image_dataset as load_image_dataset
from .images import make_image_loaders as make_image_loaders
from .loader import TensorLoader as TensorLoader
from .toy import ConcentricSpheres as ConcentricSpheres
from .toy import Data1D as Data1D
from .toy import ShiftedSines as ShiftedSines
from .toy import ToyDataset as ToyDataset
from .toy import angular_split as angular_split

__all__ = [
    "DATASET_NAMES", "DENSITIES", "NORMALIZATIONS", "ChecksumError", "ConcentricSpheres", "Data1D", "ImageDataset",
    "ImageTransform", "ShiftedSines", "TensorLoader", "ToyDataset", "angular_split", "channel_stats",
    "checkerboard", "concentric_rings", "download_dataset", "eight_gaussians", "load_image_dataset", "make_density",
    "make_image_loaders", "pinwheel", "two_moons", "two_spirals",
]
