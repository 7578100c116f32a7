"""What a run is: `RunUnit` (one model on one dataset with one seed), `RunGroup` (runs trained
together as one stacked ensemble), and how a unit's settings are resolved from its config."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from anode.lab.experiments.config import DatasetSpec, ExperimentConfig, ModelSpec
from anode.training import TrainConfig

__all__ = ["RunGroup", "RunUnit", "model_spec_with", "resolve_unit"]


@dataclass(frozen=True)
class RunUnit:
    """One training run of an experiment (picklable, so it can run in a worker process)."""

    config: ExperimentConfig
    model: str
    dataset: str
    run_dir: str
    seed: int
    repeat: int | None  # None for a search run
    overrides: tuple[tuple[str, Any], ...] = ()
    epochs: int | None = None
    save_artifacts: bool = False
    device: str = "cpu"
    progress: bool = False
    candidate: int | None = None  # the search candidate's index (search runs only)
    stacked: bool = False  # trained in a stacked ensemble (`RunGroup`), even a group of one


@dataclass(frozen=True)
class RunGroup:
    """Runs trained together as one stacked ensemble (`anode.ensemble`); each keeps its own folder and result."""

    units: tuple[RunUnit, ...]


def resolve_unit(unit: RunUnit) -> tuple[ModelSpec, DatasetSpec, TrainConfig]:
    """The run's model spec (search values applied), dataset spec and training settings."""
    cfg, overrides = unit.config, dict(unit.overrides)
    spec = model_spec_with(cfg.model(unit.model), overrides)
    dataset_spec = next(d for d in cfg.datasets if d.name == unit.dataset)
    lr = overrides.get("lr", spec.lr if spec.lr is not None else cfg.train.lr)
    weight_decay = overrides.get("weight_decay", spec.weight_decay if spec.weight_decay is not None else cfg.train.weight_decay)
    train_cfg = TrainConfig(
        epochs=unit.epochs if unit.epochs is not None else cfg.train.epochs, lr=lr, weight_decay=weight_decay, loss=cfg.train.loss,
        max_iterations=cfg.train.max_iterations, eval_every=cfg.train.eval_every, progress=unit.progress,
        kinetic_energy=_own_or(spec.kinetic_energy, cfg.train.kinetic_energy),
        jacobian_norm=_own_or(spec.jacobian_norm, cfg.train.jacobian_norm), regulariser_seed=unit.seed,
    )
    return spec, dataset_spec, train_cfg


def _own_or(own: float | None, shared: float) -> float:
    """A model's own training value, else the experiment's."""
    return own if own is not None else shared


def model_spec_with(spec: ModelSpec, overrides: dict[str, Any]) -> ModelSpec:
    """`spec` with searched architecture values applied (lr and weight decay live in training)."""
    return dataclasses.replace(spec, **{k: v for k, v in overrides.items() if k not in ("lr", "weight_decay")})
