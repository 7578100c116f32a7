"""Evaluation of a model on a loader, and NFE read off its ODE blocks."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from anode.models.block import ODEBlock
from anode.solvers.base import failed_samples_error
from anode.training.config import LOSSES
from anode.training.losses import LossFn, check_loss_fn, check_targets, count_correct, make_loss, scalar_loss

__all__ = ["SAMPLE_NFE_KEYS", "check_failed_samples", "count_nfe", "evaluate", "model_device", "ode_blocks",
           "sample_nfe"]


def model_device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def ode_blocks(model: nn.Module) -> list[ODEBlock]:
    """Every `ODEBlock` inside `model` (itself included), in `model.modules()` order."""
    return [m for m in model.modules() if isinstance(m, ODEBlock)]


def count_nfe(model: nn.Module, blocks: list[ODEBlock] | None = None) -> tuple[int, int]:
    """Forward/backward NFE summed over the model's ODE blocks (or its own `.nfe`, e.g. a ResNet's)."""
    blocks = ode_blocks(model) if blocks is None else blocks
    if blocks:
        return sum(b.nfe.forward for b in blocks), sum(b.nfe.backward for b in blocks)
    nfe = getattr(model, "nfe", None)
    return (nfe.forward, nfe.backward) if nfe is not None else (0, 0)


def check_failed_samples(blocks: list[ODEBlock], *, where: str) -> None:
    """Raise when a block's last forward solve skipped failed samples (`NFE.failed_samples`, per-sample
    step control with `sample_failure="skip"`): a training step must not take a loss over their NaN
    outputs. Called after the forward pass, before the backward pass and the optimiser step.

    Arguments:
        blocks: the model's ODE blocks (`ode_blocks`).
        where: words naming the step in the message (e.g. "training iteration 12").

    Raises:
        MaxStepsExceeded, StepSizeUnderflow, NonFiniteState: the first failed sample's type, naming
            every failed sample of the first block that had one and what to do (`failed_samples_error`).
    """
    for index, block in enumerate(blocks):
        if block.nfe.failed_samples:
            place = f"{where} (ODE block {index} of {len(blocks)})" if len(blocks) > 1 else where
            raise failed_samples_error(block.nfe.failed_samples, where=place)


def _failed_rows(blocks: list[ODEBlock], batch: int) -> list[int]:
    """The samples of a batch of `batch` whose solve failed and was skipped in some block.

    Raises:
        SolverError: a block with failed samples solved a state whose leading axis is not the batch
            (its indices cannot be told apart from the batch's; `failed_samples_error`).
    """
    rows: set[int] = set()
    for block in blocks:
        failures = block.nfe.failed_samples
        if not failures:
            continue
        if len(block.nfe.per_sample) != batch:
            raise failed_samples_error(failures, where="evaluation", consequence=(
                f"and its block solved {len(block.nfe.per_sample)} samples for a batch of {batch}, so they cannot be "
                "left out of the batch's loss and accuracy"))
        rows.update(int(i) for i, _ in failures)
    return sorted(rows)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    loss: str = "huber",
    loss_fn: LossFn | None = None,
) -> dict[str, float]:
    """Mean loss, accuracy and forward NFE of `model` over `loader`, in eval mode without gradients.

    Accuracy is argmax agreement for "cross_entropy" and sign agreement with the (+-1) targets
    otherwise. NFE is summed over every ODE block of the model. The model's train/eval mode is
    restored afterwards.

    Under per-sample step control with `sample_failure="skip"` (the default), a sample whose solve
    failed (`NFE.failed_samples` of a block) has NaN outputs: it is left out of the loss and the
    accuracy (they are means over the other samples) and counted in `failed_samples`, a key present
    only when some sample failed. With `sample_failure="raise"` the failure raises instead.

    Arguments:
        model: the model.
        loader: iterable of (inputs, targets).
        loss: a name from `LOSSES`; picks the loss (unless `loss_fn`) and the accuracy rule.
        loss_fn: your own loss `(pred, target) -> scalar` (the batch mean).

    Returns:
        `{"loss", "accuracy", "nfe_forward"}` (means over the samples, and over the batches for the
        NFE), and `failed_samples` (the number of samples left out) when some sample's solve failed.

    Raises:
        SolverError: a solve failed under batch control or `sample_failure="raise"`; or every
            sample's solve failed (nothing to evaluate); or a block with failed samples solved a
            state whose leading axis is not the batch.
        ValueError: unknown loss, an empty loader, a `loss_fn` returning a non-scalar, or (without
            `loss_fn`) first-batch targets that do not fit the predictions under `loss` (integer class
            labels with a regression loss: use loss="cross_entropy"; labels >= the model's output_dim;
            another shape), see `anode.training.losses.check_targets`.
        TypeError: `loss_fn` not callable.
    """
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; valid choices: {list(LOSSES)}")
    check_loss_fn(loss_fn)
    fn, device, was_training = loss_fn or make_loss(loss), model_device(model), model.training
    blocks = ode_blocks(model)
    model.eval()
    total = correct = failed = 0
    loss_sum = nfe_sum = 0.0
    batches = 0
    first_failure: list[tuple[int, str]] = []
    try:
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            pred = model(x)
            if batches == 0 and loss_fn is None:
                check_targets(pred, y, loss)
            nfe_sum += count_nfe(model, blocks)[0]
            batches += 1
            rows = _failed_rows(blocks, x.shape[0])
            n = x.shape[0] - len(rows)
            if rows:  # their outputs are NaN: left out, counted
                first_failure = first_failure or next(b.nfe.failed_samples for b in blocks if b.nfe.failed_samples)
                failed += len(rows)
                if n == 0:
                    continue
                keep = torch.ones(x.shape[0], dtype=torch.bool, device=pred.device)
                keep[rows] = False
                pred, y = pred[keep], y[keep.to(y.device)]
            loss_sum += float(scalar_loss(fn(pred, y))) * n
            correct += int(count_correct(pred, y, loss))
            total += n
    finally:
        model.train(was_training)
    if total == 0 and failed:  # every sample failed: no number to report
        raise failed_samples_error(first_failure, where="evaluation",
                                   consequence=f"and so did every sample evaluated ({failed} in all): nothing is "
                                               "left to evaluate")
    if total == 0:
        raise ValueError("cannot evaluate on an empty loader")
    metrics = {"loss": loss_sum / total, "accuracy": correct / total, "nfe_forward": nfe_sum / batches}
    if failed:
        metrics["failed_samples"] = failed
    return metrics


#: Iteration (and epoch-mean) fields added under per-sample step control (`sample_nfe`).
SAMPLE_NFE_KEYS: tuple[str, str] = ("nfe_forward_sample_mean", "nfe_forward_sample_max")


def sample_nfe(blocks: list[ODEBlock]) -> dict[str, float]:
    """Mean and largest forward NFE of one sample over the blocks' last forward pass, as
    `{"nfe_forward_sample_mean", "nfe_forward_sample_max"}`; empty when no block controls its
    steps per sample (records under batch control are unchanged).

    A sample's count is summed over the blocks it passes through: its own count (`NFE.per_sample`)
    in a per-sample block, the block's batched calls (`NFE.forward`) in a batch-controlled one.
    """
    counts = [b.nfe.per_sample for b in blocks if b.nfe.per_sample]
    if not counts or any(len(c) != len(counts[0]) for c in counts):  # (blocks that saw other batches: no total)
        return {}
    shared = sum(b.nfe.forward for b in blocks if not b.nfe.per_sample)
    per_sample = [shared + sum(column) for column in zip(*counts, strict=True)]
    return {"nfe_forward_sample_mean": sum(per_sample) / len(per_sample), "nfe_forward_sample_max": max(per_sample)}
