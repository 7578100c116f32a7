"""Training histories (per iteration and per epoch) and atomic file writing."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

__all__ = ["History", "atomic_write", "read_json", "write_json"]

ITERATION_FIELDS = ("iteration", "epoch", "loss", "accuracy", "nfe_forward", "nfe_backward", "time")


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], None]) -> Path:
    """Write a file through `write(fileobj)` into a temporary file, then rename it into place.

    A crash mid-write leaves the previous file (or none), never a truncated one.

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Atomically write `obj` as indented JSON."""
    data = (json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n").encode()
    return atomic_write(path, lambda fh: fh.write(data))


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file."""
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer, np.floating)):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")


@dataclass
class History:
    """What a training run recorded.

    `iterations`: one dict per optimiser step with `ITERATION_FIELDS` (loss, batch accuracy,
    forward and backward NFE, wall time in seconds). `epochs`: one dict per epoch with the means
    over its iterations (training loss and accuracy, NFE, time) and, when an evaluation loader was
    given, `eval_loss`, `eval_accuracy` and `eval_nfe_forward`. Models with more than one ODE
    block add `nfe_forward_blocks`/`nfe_backward_blocks` (lists) to each iteration; regularised
    runs add `kinetic_energy`, `jacobian_norm` and `regularisation` (iterations and epoch means);
    per-sample step control adds `nfe_forward_sample_mean`/`nfe_forward_sample_max` (the same).
    """

    iterations: list[dict[str, float]] = field(default_factory=list)
    epochs: list[dict[str, float]] = field(default_factory=list)

    def array(self, key: str) -> np.ndarray:
        """Per-iteration values of `key` (e.g. "loss", "nfe_forward") as a float array.

        Raises:
            KeyError: unknown key (the message lists the recorded ones).
        """
        if self.iterations and key not in self.iterations[0]:
            raise KeyError(f"no per-iteration field {key!r}; recorded fields: {sorted(self.iterations[0])}")
        return np.array([rec[key] for rec in self.iterations], dtype=float)

    def epoch_array(self, key: str) -> np.ndarray:
        """Per-epoch values of `key` (NaN where an epoch lacks it)."""
        return np.array([rec.get(key, np.nan) for rec in self.epochs], dtype=float)

    def save(self, directory: str | os.PathLike[str]) -> None:
        """Write `history.jsonl` (one line per iteration) and `epochs.json` atomically."""
        directory = Path(directory)
        lines = "".join(json.dumps(rec, separators=(",", ":")) + "\n" for rec in self.iterations).encode()
        atomic_write(directory / "history.jsonl", lambda fh: fh.write(lines))
        write_json(directory / "epochs.json", self.epochs)

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> History:
        """Read a history written by `save`.

        Raises:
            FileNotFoundError: `history.jsonl` is missing.
        """
        directory = Path(directory)
        path = directory / "history.jsonl"
        if not path.exists():
            raise FileNotFoundError(f"no training history at {path} (expected history.jsonl written by anode)")
        with open(path, encoding="utf-8") as fh:
            iterations = [json.loads(line) for line in fh if line.strip()]
        epochs_path = directory / "epochs.json"
        epochs = read_json(epochs_path) if epochs_path.exists() else []
        return cls(iterations=iterations, epochs=epochs)
