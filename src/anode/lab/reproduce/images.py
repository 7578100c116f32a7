"""`anode reproduce images`: NODE vs ANODE on image data with Table 1's parameter-matched models."""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tomllib
import torch

from anode import plotting
from anode.history import History, read_json, write_json
from anode.lab.claims import VERDICT_RULE, check_claims, evaluate_claims, load_claims
from anode.lab.experiments.aggregate import aggregate_experiment, load_histories, mean_std
from anode.lab.experiments.builders import build_data
from anode.lab.experiments.config import ExperimentConfig, ImageSpec, ModelSpec, load_config
from anode.lab.experiments.figures import experiment_figures, experiment_styles
from anode.lab.experiments.lock import locks_output
from anode.lab.experiments.paths import repeat_dirs, slug
from anode.lab.experiments.runner import run_experiment
from anode.lab.experiments.schema import ConfigError
from anode.lab.report import Section, machine_description, write_report

__all__ = ["IMAGE_BUDGET_KEYS", "TABLE1", "Evidence", "claim_experiments", "image_evidence", "image_experiment", "judge_images",
           "loss_level_metrics", "reproduce_images", "run_stability", "stability_metrics"]

IMAGE_BUDGET_KEYS = ("repeats", "epochs", "max_iterations", "batch_size", "train_subset", "test_subset", "filters_scale")
_DATASETS = ("mnist", "idx", "cifar10", "svhn", "tinyimagenet")
#: The default experiment: NODE vs ANODE with Table 1's models on `--dataset` (configs/images/<dataset>.toml).
TABLE1 = "table1"


def _suite() -> dict[str, Any]:
    from anode.lab.reproduce.toy import builtin_config

    return tomllib.loads(builtin_config("images/suite").read_text(encoding="utf-8"))


def claim_experiments() -> tuple[str, ...]:
    """The claim experiments of the image suite (`experiments` of configs/images/suite.toml)."""
    return tuple(_suite().get("experiments", ()))


def _nfe_blowup() -> float:
    """The forward NFE from which a run counts as blown up (`[metrics] nfe_blowup` of the suite)."""
    return float(_suite().get("metrics", {}).get("nfe_blowup", 1000))


def _budget_table(budget: str, experiment: str) -> tuple[dict[str, Any], str]:
    """The budget's settings for `experiment`: its top-level keys, overridden by its sub-table named
    after a claim experiment (`note` included); returns (settings, note).

    Raises:
        ConfigError: unknown budget, unknown key, or a sub-table naming no claim experiment.
    """
    from anode.lab.reproduce.toy import check_budget_keys, read_budget

    _, table, note = read_budget("images", budget)
    known = claim_experiments()
    own = {k: v for k, v in table.items() if isinstance(v, dict)}
    for name in own:
        if name not in known:
            raise ConfigError(f"budgets.{budget}.{name} names no claim experiment; experiments: {list(known)}")
    flat = {k: v for k, v in table.items() if not isinstance(v, dict)}
    extra = dict(own.get(experiment, {}))
    note = str(extra.pop("note", note))
    check_budget_keys(f"budgets.{budget}", flat, IMAGE_BUDGET_KEYS)
    check_budget_keys(f"budgets.{budget}.{experiment}", extra, IMAGE_BUDGET_KEYS)
    settings = {**flat, **extra}
    scale = settings.get("filters_scale")
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 < scale <= 1):
        raise ConfigError(f"budgets.{budget}: filters_scale must be a number in (0, 1], got {scale!r}")
    return settings, note


