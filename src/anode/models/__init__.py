"""Models: vector fields, the ODE block, NODE/ANODE networks and ResNet baselines."""

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

__all__ = ["AUGMENTATIONS", "DEFAULT_T", "Augmentation", "LearnedAugmentation", "SecondOrderAugmentation",
           "ZeroAugmentation", "check_times", "make_augmentation", "ConvODEFunc", "ConvODENet", "ConvResNet", "ODEBlock", "ODEFlow", "ODEFunc", "ODENet", "ResNet", "count_parameters"]
