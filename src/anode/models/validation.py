"""Argument checks shared by the model constructors (typed errors that name the argument)."""

from __future__ import annotations

__all__ = ["check_int"]


def check_int(name: str, value: object, *, minimum: int) -> None:
    """Check that `value` is an int (not a bool) of at least `minimum`.

    Arguments:
        name: the argument's name, for the message.
        value: the value given.
        minimum: the smallest value allowed.

    Returns:
        None.

    Raises:
        TypeError: `value` is not an int (bools are refused).
        ValueError: `value` is below `minimum`.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
