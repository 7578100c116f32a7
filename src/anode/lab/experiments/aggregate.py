"""Aggregating an experiment's runs: mean and standard deviation across repeats."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from anode.history import History, read_json
from anode.lab.experiments.config import ExperimentConfig, parse_config
from anode.lab.experiments.paths import repeat_dirs

__all__ = ["aggregate_experiment", "load_histories", "mean_std"]


def mean_std(values: list[float]) -> dict[str, float | int | None]:
    """`{"mean", "std", "n"}` of the finite values (sample std, 0 for a single value)."""
    finite = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return {"mean": None, "std": None, "n": 0}
    arr = np.array(finite)
    return {"mean": float(arr.mean()), "std": float(arr.std(ddof=1)) if len(arr) > 1 else 0.0, "n": len(arr)}


def _run_dirs(out: Path, config: ExperimentConfig, dataset: str, model: str) -> list[Path]:
    """The finished (result.json) repeat folders of the runs `config` produces, in seed order."""
    dirs = repeat_dirs(out, dataset, model, seed=config.seed, repeats=config.repeats)
    return [p for p in dirs if (p / "result.json").exists()]


def _saved_config(out: Path) -> ExperimentConfig:
    path = out / "experiment.json"
    if not path.exists():
        raise FileNotFoundError(f"{out} is not an experiment directory (no experiment.json); run `anode experiment` first")
    return parse_config(read_json(path), where=str(path))


def load_histories(out: str | Path, dataset: str, model: str, *, completed_only: bool = False,
                   config: ExperimentConfig | None = None) -> list[History]:
    """Histories of the repeats of one model on one dataset (in seed order).

    Arguments:
        out: the experiment folder.
        dataset, model: names as in the config.
        completed_only: skip runs recorded as failed.
        config: the experiment whose repeats to read (default: `out/experiment.json`, the config of
            the last `run_experiment` there); runs of other seeds in the folder are ignored.

    Raises:
        FileNotFoundError: no `config` given and `out` holds no experiment.json.
    """
    out = Path(out)
    config = config if config is not None else _saved_config(out)
    histories = []
    for run in _run_dirs(out, config, dataset, model):
        if completed_only and read_json(run / "result.json").get("status") != "completed":
            continue
        if (run / "history.jsonl").exists():
            histories.append(History.load(run))
    return histories


def aggregate_experiment(config: ExperimentConfig, out: str | Path) -> dict[str, Any]:
    """Summarise every (dataset, model) pair across its repeats.

    Only the repeat folders `config` produces are read (seeds `seed * 1000 + r`, r < repeats).

    Returns:
        `{"experiment", ..., "runs_expected", "runs_finished", "runs_failed", "groups": [{dataset,
        model, completed, failed, failures, final_loss, ...}]}`: `runs_expected` counts the repeat
        runs of the config, `runs_finished` those with a result (completed or failed), `runs_failed`
        the failed ones (search runs are not counted). Each metric is `{"mean", "std", "n"}` over completed runs. `mean_nfe_forward` is the
        NFE averaged over all iterations of a run; `nfe_growth` the ratio of the mean forward NFE in
        the last tenth of the run to that in the first tenth.
    """
    out = Path(out)
    groups = []
    for d in config.datasets:
        for m in config.models:
            results = [(run, read_json(run / "result.json")) for run in _run_dirs(out, config, d.name, m.name)]
            done = [(run, r) for run, r in results if r.get("status") == "completed"]
            metrics: dict[str, list[float]] = {k: [] for k in (
                "final_loss", "final_nfe_forward", "final_nfe_backward", "mean_nfe_forward", "nfe_growth",
                "eval_loss", "eval_accuracy", "time_per_iteration", "num_parameters")}
            for run, r in done:
                hist = History.load(run)
                nfe = hist.array("nfe_forward")
                tenth = max(len(nfe) // 10, 1)
                metrics["final_loss"].append(r["final_loss"])
                metrics["final_nfe_forward"].append(r["final_nfe_forward"])
                metrics["final_nfe_backward"].append(r["final_nfe_backward"])
                metrics["mean_nfe_forward"].append(float(nfe.mean()))
                metrics["nfe_growth"].append(float(nfe[-tenth:].mean() / nfe[:tenth].mean()) if nfe[:tenth].mean() > 0 else float("nan"))
                metrics["time_per_iteration"].append(float(np.median(hist.array("time"))))
                metrics["num_parameters"].append(r["num_parameters"])
                if r.get("eval"):
                    metrics["eval_loss"].append(r["eval"]["loss"])
                    metrics["eval_accuracy"].append(r["eval"]["accuracy"])
            groups.append({
                "dataset": d.name, "model": m.name, "completed": len(done), "failed": len(results) - len(done),
                "failures": [{"seed": r.get("seed"), "reason": r.get("reason"), "error_type": r.get("error_type"),
                              "failure_kind": r.get("failure_kind")}
                             for _, r in results if r.get("status") != "completed"],
                **{k: mean_std(v) for k, v in metrics.items()},
            })
    return {"experiment": config.name, "description": config.description, "repeats": config.repeats,
            "epochs": config.train.epochs, "max_iterations": config.train.max_iterations,
            "runs_expected": config.repeats * len(config.datasets) * len(config.models),
            "runs_finished": sum(g["completed"] + g["failed"] for g in groups),
            "runs_failed": sum(g["failed"] for g in groups), "groups": groups}
