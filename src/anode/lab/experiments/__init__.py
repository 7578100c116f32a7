"""Experiments: declarative configs, a resumable runner, aggregates across repeats."""

from anode.lab.experiments.aggregate import aggregate_experiment as aggregate_experiment
from anode.lab.experiments.aggregate import load_histories as load_histories
from anode.lab.experiments.config import ExperimentConfig as ExperimentConfig
from anode.lab.experiments.config import load_config as load_config
from anode.lab.experiments.config import parse_config as parse_config
from anode.lab.experiments.fingerprint import FingerprintMismatch as FingerprintMismatch
from anode.lab.experiments.runner import run_experiment as run_experiment
from anode.lab.experiments.schema import ConfigError as ConfigError

__all__ = ["ConfigError", "ExperimentConfig", "FingerprintMismatch", "aggregate_experiment", "load_config", "load_histories",
           "parse_config", "run_experiment"]
