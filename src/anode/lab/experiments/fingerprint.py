"""Run fingerprints: everything that determines a run's result, as plain data and a sha256.

A run folder stores its fingerprint in `fingerprint.json` (written before training starts) and in
`result.json`; `run_experiment` compares it with the fingerprint the current config gives the run
and refuses to mix results made with other settings (`FingerprintMismatch`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from anode.config import SolverConfig
from anode.history import read_json, write_json
from anode.lab.experiments.config import DATASET_KINDS, DatasetSpec, ExperimentConfig, ModelSpec
from anode.lab.experiments.schema import ConfigError
from anode.training import TrainConfig
from anode.version import NUMERICS_VERSION

__all__ = [
    "FINGERPRINT_FILE", "FingerprintMismatch", "diff_fingerprints", "fingerprint_digest", "read_fingerprint",
    "run_fingerprint", "write_fingerprint",
]

FINGERPRINT_FILE = "fingerprint.json"
#: Display-only fields: renaming or describing a model or dataset does not change a result.
#: `data_dir` says where the data lie, not what they are (moving them is not a change either).
MODEL_DISPLAY_KEYS: frozenset[str] = frozenset({"name", "role", "description"})
DATASET_DISPLAY_KEYS: frozenset[str] = frozenset({"name", "role", "description", "data_dir"})
#: Training fields that are bookkeeping only (when checkpoints are written, progress bars).
TRAIN_BOOKKEEPING_KEYS: frozenset[str] = frozenset({"checkpoint_every", "progress"})
#: Model fields that override training values: their effective values are part of `train`.
TRAIN_OVERRIDE_KEYS: frozenset[str] = frozenset({"lr", "weight_decay", "kinetic_energy", "jacobian_norm"})
#: Training fields that matter only when a regulariser weight is non-zero.
REGULARISER_ONLY_KEYS: frozenset[str] = frozenset({"regulariser_seed", "jacobian_noise"})


class FingerprintMismatch(ConfigError):
    """Run folders on disk were made with other settings than the current config gives them."""


def _plain(obj: Any) -> Any:
    """`obj` as canonical JSON data (tuples become lists, keys strings)."""
    return json.loads(json.dumps(obj, sort_keys=True))


def _model_part(spec: ModelSpec, config: ExperimentConfig) -> dict[str, Any]:
    """A model spec minus display fields and the training overrides (their values are part of `train`).

    `match_parameters` names another model: it is replaced by that model's own fingerprint part,
    since its architecture (not its name) fixes the width chosen.
    """
    out = {k: v for k, v in dataclasses.asdict(spec).items() if k not in MODEL_DISPLAY_KEYS | TRAIN_OVERRIDE_KEYS}
    if spec.match_parameters is not None:
        out["match_parameters"] = _model_part(config.model(spec.match_parameters), config)
    return out


def _dataset_part(spec: DatasetSpec) -> dict[str, Any]:
    kinds = {cls: kind for kind, cls in DATASET_KINDS.items()}
    fields = {k: v for k, v in dataclasses.asdict(spec).items() if k not in DATASET_DISPLAY_KEYS}
    return {"kind": kinds[type(spec)], **fields}


def run_fingerprint(
    *,
    config: ExperimentConfig,
    model: ModelSpec,
    dataset: DatasetSpec,
    train: TrainConfig,
    seed: int,
    repeat: int | None,
    candidate: int | None = None,
    candidate_values: dict[str, Any] | None = None,
    stacked: bool = False,
) -> dict[str, Any]:
    """The canonical plain-data description of everything that determines one run's result.

    Arguments:
        config: the experiment (its seed, batch size and solver are taken from it).
        model: the run's model spec with any search values already applied.
        dataset: the run's dataset spec.
        train: the training settings the run uses (resolved lr, weight decay and epochs).
        seed: the run's seed.
        repeat: the repeat index (None for a search run).
        candidate: the search candidate index (None for a repeat run).
        candidate_values: the searched values of that candidate.
        stacked: the run trains in a stacked ensemble (`anode.ensemble`), whose batched arithmetic
            rounds differently from a model's own: equal numbers to ~1e-5 over the first epochs,
            but long runs drift apart as any change of float rounding makes them, so the two kinds
            of run are not mixed.

    Returns:
        `{"model", "dataset", "solver", "train", "run", "execution", "experiment", "code"}` as JSON-ready data
        (`code` is `anode.version.NUMERICS_VERSION`: bumped when numbers change, and old runs are then refused). Display
        fields (names, roles, descriptions, the experiment's paper, a data folder) are left out;
        so is the number of repeats (adding repeats does not change the existing ones).
    """
    train_part = {k: v for k, v in train.to_dict().items() if k not in TRAIN_BOOKKEEPING_KEYS}
    if not train_part.get("kinetic_energy") and not train_part.get("jacobian_norm"):
        for key in REGULARISER_ONLY_KEYS:  # they change nothing while no regulariser is on
            train_part.pop(key, None)
    train_part["batch_size"] = config.train.batch_size
    run: dict[str, Any] = {"seed": seed}
    if candidate is None:
        run.update(kind="repeat", repeat=repeat)
    else:
        run.update(kind="search", candidate=candidate, values=dict(candidate_values or {}))
    return _plain({
        "model": _model_part(model, config), "dataset": _dataset_part(dataset),
        "solver": _solver_part(config.solver), "train": train_part, "run": run,
        "execution": {"stacked": bool(stacked)}, "experiment": {"seed": config.seed}, "code": {"anode_version": NUMERICS_VERSION},
    })


def _solver_part(solver: SolverConfig) -> dict[str, Any]:
    """The solver's fields, less those added after results were recorded while they change nothing:
    `step_control` at its default "batch", and `sample_failure` at its default "skip" or under batch
    control (one controller for the batch: a failure stops it under either policy). Every run made
    before these settings existed (batch control, "raise") keeps its fingerprint, and so does one
    made with per-sample control and "raise" before "skip" became the default: a run that completed
    under "raise" met no failure, so it computed what "skip" computes. A per-sample run with
    `sample_failure = "raise"` named in its config records it (its evaluation stops at a failure)."""
    part = dataclasses.asdict(solver)
    if part.get("step_control") == "batch":
        del part["step_control"]
        part.pop("sample_failure", None)
    elif part.get("sample_failure") == "skip":
        del part["sample_failure"]
    return part


def fingerprint_digest(fingerprint: dict[str, Any]) -> str:
    """sha256 (hex) of the fingerprint's canonical JSON (sorted keys, no spaces)."""
    text = json.dumps(fingerprint, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, dict) and obj:
        out: dict[str, Any] = {}
        for key, value in obj.items():
            out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: obj}


