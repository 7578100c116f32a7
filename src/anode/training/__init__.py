"""Training: `TrainConfig`, the `Trainer` loop (per-iteration NFE, exact resume), evaluation,
checkpoints, losses, the default optimiser, and data-parallel training under torchrun.

Modules: `config` (settings), `density` (`fit_density`: CNFs and augmented CNFs), `losses`,
`evaluation`, `checkpoints`, `optimisers`, `trainer`,
`distributed` (imported on use: `anode.training.distributed`).
"""

from anode.training.checkpoints import CHECKPOINT_FORMAT as CHECKPOINT_FORMAT
from anode.training.checkpoints import load_checkpoint as load_checkpoint
from anode.training.config import LOSSES as LOSSES
from anode.training.config import RESUME_FREE_KEYS as RESUME_FREE_KEYS
from anode.training.config import SCHEDULER_INTERVALS as SCHEDULER_INTERVALS
from anode.training.config import TrainConfig as TrainConfig
from anode.training.config import resume_conflicts as resume_conflicts
from anode.training.density import DENSITY_FIELDS as DENSITY_FIELDS
from anode.training.density import density_loss as density_loss
from anode.training.density import fit_density as fit_density
from anode.training.density import test_log_likelihood as test_log_likelihood
from anode.training.evaluation import SAMPLE_NFE_KEYS as SAMPLE_NFE_KEYS
from anode.training.evaluation import count_nfe as count_nfe
from anode.training.evaluation import evaluate as evaluate
from anode.training.evaluation import ode_blocks as ode_blocks
from anode.training.evaluation import sample_nfe as sample_nfe
from anode.training.losses import count_correct as count_correct
from anode.training.optimisers import default_optimizer as default_optimizer
from anode.training.runs import TrainedRun as TrainedRun
from anode.training.runs import load_run as load_run
from anode.training.trainer import Trainer as Trainer
from anode.training.trainer import TrainingInterrupted as TrainingInterrupted
from anode.training.trainer import fit as fit
from anode.training.trainer import request_stop as request_stop

__all__ = [
    "CHECKPOINT_FORMAT", "DENSITY_FIELDS", "LOSSES", "RESUME_FREE_KEYS", "SAMPLE_NFE_KEYS", "SCHEDULER_INTERVALS",
    "TrainConfig", "TrainedRun", "Trainer",
    "TrainingInterrupted", "count_correct", "count_nfe", "default_optimizer", "density_loss", "evaluate", "fit", "fit_density",
    "load_checkpoint", "load_run",
    "ode_blocks", "request_stop", "resume_conflicts", "sample_nfe", "test_log_likelihood",
]
