"""Losses by name, the accuracy rule, and checks of a user's loss function."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

__all__ = ["LossFn", "check_loss_fn", "check_targets", "count_correct", "make_loss", "scalar_loss"]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def make_loss(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    return {"huber": nn.HuberLoss(), "mse": nn.MSELoss(), "cross_entropy": nn.CrossEntropyLoss()}[name]


def count_correct(pred: torch.Tensor, target: torch.Tensor, loss: str) -> torch.Tensor:
    """Number of correct predictions: argmax for classification, sign agreement for +-1 targets."""
    if loss == "cross_entropy":
        return (pred.argmax(1) == target).sum()
    return (torch.sign(pred) == torch.sign(target)).all(dim=1).sum()



def check_loss_fn(loss_fn: object) -> None:
    if loss_fn is not None and not callable(loss_fn):
        raise TypeError(f"loss_fn must be a callable (pred, target) -> scalar tensor, got {type(loss_fn).__name__}")


def scalar_loss(value: object) -> torch.Tensor:
    if not isinstance(value, torch.Tensor) or value.dim() != 0:
        shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise ValueError(f"loss_fn must return a scalar tensor (e.g. a mean over the batch), got {shape}")
    return value


def check_targets(pred: torch.Tensor, target: torch.Tensor, loss: str) -> None:
    """Refuse targets that do not fit the predictions under the built-in `loss`, before any
    optimiser step (torch would broadcast them silently or fail deep inside the loss).

    Cheap: shapes and dtypes, and (cross_entropy) the largest label; `Trainer.fit` checks its first
    batch and `evaluate` its first batch. It changes nothing.

    Arguments:
        pred: the model's predictions on a batch, `[batch, output_dim]`.
        target: the batch's targets.
        loss: a name from `LOSSES`.

    Returns:
        None.

    Raises:
        ValueError: integer class labels with a regression loss (use loss="cross_entropy");
            class labels outside the model's output width (build it with output_dim = max label + 1);
            labels that are not 1-D, or negative; or regression targets of another shape than the
            predictions (both shapes named).
    """
    if not isinstance(pred, torch.Tensor) or not isinstance(target, torch.Tensor):
        return  # a model or loader of your own: its loss decides
    is_labels = not target.is_floating_point() and not target.is_complex() and target.dtype != torch.bool
    if loss == "cross_entropy":
        if not is_labels:
            if tuple(target.shape) != tuple(pred.shape):
                raise ValueError(
                    f"loss='cross_entropy' needs integer class labels of shape [batch] (or class probabilities of the "
                    f"predictions' shape {tuple(pred.shape)}), got {target.dtype} targets of shape {tuple(target.shape)}; "
                    "convert labels with y.long()"
                )
            return
        if target.dim() != 1:
            hint = "; use y.squeeze(1)" if target.dim() == 2 and target.shape[1] == 1 else ""
            raise ValueError(f"loss='cross_entropy' needs class labels of shape [batch], got shape "
                             f"{tuple(target.shape)}{hint}")
        if pred.dim() != 2:
            raise ValueError(f"loss='cross_entropy' needs predictions of shape [batch, classes], got {tuple(pred.shape)}")
        if target.numel() == 0:
            return
        lowest, highest = int(target.min()), int(target.max())
        if lowest < 0:
            raise ValueError(f"class labels must be 0, 1, ..., classes - 1, got the label {lowest}")
        if highest >= pred.shape[1]:
            raise ValueError(
                f"class label {highest} does not fit the model's output_dim = {pred.shape[1]} (labels must be below it): "
                f"build the model with output_dim={highest + 1} (e.g. output_dim=10 for MNIST)"
            )
        return
    if is_labels:
        if target.dim() == 1:
            raise ValueError(
                f"the targets are integer class labels (dtype {target.dtype}, shape {tuple(target.shape)}) but the loss is "
                f"{loss!r}, a regression loss: use loss='cross_entropy' (TrainConfig(loss='cross_entropy'), "
                "evaluate(..., loss='cross_entropy')) with a model of output_dim = number of classes"
            )
        raise ValueError(f"loss={loss!r} needs floating-point targets, got dtype {target.dtype}: convert them with "
                         "y.float(), or use loss='cross_entropy' for class labels")
    if tuple(target.shape) != tuple(pred.shape):
        raise ValueError(
            f"targets of shape {tuple(target.shape)} do not match the predictions of shape {tuple(pred.shape)} under "
            f"loss={loss!r} (torch would broadcast them): give targets of the predictions' shape, or build the model "
            f"with output_dim = {target.shape[-1] if target.dim() > 1 else 1}"
        )
