"""Table 1 at the authors' protocol, accumulated run by run over short GPU windows.

The full protocol (20 epochs, batch 256, adjoint, 5 repeats, NODE and ANODE) takes about 100
GPU-minutes per dataset, while a GPU comes in windows of about 10 minutes, and one MNIST run alone
takes 9 (ANODE, measured) to about 12 (NODE, estimated) minutes on an H100. So each window
continues the run in progress, trains the next missing runs that fit whole, and starts the next one
in the time left; a run stopped at the window's end checkpoints where it stands (mid-epoch, on
SIGTERM: `anode.training.request_stop`), travels as that checkpoint and resumes exactly there in the
next window. The results folder
(`docs/results/table1/<dataset>/`, an ordinary experiment folder whose run folders are committed)
grows run by run:

1. `plan_runs`: the run in progress first, then the missing runs (model x repeat), alternating the
   baseline and the augmented model so both sides grow, kept while each fits the time left, and last
   one `partial` run in whatever time is left;
2. `run_table1`: trains exactly those runs with the ordinary runner (fingerprints refuse to mix a
   run made under another config or code version; each result records machine, anode version,
   command and how many segments it was trained in), writing the report before the partial run;
3. `write_table1_report`: aggregates whatever has finished ("k of 5 repeats") with the project's
   verdict rules and sets it beside the paper's row;
4. `pack_results`: a tarball of exactly what must be committed: finished runs without their
   checkpoints, a run in progress with its checkpoint.
"""

from __future__ import annotations

import dataclasses
import math
import multiprocessing
import os
import signal
import tarfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from anode.history import read_json, write_json
from anode.lab.experiments.aggregate import aggregate_experiment
from anode.lab.experiments.builders import build_data, build_model
from anode.lab.experiments.config import ExperimentConfig, load_config
from anode.lab.experiments.lock import locks_output
from anode.lab.experiments.paths import repeat_dirs
from anode.lab.experiments.runner import run_experiment
from anode.lab.report import Section, write_report
from anode.lab.reproduce.images import image_experiment, judge_images
from anode.training import (
    TrainConfig,
    Trainer,
    TrainingInterrupted,
    load_checkpoint,
    request_stop,
)

__all__ = ["ALLOWANCE", "MARGIN", "MIN_PARTIAL_EPOCHS", "PAPER_TABLE1", "PlannedRun", "WallClock", "pack_results", "plan_runs",
           "probe_seconds_per_epoch", "run_table1", "runs_in_progress", "seconds_per_epoch", "table1_config",
           "write_table1_report"]

#: The paper's Table 1 (test accuracy in %, mean ± std over 5 runs): dataset -> role -> (mean, std).
PAPER_TABLE1: dict[str, dict[str, tuple[float, float]]] = {
    "mnist": {"baseline": (96.4, 0.5), "augmented": (98.2, 0.1)},
    "cifar10": {"baseline": (53.7, 0.2), "augmented": (60.6, 0.4)},
    "svhn": {"baseline": (81.0, 0.6), "augmented": (83.5, 0.5)},
}
#: A probe times a few early training steps; a run's epoch costs more (NFE growth over training, the
#: test evaluation after each epoch, checkpoints): planned seconds per epoch = probe x ALLOWANCE.
#: Fixed before any Table 1 result was seen (the first MNIST run, ANODE on an H100, took 1.64x).
ALLOWANCE = 1.6
#: Seconds per epoch measured over finished runs' whole lives already hold all of that: they are
#: planned with this small safety margin only.
MARGIN = 1.05
#: The time left after the whole runs starts one more run (cut off at the window's end, resumed in
#: the next one) only if at least this many of its epochs fit.
MIN_PARTIAL_EPOCHS = 2
#: The partial run is asked to stop (SIGTERM) this many seconds, at most a quarter of its time, before
#: the window's deadline: time for its current iteration (or epoch-end evaluation) and a checkpoint.
#: It is killed if it has not ended STOP_WAIT seconds after the request (the last checkpoint stands).
STOP_ALLOWANCE = 20.0
STOP_WAIT = 60.0


@dataclass(frozen=True)
class PlannedRun:
    """A run chosen for this window: the model, the repeat and its estimated seconds.

    `start_epoch` > 0: the run resumes from its checkpoint. `partial`: it is not expected to finish
    in this window (`estimate_s` is then the time it gets); it resumes in the next one.
    """

    model: str
    repeat: int
    estimate_s: float
    start_epoch: int = 0
    partial: bool = False


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


