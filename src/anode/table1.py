"""Table 1 at the authors' protocol, accumulated one finished run at a time over short GPU windows.

The full protocol (20 epochs, batch 256, adjoint, 5 repeats, NODE and ANODE) takes about 100
GPU-minutes per dataset, while a GPU comes in windows of about 10 minutes. So each window trains
the next missing runs that fit whole, and the results folder (`docs/results/table1/<dataset>/`,
an ordinary experiment folder whose run folders are committed) grows run by run:

1. `plan_runs`: the missing runs (model x repeat), alternating the baseline and the augmented
   model so both sides grow, kept only while each fits the time left (estimated from the measured
   seconds per epoch times an allowance for NFE growth and evaluation);
2. `run_table1`: trains exactly those runs with the ordinary runner (fingerprints refuse to mix a
   run made under another config or code version; each result records machine, anode version and
   command);
3. `write_table1_report`: aggregates whatever has finished ("k of 5 repeats") with the project's
   verdict rules and sets it beside the paper's row;
4. `pack_finished`: a tarball of exactly what must be committed (finished runs, no checkpoints).
"""

from __future__ import annotations

import dataclasses
import math
import os
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .experiments.aggregate import aggregate_experiment
from .experiments.builders import build_data, build_model
from .experiments.config import ExperimentConfig, load_config
from .experiments.paths import repeat_dirs
from .experiments.runner import run_experiment
from .history import read_json, write_json
from .report import Section, write_report
from .reproduce_images import image_experiment, judge_images
from .training import TrainConfig, Trainer

__all__ = ["ALLOWANCE", "PAPER_TABLE1", "PlannedRun", "pack_finished", "plan_runs", "probe_seconds_per_epoch",
           "run_table1", "seconds_per_epoch", "table1_config", "write_table1_report"]

#: The paper's Table 1 (test accuracy in %, mean ± std over 5 runs): dataset -> role -> (mean, std).
PAPER_TABLE1: dict[str, dict[str, tuple[float, float]]] = {
    "mnist": {"baseline": (96.4, 0.5), "augmented": (98.2, 0.1)},
    "cifar10": {"baseline": (53.7, 0.2), "augmented": (60.6, 0.4)},
    "svhn": {"baseline": (81.0, 0.6), "augmented": (83.5, 0.5)},
}
#: Estimated run time = epochs x measured seconds per epoch x ALLOWANCE (NFE growth over training,
#: the test evaluation after each epoch, start-up). Fixed before any Table 1 result was seen.
ALLOWANCE = 1.6


@dataclass(frozen=True)
class PlannedRun:
    """A run chosen for this window: the model, the repeat and its estimated seconds."""

    model: str
    repeat: int
    estimate_s: float


def table1_config(dataset: str, *, data_dir: str | None = None, config: str | os.PathLike[str] | None = None) -> ExperimentConfig:
    """The Table 1 experiment of `dataset` (the built-in config at the paper budget), or `config`.

    Raises:
        ConfigError, FileNotFoundError: unknown dataset or config file.
    """
    if config is not None:
        cfg = load_config(config)
    else:
        cfg, _ = image_experiment(dataset, budget="paper", data_dir=data_dir)
    if data_dir is not None:
        cfg = dataclasses.replace(cfg, datasets=tuple(dataclasses.replace(d, data_dir=data_dir) if hasattr(d, "data_dir") else d
                                                      for d in cfg.datasets))
    return cfg


def _repeats(exp_dir: Path, cfg: ExperimentConfig, model: str) -> list[Path]:
    """The run folders of `model`'s repeats, in repeat order."""
    return repeat_dirs(exp_dir, cfg.datasets[0].name, model, seed=cfg.seed, repeats=cfg.repeats)


