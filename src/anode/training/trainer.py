"""Training loop with per-iteration NFE accounting, evaluation, and exact resume from checkpoints."""

from __future__ import annotations

import contextlib
import io
import math
import os
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from anode.history import History, atomic_write, write_json
from anode.models.architecture import architecture_of
from anode.models.block import ODEBlock
from anode.regularisers import REGULARISERS
from anode.solve import translate_solver_errors
from anode.training.checkpoints import CHECKPOINT_FORMAT, load_checkpoint
from anode.training.config import SCHEDULER_INTERVALS, TrainConfig, resume_conflicts
from anode.training.evaluation import (
    SAMPLE_NFE_KEYS,
    check_failed_samples,
    count_nfe,
    evaluate,
    model_device,
    ode_blocks,
    sample_nfe,
)
from anode.training.losses import LossFn, check_loss_fn, check_targets, count_correct, make_loss, scalar_loss
from anode.training.optimisers import OptimizerArg, SchedulerArg, make_optimizer, make_scheduler
from anode.version import __version__

__all__ = ["Trainer", "TrainingInterrupted", "fit", "request_stop"]


class TrainingInterrupted(BaseException):
    """`Trainer.fit` stopped because `request_stop` was called, after checkpointing where it stood.

    Not a failure of the run: like `KeyboardInterrupt` it passes the `except Exception` handlers that
    record failed runs, and the next `fit` with the same `out_dir` resumes it exactly.
    """


#: The trainers whose `fit` is running in this process (for `request_stop`); each leaves it when its `fit` returns.
_FITTING: weakref.WeakSet[Trainer] = weakref.WeakSet()


def request_stop() -> int:
    """Ask every `Trainer` whose `fit` is running in this process to stop after its current
    iteration (`Trainer.request_stop` asks one). Each checkpoints where it stands and raises
    `TrainingInterrupted`. Safe to call from a signal handler: `anode table1` calls it on SIGTERM,
    so that a run stopped at a GPU window's end loses no work. A trainer that is not fitting is not
    affected, and neither is a later `fit`.

    Returns:
        The number of trainers asked.
    """
    fitting = tuple(_FITTING)
    for trainer in fitting:
        trainer.request_stop()
    return len(fitting)



def batch_count(loader: Any) -> float:
    """Batches in one pass of `loader` (infinite when it has no length)."""
    try:
        return len(loader)
    except TypeError:
        return math.inf


class _Batches(Protocol):
    def __iter__(self) -> Any: ...
    def __len__(self) -> int: ...



