"""Reading anode checkpoints safely (`weights_only=True`)."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch

__all__ = ["CHECKPOINT_FORMAT", "load_checkpoint"]

#: The format number written into every checkpoint; a file with another is refused.
CHECKPOINT_FORMAT = 1


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


