"""`anode reproduce images`: NODE vs ANODE on image data with Table 1's parameter-matched models."""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import plotting
from .claims import VERDICT_RULE, check_claims, evaluate_claims, load_claims
from .experiments.aggregate import aggregate_experiment, load_histories, mean_std
from .experiments.builders import build_data
from .experiments.config import ExperimentConfig, ImageSpec, load_config
from .experiments.figures import experiment_figures
from .experiments.paths import repeat_dirs, slug
from .experiments.runner import run_experiment
from .experiments.schema import ConfigError
from .history import History, read_json, write_json
from .report import Section, machine_description, write_report

__all__ = ["IMAGE_BUDGET_KEYS", "image_experiment", "judge_images", "loss_level_metrics", "reproduce_images"]

IMAGE_BUDGET_KEYS = ("repeats", "epochs", "max_iterations", "batch_size", "train_subset", "test_subset")
_DATASETS = ("mnist", "idx", "cifar10", "svhn", "tinyimagenet")


def image_experiment(dataset: str, *, budget: str, data_dir: str | None = None,
                     sweep_p: tuple[int, ...] = (), weight_decay: float | None = None,
                     repeats: int | None = None, epochs: int | None = None) -> tuple[ExperimentConfig, str]:
    """The built-in config of `dataset` with `budget` applied; returns (config, budget note).

    Arguments:
        dataset: mnist, idx, cifar10, svhn or tinyimagenet.
        budget: a budget of `configs/images/suite.toml` (small, paper, smoke).
        data_dir: where the data lives (None: $ANODE_DATA_DIR).
        sweep_p: extra ANODE models with these augment dims (same filters as the paper's ANODE).
        weight_decay: weight decay for every model (None: the config's).
        repeats: override the budget's number of repeats (the note says so).
        epochs: override the budget's number of epochs (the note says so).

    Raises:
        ConfigError: unknown dataset or budget (choices listed), or a non-positive override.
    """
    from .reproduce import builtin_config, check_budget_keys, read_budget

    if dataset not in _DATASETS:
        raise ConfigError(f"unknown image dataset {dataset!r}; valid choices: {list(_DATASETS)}")
    _, table, note = read_budget("images", budget)
    check_budget_keys(f"budgets.{budget}", table, IMAGE_BUDGET_KEYS)
    cfg = load_config(builtin_config(f"images/{dataset}"))
    for key, value in (("repeats", repeats), ("epochs", epochs)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ConfigError(f"{key} must be a positive integer, got {value!r}")
    cfg = cfg.with_budget(repeats=table.get("repeats"), epochs=table.get("epochs"), max_iterations=table.get("max_iterations"))
    cfg = cfg.with_budget(repeats=repeats, epochs=epochs)
    changed = [f"{k} = {v}" for k, v in (("repeats", repeats), ("epochs", epochs)) if v is not None]
    if changed:
        note += f"; overridden on the command line: {', '.join(changed)}"
    train = dataclasses.replace(cfg.train, batch_size=table.get("batch_size", cfg.train.batch_size))
    datasets = tuple(
        dataclasses.replace(d, data_dir=data_dir if data_dir is not None else d.data_dir,
                            train_subset=table.get("train_subset", d.train_subset),
                            test_subset=table.get("test_subset", d.test_subset))
        for d in cfg.datasets if isinstance(d, ImageSpec)
    )
    models = list(cfg.models)
    if sweep_p:
        base = models[-1]
        models += [dataclasses.replace(base, name=f"ANODE (p={p})", augment_dim=p, role="variant") for p in sweep_p
                   if f"ANODE (p={p})" not in {m.name for m in models}]
    if weight_decay is not None:
        models = [dataclasses.replace(m, weight_decay=weight_decay) for m in models]
    return dataclasses.replace(cfg, train=train, datasets=datasets, models=tuple(models)), note


def judge_images(cfg: ExperimentConfig, exp_dir: Path, agg: dict[str, Any],
                 claim_specs: list[Any] | None = None) -> tuple[list[Any], float | None, dict[str, Any], dict[str, Any]]:
    """The image claims' verdicts for the runs in `exp_dir`, with the loss-level metrics they use.

    Returns:
        (claim rows, loss level, iterations to it per model, NFE there per model).
    """
    specs = claim_specs if claim_specs is not None else _image_claims(cfg)
    ds = cfg.datasets[0].name
    pair = {m.name: load_histories(exp_dir, ds, m.name, config=cfg) for m in cfg.models if m.role in ("baseline", "augmented")}
    level, iters, nfes = loss_level_metrics(pair)
    claims = evaluate_claims(specs, {cfg.name: cfg}, {cfg.name: _with_level_metrics(agg, ds, iters, nfes)})
    return claims, level, iters, nfes


def _image_claims(cfg: ExperimentConfig) -> list[Any]:
    """The image claims, checked against `cfg` (a missing role fails before any training)."""
    from .reproduce import builtin_config

    specs = load_claims(builtin_config("images/claims"))
    check_claims(specs, {cfg.name: cfg})
    return specs


def _run_wall_times(exp_dir: Path, cfg: ExperimentConfig) -> float:
    """Sum of the finished runs' own wall times (seconds)."""
    total = 0.0
    for d in cfg.datasets:
        for m in cfg.models:
            for run in repeat_dirs(exp_dir, d.name, m.name, seed=cfg.seed, repeats=cfg.repeats):
                if (run / "result.json").exists():
                    total += float(read_json(run / "result.json").get("wall_time") or 0.0)
    return total


def _smooth(x: np.ndarray, window: int = 10) -> np.ndarray:
    """Trailing moving average (shorter windows at the start)."""
    c = np.cumsum(np.insert(x, 0, 0.0))
    idx = np.arange(1, len(x) + 1)
    lo = np.maximum(idx - window, 0)
    return (c[idx] - c[lo]) / (idx - lo)


def loss_level_metrics(histories: dict[str, list[History]], *, window: int = 10) -> tuple[float | None, dict[str, Any], dict[str, Any]]:
    """The loss level the models reach, and per model the iterations and forward NFE to reach it.

    `histories` holds every finished run of each model, failed ones included. The budget is the
    longest run's length; the level is the highest final smoothed training loss among the
    full-length runs of all models, so every run that completed its budget reaches it (a level
    set by a mean would censor about half of one model's runs by construction). For each run, the
    first iteration whose smoothed loss is at or below the level is found. Nothing is dropped: a
    run that never reaches the level (one that failed before it) is **censored** at the budget — it
    enters the iteration statistics with the budget as its value (a lower bound of the truth), and
    the NFE statistics only through its count (`censored` in both), so that a claim can refuse to
    hold when the favoured model has more censored runs.

    Returns:
        (level, {model: {mean, std, n, censored, runs} iterations}, {model: {mean, std, n, censored,
        runs} forward NFE there}); level None when a model has no full-length run.
    """
    runs = {m: [h for h in hs if h.iterations] for m, hs in histories.items()}
    budget = max((len(h.iterations) for hs in runs.values() for h in hs), default=0)
    finals = {m: [float(_smooth(h.array("loss"), window)[-1]) for h in hs if len(h.iterations) == budget]
              for m, hs in runs.items()}
    if len(finals) < 2 or not all(finals.values()):
        return None, {}, {}
    level = max(max(v) for v in finals.values())
    iters: dict[str, Any] = {}
    nfes: dict[str, Any] = {}
    for model, hs in runs.items():
        its, nf, censored = [], [], 0
        for h in hs:
            loss, nfe = _smooth(h.array("loss"), window), _smooth(h.array("nfe_forward"), window)
            hit = np.flatnonzero(loss <= level)
            if hit.size:
                its.append(float(hit[0] + 1))
                nf.append(float(nfe[hit[0]]))
            else:
                its.append(float(budget))
                censored += 1
        iters[model] = {**mean_std(its), "censored": censored, "runs": len(hs)}
        nfes[model] = {**mean_std(nf), "censored": censored, "runs": len(hs)}
    return level, iters, nfes


def _with_level_metrics(agg: dict[str, Any], dataset: str, iters: dict[str, Any], nfes: dict[str, Any]) -> dict[str, Any]:
    """A copy of the aggregate whose groups carry `iterations_to_level` and `nfe_at_level`."""
    groups = []
    for g in agg["groups"]:
        if g["dataset"] == dataset and g["model"] in iters:
            g = {**g, "iterations_to_level": iters[g["model"]], "nfe_at_level": nfes[g["model"]]}
        groups.append(g)
    return {**agg, "groups": groups}


def reproduce_images(
    out_dir: str | os.PathLike[str],
    *,
    dataset: str,
    data_dir: str | None = None,
    budget: str = "small",
    device: str | None = None,
    progress: bool = True,
    sweep_p: tuple[int, ...] = (),
    weight_decay: float | None = None,
    repeats: int | None = None,
    epochs: int | None = None,
    jobs: int = 1,
    train: bool = True,
    fresh: bool = False,
    retry_failed: bool = False,
    backend: str = "local",
    address: str | None = None,
    resources: dict[str, float] | None = None,
) -> Path:
    """Train NODE and ANODE on an image dataset and write the report with figures and verdicts.

    The data are read once before any training, so a missing or corrupt file fails at once.

    Arguments:
        out_dir: where the report, figures and runs go (rerunning resumes finished runs).
        dataset, data_dir, budget, sweep_p, weight_decay, repeats, epochs: see `image_experiment`.
        device: "cpu", "cuda", ... (None: CUDA when available).
        progress: progress bars.
        jobs: runs trained at once in worker processes; on a GPU they share the card and the
            recorded time per iteration includes the sharing. For Table 1's MNIST models on an H100,
            ten at once gave 0.87x the throughput of one at a time (`benchmarks/image_iteration.py
            --processes K` measures it on your machine).
        backend, address, resources: where the runs execute (see `run_experiment`): "local" or "ray"
            (with `address` a running cluster, `resources` {"cpus": .., "gpus": ..} per run; with
            "ray" and no `device`, runs use CUDA only when they declare GPUs).
        train: False writes the report from the runs already finished in `out_dir` (for example
            after a job was killed) and trains nothing; missing runs are listed as such.
        fresh: move the previous results of the experiment aside before training (see `run_experiment`).
        retry_failed: rerun the runs recorded as failed instead of reusing them.

    Returns:
        The path of `report.html`.

    Raises:
        ConfigError, FileNotFoundError, ValueError: unknown dataset/budget, missing or malformed data;
            `fresh` or `retry_failed` with `train=False` (nothing would be trained).
    """
    if not train and (fresh or retry_failed):
        raise ValueError("--report-only trains nothing, so --fresh and --retry-failed cannot apply: drop one of them")
    cfg, note = image_experiment(dataset, budget=budget, data_dir=data_dir, sweep_p=sweep_p, weight_decay=weight_decay,
                                 repeats=repeats, epochs=epochs)
    claim_specs = _image_claims(cfg)
    if device is None and backend == "ray":
        device = "cuda" if (resources or {}).get("gpus", 0) > 0 else "cpu"
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    data = build_data(cfg.datasets[0], cfg, seed=cfg.seed)  # fail early on missing data
    out = Path(out_dir)
    exp_dir = out / cfg.name
    started = time.perf_counter()
    if train:
        agg = run_experiment(cfg, exp_dir, jobs=jobs, device=device, progress=progress, fresh=fresh,
                             retry_failed=retry_failed, backend=backend, address=address, resources=resources)
    else:
        agg = aggregate_experiment(cfg, exp_dir)
        write_json(exp_dir / "aggregate.json", agg)
    elapsed = time.perf_counter() - started
    run_seconds = _run_wall_times(exp_dir, cfg)
    ds = cfg.datasets[0].name
    histories = {m.name: load_histories(exp_dir, ds, m.name, completed_only=True, config=cfg) for m in cfg.models}
    claims, level, iters, nfes = judge_images(cfg, exp_dir, agg, claim_specs)

    figs = experiment_figures(exp_dir)
    acc_points = {name: (np.concatenate([h.epoch_array("eval_nfe_forward") for h in hs]),
                         np.concatenate([h.epoch_array("eval_accuracy") for h in hs]))
                  for name, hs in histories.items() if hs}
    if acc_points:
        figs[f"accuracy_vs_nfe/{slug(ds)}"] = plotting.plot_accuracy_vs_nfe(acc_points, title=f"{ds}: test accuracy vs NFE")
    section = Section("Figures 10-12: loss, NFE and accuracy", "Mean ± std across repeats; p = 0 is the NODE.")
    for key in ("loss", "nfe", "nfe_vs_loss", "accuracy_vs_nfe"):
        fig = figs.get(f"{key}/{slug(ds)}")
        if fig is not None:
            section.figures.append((key.replace("_", " "), plotting.save_figure(fig, out / "figures" / f"{key}.png")))
    options = [("--data-dir", data_dir), ("--repeats", repeats), ("--epochs", epochs), ("--jobs", jobs if jobs > 1 else None),
               ("--sweep-p", ",".join(map(str, sweep_p)) or None), ("--weight-decay", weight_decay)]
    budget_cmd = f"anode reproduce images --dataset {dataset} --budget {budget} --out {out}" + "".join(
        f" {flag} {value}" for flag, value in options if value is not None)
    expected = cfg.repeats * len(cfg.models)
    finished = sum(g["completed"] + g["failed"] for g in agg["groups"])
    sharing = f" with {jobs} runs sharing the device at a time (times per iteration include the sharing)" if jobs > 1 else ""
    summary = [
        f"Command: `{budget_cmd}`.",
        f"Data: {data.description}; normalisation: {cfg.datasets[0].normalization} (pixels scaled to [0, 1], as the 2019 code).",
        f"Budget: {budget}: {note}.",
        "Models: " + "; ".join(f"{m.name}: {m.hidden_dim} filters, p = {m.augment_dim}" for m in cfg.models) + ".",
        f"Solver: {cfg.solver.method}, rtol = atol = {cfg.solver.rtol:g}, adjoint = {cfg.solver.adjoint}, backend {cfg.solver.backend}.",
        f"Machine: {machine_description(device)}. Wall time of this invocation: {elapsed / 60:.1f} min"
        + ("" if train else " (report only: nothing was trained)")
        + f"; runs' own training time summed: {run_seconds / 60:.1f} min{sharing}.",
        f"Runs finished (completed or failed in the solver): {finished} of {expected}." + ("" if finished == expected else
                                                       " The missing runs were not trained (the job stopped before them); statistics use the finished ones."),
        f"Loss level for the iteration/NFE claims: {level:.4g} (the highest final training loss, smoothed over 10 iterations, among the two models' full-length runs, so every completed run reaches it; runs that failed before reaching it are censored at the budget)." if level is not None else "Loss level: not available (a model has no full-length run).",
        f"Verdicts are computed from the numbers (anode.claims, declared in configs/images/claims.toml). {VERDICT_RULE}",
    ]
    write_json(out / "summary.json", {"budget": budget, "note": note, "command": budget_cmd, "device": machine_description(device),
                                      "wall_time_s": elapsed, "runs_wall_time_s": run_seconds, "runs_expected": expected,
                                      "runs_finished": finished, "loss_level": level,
                                      "iterations_to_level": iters, "nfe_at_level": nfes,
                                      "claims": [c.to_dict() for c in claims], "aggregate": agg})
    _, html_path = write_report(out, title=f"Augmented Neural ODEs on {ds}", summary=summary, claims=claims,
                                aggregates={cfg.name: agg}, sections=[section])
    return html_path

