"""The optimiser and learning-rate scheduler a `Trainer` builds or checks."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from anode.optim import FlatAdam
from anode.training.config import TrainConfig

__all__ = ["OptimizerArg", "SchedulerArg", "default_optimizer", "make_optimizer", "make_scheduler"]

OptimizerArg = torch.optim.Optimizer | Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer] | None
SchedulerArg = Any  # an LR scheduler instance, or a callable optimizer -> scheduler, or None


def default_optimizer(params: Any, *, lr: float, weight_decay: float = 0.0) -> torch.optim.Adam:
    """The optimiser a `Trainer` (and a stacked `EnsembleTrainer`) builds when given none: Adam.

    It is `anode.optim.FlatAdam`: torch's Adam stepped over each parameter group as one flat vector,
    whose updates, state and `state_dict` are bitwise those of `torch.optim.Adam` (the per-parameter
    loop torch runs by default on a CPU, and the 2019 code's optimiser; `tests/test_optim.py`,
    `tests/test_training.py`): the same numbers in a fraction of the calls (`benchmarks/adam_step.py`:
    a toy model's Adam step in 0.41-0.44 of the time of torch's foreach Adam on one CPU thread).

    Arguments:
        params: the parameters (or parameter groups).
        lr: the learning rate.
        weight_decay: L2 penalty added to the gradients (Adam's, not AdamW's).

    Returns:
        The optimiser.
    """
    return FlatAdam(params, lr=lr, weight_decay=weight_decay)


def make_optimizer(model: nn.Module, config: TrainConfig, optimizer: OptimizerArg) -> torch.optim.Optimizer:
    if optimizer is None:
        return default_optimizer(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    if isinstance(optimizer, torch.optim.Optimizer):
        made = optimizer
    elif callable(optimizer):
        made = optimizer(model.parameters())
        if not isinstance(made, torch.optim.Optimizer):
            raise TypeError(f"the optimizer factory must return a torch.optim.Optimizer, got {type(made).__name__}")
    else:
        raise TypeError(f"optimizer must be a torch.optim.Optimizer or a callable params -> optimizer, "
                        f"got {type(optimizer).__name__}")
    owned = {id(p) for p in model.parameters()}
    stray = [p for group in made.param_groups for p in group["params"] if id(p) not in owned]
    if stray:
        raise ValueError(f"the optimizer holds {len(stray)} parameter(s) that are not the model's: "
                         "build it from model.parameters()")
    return made


def make_scheduler(optimizer: torch.optim.Optimizer, scheduler: SchedulerArg, interval: str) -> Any:
    if scheduler is None:
        return None
    kinds = (torch.optim.lr_scheduler.LRScheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
    made = scheduler if isinstance(scheduler, kinds) else scheduler(optimizer) if callable(scheduler) else None
    if not isinstance(made, kinds):
        raise TypeError(f"scheduler must be an LR scheduler or a callable optimizer -> scheduler, got "
                        f"{type(scheduler).__name__ if made is None else 'a factory returning ' + type(made).__name__}")
    if made.optimizer is not optimizer:
        raise ValueError("the scheduler drives another optimizer: build it on trainer's optimizer "
                         "(pass a factory such as lambda opt: StepLR(opt, 10), or the instance given as optimizer=)")
    if isinstance(made, torch.optim.lr_scheduler.ReduceLROnPlateau) and interval != "epoch":
        raise ValueError("ReduceLROnPlateau is stepped with the epoch's mean loss: use scheduler_interval='epoch'")
    return made