def image_experiment(dataset: str | None, *, budget: str, experiment: str = TABLE1, data_dir: str | None = None,
                     sweep_p: tuple[int, ...] = (), weight_decay: float | None = None,
                     repeats: int | None = None, epochs: int | None = None) -> tuple[ExperimentConfig, str]:
    """The built-in config of `experiment` (on `dataset`) with `budget` applied; returns (config, budget note).

    Arguments:
        dataset: mnist, idx, cifar10, svhn or tinyimagenet. With `experiment` "table1" it picks the
            config (configs/images/<dataset>.toml) and is required; with a claim experiment it
            replaces the config's dataset (None keeps MNIST; e.g. "idx" for a stand-in).
        budget: a budget of `configs/images/suite.toml` (small, paper, smoke); a claim experiment
            takes the budget's top-level keys overridden by its own sub-table.
        experiment: "table1" or a claim experiment (`claim_experiments()`: stability, augmentation,
            large_p, weight_decay; configs/images/<experiment>.toml).
        data_dir: where the data lives (None: $ANODE_DATA_DIR).
        sweep_p: table1 only: extra ANODE models with these augment dims (same filters as the paper's ANODE).
        weight_decay: table1 only: weight decay for every model (None: the config's).
        repeats: override the budget's number of repeats (the note says so).
        epochs: override the budget's number of epochs (the note says so).

    Raises:
        ConfigError: unknown experiment, dataset or budget (choices listed), a missing dataset for
            table1, `sweep_p`/`weight_decay` with a claim experiment, or a non-positive override.
    """
    from anode.lab.reproduce.toy import builtin_config

    known = claim_experiments()
    if experiment != TABLE1 and experiment not in known:
        raise ConfigError(f"unknown image experiment {experiment!r}; valid choices: {[TABLE1, *known]}")
    if experiment == TABLE1 and dataset is None:
        raise ConfigError("the table1 experiment needs a dataset (--dataset); valid choices: " + str(list(_DATASETS)))
    if dataset is not None and dataset not in _DATASETS:
        raise ConfigError(f"unknown image dataset {dataset!r}; valid choices: {list(_DATASETS)}")
    if experiment != TABLE1 and (sweep_p or weight_decay is not None):
        raise ConfigError(f"--sweep-p and --weight-decay apply to the table1 experiment only; the {experiment} "
                          "experiment declares its models in its config")
    table, note = _budget_table(budget, experiment)
    cfg = load_config(builtin_config(f"images/{dataset if experiment == TABLE1 else experiment}"))
    for key, value in (("repeats", repeats), ("epochs", epochs)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ConfigError(f"{key} must be a positive integer, got {value!r}")
    cfg = cfg.with_budget(repeats=table.get("repeats"), epochs=table.get("epochs"), max_iterations=table.get("max_iterations"))
    cfg = cfg.with_budget(repeats=repeats, epochs=epochs)
    changed = [f"{k} = {v}" for k, v in (("repeats", repeats), ("epochs", epochs)) if v is not None]
    if changed:
        note += f"; overridden on the command line: {', '.join(changed)}"
    train = dataclasses.replace(cfg.train, batch_size=table.get("batch_size", cfg.train.batch_size))
    swap = {"name": dataset, "dataset": dataset} if experiment != TABLE1 and dataset is not None else {}
    datasets = tuple(
        dataclasses.replace(d, data_dir=data_dir if data_dir is not None else d.data_dir,
                            train_subset=table.get("train_subset", d.train_subset),
                            test_subset=table.get("test_subset", d.test_subset), **swap)
        for d in cfg.datasets if isinstance(d, ImageSpec)
    )
    models = list(cfg.models)
    if sweep_p:
        base = models[-1]
        models += [dataclasses.replace(base, name=f"ANODE (p={p})", augment_dim=p, role="variant") for p in sweep_p
                   if f"ANODE (p={p})" not in {m.name for m in models}]
    if weight_decay is not None:
        models = [dataclasses.replace(m, weight_decay=weight_decay) for m in models]
    if table.get("filters_scale") is not None:
        models = [dataclasses.replace(m, hidden_dim=max(1, round(m.hidden_dim * table["filters_scale"]))) for m in models]
    return dataclasses.replace(cfg, train=train, datasets=datasets, models=tuple(models)), note


@dataclass(frozen=True)
class Evidence:
    """What the image claims are judged on, beyond the aggregate.

    `aggregate` is the experiment's aggregate whose groups also carry `iterations_to_level`,
    `nfe_at_level`, `max_nfe_forward` and `unstable`; `level`, `iterations` and `nfes` are
    `loss_level_metrics`' output; `runs` holds one `run_stability` record per finished run (failed ones
    included); `nfe_blowup` is the threshold they used.
    """

    aggregate: dict[str, Any]
    level: float | None
    iterations: dict[str, Any]
    nfes: dict[str, Any]
    runs: dict[str, list[dict[str, Any]]]
    nfe_blowup: float


def image_evidence(cfg: ExperimentConfig, exp_dir: Path, agg: dict[str, Any], *, nfe_blowup: float | None = None) -> Evidence:
    """The loss-level and stability metrics of the runs in `exp_dir` (first dataset), added to `agg`'s groups.

    The loss level is set by the NODE and ANODE models (roles baseline and augmented); sweep
    variants do not move it. Stability metrics cover every model; failed runs count in them.
    """
    nfe_blowup = _nfe_blowup() if nfe_blowup is None else nfe_blowup
    ds = cfg.datasets[0].name
    pair = {m.name: load_histories(exp_dir, ds, m.name, config=cfg) for m in cfg.models if m.role in ("baseline", "augmented")}
    level, iters, nfes = loss_level_metrics(pair)
    runs = {m.name: [run_stability(h, r, nfe_blowup=nfe_blowup) for h, r in _finished_runs(exp_dir, cfg, ds, m.name)]
            for m in cfg.models}
    stability = stability_metrics(runs)
    with_level = _with_level_metrics(agg, ds, iters, nfes)
    groups = [{**g, **stability.get(g["model"], {})} if g["dataset"] == ds else g for g in with_level["groups"]]
    return Evidence({**with_level, "groups": groups}, level, iters, nfes, runs, nfe_blowup)


def judge_images(cfg: ExperimentConfig, exp_dir: Path, agg: dict[str, Any],
                 claim_specs: list[Any] | None = None) -> tuple[list[Any], float | None, dict[str, Any], dict[str, Any]]:
    """The image claims' verdicts for the runs in `exp_dir`, with the loss-level metrics they use.

    Returns:
        (claim rows, loss level, iterations to it per model, NFE there per model).
    """
    specs = claim_specs if claim_specs is not None else _image_claims(cfg, TABLE1)
    evidence = image_evidence(cfg, exp_dir, agg)
    claims = evaluate_claims(specs, {cfg.name: cfg}, {cfg.name: evidence.aggregate})
    return claims, evidence.level, evidence.iterations, evidence.nfes


def _image_claims(cfg: ExperimentConfig, experiment: str) -> list[Any]:
    """The image claims of `experiment` (table1: those naming no experiment), checked against `cfg`
    (a missing role fails before any training)."""
    from anode.lab.reproduce.toy import builtin_config

    wanted = None if experiment == TABLE1 else cfg.name
    specs = [c for c in load_claims(builtin_config("images/claims")) if c.experiment == wanted]
    check_claims(specs, {cfg.name: cfg})
    return specs


def _finished_runs(exp_dir: Path, cfg: ExperimentConfig, dataset: str, model: str) -> list[tuple[History, dict[str, Any]]]:
    """(history, result) of every finished run of one model (completed or failed), in seed order;
    a run that failed before its first iteration has an empty history."""
    out = []
    for run in repeat_dirs(exp_dir, dataset, model, seed=cfg.seed, repeats=cfg.repeats):
        if (run / "result.json").exists():
            history = History.load(run) if (run / "history.jsonl").exists() else History()
            out.append((history, read_json(run / "result.json")))
    return out


def run_stability(history: History, result: dict[str, Any], *, nfe_blowup: float, window: int = 10) -> dict[str, Any]:
    """How stable one run was, from its history and result record.

    - `max_nfe_forward`: the largest forward NFE of any recorded iteration (None without one); for a
      run that failed, up to its failure (a lower bound of what the failing solve needed);
    - `solver_failure`: the solver error's type ("MaxStepsExceeded", "StepSizeUnderflow",
      "NonFiniteState") when the run failed in the solver, else None;
    - `non_finite_loss`: a recorded loss is NaN or infinite;
    - `loss_exploded`: the loss, smoothed over `window` iterations, first fell to half of its start
      (the mean of the first `window` losses) and later rose above the start again;
    - `nfe_blowup`: `max_nfe_forward` >= the threshold;
    - `unstable`: any of the four; None for a run that crashed (an error outside the solver says
      nothing about stability, so it is left out of the stability metrics and shown as crashed).
    """
    status = result.get("status")
    crashed = status != "completed" and result.get("failure_kind") != "solver"
    solver_failure = (result.get("error_type") or "SolverError") if status != "completed" and not crashed else None
    loss = history.array("loss") if history.iterations else np.array([])
    nfe = history.array("nfe_forward") if history.iterations else np.array([])
    non_finite = bool(loss.size and not np.all(np.isfinite(loss)))
    exploded = False
    finite = loss[np.isfinite(loss)] if loss.size else loss
    if finite.size:
        start = float(finite[:window].mean())
        smooth = _smooth(finite, window)
        halved = np.flatnonzero(smooth <= start / 2)
        exploded = bool(halved.size and np.any(smooth[halved[0]:] > start))
    max_nfe = float(nfe.max()) if nfe.size else None
    blowup = max_nfe is not None and max_nfe >= nfe_blowup
    unstable = None if crashed else bool(solver_failure or non_finite or exploded or blowup)
    return {"seed": result.get("seed"), "status": "crashed" if crashed else status, "iterations": len(history.iterations),
            "max_nfe_forward": max_nfe, "solver_failure": solver_failure, "non_finite_loss": non_finite,
            "loss_exploded": exploded, "nfe_blowup": bool(blowup), "unstable": unstable}


def stability_metrics(runs: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Per model, `max_nfe_forward` and `unstable` statistics over its finished runs, failed ones included.

    Arguments:
        runs: model -> `run_stability` records.

    Returns:
        model -> {"max_nfe_forward": {mean, std, n}, "unstable": {mean, std, n} (the share of unstable
        runs), "stability_counts": {runs, solver_failures, non_finite_loss, loss_exploded, nfe_blowup,
        crashed}}. Crashed runs enter neither statistic (they are counted); a run with no iteration
        enters `unstable` only.
    """
    out = {}
    for model, records in runs.items():
        judged = [r for r in records if r["unstable"] is not None]
        out[model] = {
            "max_nfe_forward": mean_std([r["max_nfe_forward"] for r in judged if r["max_nfe_forward"] is not None]),
            "unstable": mean_std([float(r["unstable"]) for r in judged]),
            "stability_counts": {"runs": len(records), "solver_failures": sum(bool(r["solver_failure"]) for r in judged),
                                 "non_finite_loss": sum(r["non_finite_loss"] for r in judged),
                                 "loss_exploded": sum(r["loss_exploded"] for r in judged),
                                 "nfe_blowup": sum(r["nfe_blowup"] for r in judged),
                                 "crashed": len(records) - len(judged)},
        }
    return out


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


@locks_output("out_dir")
def reproduce_images(
    out_dir: str | os.PathLike[str],
    *,
    dataset: str | None = None,
    experiment: str = TABLE1,
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
    """Train an image experiment and write the report with figures and verdicts.

    `experiment` "table1" (the default) trains NODE and ANODE with Table 1's models on `dataset`;
    a claim experiment (stability, augmentation, large_p, weight_decay) trains its own config on
    MNIST (or on `dataset`). The data are read once before any training, so a missing or corrupt
    file fails at once.

    Arguments:
        out_dir: where the report, figures and runs go (rerunning resumes finished runs).
        dataset, experiment, data_dir, budget, sweep_p, weight_decay, repeats, epochs: see `image_experiment`.
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
        ConfigError, FileNotFoundError, ValueError: unknown experiment/dataset/budget, missing or malformed
            data; `fresh` or `retry_failed` with `train=False` (nothing would be trained).
    """
    if not train and (fresh or retry_failed):
        raise ValueError("--report-only trains nothing, so --fresh and --retry-failed cannot apply: drop one of them")
    cfg, note = image_experiment(dataset, budget=budget, experiment=experiment, data_dir=data_dir, sweep_p=sweep_p,
                                 weight_decay=weight_decay, repeats=repeats, epochs=epochs)
    claim_specs = _image_claims(cfg, experiment)
    if device is None and backend == "ray":
        device = "cuda" if (resources or {}).get("gpus", 0) > 0 else "cpu"
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    data = build_data(cfg.datasets[0], cfg, seed=cfg.seed)  # fail early on missing data
    out = Path(out_dir)
    exp_dir = out / cfg.name
    started = time.perf_counter()
    agg = _train(cfg, exp_dir, train=train, jobs=jobs, device=device, progress=progress, fresh=fresh,
                 retry_failed=retry_failed, backend=backend, address=address, resources=resources)
    elapsed = time.perf_counter() - started
    evidence = image_evidence(cfg, exp_dir, agg)
    claims = evaluate_claims(claim_specs, {cfg.name: cfg}, {cfg.name: evidence.aggregate})
    sections = _sections(experiment, cfg, exp_dir, out, evidence)
    options = [("--experiment", experiment if experiment != TABLE1 else None), ("--dataset", dataset),
               ("--budget", budget), ("--out", out), ("--data-dir", data_dir), ("--repeats", repeats),
               ("--epochs", epochs), ("--jobs", jobs if jobs > 1 else None),
               ("--sweep-p", ",".join(map(str, sweep_p)) or None), ("--weight-decay", weight_decay)]
    command = "anode reproduce images" + "".join(f" {flag} {value}" for flag, value in options if value is not None)
    tested = {t.metric for c in claim_specs for t in c.tests}
    summary = _summary_lines(cfg, experiment, data.description, budget, note, command, device, train, jobs, elapsed,
                             _run_wall_times(exp_dir, cfg), evidence, tested)
    write_json(out / "summary.json", {"experiment": experiment, "budget": budget, "note": note, "command": command,
                                      "device": machine_description(device), "wall_time_s": elapsed,
                                      "runs_wall_time_s": _run_wall_times(exp_dir, cfg),
                                      "runs_expected": cfg.repeats * len(cfg.models), "runs_finished": agg["runs_finished"],
                                      "loss_level": evidence.level, "iterations_to_level": evidence.iterations,
                                      "nfe_at_level": evidence.nfes, "nfe_blowup": evidence.nfe_blowup,
                                      "stability_runs": evidence.runs,
                                      "claims": [c.to_dict() for c in claims], "aggregate": agg})
    title = f"Augmented Neural ODEs on {cfg.datasets[0].name}" + ("" if experiment == TABLE1 else f": {experiment}")
    _, html_path = write_report(out, title=title, summary=summary, claims=claims, aggregates={cfg.name: agg},
                                sections=sections)
    return html_path


def _train(cfg: ExperimentConfig, exp_dir: Path, *, train: bool, **run_options: Any) -> dict[str, Any]:
    """Run (or resume) the experiment and return its aggregate; with `train` False, only aggregate what is there."""
    if train:
        return run_experiment(cfg, exp_dir, **run_options)
    agg = aggregate_experiment(cfg, exp_dir)
    write_json(exp_dir / "aggregate.json", agg)
    return agg


def _summary_lines(cfg: ExperimentConfig, experiment: str, data: str, budget: str, note: str, command: str, device: str,
                   train: bool, jobs: int, elapsed: float, run_seconds: float, evidence: Evidence,
                   tested: set[str]) -> list[str]:
    """The report's opening lines: what ran, on what, how long, how the metrics of the `tested` claims are
    measured, and how the verdicts are reached."""
    expected = cfg.repeats * len(cfg.models)
    finished = evidence.aggregate["runs_finished"]
    sharing = f" with {jobs} runs sharing the device at a time (times per iteration include the sharing)" if jobs > 1 else ""
    level = evidence.level
    lines = [
        f"Command: `{command}`.",
        *([f"Experiment: {experiment}: {cfg.description}"] if experiment != TABLE1 else []),
        f"Data: {data}; normalisation: {cfg.datasets[0].normalization} (pixels scaled to [0, 1], as the 2019 code).",
        f"Budget: {budget}: {note}.",
        "Models: " + "; ".join(f"{m.name}: {m.hidden_dim} filters, p = {m.augment_dim}"
                               + (f", weight decay {m.weight_decay:g}" if m.weight_decay else "") for m in cfg.models) + ".",
        (f"Solver: {cfg.solver.method}, rtol = atol = {cfg.solver.rtol:g}, adjoint = {cfg.solver.adjoint}, "
         f"backend {cfg.solver.backend}, at most {cfg.solver.max_num_steps} steps a solve."),
        f"Machine: {machine_description(device)}. Wall time of this invocation: {elapsed / 60:.1f} min"
        + ("" if train else " (report only: nothing was trained)")
        + f"; runs' own training time summed: {run_seconds / 60:.1f} min{sharing}.",
        f"Runs finished (completed or failed in the solver): {finished} of {expected}."
        + ("" if finished == expected else
           " The missing runs were not trained (the job stopped before them); statistics use the finished ones."),
        *([(f"Loss level for the iteration/NFE claims: {level:.4g} (the highest final training loss, smoothed over 10 iterations, "
             "among the NODE and ANODE models' full-length runs, so every completed run reaches it; runs that failed before "
             "reaching it are censored at the budget).")
           if level is not None else "Loss level: not available (a model has no full-length run)."]
          if tested & {"iterations_to_level", "nfe_at_level"} else []),
        *([("Stability of a run: unstable when it failed in the solver, recorded a non-finite loss, its loss (smoothed over "
            "10 iterations) fell to half its start and rose above the start again, or one forward solve took at least "
            f"{evidence.nfe_blowup:g} evaluations (the NFE blow-up threshold, `[metrics] nfe_blowup` of "
            "configs/images/suite.toml); failed runs are evidence and count in `unstable` and `max_nfe_forward`.")]
          if tested & {"unstable", "max_nfe_forward"} else []),
        f"Verdicts are computed from the numbers (anode.lab.claims, declared in configs/images/claims.toml). {VERDICT_RULE}",
    ]
    return lines


def _sections(experiment: str, cfg: ExperimentConfig, exp_dir: Path, out: Path, evidence: Evidence) -> list[Section]:
    """The report's figure sections: Figs. 10-12 for table1, the per-run stability figures and table for
    stability, loss and NFE by model for the other claim experiments."""
    ds = cfg.datasets[0].name
    if experiment == TABLE1:
        return [_table1_section(cfg, exp_dir, out)]
    if experiment == "stability":
        return [_stability_section(cfg, exp_dir, out, evidence)]
    return [_comparison_section(cfg, exp_dir, out, ds), _runs_section(evidence)]


def _save(fig: Any, out: Path, name: str) -> Path:
    return plotting.save_figure(fig, out / "figures" / f"{name}.png")


def _table1_section(cfg: ExperimentConfig, exp_dir: Path, out: Path) -> Section:
    ds = cfg.datasets[0].name
    histories = {m.name: load_histories(exp_dir, ds, m.name, completed_only=True, config=cfg) for m in cfg.models}
    figs = experiment_figures(exp_dir)
    acc_points = {name: (np.concatenate([h.epoch_array("eval_nfe_forward") for h in hs]),
                         np.concatenate([h.epoch_array("eval_accuracy") for h in hs]))
                  for name, hs in histories.items() if hs}
    if acc_points:
        figs[f"accuracy_vs_nfe/{slug(ds)}"] = plotting.plot_accuracy_vs_nfe(
            acc_points, title=f"{ds}: test accuracy vs NFE", styles=experiment_styles(cfg), dodge=0.3,
            xlabel="forward NFE of the evaluation (models side by side within ± 0.15)")
    section = Section("Figures 10-12: loss, NFE and accuracy", "Mean ± std across repeats; p = 0 is the NODE.")
    for key in ("loss", "nfe", "nfe_vs_loss", "accuracy_vs_nfe"):
        fig = figs.get(f"{key}/{slug(ds)}")
        if fig is not None:
            section.figures.append((key.replace("_", " "), _save(fig, out, key)))
    return section


def _stability_section(cfg: ExperimentConfig, exp_dir: Path, out: Path, evidence: Evidence) -> Section:
    """Fig. 13: every run's forward NFE and training loss per iteration (failed runs end at their
    failure), and one table row per run."""
    ds = cfg.datasets[0].name
    curves: dict[str, dict[str, list[np.ndarray]]] = {"nfe_forward": {}, "loss": {}}
    for m in cfg.models:
        for history, result in _finished_runs(exp_dir, cfg, ds, m.name):
            if not history.iterations:
                continue
            label = f"{m.name}, seed {result.get('seed')}" + ("" if result.get("status") == "completed" else " (failed)")
            for key in curves:
                curves[key][label] = [history.array(key)]
    section = Section("Figure 13: stability when overfitting",
                      "Every run on its own (not averaged: a blow-up is a property of a run); NODE runs in red, ANODE runs "
                      "in blue; a failed run's curves end at its failure; x axis: iteration.",
                      table=_runs_table(evidence))
    if curves["loss"]:
        nfe = np.concatenate([c[0] for c in curves["nfe_forward"].values()])
        wide = bool(nfe.size and nfe.min() > 0 and nfe.max() > 10 * nfe.min())  # a blow-up: log axis
        section.figures.append(("forward NFE per iteration, every run", _save(plotting.plot_histories(
            curves["nfe_forward"], ylabel="forward NFE", title=f"{ds}: forward NFE when overfitting", log_y=wide), out, "stability_nfe")))
        section.figures.append(("training loss per iteration, every run", _save(plotting.plot_histories(
            curves["loss"], ylabel="cross-entropy loss", title=f"{ds}: training loss when overfitting", log_y=True),
            out, "stability_loss")))
    return section


def _runs_table(evidence: Evidence) -> tuple[tuple[str, ...], list[list[str]]]:
    header = ("model", "seed", "status", "iterations", "max forward NFE", "solver failure", "non-finite loss",
              "loss exploded", "NFE blow-up", "unstable")
    def yes(flag):
        return "yes" if flag else "no"

    rows = [[model, str(r["seed"]), r["status"], str(r["iterations"]),
             f"{r['max_nfe_forward']:.0f}" if r["max_nfe_forward"] is not None else "–", r["solver_failure"] or "–",
             yes(r["non_finite_loss"]), yes(r["loss_exploded"]), yes(r["nfe_blowup"]),
             "–" if r["unstable"] is None else yes(r["unstable"])]
            for model, records in evidence.runs.items() for r in records]
    return header, rows


def _runs_section(evidence: Evidence) -> Section:
    return Section("Every run", "One row per finished run (failed runs included), with the stability measures of the "
                   "summary above.", table=_runs_table(evidence))


def _figure_label(m: ModelSpec, cfg: ExperimentConfig) -> str:
    """A legend label naming what differs between the models (p, filters, weight decay), so that each model
    gets its own colour (labels starting with NODE/ANODE share their family's)."""
    label = f"p = {m.augment_dim}"
    if len({x.hidden_dim for x in cfg.models}) > 1:
        label += f", {m.hidden_dim} filters"
    if any(x.weight_decay for x in cfg.models):
        label += f", weight decay {m.weight_decay or 0:g}"
    return label


def _comparison_section(cfg: ExperimentConfig, exp_dir: Path, out: Path, ds: str) -> Section:
    """Training loss and forward NFE per iteration (mean ± std across completed repeats) and NFE against
    loss, one colour per model."""
    histories = {_figure_label(m, cfg): load_histories(exp_dir, ds, m.name, completed_only=True, config=cfg) for m in cfg.models}
    histories = {label: hs for label, hs in histories.items() if hs and all(h.iterations for h in hs)}
    by_name = experiment_styles(cfg)
    styles = {_figure_label(m, cfg): by_name[m.name] for m in cfg.models}  # one look per model, as in the toy report
    section = Section("Loss and NFE by model", "Mean ± std across completed repeats, per iteration; the legend names "
                      "each model by p, filters and weight decay.")
    if not histories:
        return section
    loss = plotting.plot_histories({k: [h.array("loss") for h in hs] for k, hs in histories.items()},
                                   ylabel="cross-entropy loss", title=f"{ds}: training loss", log_y=True, styles=styles,
                                   smooth="auto")
    nfe = plotting.plot_histories({k: [h.array("nfe_forward") for h in hs] for k, hs in histories.items()},
                                  ylabel="forward NFE", title=f"{ds}: forward NFE", styles=styles, smooth="auto")
    scatter = plotting.plot_nfe_vs_loss({k: (np.concatenate([h.array("nfe_forward") for h in hs]),
                                             np.concatenate([h.array("loss") for h in hs])) for k, hs in histories.items()},
                                        title=f"{ds}: NFE vs loss", log_y=True, styles=styles, dodge=0.3,
                                        xlabel="forward NFE (models side by side within ± 0.15)")
    section.figures += [("training loss", _save(loss, out, "loss")), ("forward NFE", _save(nfe, out, "nfe")),
                        ("NFE vs loss", _save(scatter, out, "nfe_vs_loss"))]
    return section
