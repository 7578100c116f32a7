"""Datasets: the paper's toy data and readers for image data, batched from memory."""

from .loader import TensorLoader as TensorLoader
from .toy import ConcentricSpheres as ConcentricSpheres
from .toy import Data1D as Data1D
from .toy import ShiftedSines as ShiftedSines
from .toy import ToyDataset as ToyDataset
from .toy import angular_split as angular_split

__all__ = ["ConcentricSpheres", "Data1D", "ShiftedSines", "TensorLoader", "ToyDataset", "angular_split"]
