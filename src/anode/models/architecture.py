"""Self-describing models: an anode model's constructor arguments as plain data, and the model rebuilt from them.

`architecture_of(model)` returns `{"class": "ODENet", "args": {...}}` (plain dicts, lists,
strings, numbers, booleans and None: JSON- and `torch.load(weights_only=True)`-safe), and
`build_from_architecture(architecture)` builds a new model of the same shape (with fresh weights:
load the trained ones with `load_state_dict`). `Trainer.save_checkpoint` stores the architecture
in every checkpoint, so that `anode.load_run` can rebuild a trained model without the code that
built it.

Every anode model class (`ODENet`, `ODEFlow`, `ConvODENet`, `ResNet`, `ConvResNet`, `ODEBlock`,
`ODEFunc`, `ConvODEFunc`) has an `architecture()` method; `anode.models.rebuild` builds them back. A model holding a module anode does not
know (your own vector field, a subclass of an anode class, a custom augmentation) cannot be
described: `architecture_of` raises a `ValueError` naming that module's class.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from torch import nn

from ..config import SolverConfig

__all__ = ["ARCHITECTURE_CLASSES", "TUPLE_ARGUMENTS", "architecture_of", "describe_module", "plain_solver"]

#: The classes `build_from_architecture` rebuilds, by the name stored under "class".
ARCHITECTURE_CLASSES: tuple[str, ...] = (
    "ODENet", "ODEFlow", "ConvODENet", "ResNet", "ConvResNet", "ODEBlock", "ODEFunc", "ConvODEFunc",
)

#: Arguments stored as lists that the constructors take as tuples.
TUPLE_ARGUMENTS: tuple[str, ...] = ("img_size", "data_shape")


def _unrebuildable(module: object, where: str | None) -> ValueError:
    inside = f" (the {where})" if where else ""
    return ValueError(
        f"{type(module).__module__}.{type(module).__name__}{inside} is not one of anode's model classes "
        f"{list(ARCHITECTURE_CLASSES)}, so the model cannot be rebuilt from plain data; build it yourself "
        "and load the weights into it: anode.load_run(run_dir, model=my_model)"
    )


def describe_module(module: object, *, where: str | None = None) -> dict[str, Any]:
    """The architecture of an anode module (a model, or a part of one such as its vector field).

    Arguments:
        module: the module.
        where: what the module is inside its owner (e.g. "vector field of ODENet"), for the message.

    Returns:
        `{"class": name, "args": {...}}`, plain data.

    Raises:
        ValueError: `module` is not exactly one of `ARCHITECTURE_CLASSES` (a subclass, or a class
            of your own); the message names its class and the fix (`load_run(..., model=...)`).
    """
    cls = type(module)
    if cls.__name__ not in ARCHITECTURE_CLASSES or not cls.__module__.startswith("anode.models."):
        raise _unrebuildable(module, where)
    method = getattr(module, "architecture", None)
    if not callable(method):  # pragma: no cover - every listed class has one
        raise _unrebuildable(module, where)
    return method()


def architecture_of(model: nn.Module) -> dict[str, Any]:
    """The constructor arguments of an anode model as plain data (see the module docstring).

    Arguments:
        model: an anode model (`ODENet`, `ODEFlow`, `ConvODENet`, `ResNet`, `ConvResNet`,
            `ODEBlock`, `ODEFunc` or `ConvODEFunc`).

    Returns:
        `{"class": "ODENet", "args": {...}}`; `build_from_architecture` inverts it.

    Raises:
        ValueError: the model, or a module inside it (e.g. your own `odefunc`), is not an anode
            class; the message names the class and the fix.
    """
    return describe_module(model)


def plain_solver(solver: SolverConfig, *, where: str) -> dict[str, Any]:
    """A `SolverConfig` as a plain dict (`SolverConfig(**d)` inverts it).

    Arguments:
        solver: the solver settings.
        where: the model it belongs to, for the message.

    Returns:
        The fields as a dict.

    Raises:
        ValueError: solver options that are not plain data (numbers, strings, lists, dicts).
    """
    values = dataclasses.asdict(solver)
    if not _is_plain(values):
        raise ValueError(f"the solver options of {where} ({values['options']!r}) are not plain data, so the model "
                         "cannot be rebuilt from a checkpoint; build it yourself: anode.load_run(run_dir, model=my_model)")
    return values


def _is_plain(value: object) -> bool:
    if value is None or isinstance(value, (bool, int, str)):
        return True
    if isinstance(value, float):
        return True
    if isinstance(value, (list, tuple)):
        return all(_is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    return False
