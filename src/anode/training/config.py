"""Training settings: `TrainConfig` (data only, validated) and what may change on resume."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from anode.regularisers import NOISE_KINDS, REGULARISERS

__all__ = ["LOSSES", "RESUME_FREE_KEYS", "SCHEDULER_INTERVALS", "TrainConfig", "resume_conflicts"]

LOSSES: tuple[str, ...] = ("huber", "mse", "cross_entropy")
#: When a learning-rate scheduler is stepped: after every epoch or after every optimiser step.
SCHEDULER_INTERVALS: tuple[str, ...] = ("epoch", "iteration")


#: `TrainConfig` fields that may differ between a checkpoint and the run resuming from it: they only
#: extend or shorten the budget (epochs, max_iterations) or are bookkeeping (checkpoint_every,
#: progress); the current value applies. Every other field changes results, so a resume with a
#: different value is refused (a field added later is result-relevant unless listed here).
RESUME_FREE_KEYS: frozenset[str] = frozenset({"epochs", "max_iterations", "checkpoint_every", "progress"})


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings (the paper's: Adam, lr 1e-3; Huber loss for the toy regressions).

    The data part of training: plain values, validated, serialisable. Your own optimizer,
    scheduler and loss function are keyword arguments of `Trainer`/`fit`, not fields here.

    Arguments:
        epochs: passes over the training loader.
        lr: learning rate of the default Adam optimiser (unused when `Trainer` gets `optimizer=`).
        weight_decay: weight decay (L2) of the default Adam (unused with `optimizer=`).
        loss: "huber" (the 2019 code's SmoothL1), "mse" or "cross_entropy"; also picks the
            accuracy rule (argmax for cross_entropy, sign agreement otherwise), also with `loss_fn=`.
        max_iterations: stop after this many optimiser steps in total (None: no limit).
        eval_every: evaluate on the eval loader every this many epochs (and after the last).
        checkpoint_every: with an output directory, checkpoint every this many epochs.
        progress: show tqdm progress bars.
        kinetic_energy: weight of the kinetic-energy regulariser (integral of ||f||^2) added to
            the loss, summed over every ODE block (Finlay et al. 2020); 0 turns it off.
        jacobian_norm: weight of the Jacobian Frobenius-norm regulariser (Hutchinson estimate).
        regulariser_seed: seed of the Hutchinson noise; the noise of iteration i and block j is
            drawn from a generator seeded by (seed, i, j), so a resumed run draws the same noise.
        jacobian_noise: "gaussian" or "rademacher" Hutchinson noise.

    On resume from a checkpoint, `epochs`, `max_iterations`, `checkpoint_every` and `progress`
    (`RESUME_FREE_KEYS`) may differ from the checkpoint's and the current value applies (a budget
    already spent stops the run at once); any other difference is refused (`resume_conflicts`).

    Raises:
        ValueError: non-positive counts or rates, negative weights, or an unknown loss or noise
            (choices listed).
    """

    epochs: int = 50
    lr: float = 1e-3
    weight_decay: float = 0.0
    loss: str = "huber"
    max_iterations: int | None = None
    eval_every: int = 1
    checkpoint_every: int = 1
    progress: bool = True
    kinetic_energy: float = 0.0
    jacobian_norm: float = 0.0
    regulariser_seed: int = 0
    jacobian_noise: str = "gaussian"

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; valid choices: {list(LOSSES)}")
        if self.jacobian_noise not in NOISE_KINDS:
            raise ValueError(f"unknown jacobian_noise {self.jacobian_noise!r}; valid choices: {list(NOISE_KINDS)}")
        for name in REGULARISERS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite weight >= 0, got {value!r}")
        if isinstance(self.regulariser_seed, bool) or not isinstance(self.regulariser_seed, int) or self.regulariser_seed < 0:
            raise ValueError(f"regulariser_seed must be an integer >= 0, got {self.regulariser_seed!r}")
        for name in ("epochs", "eval_every", "checkpoint_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.max_iterations is not None and (
            isinstance(self.max_iterations, bool) or not isinstance(self.max_iterations, int) or self.max_iterations < 1
        ):
            raise ValueError(f"max_iterations must be a positive integer or None, got {self.max_iterations!r}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a finite positive number, got {self.lr!r}")
        if not (isinstance(self.weight_decay, (int, float)) and math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"weight_decay must be a finite number >= 0, got {self.weight_decay!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form; `TrainConfig(**d)` inverts it."""
        return asdict(self)

    @property
    def regularisers(self) -> dict[str, float]:
        """The regularisers with a positive weight, name -> weight."""
        return {name: float(getattr(self, name)) for name in REGULARISERS if getattr(self, name) > 0}



def resume_conflicts(saved: dict[str, Any], current: TrainConfig) -> list[str]:
    """The result-relevant settings in which a checkpoint's `saved` config differs from `current`.

    Arguments:
        saved: the `train_config` dict stored in a checkpoint (a key it lacks counts as the default).
        current: the settings of the run that wants to resume.

    Returns:
        One "key: old -> new" line per differing key outside `RESUME_FREE_KEYS` (empty: may resume).
    """
    defaults, now = TrainConfig().to_dict(), current.to_dict()
    return [f"{key}: {saved.get(key, defaults[key])!r} -> {value!r}" for key, value in now.items()
            if key not in RESUME_FREE_KEYS and saved.get(key, defaults[key]) != value]


