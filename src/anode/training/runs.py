"""Loading a trained run back: `load_run(run_dir)` rebuilds the model from its checkpoint."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from anode.history import History
from anode.models.rebuild import build_from_architecture
from anode.training.checkpoints import load_checkpoint
from anode.training.config import TrainConfig

__all__ = ["TrainedRun", "load_run"]

CHECKPOINT_FILE = "checkpoint.pt"


@dataclass(frozen=True)
class TrainedRun:
    """A trained run, loaded back by `load_run`.

    Attributes:
        model: the model with its trained weights (those of the run's last checkpoint), in eval mode.
        train_config: the run's training settings.
        config: the plain data the run stored with its checkpoints (`Trainer(extra_state=...)`;
            for runs of `anode experiment` / `anode reproduce`: the experiment, model, dataset,
            seed, the lab's model spec, ...); {} when none.
        history: the iteration and epoch records up to that checkpoint.
        run_dir: the run's folder.
    """

    model: nn.Module
    train_config: TrainConfig
    config: dict[str, Any]
    history: History
    run_dir: Path


def _checkpoint_path(run_dir: Path) -> Path:
    """The checkpoint of a run folder (or `run_dir` itself when it is a file), with the ways out when it has none."""
    if run_dir.is_file():
        return run_dir
    if not run_dir.exists():
        raise FileNotFoundError(f"no run folder at {run_dir}; give the folder a run was trained into "
                                "(the Trainer's out_dir, e.g. <experiment>/runs/<dataset>/<model>/seed-<s>)")
    path = run_dir / CHECKPOINT_FILE
    if path.exists():
        return path
    source = None
    summary = run_dir / "summary.json"
    if summary.exists():
        try:
            source = json.loads(summary.read_text()).get("reused_from")
        except (OSError, ValueError, AttributeError):
            source = None
    if source:
        raise FileNotFoundError(f"{run_dir} has no {CHECKPOINT_FILE}: its results were copied from the identical run "
                                f"{source}; load that one: anode.load_run({str(source)!r})")
    raise FileNotFoundError(f"{run_dir} has no {CHECKPOINT_FILE}: it is not a trained run's folder, or its training "
                            "has not written a checkpoint yet (a Trainer writes one with out_dir=)")


def load_run(
    run_dir: str | os.PathLike[str],
    *,
    model: nn.Module | None = None,
    device: str | torch.device = "cpu",
) -> TrainedRun:
    """Load a trained run: the model rebuilt with its trained weights, its settings and its history.

    Works on any folder a `Trainer` (or an `anode.ensemble.EnsembleTrainer` member) wrote with
    `out_dir=`, e.g. a run of `anode experiment` or `anode reproduce`
    (`<out>/runs/<dataset>/<model>/seed-<s>`). The model is rebuilt from the architecture stored
    in the checkpoint (`anode.models.architecture_of`), so the code that built it is not needed;
    a model anode cannot rebuild (your own vector field or module) is loaded with `model=`.
    The checkpoint is read with `torch.load(..., weights_only=True)`.

    Example:
        ```python
        run = anode.load_run("results/toy/flow_g1d/runs/g1d/anode-p-1/seed-0")  # anode reproduce toy --out results/toy
        pred = run.model(torch.tensor([[0.5]]))  # the trained model's prediction (eval mode)
        run.train_config.lr, run.config["seed"], run.history.epochs[-1]["loss"]
        ```

    Arguments:
        run_dir: the run's folder (or its `checkpoint.pt`).
        model: load the weights into this module instead of rebuilding the model (needed for
            models anode cannot describe and for runs saved before anode 0.2.0 stored
            architectures); it must have the run's architecture.
        device: where the model goes ("cpu", "cuda", ...).

    Returns:
        A `TrainedRun` (model in eval mode, train_config, config, history, run_dir).

    Raises:
        FileNotFoundError: no such folder, or no checkpoint in it (a run whose results were
            copied from an identical run names that run).
        ValueError: not an anode checkpoint; a checkpoint without an architecture (made before
            anode 0.2.0 stored them, or of a model anode cannot rebuild: the class is named, and
            the fix, `model=`); or weights that do not fit `model`.
        TypeError: `model` is not an `nn.Module`.
    """
    if model is not None and not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module to load the weights into, got {type(model).__name__}")
    folder = Path(run_dir)
    path = _checkpoint_path(folder)
    state = load_checkpoint(path)
    if model is None:
        model = _rebuild(state, path)
    weights = state["model"]
    dtypes = {t.dtype for t in weights.values() if isinstance(t, torch.Tensor) and t.is_floating_point()}
    if len(dtypes) == 1:  # a float64 run comes back in float64 (load_state_dict would cast to the model's dtype)
        model.to(dtype=dtypes.pop())
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:
        raise ValueError(f"the weights in {path} do not fit the given {type(model).__name__}: build it with the "
                         f"run's architecture ({err})") from err
    model.to(device).eval()
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    train_config = TrainConfig(**{k: v for k, v in (state.get("train_config") or {}).items() if k in known})
    history = History(iterations=list(state.get("iterations", [])), epochs=list(state.get("epochs", [])))
    return TrainedRun(model=model, train_config=train_config, config=dict(state.get("extra_state") or {}),
                      history=history, run_dir=folder if folder.is_dir() else folder.parent)


def _rebuild(state: dict[str, Any], path: Path) -> nn.Module:
    """The model of a checkpoint, built from its architecture (fresh weights)."""
    fix = (f"build the model as the run did and pass it: anode.load_run(run_dir, model=my_model) (or "
           f"my_model.load_state_dict(anode.load_checkpoint({str(path)!r})['model']))")
    if "architecture" not in state:
        version = state.get("anode_version", "unknown")
        raise ValueError(f"{path} predates anode 0.2.0's self-describing checkpoints (written by anode {version}, "
                         f"without the model's architecture), so the model cannot be rebuilt from it; {fix}")
    architecture = state["architecture"]
    if architecture is None:
        reason = state.get("architecture_error") or "its model could not be described"
        raise ValueError(f"{path} cannot be rebuilt: {reason}")
    try:
        return build_from_architecture(architecture)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: the stored architecture cannot be built with this anode ({err}); {fix}") from err