def _epochs_done(run_dir: Path) -> int | None:
    """Epochs a run in progress has done (from its checkpoint); None: finished or never checkpointed."""
    path = run_dir / "checkpoint.pt"
    if _finished(run_dir) is not None or not path.exists():
        return None
    return int(load_checkpoint(path)["epoch"])


def _position(run_dir: Path, cfg: ExperimentConfig) -> str:
    """Where a run stands, from its checkpoint: "epoch 14 of 20" (+ ", batch 97 of the next" mid-epoch)."""
    path = run_dir / "checkpoint.pt"
    if not path.exists():
        return "no checkpoint yet"
    state = load_checkpoint(path)
    batch = f", batch {state['epoch_position']} of the next" if state.get("epoch_position") else ""
    return f"epoch {state['epoch']} of {cfg.train.epochs}{batch}"


def _epochs_equivalent(state: dict[str, Any]) -> float:
    """Epochs a checkpoint has trained, counting a mid-epoch position as its fraction of an epoch."""
    epochs, position = int(state["epoch"]), int(state.get("epoch_position", 0))
    if position and epochs:
        return epochs + position * epochs / (int(state["iteration"]) - position)
    return float(epochs)


def runs_in_progress(exp_dir: str | os.PathLike[str], cfg: ExperimentConfig) -> list[tuple[str, int, int]]:
    """`(model, repeat, epochs done)` of every run cut off at a window's end with a checkpoint to resume from.

    Raises:
        ValueError: a checkpoint that is not an anode checkpoint.
    """
    out = []
    for m in cfg.models:
        for repeat, run_dir in enumerate(_repeats(Path(exp_dir), cfg, m.name)):
            done = _epochs_done(run_dir)
            if done is not None:
                out.append((m.name, repeat, done))
    return out


