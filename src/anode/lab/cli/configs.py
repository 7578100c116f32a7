"""The experiment config a command names, and the `--data-dir` flag applied to it."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from anode.lab.experiments.config import ExperimentConfig

__all__ = ["config_path", "with_data_dir"]


def config_path(value: str) -> Path:
    """The config file a command names: a path (a `.toml`/`.json` file, or one that exists), else a
    built-in experiment such as `toy/spheres` (`anode.lab.reproduce.toy.builtin_config`).

    Raises:
        FileNotFoundError: neither a file nor a built-in experiment (the built-in names are listed).
    """
    from anode.lab.reproduce.toy import builtin_config

    path = Path(value)
    return path if path.suffix in (".toml", ".json") or path.exists() else builtin_config(value)


def with_data_dir(cfg: ExperimentConfig, data_dir: str) -> ExperimentConfig:
    """`cfg` with every image dataset read from `data_dir` (the `--data-dir` flag); toy datasets unchanged."""
    from anode.lab.experiments.config import ImageSpec  # torch-free --help: imported on use

    datasets = tuple(dataclasses.replace(d, data_dir=data_dir) if isinstance(d, ImageSpec) else d for d in cfg.datasets)
    return dataclasses.replace(cfg, datasets=datasets)
