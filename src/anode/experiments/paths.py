"""Where an experiment's results live: `OUT/runs/<dataset>/<model>/{seed-<s>,search/candidate-<i>}/`."""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["model_dir", "slug"]


def slug(name: str) -> str:
    """A file-system-safe version of a model or dataset name ("ANODE (p=1)" -> "anode-p-1")."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "x"


def model_dir(out: str | Path, dataset: str, model: str) -> Path:
    """The folder holding every run of `model` on `dataset` in the experiment at `out`."""
    return Path(out) / "runs" / slug(dataset) / slug(model)
