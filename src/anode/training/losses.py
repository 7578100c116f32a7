"""Losses by name, the accuracy rule, and checks of a user's loss function."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

__all__ = ["LossFn", "check_loss_fn", "count_correct", "make_loss", "scalar_loss"]

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


