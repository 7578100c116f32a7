"""anode: Augmented Neural ODEs (Dupont, Doucet, Teh, NeurIPS 2019), tested and reproducible."""

import importlib as _importlib
from types import ModuleType as _ModuleType

from .config import METHODS as METHODS
from .config import SolverConfig as SolverConfig
from .history import History as History
from .models import AUGMENTATIONS as AUGMENTATIONS
from .models import CNF as CNF
from .models import Augmentation as Augmentation
from .models import AugmentedCNF as AugmentedCNF
from .models import ConvODEFunc as ConvODEFunc
from .models import ConvODENet as ConvODENet
from .models import ConvResNet as ConvResNet
from .models import ODEBlock as ODEBlock
from .models import ODEFlow as ODEFlow
from .models import ODEFunc as ODEFunc
from .models import ODENet as ODENet
from .models import ResNet as ResNet
from .models import architecture_of as architecture_of
from .models import build_from_architecture as build_from_architecture
from .models import count_parameters as count_parameters
from .models import make_augmentation as make_augmentation
from .regularisers import REGULARISERS as REGULARISERS
from .regularisers import regularised_odesolve as regularised_odesolve
from .rng import make_generator as make_generator
from .rng import seeded as seeded
from .solve import NFE as NFE
from .solve import MaxStepsExceeded as MaxStepsExceeded
from .solve import NonFiniteState as NonFiniteState
from .solve import SolverError as SolverError
from .solve import StepSizeUnderflow as StepSizeUnderflow
from .solve import odesolve as odesolve
from .solve import translate_solver_errors as translate_solver_errors
from .training import TrainConfig as TrainConfig
from .training import TrainedRun as TrainedRun
from .training import Trainer as Trainer
from .training import TrainingInterrupted as TrainingInterrupted
from .training import evaluate as evaluate
from .training import fit as fit
from .training import load_checkpoint as load_checkpoint
from .training import load_run as load_run
from .training import ode_blocks as ode_blocks
from .training import request_stop as request_stop
from .version import __version__ as __version__

#: Subpackages reachable as `anode.<name>` after `import anode`, imported on first use
#: (so `import anode` stays fast: plotting pulls in matplotlib, the lab the experiment runner).
_LAZY_SUBMODULES: tuple[str, ...] = ("data", "ensemble", "lab", "plotting", "models", "optim", "regularisers",
                                    "training", "solve", "solvers")


def __getattr__(name: str) -> _ModuleType:
    """Import a subpackage on first access, e.g. `anode.data.ConcentricSpheres`."""
    if name in _LAZY_SUBMODULES:
        return _importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'anode' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY_SUBMODULES))


__all__ = [
    "AUGMENTATIONS",
    "CNF",
    "METHODS",
    "NFE",
    "REGULARISERS",
    "Augmentation",
    "AugmentedCNF",
    "ConvODEFunc",
    "ConvODENet",
    "ConvResNet",
    "History",
    "MaxStepsExceeded",
    "NonFiniteState",
    "ODEBlock",
    "ODEFlow",
    "ODEFunc",
    "ODENet",
    "ResNet",
    "SolverConfig",
    "SolverError",
    "StepSizeUnderflow",
    "TrainConfig",
    "TrainedRun",
    "Trainer",
    "TrainingInterrupted",
    "__version__",
    "architecture_of",
    "build_from_architecture",
    "count_parameters",
    "evaluate",
    "fit",
    "load_checkpoint",
    "load_run",
    "make_augmentation",
    "make_generator",
    "ode_blocks",
    "odesolve",
    "regularised_odesolve",
    "request_stop",
    "seeded",
    "translate_solver_errors",
]
