"""Repeats trained together: R models of one architecture as one stacked model and one batched solve.

- `stack_models`: the weights of R `ODENet`/`ODEFlow` models (`StackedODENet`) or `ResNet`s
  (`StackedResNet`) stacked on a member axis.
- `ensemble_odesolve`: one adaptive solve for R ODEs, each member with its own step control.
- `EnsembleTrainer`: trains R `Trainer`s together; every member keeps its own data order,
  steps, NFE, history and checkpoints, and its numbers equal those of the member trained alone.
"""

from .solve import MemberFailure, ensemble_odesolve
from .stacked import (
    ENSEMBLE_METHODS,
    StackedODENet,
    StackedOutput,
    StackedResNet,
    ensemble_support,
    stack_models,
    stack_signature,
)
from .train import MEMBER_KEYS, EnsembleTrainer, trainer_support

__all__ = ["ENSEMBLE_METHODS", "MEMBER_KEYS", "EnsembleTrainer", "MemberFailure", "StackedODENet", "StackedOutput",
           "StackedResNet", "ensemble_odesolve", "ensemble_support", "stack_models", "stack_signature", "trainer_support"]
