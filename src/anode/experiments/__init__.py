"""Experiments: declarative configs, a resumable runner, aggregates across repeats."""

from .aggregate import aggregate_experiment as aggregate_experiment
from .aggregate import load_histories as load_histories
from .config import ExperimentConfig as ExperimentConfig
from .config import load_config as load_config
from .config import parse_config as parse_config
from .fingerprint import FingerprintMismatch as FingerprintMismatch
from .runner import run_experiment as run_experiment
from .schema import ConfigError as ConfigError

__all__ = ["ConfigError", "ExperimentConfig", "FingerprintMismatch", "aggregate_experiment", "load_config", "load_histories",
           "parse_config", "run_experiment"]
