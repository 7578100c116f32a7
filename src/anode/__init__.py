"""anode: Augmented Neural ODEs (Dupont, Doucet, Teh, NeurIPS 2019), tested and reproducible."""

from .config import METHODS as METHODS
from .config import SolverConfig as SolverConfig
from .history import History as History
from .models import ConvODEFunc as ConvODEFunc
from .models import ConvODENet as ConvODENet
from .models import ConvResNet as ConvResNet
from .models import ODEBlock as ODEBlock
from .models import ODEFunc as ODEFunc
from .models import ODEFlow as ODEFlow
from .models import ODENet as ODENet
from .models import ResNet as ResNet
from .models import count_parameters as count_parameters
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
from .training import Trainer as Trainer
from .training import evaluate as evaluate
from .training import fit as fit
from .training import load_checkpoint as load_checkpoint

__version__ = "0.1.0"

__all__ = [
    "METHODS", "NFE", "ConvODEFunc", "ConvODENet", "ConvResNet", "History", "MaxStepsExceeded",
    "NonFiniteState", "ODEBlock", "ODEFlow", "ODEFunc", "ODENet", "ResNet", "SolverConfig", "SolverError",
    "StepSizeUnderflow", "TrainConfig", "Trainer", "__version__", "count_parameters", "evaluate", "fit",
    "load_checkpoint", "make_generator", "odesolve", "seeded", "translate_solver_errors",
]
