"""Models: vector fields, the ODE block, NODE/ANODE networks and ResNet baselines."""

from .architecture import ARCHITECTURE_CLASSES as ARCHITECTURE_CLASSES
from .architecture import architecture_of as architecture_of
from .augment import AUGMENTATIONS as AUGMENTATIONS
from .augment import Augmentation as Augmentation
from .augment import LearnedAugmentation as LearnedAugmentation
from .augment import SecondOrderAugmentation as SecondOrderAugmentation
from .augment import ZeroAugmentation as ZeroAugmentation
from .augment import make_augmentation as make_augmentation
from .block import DEFAULT_T as DEFAULT_T
from .block import ODEBlock as ODEBlock
from .block import check_times as check_times
from .fields import ConvODEFunc as ConvODEFunc
from .fields import ODEFunc as ODEFunc
from .nets import ConvODENet as ConvODENet
from .nets import ConvResNet as ConvResNet
from .nets import ODEFlow as ODEFlow
from .nets import ODENet as ODENet
from .nets import ResNet as ResNet
from .nets import count_parameters as count_parameters
from .rebuild import build_from_architecture as build_from_architecture

__all__ = [
    "ARCHITECTURE_CLASSES", "AUGMENTATIONS", "DEFAULT_T", "Augmentation", "ConvODEFunc", "ConvODENet", "ConvResNet",
    "LearnedAugmentation", "ODEBlock", "ODEFlow", "ODEFunc", "ODENet", "ResNet", "SecondOrderAugmentation",
    "ZeroAugmentation", "architecture_of", "build_from_architecture", "check_times", "count_parameters",
    "make_augmentation",
]
