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
from .cnf import AUGMENTED_POSTERIORS as AUGMENTED_POSTERIORS
from .cnf import CNF as CNF
from .cnf import PROBE_KINDS as PROBE_KINDS
from .cnf import TRACE_ESTIMATORS as TRACE_ESTIMATORS
from .cnf import AugmentedCNF as AugmentedCNF
from .cnf import CNFDynamics as CNFDynamics
from .cnf import GaussianPosterior as GaussianPosterior
from .cnf import StandardNormalPosterior as StandardNormalPosterior
from .cnf import exact_trace as exact_trace
from .cnf import hutchinson_trace as hutchinson_trace
from .cnf import mlp_trace as mlp_trace
from .cnf import standard_normal_log_prob as standard_normal_log_prob
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
    "ARCHITECTURE_CLASSES",
    "AUGMENTATIONS",
    "AUGMENTED_POSTERIORS",
    "CNF",
    "DEFAULT_T",
    "PROBE_KINDS",
    "TRACE_ESTIMATORS",
    "Augmentation",
    "AugmentedCNF",
    "CNFDynamics",
    "ConvODEFunc",
    "ConvODENet",
    "ConvResNet",
    "GaussianPosterior",
    "LearnedAugmentation",
    "ODEBlock",
    "ODEFlow",
    "ODEFunc",
    "ODENet",
    "ResNet",
    "SecondOrderAugmentation",
    "StandardNormalPosterior",
    "ZeroAugmentation",
    "architecture_of",
    "build_from_architecture",
    "check_times",
    "count_parameters",
    "exact_trace",
    "hutchinson_trace",
    "make_augmentation",
    "mlp_trace",
    "standard_normal_log_prob",
]