def seconds_per_epoch(exp_dir: str | os.PathLike[str], cfg: ExperimentConfig) -> dict[str, float]:
    """Per model, the median over its completed runs of wall seconds per epoch over the run's whole
    life (`elapsed`: every segment of a resumed run, evaluation included; `wall_time` for results
    older than that field); for a model without a completed run, the same over its runs in progress
    (their checkpoints' `elapsed` over the epochs done, a mid-epoch position counted as its fraction).
    Models with neither are absent."""
    out = {}
    for m in cfg.models:
        finished, started = [], []
        for run_dir in _repeats(Path(exp_dir), cfg, m.name):
            result = _finished(run_dir)
            if result and result.get("status") == "completed" and result.get("epochs"):
                finished.append(float(result.get("elapsed", result["wall_time"])) / int(result["epochs"]))
            elif result is None and (run_dir / "checkpoint.pt").exists():
                state = load_checkpoint(run_dir / "checkpoint.pt")
                if state.get("elapsed") and state.get("epoch"):
                    started.append(float(state["elapsed"]) / _epochs_equivalent(state))
        times = finished or started
        if times:
            out[m.name] = sorted(times)[len(times) // 2]
    return out


def probe_seconds_per_epoch(cfg: ExperimentConfig, *, device: str, iterations: int = 5,
                            models: Sequence[str] | None = None) -> dict[str, float]:
    """Time `iterations` training steps of each model (after one warm-up) and scale to one epoch.

    Arguments:
        cfg: the Table 1 experiment.
        device: where to train.
        iterations: timed steps a model.
        models: the models to probe (default: all).

    Raises:
        ValueError, FileNotFoundError: from reading the data.
    """
    data = build_data(cfg.datasets[0], cfg, seed=cfg.seed)
    loader = data.train_loader(cfg.train.batch_size, seed=cfg.seed)
    per_epoch = len(loader) if cfg.train.max_iterations is None else min(len(loader), cfg.train.max_iterations)
    out = {}
    for m in cfg.models:
        if models is not None and m.name not in models:
            continue
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
              seconds_per_epoch: dict[str, float], partial: bool = True) -> list[PlannedRun]:
    """This window's runs: those in progress, then the missing runs that fit whole, alternating
    baseline and augmented models, then (with `partial`) one more run in the time left.

    Runs in progress (cut off in an earlier window) come first: they need only their remaining
    epochs. Then the side with fewer finished (or planned) runs goes next; a run that does not fit
    is skipped in favour of the other side's; whole-run planning stops when neither fits. Last, if
    at least `MIN_PARTIAL_EPOCHS` epochs of the next run fit the time left, it is planned as
    `partial`: cut off at the window's end, it resumes in the next window. Runs already finished
    (completed or failed: both are evidence) are never planned again.

    Arguments:
        cfg: the Table 1 experiment.
        exp_dir: its results folder.
        seconds: the time this window may spend training.
        seconds_per_epoch: planned wall seconds per epoch of each model, everything included
            (`run_table1` scales a probe by `ALLOWANCE` and finished runs' figures by `MARGIN`).
        partial: plan a last run that will not finish in this window.

    Raises:
        ValueError: a model without a time estimate, or an estimate that is not a positive number.
    """
    models = [m for m in cfg.models if m.role in ("augmented", "baseline")] or list(cfg.models)
    missing = [m.name for m in models if m.name not in seconds_per_epoch]
    if missing:
        raise ValueError(f"no time estimate for {missing}: measure them first (probe_seconds_per_epoch)")
    bad = {m.name: seconds_per_epoch[m.name] for m in models
           if not (isinstance(seconds_per_epoch[m.name], (int, float)) and math.isfinite(seconds_per_epoch[m.name])
                   and seconds_per_epoch[m.name] > 0)}
    if bad:
        raise ValueError(f"seconds per epoch must be positive numbers, got {bad}")
    exp_dir = Path(exp_dir)
    started = {(name, repeat): done for name, repeat, done in runs_in_progress(exp_dir, cfg)}
    queues = {m.name: sorted((r for r, run_dir in enumerate(_repeats(exp_dir, cfg, m.name)) if _finished(run_dir) is None),
                             key=lambda r, name=m.name: (name, r) not in started)  # runs in progress first
              for m in models}
    done = {m.name: cfg.repeats - len(queues[m.name]) for m in models}
    order = {m.name: i for i, m in enumerate(sorted(models, key=lambda m: m.role != "augmented"))}  # ANODE first on ties

    def candidate(name: str) -> PlannedRun:
        repeat = queues[name][0]
        start = started.get((name, repeat), 0)
        return PlannedRun(name, repeat, seconds_per_epoch[name] * (cfg.train.epochs - start), start)

    plan: list[PlannedRun] = []
    left = float(seconds)
    resuming = [name for name in queues if queues[name] and (name, queues[name][0]) in started]
    while any(queues.values()):
        names = resuming or sorted((n for n in queues if queues[n]), key=lambda n: (done[n], order[n]))
        for name in names:
            run = candidate(name)
            if run.estimate_s <= left:
                plan.append(run)
                queues[name].pop(0)
                done[name] += 1
                left -= run.estimate_s
                resuming = [n for n in resuming if n != name]
                break
        else:
            break
    if partial and any(queues.values()):
        name = (resuming or sorted((n for n in queues if queues[n]), key=lambda n: (done[n], order[n])))[0]
        run = candidate(name)
        if left >= MIN_PARTIAL_EPOCHS * seconds_per_epoch[name]:
            plan.append(dataclasses.replace(run, estimate_s=left, partial=True))
    return plan


class WallClock:
    """The time a Table 1 window runs on: `now()` in seconds, and `wait(proc, seconds)`, which returns when
    the child process `proc` has ended or `seconds` have passed. `run_table1` plans, waits and reports with
    it; tests pass a clock of their own, so that no test depends on the machine's speed."""

    def now(self) -> float:
        """Seconds on a monotonic clock."""
        return time.monotonic()

    def wait(self, proc: Any, seconds: float) -> None:
        """Join `proc` for at most `seconds`."""
        proc.join(timeout=max(seconds, 0.0))


