"""Aggregating an experiment's runs: mean and standard deviation across repeats."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from ..history import History, read_json
from .config import ExperimentConfig
from .paths import model_dir

__all__ = ["aggregate_experiment", "load_histories", "mean_std"]


def mean_std(values: list[float]) -> dict[str, float | int | None]:
    """`{"mean", "std", "n"}` of the finite values (sample std, 0 for a single value)."""
    finite = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return {"mean": None, "std": None, "n": 0}
    arr = np.array(finite)
    return {"mean": float(arr.mean()), "std": float(arr.std(ddof=1)) if len(arr) > 1 else 0.0, "n": len(arr)}


def _run_dirs(out: Path, dataset: str, model: str) -> list[Path]:
    base = model_dir(out, dataset, model)
    return sorted(p for p in base.glob("seed-*") if (p / "result.json").exists())


def load_histories(out: str | Path, dataset: str, model: str, *, completed_only: bool = False) -> list[History]:
    """Histories of the repeats of one model on one dataset (in seed order)."""
    histories = []
    for run in _run_dirs(Path(out), dataset, model):
        if completed_only and read_json(run / "result.json").get("status") != "completed":
            continue
        if (run / "history.jsonl").exists():
            histories.append(History.load(run))
    return histories


def aggregate_experiment(config: ExperimentConfig, out: str | Path) -> dict[str, Any]:
    """Summarise every (dataset, model) pair across its repeats.

    Returns:
        `{"experiment", "groups": [{dataset, model, completed, failed, failures, final_loss, ...}]}`
        where each metric is `{"mean", "std", "n"}` over completed runs. `mean_nfe_forward` is the
        NFE averaged over all iterations of a run; `nfe_growth` the ratio of the mean forward NFE in
        the last tenth of the run to that in the first tenth.
    """
    out = Path(out)
    groups = []
    for d in config.datasets:
        for m in config.models:
            results = [(run, read_json(run / "result.json")) for run in _run_dirs(out, d.name, m.name)]
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
                "failures": [{"seed": r.get("seed"), "reason": r.get("reason"), "error_type": r.get("error_type")}
                             for _, r in results if r.get("status") != "completed"],
                **{k: mean_std(v) for k, v in metrics.items()},
            })
    return {"experiment": config.name, "description": config.description, "repeats": config.repeats,
            "epochs": config.train.epochs, "max_iterations": config.train.max_iterations, "groups": groups}