def _finished(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / "result.json"
    return read_json(path) if path.exists() else None


def seconds_per_epoch(exp_dir: str | os.PathLike[str], cfg: ExperimentConfig) -> dict[str, float]:
    """Per model, the median of its finished runs' wall time per epoch (models without one are absent)."""
    out = {}
    for m in cfg.models:
        times = []
        for run_dir in _repeats(Path(exp_dir), cfg, m.name):
            result = _finished(run_dir)
            if result and result.get("status") == "completed" and result.get("epochs"):
                times.append(float(result["wall_time"]) / int(result["epochs"]))
        if times:
            out[m.name] = sorted(times)[len(times) // 2]
    return out


def probe_seconds_per_epoch(cfg: ExperimentConfig, *, device: str, iterations: int = 5) -> dict[str, float]:
    """Time `iterations` training steps of each model (after one warm-up) and scale to one epoch.

    Raises:
        ValueError, FileNotFoundError: from reading the data.
    """
    data = build_data(cfg.datasets[0], cfg, seed=cfg.seed)
    loader = data.train_loader(cfg.train.batch_size, seed=cfg.seed)
    per_epoch = len(loader) if cfg.train.max_iterations is None else min(len(loader), cfg.train.max_iterations)
    out = {}
    for m in cfg.models:
        model = build_model(m, cfg, data, seed=cfg.seed).to(device)
        trainer = Trainer(model, TrainConfig(lr=cfg.train.lr, loss=cfg.train.loss, progress=False))
        batches = iter(loader)
        times = []
        for i in range(iterations + 1):
            try:
                x, y = next(batches)
            except StopIteration:  # a short epoch: start the next one
                batches = iter(loader)
                x, y = next(batches)
            start = time.perf_counter()
            trainer.step(x.to(device), y.to(device))
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            if i:
                times.append(time.perf_counter() - start)
        out[m.name] = sorted(times)[len(times) // 2] * per_epoch
    return out


def plan_runs(cfg: ExperimentConfig, exp_dir: str | os.PathLike[str], *, seconds: float,
              seconds_per_epoch: dict[str, float], allowance: float = ALLOWANCE) -> list[PlannedRun]:
    """The missing runs that fit whole into `seconds`, alternating baseline and augmented models.

    The side with fewer finished (or already planned) runs goes next; a run that does not fit is
    skipped in favour of the other side's; planning stops when neither fits. Runs already finished
    (completed or failed: both are evidence) are never planned again.

    Arguments:
        cfg: the Table 1 experiment.
        exp_dir: its results folder.
        seconds: the time this window may spend training.
        seconds_per_epoch: measured seconds per epoch of each model.
        allowance: factor on the estimate (see `ALLOWANCE`).

    Raises:
        ValueError: a model without a time estimate, or a non-positive allowance.
    """
    if not (math.isfinite(allowance) and allowance > 0):
        raise ValueError(f"allowance must be a positive number, got {allowance!r}")
    models = [m for m in cfg.models if m.role in ("augmented", "baseline")] or list(cfg.models)
    missing = [m.name for m in models if m.name not in seconds_per_epoch]
    if missing:
        raise ValueError(f"no time estimate for {missing}: measure them first (probe_seconds_per_epoch)")
    queues = {m.name: [r for r, run_dir in enumerate(_repeats(Path(exp_dir), cfg, m.name)) if _finished(run_dir) is None]
              for m in models}
    done = {m.name: cfg.repeats - len(queues[m.name]) for m in models}
    order = {m.name: i for i, m in enumerate(sorted(models, key=lambda m: m.role != "augmented"))}  # ANODE first on ties
    plan: list[PlannedRun] = []
    left = float(seconds)
    while any(queues.values()):
        for name in sorted((n for n in queues if queues[n]), key=lambda n: (done[n], order[n])):
            estimate = seconds_per_epoch[name] * cfg.train.epochs * allowance
            if estimate <= left:
                plan.append(PlannedRun(name, queues[name].pop(0), estimate))
                done[name] += 1
                left -= estimate
                break
        else:
            break
    return plan


def run_table1(
    dataset: str,
    *,
    results_dir: str | os.PathLike[str],
    minutes: float,
    data_dir: str | None = None,
    config: str | os.PathLike[str] | None = None,
    device: str | None = None,
    timing: dict[str, float] | None = None,
    progress: bool = False,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train the next missing Table 1 runs of `dataset` that fit into `minutes`, then report.

    Arguments:
        dataset: mnist, cifar10, svhn, ... (the built-in image configs).
        results_dir: the accumulating folder (e.g. docs/results/table1); runs go to `<results_dir>/<dataset>/`.
        minutes: the training time this call may use (runs are planned to fit whole).
        data_dir: where the data live.
        config: a config file to use instead of the built-in one (e.g. a tiny stand-in for tests).
        device: "cuda", "cpu", ... (None: CUDA when available).
        timing: seconds per epoch per model to plan with (None: from finished runs, else a probe).
        progress: progress bars.
        log: where one-line messages go.

    Returns:
        `{"planned": [...], "aggregate": {...}, "report": path}`.

    Raises:
        ValueError: `minutes` not positive; a model without a time estimate.
        FingerprintMismatch: finished runs in the folder were made under another config or code version.
    """
    if not (isinstance(minutes, (int, float)) and math.isfinite(minutes) and minutes > 0):
        raise ValueError(f"minutes must be a positive number, got {minutes!r}")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    cfg = table1_config(dataset, data_dir=data_dir, config=config)
    exp_dir = Path(results_dir) / dataset
    estimates = dict(timing or seconds_per_epoch(exp_dir, cfg))
    if any(m.name not in estimates for m in cfg.models):
        estimates = {**probe_seconds_per_epoch(cfg, device=device), **estimates}
        log("probe: " + ", ".join(f"{name} {s:.1f} s/epoch" for name, s in estimates.items()))
    plan = plan_runs(cfg, exp_dir, seconds=minutes * 60, seconds_per_epoch=estimates)
    log(f"plan: {len(plan)} run(s) in {minutes:g} min: " + (", ".join(f"{p.model} repeat {p.repeat} (~{p.estimate_s / 60:.1f} min)"
                                                                       for p in plan) or "none fits"))
    chosen = {(p.model, p.repeat) for p in plan}
    agg = run_experiment(cfg, exp_dir, device=device, progress=progress, log=log,
                         select=lambda unit: (unit.model, unit.repeat) in chosen)
    report = write_table1_report(results_dir, cfg=cfg, dataset=dataset)
    return {"planned": [dataclasses.asdict(p) for p in plan], "aggregate": agg, "report": report}


def _accuracy_cell(stats: dict[str, Any], repeats: int) -> str:
    if not stats or stats.get("mean") is None:
        return f"– (0 of {repeats})"
    return f"{100 * stats['mean']:.1f} ± {100 * (stats['std'] or 0):.1f} ({stats['n']} of {repeats})"


def write_table1_report(results_dir: str | os.PathLike[str], *, cfg: ExperimentConfig, dataset: str) -> Path:
    """Write `<results_dir>/<dataset>/report.md` from the finished runs, and the index table.

    Returns:
        The path of the dataset's `report.md`.
    """
    exp_dir = Path(results_dir) / dataset
    agg = aggregate_experiment(cfg, exp_dir)
    write_json(exp_dir / "aggregate.json", agg)
    claims, level, _, _ = judge_images(cfg, exp_dir, agg)
    results = [_finished(p) for m in cfg.models for p in _repeats(exp_dir, cfg, m.name)]
    machines = sorted({r.get("machine", "?") for r in results if r})
    roles = {m.name: m.role for m in cfg.models}
    paper = PAPER_TABLE1.get(dataset, {})
    rows = [f"| {g['model']} | {_accuracy_cell(g['eval_accuracy'], cfg.repeats)} | "
            + (f"{paper[roles[g['model']]][0]} ± {paper[roles[g['model']]][1]}" if roles.get(g["model"]) in paper else "–")
            + f" | {g['failed']} |" for g in agg["groups"]]
    summary = [
        f"Protocol: {cfg.train.epochs} epochs, batch {cfg.train.batch_size}, Adam lr {cfg.train.lr:g}, {cfg.solver.method} "
        f"rtol = atol = {cfg.solver.rtol:g}, adjoint = {cfg.solver.adjoint}, backend {cfg.solver.backend}, {cfg.repeats} repeats a model.",
        f"Finished runs: {agg['runs_finished']} of {agg['runs_expected']} ({agg['runs_failed']} failed); this folder grows run "
        "by run (`tools/device_table1.sh` on each GPU window; `anode table1` here).",
        ("Made on: " + "; ".join(machines)) if machines else "Made on: no run yet.",
        f"Loss level of the iteration/NFE claims: {level:.4g}." if level is not None else "Loss level: not available yet.",
    ]
    table = "\n".join(["| model | ours | paper | failed runs |", "|---|---|---|---|", *rows])
    section = Section("Table 1: test accuracy (%), mean ± std over the finished repeats, beside the paper's", table)
    md, _ = write_report(exp_dir, title=f"Table 1 at the authors' protocol: {dataset}", summary=summary,
                         claims=claims, aggregates={cfg.name: agg}, sections=[section])
    _write_index(Path(results_dir))
    return md


def _write_index(results_dir: Path) -> None:
    """`<results_dir>/README.md`: one line per dataset folder with its accuracy row."""
    lines = ["# Table 1 at the authors' protocol, accumulated run by run", "",
             "Each folder is one dataset's experiment; its `report.md` has the verdicts. Test accuracy (%), "
             "mean ± std (k of n repeats finished):", "", "| dataset | NODE | ANODE | paper NODE | paper ANODE |", "|---|---|---|---|---|"]
    for exp_dir in sorted(p for p in results_dir.iterdir() if (p / "aggregate.json").exists()):
        agg, exp = read_json(exp_dir / "aggregate.json"), read_json(exp_dir / "experiment.json")
        roles = {m["name"]: m.get("role") for m in exp["models"]}
        cells = {roles.get(g["model"]): _accuracy_cell(g["eval_accuracy"], agg["repeats"]) for g in agg["groups"]}
        paper = PAPER_TABLE1.get(exp_dir.name, {})
        ref = [f"{paper[r][0]} ± {paper[r][1]}" if r in paper else "–" for r in ("baseline", "augmented")]
        lines.append(f"| {exp_dir.name} | {cells.get('baseline', '–')} | {cells.get('augmented', '–')} | {ref[0]} | {ref[1]} |")
    (results_dir / "README.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def pack_finished(results_dir: str | os.PathLike[str], dest: str | os.PathLike[str]) -> list[str]:
    """Pack what must be committed: reports, aggregates and finished run folders, no checkpoints.

    A run folder without `result.json` (cut off by the time limit) is left out whole.

    Returns:
        The paths packed, relative to the parent of `results_dir`.
    """
    root = Path(results_dir)
    members = []
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.suffix in (".pt", ".tmp") or path.name == "report.html":
            continue
        run = next((p for p in path.parents if p.name.startswith(("seed-", "candidate-"))), None)
        if run is not None and not (run / "result.json").exists():
            continue
        members.append(path)
    with tarfile.open(dest, "w:gz") as tar:
        for path in members:
            tar.add(path, arcname=str(path.relative_to(root.parent)))
    return [str(p.relative_to(root.parent)) for p in members]