_ABSENT = object()


def _show(value: Any) -> str:
    return "(absent)" if value is _ABSENT else json.dumps(value, sort_keys=True)


def _defaults(fingerprint: dict[str, Any]) -> dict[str, Any]:
    """Flattened default values of the settings a fingerprint holds (model, dataset, solver, train)."""
    kind = fingerprint.get("dataset", {}).get("kind")
    parts: dict[str, Any] = {
        "model": {f.name: f.default for f in dataclasses.fields(ModelSpec) if f.default is not dataclasses.MISSING},
        "solver": _solver_part(SolverConfig()),
        "train": TrainConfig().to_dict(),
        "execution": {"stacked": False},
    }
    if kind in DATASET_KINDS:
        parts["dataset"] = {f.name: f.default for f in dataclasses.fields(DATASET_KINDS[kind])
                            if f.default is not dataclasses.MISSING}
    return _flatten(_plain(parts))


def diff_fingerprints(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The keys in which two fingerprints differ, as sorted "dotted.key: old -> new" lines.

    A setting the stored fingerprint lacks and the current one holds at its default value is not a
    change: settings are added with defaults that keep the earlier behaviour (a project rule), so
    runs made before a new option existed stay valid. A changed default of an existing setting is
    still caught, since the stored fingerprint holds its explicit old value.

    Arguments:
        old: the stored fingerprint.
        new: the fingerprint the current config gives.

    Returns:
        e.g. `["train.epochs: 2 -> 3"]`; a key only one side has shows "(absent)" on the other.
    """
    flat_old, flat_new, defaults = _flatten(old), _flatten(new), _defaults(new)
    lines = []
    for key in sorted(set(flat_old) | set(flat_new)):
        a, b = flat_old.get(key, _ABSENT), flat_new.get(key, _ABSENT)
        if a is _ABSENT and key in defaults and b == defaults[key]:
            continue
        if a != b or type(a) is not type(b):
            lines.append(f"{key}: {_show(a)} -> {_show(b)}")
    return lines


def write_fingerprint(run_dir: str | os.PathLike[str], fingerprint: dict[str, Any]) -> Path:
    """Atomically write `run_dir/fingerprint.json` (`{"fingerprint", "sha256"}`)."""
    return write_json(Path(run_dir) / FINGERPRINT_FILE, {"fingerprint": fingerprint, "sha256": fingerprint_digest(fingerprint)})


def read_fingerprint(run_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The fingerprint stored in a run folder (`fingerprint.json`, else `result.json`), or None.

    Raises:
        ValueError: a fingerprint file that is not JSON (the path is named).
    """
    run_dir = Path(run_dir)
    for name in (FINGERPRINT_FILE, "result.json"):
        path = run_dir / name
        if not path.exists():
            continue
        try:
            stored = read_json(path)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{path} is not valid JSON ({err}); move the run folder aside or rerun with --fresh") from err
        if isinstance(stored, dict) and isinstance(stored.get("fingerprint"), dict):
            return stored["fingerprint"]
    return None
