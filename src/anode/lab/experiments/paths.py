"""Where an experiment's results live: `OUT/runs/<dataset>/<model>/{seed-<s>,search/candidate-<i>}/`."""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["model_dir", "repeat_dirs", "run_seed", "slug"]


def slug(name: str) -> str:
    """A file-system-safe version of a model or dataset name ("ANODE (p=1)" -> "anode-p-1")."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "x"


def model_dir(out: str | Path, dataset: str, model: str) -> Path:
    """The folder holding every run of `model` on `dataset` in the experiment at `out`."""
    return Path(out) / "runs" / slug(dataset) / slug(model)


def run_seed(base: int, repeat: int) -> int:
    """The seed of repeat `repeat` of an experiment seeded with `base`."""
    return base * 1000 + repeat


def repeat_dirs(out: str | Path, dataset: str, model: str, *, seed: int, repeats: int) -> list[Path]:
    """The run folders of the repeats an experiment (seed `seed`, `repeats` repeats) produces, in order.

    Only these belong to the experiment: folders of other seeds (e.g. left by a config with more
    repeats) are not read.
    """
    base = model_dir(out, dataset, model)
    return [base / f"seed-{run_seed(seed, r)}" for r in range(repeats)]