@locks_output("results_dir")
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
    clock: WallClock | None = None,
) -> dict[str, Any]:
    """Continue the run in progress, train the next missing Table 1 runs of `dataset` that fit
    into `minutes`, report, then train one more run until the minutes are spent.

    Arguments:
        dataset: mnist, cifar10, svhn, ... (the built-in image configs).
        results_dir: the accumulating folder (e.g. docs/results/table1); runs go to `<results_dir>/<dataset>/`.
        minutes: the time this call may use, the probe included: runs in progress and whole runs, then one
            partial run stopped on time (it resumes in the next call).
        data_dir: where the data live.
        config: a config file to use instead of the built-in one (e.g. a tiny stand-in for tests).
        device: "cuda", "cpu", ... (None: CUDA when available).
        timing: planned seconds per epoch per model, everything included (None: finished runs'
            figures x `MARGIN`, else those of runs in progress x `MARGIN`, else a probe x `ALLOWANCE`).
        progress: progress bars.
        log: where one-line messages go.
        clock: the window's time (None: `WallClock`, the real one).

    Returns:
        `{"planned": [...], "aggregate": {...}, "report": path}`.

    Raises:
        ValueError: `minutes` not positive; a model without a time estimate.
        FingerprintMismatch: finished runs in the folder were made under another config or code version.
        RuntimeError: the partial run's process failed.
    """
    if not (isinstance(minutes, (int, float)) and math.isfinite(minutes) and minutes > 0):
        raise ValueError(f"minutes must be a positive number, got {minutes!r}")
    clock = clock or WallClock()
    deadline = clock.now() + minutes * 60  # the probe and every run count against it
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    cfg = table1_config(dataset, data_dir=data_dir, config=config)
    exp_dir = Path(results_dir) / dataset
    estimates = dict(timing) if timing else {name: s * MARGIN for name, s in seconds_per_epoch(exp_dir, cfg).items()}
    if estimates and not timing:
        log("measured: " + ", ".join(f"{name} {s / MARGIN:.1f} s/epoch" for name, s in estimates.items())
            + f" (planned x {MARGIN:g})")
    missing = [m.name for m in cfg.models if m.name not in estimates]
    if missing:  # no run finished or in progress yet: time a few steps
        probe = probe_seconds_per_epoch(cfg, device=device, models=missing)
        log("probe: " + ", ".join(f"{name} {s:.1f} s/epoch" for name, s in probe.items()) + f" (planned x {ALLOWANCE:g})")
        estimates = {**{name: s * ALLOWANCE for name, s in probe.items()}, **estimates}
    plan = plan_runs(cfg, exp_dir, seconds=deadline - clock.now(), seconds_per_epoch=estimates)
    described = ", ".join(_describe(p, cfg.train.epochs) for p in plan) or "none fits"
    log(f"plan: {len(plan)} run(s) in {minutes:g} min: {described}")
    whole = frozenset((p.model, p.repeat) for p in plan if not p.partial)
    agg = run_experiment(cfg, exp_dir, device=device, progress=progress, log=log, select=_Selected(whole))
    report = write_table1_report(results_dir, cfg=cfg, dataset=dataset)  # before the partial run: its cut-off loses nothing
    for run in (p for p in plan if p.partial):
        seconds = deadline - clock.now()  # what the whole runs left, whatever their estimates said
        if seconds < MIN_PARTIAL_EPOCHS * estimates[run.model]:
            log(f"{run.model} repeat {run.repeat}: not started, only {seconds:.0f} s left")
            continue
        _train_until(run, cfg, exp_dir, device=device, progress=progress, seconds=seconds, log=log, clock=clock)
        agg = aggregate_experiment(cfg, exp_dir)
        report = write_table1_report(results_dir, cfg=cfg, dataset=dataset)
    return {"planned": [dataclasses.asdict(p) for p in plan], "aggregate": agg, "report": report}


@dataclass(frozen=True)
class _Selected:
    """A picklable `select` for `run_experiment`: the units whose (model, repeat) is in `runs`."""

    runs: frozenset[tuple[str, int]]

    def __call__(self, unit: Any) -> bool:
        return (unit.model, unit.repeat) in self.runs


def _train_partial(cfg: ExperimentConfig, exp_dir: str, device: str, progress: bool, run: tuple[str, int]) -> None:
    """Child process of `_train_until`: train one run (resuming its checkpoint) until SIGTERM, which
    makes the trainer checkpoint after its current iteration and stop (`request_stop`)."""
    signal.signal(signal.SIGTERM, lambda signum, frame: request_stop())
    try:
        run_experiment(cfg, exp_dir, device=device, progress=progress, log=print, select=_Selected(frozenset({run})))
    except TrainingInterrupted as stopped:
        print(stopped)


