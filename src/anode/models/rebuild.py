"""Rebuilding an anode model from its architecture (`architecture_of`'s plain data)."""

from __future__ import annotations

from typing import Any

from torch import nn

from ..config import SolverConfig
from .architecture import TUPLE_ARGUMENTS
from .block import ODEBlock
from .fields import ConvODEFunc, ODEFunc
from .nets import ConvODENet, ConvResNet, ODEFlow, ODENet, ResNet

__all__ = ["build_from_architecture"]

#: The classes by name (the same as `ARCHITECTURE_CLASSES`; tests/test_load_run.py checks it).
_CLASSES: dict[str, type[nn.Module]] = {
    "ODENet": ODENet, "ODEFlow": ODEFlow, "ConvODENet": ConvODENet, "ResNet": ResNet, "ConvResNet": ConvResNet,
    "ODEBlock": ODEBlock, "ODEFunc": ODEFunc, "ConvODEFunc": ConvODEFunc,
}


def build_from_architecture(architecture: dict[str, Any]) -> nn.Module:
    """Build a new model (fresh weights) from `architecture_of`'s plain data.

    Arguments:
        architecture: `{"class": name, "args": {...}}` with a name from `ARCHITECTURE_CLASSES`.

    Returns:
        The model, in training mode, with newly initialised weights (load trained ones with
        `model.load_state_dict(...)`, or use `anode.load_run`).

    Raises:
        ValueError: not such a dict, or an unknown class name (the known ones are listed).
        TypeError, ValueError: arguments the class's constructor rejects.
    """
    if not isinstance(architecture, dict) or not isinstance(architecture.get("args"), dict) \
            or "class" not in architecture:
        raise ValueError(f"an architecture is a dict {{'class': name, 'args': {{...}}}} as architecture_of returns, "
                         f"got {architecture!r}")
    name = architecture["class"]
    if name not in _CLASSES:
        raise ValueError(f"unknown model class {name!r} in the architecture; anode rebuilds {list(_CLASSES)}")
    args = dict(architecture["args"])
    for key in TUPLE_ARGUMENTS:
        if isinstance(args.get(key), list):
            args[key] = tuple(args[key])
    if isinstance(args.get("solver"), dict):
        args["solver"] = SolverConfig(**args["solver"])
    if isinstance(args.get("odefunc"), dict):
        args["odefunc"] = build_from_architecture(args["odefunc"])
    return _CLASSES[name](**args)
