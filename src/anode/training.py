"""Training loop with per-iteration NFE accounting, evaluation, and exact resume from checkpoints."""

from __future__ import annotations

import io
import math
import os
import pickle
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from tqdm.auto import tqdm

from .history import History, atomic_write, write_json
from .solve import translate_solver_errors

__all__ = ["LOSSES", "RESUME_FREE_KEYS", "TrainConfig", "Trainer", "evaluate", "fit", "load_checkpoint", "resume_conflicts"]

LOSSES: tuple[str, ...] = ("huber", "mse", "cross_entropy")
CHECKPOINT_FORMAT = 1
#: `TrainConfig` fields that may differ between a checkpoint and the run resuming from it: they only
#: extend or shorten the budget (epochs, max_iterations) or are bookkeeping (checkpoint_every,
#: progress); the current value applies. Every other field changes results, so a resume with a
#: different value is refused (a field added later is result-relevant unless listed here).
RESUME_FREE_KEYS: frozenset[str] = frozenset({"epochs", "max_iterations", "checkpoint_every", "progress"})


class _Batches(Protocol):
    def __iter__(self) -> Any: ...
    def __len__(self) -> int: ...


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings (the paper's: Adam, lr 1e-3; Huber loss for the toy regressions).

    Arguments:
        epochs: passes over the training loader.
        lr: Adam learning rate.
        weight_decay: Adam weight decay (L2).
        loss: "huber" (the 2019 code's SmoothL1), "mse" or "cross_entropy".
        max_iterations: stop after this many optimiser steps in total (None: no limit).
        eval_every: evaluate on the eval loader every this many epochs (and after the last).
        checkpoint_every: with an output directory, checkpoint every this many epochs.
        progress: show tqdm progress bars.

    On resume from a checkpoint, `epochs`, `max_iterations`, `checkpoint_every` and `progress`
    (`RESUME_FREE_KEYS`) may differ from the checkpoint's and the current value applies (a budget
    already spent stops the run at once); any other difference is refused (`resume_conflicts`).

    Raises:
        ValueError: non-positive counts or rates, or an unknown loss (choices listed).
    """

    epochs: int = 50
    lr: float = 1e-3
    weight_decay: float = 0.0
    loss: str = "huber"
    max_iterations: int | None = None
    eval_every: int = 1
    checkpoint_every: int = 1
    progress: bool = True

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; valid choices: {list(LOSSES)}")
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
        return asdict(self)


def _loss_fn(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    return {"huber": nn.HuberLoss(), "mse": nn.MSELoss(), "cross_entropy": nn.CrossEntropyLoss()}[name]


def _correct(pred: torch.Tensor, target: torch.Tensor, loss: str) -> torch.Tensor:
    """Number of correct predictions: argmax for classification, sign agreement for +-1 targets."""
    if loss == "cross_entropy":
        return (pred.argmax(1) == target).sum()
    return (torch.sign(pred) == torch.sign(target)).all(dim=1).sum()


def _device_of(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def _nfe(model: nn.Module) -> tuple[int, int]:
    nfe = getattr(model, "nfe", None)
    return (nfe.forward, nfe.backward) if nfe is not None else (0, 0)


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable[tuple[torch.Tensor, torch.Tensor]], *, loss: str = "huber") -> dict[str, float]:
    """Mean loss, accuracy and forward NFE of `model` over `loader`, in eval mode without gradients.

    Accuracy is argmax agreement for "cross_entropy" and sign agreement with the (+-1) targets
    otherwise. The model's train/eval mode is restored afterwards.

    Raises:
        ValueError: unknown loss or an empty loader.
    """
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; valid choices: {list(LOSSES)}")
    fn, device, was_training = _loss_fn(loss), _device_of(model), model.training
    model.eval()
    total = correct = 0
    loss_sum = nfe_sum = 0.0
    batches = 0
    try:
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            pred = model(x)
            loss_sum += float(fn(pred, y)) * x.shape[0]
            correct += int(_correct(pred, y, loss))
            total += x.shape[0]
            nfe_sum += _nfe(model)[0]
            batches += 1
    finally:
        model.train(was_training)
    if total == 0:
        raise ValueError("cannot evaluate on an empty loader")
    return {"loss": loss_sum / total, "accuracy": correct / total, "nfe_forward": nfe_sum / batches}


class Trainer:
    """Trains a model and records loss, forward/backward NFE and wall time at every iteration.

    With `out_dir`, writes `history.jsonl` (one record per iteration), `epochs.json`,
    `summary.json` and `checkpoint.pt`; `fit` then resumes from an existing checkpoint and
    continues exactly as an uninterrupted run would (same batches, same updates).

    Arguments:
        model: any module mapping a batch to predictions (ODE models also expose `.nfe`).
        config: optimisation settings.
        out_dir: directory for history, summary and checkpoints (None: keep in memory only).
        callback: called as `callback(trainer, record)` after every iteration (e.g. to snapshot features).
        extra_state: plain data stored in checkpoints and the summary (e.g. the run's config).
    """

    def __init__(
        self,
        model: nn.Module,
        config: TrainConfig = TrainConfig(),
        *,
        out_dir: str | os.PathLike[str] | None = None,
        callback: Callable[[Trainer, dict[str, float]], None] | None = None,
        extra_state: dict[str, Any] | None = None,
    ) -> None:
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config must be an anode.TrainConfig, got {type(config).__name__}")
        self.model = model
        self.config = config
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.callback = callback
        self.extra_state = dict(extra_state or {})
        self.optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.loss_fn = _loss_fn(config.loss)
        self.history = History()
        self._train_loader: Any = None
        self._saved_at = -1  # iteration count at the last checkpoint
        self.epoch = 0  # epochs completed
        self.iteration = 0  # optimiser steps completed

    @property
    def checkpoint_path(self) -> Path | None:
        return self.out_dir / "checkpoint.pt" if self.out_dir is not None else None

    def step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        """One optimiser step on a batch; returns (and records) its iteration record.

        Raises:
            SolverError: the forward or (adjoint) backward solve failed.
        """
        start = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        pred = self.model(x)
        nfe_forward = _nfe(self.model)[0]
        loss = self.loss_fn(pred, y)
        with translate_solver_errors("backward pass (adjoint solve)"):
            loss.backward()
        self.optimizer.step()
        loss_value = float(loss.detach())  # synchronises, so the time below is complete
        accuracy = int(_correct(pred.detach(), y, self.config.loss)) / x.shape[0]
        record = {
            "iteration": self.iteration, "epoch": self.epoch, "loss": loss_value, "accuracy": accuracy,
            "nfe_forward": nfe_forward, "nfe_backward": _nfe(self.model)[1], "time": time.perf_counter() - start,
        }
        self.iteration += 1
        self.history.iterations.append(record)
        if self.callback is not None:
            self.callback(self, record)
        return record

    def fit(self, train_loader: _Batches, *, eval_loader: _Batches | None = None, resume: bool = True) -> History:
        """Train for `config.epochs` epochs (or `config.max_iterations` steps).

        Arguments:
            train_loader: iterable of (inputs, targets); a `TensorLoader` is checkpointed with its
                shuffling state so that a resumed run sees the same batches.
            eval_loader: evaluated every `config.eval_every` epochs (loss, accuracy, NFE).
            resume: continue from `out_dir/checkpoint.pt` when it exists. The checkpoint's
                result-relevant settings must equal `config`'s; `epochs`, `max_iterations`,
                `checkpoint_every` and `progress` (`RESUME_FREE_KEYS`) take their current values.

        Returns:
            The history.

        Raises:
            SolverError: a solve failed (the run's records so far stay in `history`).
            ValueError: the checkpoint was made with other result-relevant settings (see `load_checkpoint`).
        """
        if resume and self.checkpoint_path is not None and self.checkpoint_path.exists():
            self.load_checkpoint(self.checkpoint_path, train_loader=train_loader)
        device = _device_of(self.model)
        cfg = self.config
        self._train_loader = train_loader
        self.model.train()
        epochs = tqdm(range(self.epoch, cfg.epochs), desc="epochs", leave=False, disable=not cfg.progress,
                      initial=self.epoch, total=cfg.epochs)
        for _ in epochs:
            if self._budget_spent():
                break
            first = len(self.history.iterations)
            for x, y in tqdm(train_loader, desc=f"epoch {self.epoch + 1}", leave=False, disable=not cfg.progress):
                record = self.step(x.to(device, non_blocking=True), y.to(device, non_blocking=True))
                epochs.set_postfix(loss=f"{record['loss']:.4f}", nfe=record["nfe_forward"], refresh=False)
                if self._budget_spent():
                    break
            self._end_epoch(first, eval_loader)
        if self.out_dir is not None:
            if self._saved_at != self.iteration:
                self._save(self.out_dir, train_loader)
            write_json(self.out_dir / "summary.json", self.summary())
        return self.history

    def _save(self, out_dir: Path, train_loader: Any) -> None:
        self.history.save(out_dir)
        self.save_checkpoint(out_dir / "checkpoint.pt", train_loader=train_loader)
        self._saved_at = self.iteration

    def _budget_spent(self) -> bool:
        return self.config.max_iterations is not None and self.iteration >= self.config.max_iterations

    def _end_epoch(self, first: int, eval_loader: _Batches | None) -> None:
        records = self.history.iterations[first:]
        if not records:
            return
        summary: dict[str, float] = {"epoch": self.epoch, "iterations": len(records)}
        for key in ("loss", "accuracy", "nfe_forward", "nfe_backward", "time"):
            summary[key] = sum(r[key] for r in records) / len(records)
        self.epoch += 1
        last = self.epoch >= self.config.epochs or self._budget_spent()
        if eval_loader is not None and (self.epoch % self.config.eval_every == 0 or last):
            metrics = evaluate(self.model, eval_loader, loss=self.config.loss)
            summary.update({f"eval_{k}": v for k, v in metrics.items()})
        self.history.epochs.append(summary)
        if self.out_dir is not None and (self.epoch % self.config.checkpoint_every == 0 or last):
            self._save(self.out_dir, self._train_loader)

    def summary(self) -> dict[str, Any]:
        """Final numbers of the run: last-epoch means, totals, last evaluation, parameter count."""
        last = self.history.epochs[-1] if self.history.epochs else {}
        return {
            "epochs": self.epoch, "iterations": self.iteration,
            "final_loss": last.get("loss"), "final_nfe_forward": last.get("nfe_forward"),
            "final_nfe_backward": last.get("nfe_backward"),
            "eval": {k[5:]: v for k, v in last.items() if k.startswith("eval_")} or None,
            "total_time": sum(r["time"] for r in self.history.iterations),
            "num_parameters": sum(p.numel() for p in self.model.parameters() if p.requires_grad),
            "train_config": self.config.to_dict(), **self.extra_state,
        }

    def save_checkpoint(self, path: str | os.PathLike[str] | None, *, train_loader: Any = None) -> Path:
        """Atomically write model, optimiser, config, counters, history and loader RNG state."""
        from . import __version__

        if path is None:
            raise ValueError("no checkpoint path: pass one or give the Trainer an out_dir")
        state = {
            "format": CHECKPOINT_FORMAT, "anode_version": __version__,
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "train_config": self.config.to_dict(), "extra_state": self.extra_state,
            "epoch": self.epoch, "iteration": self.iteration,
            "iterations": self.history.iterations, "epochs": self.history.epochs,
            "loader": train_loader.state_dict() if hasattr(train_loader, "state_dict") else None,
        }
        buffer = io.BytesIO()
        torch.save(state, buffer)
        return atomic_write(path, lambda fh: fh.write(buffer.getvalue()))

    def load_checkpoint(self, path: str | os.PathLike[str], *, train_loader: Any = None) -> None:
        """Restore a checkpoint written by `save_checkpoint` (loaded with `weights_only=True`).

        The checkpoint's training settings must match this trainer's on every result-relevant
        key (all but `RESUME_FREE_KEYS`); for the budget and bookkeeping keys the trainer's current
        values apply (e.g. a larger `epochs` extends the run).

        Arguments:
            path: the checkpoint file.
            train_loader: a loader with `load_state_dict` gets its shuffling state back.

        Raises:
            FileNotFoundError: no file at `path`.
            ValueError: not an anode checkpoint, or made with other result-relevant settings
                (each changed key is named with the checkpoint's and the current value).
        """
        state = load_checkpoint(path)
        conflicts = resume_conflicts(state.get("train_config") or {}, self.config)
        if conflicts:
            raise ValueError(
                f"cannot resume from {path}: it was made with other training settings ({'; '.join(conflicts)}), "
                "and resuming would continue its optimiser state under the new ones. Start a fresh run "
                "(delete the checkpoint / use --fresh) or resume with the original settings."
            )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.epoch, self.iteration = state["epoch"], state["iteration"]
        self.history = History(iterations=list(state["iterations"]), epochs=list(state["epochs"]))
        if state.get("loader") is not None and hasattr(train_loader, "load_state_dict"):
            train_loader.load_state_dict(state["loader"])


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


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read an anode checkpoint safely (`torch.load(..., weights_only=True)`).

    Raises:
        FileNotFoundError: no file at `path`.
        ValueError: the file is not an anode checkpoint of a known format.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, EOFError, KeyError, RuntimeError, ValueError) as err:
        raise ValueError(f"{path} is not an anode checkpoint (format {CHECKPOINT_FORMAT}): {err}") from err
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not an anode checkpoint (format {CHECKPOINT_FORMAT})")
    return state


def fit(
    model: nn.Module,
    train_loader: _Batches,
    config: TrainConfig = TrainConfig(),
    *,
    eval_loader: _Batches | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    callback: Callable[[Trainer, dict[str, float]], None] | None = None,
) -> History:
    """Functional form of `Trainer(model, config, out_dir=..., callback=...).fit(train_loader, eval_loader=...)`."""
    return Trainer(model, config, out_dir=out_dir, callback=callback).fit(train_loader, eval_loader=eval_loader)