def _train_until(run: PlannedRun, cfg: ExperimentConfig, exp_dir: Path, *, device: str, progress: bool, seconds: float,
                 log: Callable[[str], None], clock: WallClock) -> None:
    """Train `run` in a child process for about `seconds`: it is asked to stop (SIGTERM) shortly before
    the end, checkpoints where it stands (mid-epoch included) and ends; the next window resumes it there.
    A child that does not end within `STOP_WAIT` seconds of the request is killed (its last
    checkpoint stands).

    Raises:
        RuntimeError: the child process ended with an error (its traceback is on stderr).
    """
    ctx = multiprocessing.get_context("spawn")  # a fresh interpreter: safe with CUDA
    proc = ctx.Process(target=_train_partial, args=(cfg, str(exp_dir), device, progress, (run.model, run.repeat)))
    started = clock.now()
    proc.start()
    clock.wait(proc, seconds - min(STOP_ALLOWANCE, seconds / 4))
    if proc.is_alive():
        proc.terminate()  # SIGTERM: the child checkpoints after its current iteration and returns
        asked = clock.now() - started
        clock.wait(proc, STOP_WAIT)
        how = "checkpointed and ended"
        if proc.is_alive():
            proc.kill()
            proc.join()
            how = f"did not end within {STOP_WAIT:.0f} s and was killed (its last checkpoint stands)"
        where = _position(_repeats(exp_dir, cfg, run.model)[run.repeat], cfg)
        log(f"{run.model} repeat {run.repeat}: asked to stop after {asked:.0f} s as planned, {how} after "
            f"{clock.now() - started:.0f} s, at {where}; the next window resumes it from its checkpoint")
    elif proc.exitcode != 0:
        raise RuntimeError(f"training {run.model} repeat {run.repeat} failed in its process (exit code {proc.exitcode}); "
                           "see the traceback above")


def _describe(run: PlannedRun, epochs: int) -> str:
    what = f"{run.model} repeat {run.repeat}" + (f" from epoch {run.start_epoch}" if run.start_epoch else "")
    if run.partial:
        return (f"{what} (partial: {run.estimate_s / 60:.1f} min of its {epochs - run.start_epoch} epochs left; "
                "resumes in the next window)")
    return f"{what} (~{run.estimate_s / 60:.1f} min)"


def _accuracy_cell(stats: dict[str, Any], repeats: int) -> str:
    if not stats or stats.get("mean") is None:
        return f"– (0 of {repeats})"
    if stats["n"] < 2:  # one run has no spread: "± 0.0" would claim one
        return f"{100 * stats['mean']:.1f} ({stats['n']} of {repeats}; no std from one run)"
    return f"{100 * stats['mean']:.1f} ± {100 * stats['std']:.1f} ({stats['n']} of {repeats})"


def write_table1_report(results_dir: str | os.PathLike[str], *, cfg: ExperimentConfig, dataset: str) -> Path:
    """Write `<results_dir>/<dataset>/report.md` from the finished runs, and the index table.

    Returns:
        The path of the dataset's `report.md`.
    """
    exp_dir = Path(results_dir) / dataset
    agg = aggregate_experiment(cfg, exp_dir)
    write_json(exp_dir / "aggregate.json", agg)
    claims, level, _, _ = judge_images(cfg, exp_dir, agg)
    results = {(m.name, repeat): _finished(p) for m in cfg.models for repeat, p in enumerate(_repeats(exp_dir, cfg, m.name))}
    machines = sorted({r.get("machine", "?") for r in results.values() if r})
    in_progress = runs_in_progress(exp_dir, cfg)
    resumed = [f"{model} repeat {repeat} ({r['segments']} segments)" for (model, repeat), r in results.items()
               if r and r.get("segments", 1) > 1]
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
        *(["In progress (resumed from its checkpoint by the next window): " + ", ".join(
            f"{model} repeat {repeat} at {_position(_repeats(exp_dir, cfg, model)[repeat], cfg)}"
            for model, repeat, _ in in_progress) + "."]
          if in_progress else []),
        *(["Trained in more than one window (resumed from a checkpoint): " + ", ".join(resumed) + "."] if resumed else []),
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


def pack_results(results_dir: str | os.PathLike[str], dest: str | os.PathLike[str]) -> list[str]:
    """Pack what must be committed: reports, aggregates, finished run folders without their
    checkpoints, and each run in progress with its last checkpoint (the next window resumes it).

    The pack is the whole committed state of `results_dir`: replace the folder with it (a finished
    run's checkpoint, committed while it was in progress, then disappears). A run folder with
    neither `result.json` nor a checkpoint (cut off before its first epoch ended) is left out.

    Returns:
        The paths packed, relative to the parent of `results_dir`.
    """
    root = Path(results_dir)
    members = []
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.suffix == ".tmp" or path.name == "report.html":
            continue
        run = next((p for p in path.parents if p.name.startswith(("seed-", "candidate-"))), None)
        finished = run is not None and (run / "result.json").exists()
        if path.suffix == ".pt" and (run is None or finished or path.name != "checkpoint.pt"):
            continue
        if run is not None and not finished and not (run / "checkpoint.pt").exists():
            continue
        members.append(path)
    with tarfile.open(dest, "w:gz") as tar:
        for path in members:
            tar.add(path, arcname=str(path.relative_to(root.parent)))
    return [str(p.relative_to(root.parent)) for p in members]