class Trainer:
    """Trains a model and records loss, forward/backward NFE and wall time at every iteration.

    With `out_dir`, writes `history.jsonl` (one record per iteration), `epochs.json`,
    `summary.json` and `checkpoint.pt`; `fit` then resumes from an existing checkpoint and
    continues exactly as an uninterrupted run would (same batches, same updates).

    NFE is summed over every `ODEBlock` inside the model (found with `model.modules()`, so an
    `nn.Sequential` of blocks and layers is counted in full); a model with more than one block
    also records the per-block counts as `nfe_forward_blocks` / `nfe_backward_blocks` (lists in
    `model.modules()` order). With per-sample step control (`SolverConfig(step_control="sample")`)
    `nfe_forward` stays the number of batched field calls, and the records add
    `nfe_forward_sample_mean` / `nfe_forward_sample_max`, the mean and largest forward NFE of one
    sample of the batch (`sample_nfe`); a training step in which some sample's solve failed raises
    before its optimiser step (`step`), and evaluation leaves such samples out and counts them
    (`eval_failed_samples` in the epoch record, see `evaluate`). With regulariser weights in the
    config, every block integrates the regularisers, `loss` stays the data loss and the records add `kinetic_energy` /
    `jacobian_norm` (summed over blocks) and `regularisation` (their weighted sum, which is
    added to the loss that is minimised).

    Arguments:
        model: any module mapping a batch to predictions.
        config: optimisation settings (data only).
        out_dir: directory for history, summary and checkpoints (None: keep in memory only).
        callback: called as `callback(trainer, record)` after every iteration (e.g. to snapshot features).
        extra_state: plain data stored in checkpoints and the summary (e.g. the run's config).
        optimizer: an optimiser instance over the model's parameters, or a factory
            `params -> optimizer` (e.g. `lambda ps: torch.optim.SGD(ps, lr=0.1)`); None:
            `default_optimizer` (Adam with the config's `lr` and `weight_decay`).
        scheduler: a learning-rate scheduler over this trainer's optimiser, or a factory
            `optimizer -> scheduler`; None: constant rate. `ReduceLROnPlateau` is stepped with the
            epoch's mean training loss.
        scheduler_interval: "epoch" (step after every epoch) or "iteration" (after every optimiser step).
        loss_fn: your own loss `(pred, target) -> scalar tensor`; None: the config's `loss`.
        tensorboard_dir: also log every record to TensorBoard there (needs `pip install
            "anode[tensorboard]"`); None: no TensorBoard.
        stop_event: the event that asks this trainer to stop (`request_stop`); share one to stop
            several trainers together; None: a new event of its own.

    Raises:
        TypeError: a config that is not a `TrainConfig`, or an optimiser/scheduler/loss of the wrong kind.
        ValueError: an unknown `scheduler_interval`, a scheduler bound to another optimiser, or
            `ReduceLROnPlateau` stepped per iteration.
        ImportError: `tensorboard_dir` given without the tensorboard package.
    """

    def __init__(
        self,
        model: nn.Module,
        config: TrainConfig = TrainConfig(),
        *,
        out_dir: str | os.PathLike[str] | None = None,
        callback: Callable[[Trainer, dict[str, float]], None] | None = None,
        extra_state: dict[str, Any] | None = None,
        optimizer: OptimizerArg = None,
        scheduler: SchedulerArg = None,
        scheduler_interval: str = "epoch",
        loss_fn: LossFn | None = None,
        tensorboard_dir: str | os.PathLike[str] | None = None,
        stop_event: threading.Event | None = None,
    ) -> None:
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config must be an anode.TrainConfig, got {type(config).__name__}")
        if scheduler_interval not in SCHEDULER_INTERVALS:
            raise ValueError(f"unknown scheduler_interval {scheduler_interval!r}; valid choices: {list(SCHEDULER_INTERVALS)}")
        check_loss_fn(loss_fn)
        self.model = model
        self.config = config
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.callback = callback
        self.extra_state = dict(extra_state or {})
        self.optimizer = make_optimizer(model, config, optimizer)
        self.scheduler = make_scheduler(self.optimizer, scheduler, scheduler_interval)
        self.scheduler_interval = scheduler_interval
        self.loss_fn = loss_fn or make_loss(config.loss)
        self._own_loss = loss_fn is None  # the config's loss: targets are checked against it
        self._targets_checked = False  # set by the first step of each `fit` (`check_targets`)
        self.blocks = ode_blocks(model)
        if config.regularisers and not self.blocks:
            raise ValueError(f"regulariser weights {config.regularisers} need ODE blocks, but the model has no anode.ODEBlock")
        self._tensorboard = tensorboard_writer(tensorboard_dir) if tensorboard_dir is not None else None
        self.stop_event = stop_event if stop_event is not None else threading.Event()
        self.history = History()
        self._train_loader: Any = None
        self._saved_at = -1  # iteration count at the last checkpoint
        self.epoch = 0  # epochs completed
        self.iteration = 0  # optimiser steps completed
        self.segments = 0  # calls of `fit` over the run's life, resumes included (restored from checkpoints)
        self._elapsed_before = 0.0  # wall seconds of `fit` in earlier segments, up to their last checkpoint
        self._fit_started: float | None = None
        self._epoch_position = 0  # batches of the current epoch already trained (a mid-epoch checkpoint's)
        self._epoch_loader_state: Any = None  # the loader's state at the current epoch's start

    @property
    def checkpoint_path(self) -> Path | None:
        return self.out_dir / "checkpoint.pt" if self.out_dir is not None else None

    def step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        """One optimiser step on a batch; returns (and records) its iteration record.

        Under per-sample step control with `sample_failure="skip"` (the default) a sample whose
        forward solve fails does not stop the solve, but its outputs are NaN, and a loss over them
        would make every weight NaN: the step then raises (`check_failed_samples`) after the
        forward pass, before the backward pass and the optimiser step, so the weights, the optimiser
        state and the history stay as they were.

        Raises:
            SolverError: the forward or (adjoint) backward solve failed; or (per-sample control,
                `sample_failure="skip"`) some sample's forward solve failed: the first failure's type
                (`MaxStepsExceeded`, `StepSizeUnderflow`, `NonFiniteState`), naming the failed samples.
            ValueError: `loss_fn` returned a non-scalar; or (first step of a `fit`, with the config's
                loss) targets that do not fit the predictions (see `anode.training.losses.check_targets`).
        """
        start = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        weights = self.config.regularisers
        with contextlib.ExitStack() as stack:
            terms = [stack.enter_context(self._regularised(block, index)) for index, block in enumerate(self.blocks)] \
                if weights else []
            pred = self.model(x)
        check_failed_samples(self.blocks, where=f"training iteration {self.iteration}")
        if not self._targets_checked:  # once per fit: a mismatch is an error before the first optimiser step
            if self._own_loss:
                check_targets(pred, y, self.config.loss)
            self._targets_checked = True
        nfe_forward = count_nfe(self.model, self.blocks)[0]
        forward_blocks = [b.nfe.forward for b in self.blocks]
        data_loss = scalar_loss(self.loss_fn(pred, y))
        reg_values: dict[str, torch.Tensor] = {}
        for name in weights:
            found = [term[name] for term in terms if name in term]
            reg_values[name] = torch.stack(found).sum() if found else data_loss.new_zeros(())
        regularisation = sum((w * reg_values[n] for n, w in weights.items()), data_loss.new_zeros(()))
        loss = data_loss + regularisation if weights else data_loss
        with translate_solver_errors("backward pass (adjoint solve)"):
            loss.backward()
        self.optimizer.step()
        if self.scheduler is not None and self.scheduler_interval == "iteration":
            self.scheduler.step()
        loss_value = float(data_loss.detach())  # synchronises, so the time below is complete
        accuracy = int(count_correct(pred.detach(), y, self.config.loss)) / x.shape[0]
        record: dict[str, Any] = {
            "iteration": self.iteration, "epoch": self.epoch, "loss": loss_value, "accuracy": accuracy,
            "nfe_forward": nfe_forward, "nfe_backward": count_nfe(self.model, self.blocks)[1], "time": time.perf_counter() - start,
        }
        record.update(sample_nfe(self.blocks))
        if len(self.blocks) > 1:
            record["nfe_forward_blocks"] = forward_blocks
            record["nfe_backward_blocks"] = [b.nfe.backward for b in self.blocks]
        if weights:
            record.update({name: float(value.detach()) for name, value in reg_values.items()})
            record["regularisation"] = float(regularisation.detach())
        self.iteration += 1
        self.history.iterations.append(record)
        if self._tensorboard is not None:
            for key, value in record.items():
                if key not in ("iteration", "epoch") and isinstance(value, (int, float)):
                    self._tensorboard.add_scalar(f"train/{key}", value, record["iteration"])
        if self.callback is not None:
            self.callback(self, record)
        return record

    def _regularised(self, block: ODEBlock, index: int) -> contextlib.AbstractContextManager[dict[str, torch.Tensor]]:
        """The regularising context of one block for this iteration (noise seeded by (seed, iteration, block))."""
        cfg = self.config
        generator = None
        if cfg.jacobian_norm > 0:
            seed = int(np.random.SeedSequence([cfg.regulariser_seed, self.iteration, index]).generate_state(1)[0])
            generator = torch.Generator().manual_seed(seed)
        return block.regularised(kinetic_energy=cfg.kinetic_energy > 0, jacobian_norm=cfg.jacobian_norm > 0,
                                 generator=generator, noise_kind=cfg.jacobian_noise)

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
            ValueError: the checkpoint was made with other result-relevant settings (see `load_checkpoint`);
                or the first batch's targets do not fit the model's predictions under the config's loss
                (integer class labels with a regression loss, labels >= the model's output_dim,
                another shape), raised before the first optimiser step.
            TrainingInterrupted: `request_stop` was called; the run was checkpointed where it stood
                (with an `out_dir`) and the next `fit` continues it as if uninterrupted.
        """
        self._elapsed_before, self._fit_started = self.elapsed, None  # earlier `fit` calls of this trainer
        if resume and self.checkpoint_path is not None and self.checkpoint_path.exists():
            self.load_checkpoint(self.checkpoint_path, train_loader=train_loader)
        self.segments += 1
        self._targets_checked = False
        self._fit_started = time.perf_counter()
        _FITTING.add(self)
        try:
            return self._fit(train_loader, eval_loader)
        finally:  # the clock stops with `fit`: `elapsed` read afterwards is this segment's end, not now
            _FITTING.discard(self)
            self._elapsed_before, self._fit_started = self.elapsed, None

    def request_stop(self) -> None:
        """Ask this trainer's `fit` (running now, e.g. from a callback, a signal handler or another
        thread, or the next one) to stop after its current iteration: it checkpoints (mid-epoch, with
        the position in the epoch's batch order, when the loader has `state_dict`; else at the end of
        the epoch) and raises `TrainingInterrupted`, which answers the request. Sets `stop_event`."""
        self.stop_event.set()

    def _fit(self, train_loader: _Batches, eval_loader: _Batches | None) -> History:
        device = model_device(self.model)
        cfg = self.config
        self._train_loader = train_loader
        self.model.train()
        # the epoch bar stays when training ends (a record of the run); each epoch's bar goes with its epoch
        epochs = tqdm(range(self.epoch, cfg.epochs), desc="epochs", leave=True, disable=not cfg.progress,
                      initial=self.epoch, total=cfg.epochs)
        for _ in epochs:
            if self._budget_spent():
                break
            skip, self._epoch_position = self._epoch_position, 0  # resumed mid-epoch: its batches already trained
            first = len(self.history.iterations) - skip
            if skip:  # back to the epoch's start (from a checkpoint, or this trainer's own interrupted fit)
                train_loader.load_state_dict(self._epoch_loader_state)
            self._epoch_loader_state = train_loader.state_dict() if hasattr(train_loader, "state_dict") else None
            batches = iter(train_loader)
            for _ in range(skip):  # the same order (the loader's state is the epoch's start), without training
                next(batches)
            position = skip
            n_batches = batch_count(train_loader)
            left = math.inf if cfg.max_iterations is None else skip + cfg.max_iterations - self.iteration
            shown = min(n_batches, left)  # an epoch cut by max_iterations: its bar (and ETA) ends at the cut
            for x, y in tqdm(batches, desc=f"epoch {self.epoch + 1}", leave=False, disable=not cfg.progress,
                             initial=skip, total=None if math.isinf(shown) else shown):
                record = self.step(x.to(device, non_blocking=True), y.to(device, non_blocking=True))
                position += 1
                epochs.set_postfix(loss=f"{record['loss']:.4f}", nfe=record["nfe_forward"], refresh=False)
                if self._budget_spent():
                    break
                if self.stop_event.is_set() and self._epoch_loader_state is not None and position < n_batches:
                    self._interrupt(train_loader, position)
            self._end_epoch(first, eval_loader)
            if self.stop_event.is_set() and self.epoch < cfg.epochs and not self._budget_spent():
                self._interrupt(train_loader, 0)
        if self.out_dir is not None:
            if self._saved_at != self.iteration:
                self._save(self.out_dir, train_loader)
            write_json(self.out_dir / "summary.json", self.summary())
        if self._tensorboard is not None:
            self._tensorboard.flush()
        return self.history

    def _save(self, out_dir: Path, train_loader: Any) -> None:
        self.history.save(out_dir)
        self.save_checkpoint(out_dir / "checkpoint.pt", train_loader=train_loader)
        self._saved_at = self.iteration

    def _interrupt(self, train_loader: Any, position: int) -> None:
        """Checkpoint `position` batches into the current epoch (0: at an epoch's end) and raise
        `TrainingInterrupted` (`request_stop`)."""
        self._epoch_position = position
        self.stop_event.clear()  # the request is answered
        where = f"iteration {self.iteration} (epoch {self.epoch + 1}, batch {position})" if position else \
            f"epoch {self.epoch}"
        if self.out_dir is None:
            raise TrainingInterrupted(f"training stopped on request after {where}; nothing was saved (no out_dir)")
        if self._saved_at != self.iteration or position:
            self._save(self.out_dir, train_loader)
        raise TrainingInterrupted(f"training stopped on request after {where}; "
                                  f"{self.checkpoint_path} resumes it exactly")

    def _budget_spent(self) -> bool:
        return self.config.max_iterations is not None and self.iteration >= self.config.max_iterations

    def _end_epoch(self, first: int, eval_loader: _Batches | None) -> None:
        records = self.history.iterations[first:]
        if not records:
            return
        summary: dict[str, float] = {"epoch": self.epoch, "iterations": len(records)}
        for key in ("loss", "accuracy", "nfe_forward", "nfe_backward", *SAMPLE_NFE_KEYS, "time", *REGULARISERS,
                    "regularisation"):
            if key in records[0]:
                summary[key] = sum(r[key] for r in records) / len(records)
        self.epoch += 1
        last = self.epoch >= self.config.epochs or self._budget_spent()
        if eval_loader is not None and (self.epoch % self.config.eval_every == 0 or last):
            metrics = evaluate(self.model, eval_loader, loss=self.config.loss, loss_fn=self.loss_fn)
            summary.update({f"eval_{k}": v for k, v in metrics.items()})
        if self.scheduler is not None and self.scheduler_interval == "epoch":
            if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                self.scheduler.step(summary["loss"])
            else:
                self.scheduler.step()
        if self._tensorboard is not None:
            for key, value in summary.items():
                if key not in ("epoch", "iterations"):
                    self._tensorboard.add_scalar(f"epoch/{key}", value, self.epoch)
        self.history.epochs.append(summary)
        if self.out_dir is not None and (self.epoch % self.config.checkpoint_every == 0 or last):
            self._save(self.out_dir, self._train_loader)

    @property
    def elapsed(self) -> float:
        """Wall seconds spent in `fit` (training, evaluation, checkpoints) over all of the run's
        segments: a resumed run adds the time of its earlier segments up to their last checkpoint."""
        now = time.perf_counter() - self._fit_started if self._fit_started is not None else 0.0
        return self._elapsed_before + now

    def summary(self) -> dict[str, Any]:
        """Final numbers of the run: last-epoch means, totals, last evaluation, parameter count;
        after `fit`, also `elapsed` (wall seconds over all segments) and `segments` (1 + resumes)."""
        last = self.history.epochs[-1] if self.history.epochs else {}
        segments = {"elapsed": self.elapsed, "segments": self.segments} if self.segments else {}
        return {
            "epochs": self.epoch, "iterations": self.iteration,
            "final_loss": last.get("loss"), "final_nfe_forward": last.get("nfe_forward"),
            "final_nfe_backward": last.get("nfe_backward"),
            "eval": {k[5:]: v for k, v in last.items() if k.startswith("eval_")} or None,
            "total_time": sum(r["time"] for r in self.history.iterations),
            "num_parameters": sum(p.numel() for p in self.model.parameters() if p.requires_grad),
            "train_config": self.config.to_dict(), **segments, **self.extra_state,
        }

    def save_checkpoint(self, path: str | os.PathLike[str] | None, *, train_loader: Any = None) -> Path:
        """Atomically write model, optimiser, config, counters, history and loader RNG state.

        The checkpoint also holds the model's architecture (`anode.models.architecture_of`) under
        "architecture", so that `anode.load_run` can rebuild the model; a model anode cannot
        describe (e.g. with your own vector field) stores None there and the reason under
        "architecture_error".

        Arguments:
            path: the file to write.
            train_loader: a loader with `state_dict` has its shuffling state saved.

        Returns:
            The path written.

        Raises:
            ValueError: `path` is None.
        """
        if path is None:
            raise ValueError("no checkpoint path: pass one or give the Trainer an out_dir")
        try:
            architecture, architecture_error = architecture_of(self.model), None
        except ValueError as err:
            architecture, architecture_error = None, str(err)
        state = {
            "format": CHECKPOINT_FORMAT, "anode_version": __version__,
            "architecture": architecture, "architecture_error": architecture_error,
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "train_config": self.config.to_dict(), "extra_state": self.extra_state,
            "epoch": self.epoch, "iteration": self.iteration, "elapsed": self.elapsed, "segments": self.segments,
            "iterations": self.history.iterations, "epochs": self.history.epochs,
            # mid-epoch: the loader's state at the epoch's start and the batches of it already trained
            "loader": (self._epoch_loader_state if self._epoch_position else
                       train_loader.state_dict() if hasattr(train_loader, "state_dict") else None),
            "epoch_position": self._epoch_position,
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
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
                (each changed key is named with the checkpoint's and the current value), or saved
                mid-epoch (`request_stop`) and `train_loader` cannot restore its batch order.
        """
        state = load_checkpoint(path)
        conflicts = resume_conflicts(state.get("train_config") or {}, self.config)
        if conflicts:
            raise ValueError(
                f"cannot resume from {path}: it was made with other training settings ({'; '.join(conflicts)}), "
                "and resuming would continue its optimiser state under the new ones. Start a fresh run "
                "(delete the checkpoint / use --fresh) or resume with the original settings."
            )
        position = int(state.get("epoch_position", 0))
        if position and not hasattr(train_loader, "load_state_dict"):
            raise ValueError(f"{path} was saved {position} batches into an epoch, and resuming it exactly needs the "
                             "same kind of loader, with state_dict/load_state_dict (an anode TensorLoader); got "
                             f"{type(train_loader).__name__}")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.epoch, self.iteration = state["epoch"], state["iteration"]
        self._elapsed_before, self.segments = float(state.get("elapsed", 0.0)), int(state.get("segments", 0))
        self._fit_started = None
        self.history = History(iterations=list(state["iterations"]), epochs=list(state["epochs"]))
        if state.get("loader") is not None and hasattr(train_loader, "load_state_dict"):
            train_loader.load_state_dict(state["loader"])
        self._epoch_position, self._epoch_loader_state = position, state.get("loader")



def fit(
    model: nn.Module,
    train_loader: _Batches,
    config: TrainConfig = TrainConfig(),
    *,
    eval_loader: _Batches | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    callback: Callable[[Trainer, dict[str, float]], None] | None = None,
    optimizer: OptimizerArg = None,
    scheduler: SchedulerArg = None,
    scheduler_interval: str = "epoch",
    loss_fn: LossFn | None = None,
    tensorboard_dir: str | os.PathLike[str] | None = None,
) -> History:
    """Functional form of `Trainer(model, config, ...).fit(train_loader, eval_loader=...)` (same keyword arguments).

    Returns:
        The history.

    Raises:
        As `Trainer` and `Trainer.fit`.
    """
    trainer = Trainer(model, config, out_dir=out_dir, callback=callback, optimizer=optimizer, scheduler=scheduler,
                      scheduler_interval=scheduler_interval, loss_fn=loss_fn, tensorboard_dir=tensorboard_dir)
    return trainer.fit(train_loader, eval_loader=eval_loader)



def tensorboard_writer(log_dir: str | os.PathLike[str]) -> Any:
    """A TensorBoard `SummaryWriter`, imported here so that tensorboard stays optional."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:
        raise ImportError(
            "TensorBoard logging needs the tensorboard package: pip install \"anode[tensorboard]\" "
            "(or pip install tensorboard), or leave tensorboard_dir out"
        ) from err
    return SummaryWriter(log_dir=str(log_dir))
