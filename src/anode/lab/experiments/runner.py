"""Run an experiment: models x datasets x repeats, optional search, resumable, failures recorded."""

from __future__ import annotations

import dataclasses
import itertools
import os
import shutil
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from anode.ensemble import EnsembleTrainer
from anode.history import read_json, write_json
from anode.lab.environment import provenance
from anode.lab.experiments import artifacts as art
from anode.lab.experiments.aggregate import aggregate_experiment
from anode.lab.experiments.backends import Backend, default_device, open_backend
from anode.lab.experiments.backends.local import LocalBackend
from anode.lab.experiments.builders import build_data, build_model
from anode.lab.experiments.config import ExperimentConfig
from anode.lab.experiments.fingerprint import (
    FINGERPRINT_FILE,
    FingerprintMismatch,
    diff_fingerprints,
    fingerprint_digest,
    read_fingerprint,
    run_fingerprint,
    write_fingerprint,
)
from anode.lab.experiments.grouping import check_together, mark_stacked, plan_groups
from anode.lab.experiments.lock import LOCK_FILE, OutputLocked, check_unlocked, holds_lock, output_lock
from anode.lab.experiments.paths import model_dir, run_seed
from anode.lab.experiments.schema import ConfigError
from anode.lab.experiments.units import RunGroup, RunUnit, model_spec_with, resolve_unit
from anode.rng import make_generator
from anode.solve import SolverError
from anode.training import Trainer

__all__ = ["FingerprintMismatch", "OutputLocked", "RunUnit", "check_fingerprints", "finished_runs", "move_aside", "preflight",
           "run_experiment", "run_unit", "unit_fingerprint"]


SNAPSHOTS_FILE = "feature_snapshots.json"
#: Toy runs write a checkpoint about every this many iterations (rounded down to whole epochs, at
#: least every epoch, and at the end) unless the config's `train.checkpoint_every` says otherwise:
#: their epochs take milliseconds, and a checkpoint per epoch would cost more than the training.
TOY_CHECKPOINT_ITERATIONS = 500


def unit_fingerprint(unit: RunUnit) -> dict[str, Any]:
    """The fingerprint of everything that determines `unit`'s result (see `run_fingerprint`)."""
    spec, dataset_spec, train_cfg = resolve_unit(unit)
    return run_fingerprint(config=unit.config, model=spec, dataset=dataset_spec, train=train_cfg, seed=unit.seed,
                           repeat=unit.repeat, candidate=unit.candidate,
                           candidate_values=dict(unit.overrides) if unit.candidate is not None else None,
                           stacked=unit.stacked)


def _start_run_dir(run_dir: Path, fingerprint: dict[str, Any]) -> None:
    """Prepare a run folder before training: drop debris of a killed writer and a stale result, write the fingerprint.

    A run counts as finished only once `result.json` exists, so a run being (re)trained must not
    keep an old one (e.g. a failed result being retried); `artifacts.json` goes with it.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    for debris in run_dir.glob(".*.tmp"):  # temporary files of atomic writes cut short by a kill
        debris.unlink(missing_ok=True)
    for stale in ("result.json", "artifacts.json"):
        (run_dir / stale).unlink(missing_ok=True)
    write_fingerprint(run_dir, fingerprint)


@dataclass
class _Prepared:
    """A run ready to train: its folder started, data, model, loader and Trainer built."""

    unit: RunUnit
    fingerprint: dict[str, Any]
    data: Any
    model: torch.nn.Module
    loader: Any
    eval_loader: Any
    trainer: Trainer
    snapshots: dict[int, dict[str, Any]]
    point_targets: torch.Tensor | None


def _prepare(unit: RunUnit) -> _Prepared:
    """Start the run folder (fingerprint first) and build data, model, loaders and the Trainer."""
    cfg, run_dir = unit.config, Path(unit.run_dir)
    spec, dataset_spec, train_cfg = resolve_unit(unit)
    fingerprint = unit_fingerprint(unit)
    _start_run_dir(run_dir, fingerprint)
    data = build_data(dataset_spec, cfg, seed=unit.seed)
    device = torch.device(unit.device)
    model = build_model(spec, cfg, data, seed=unit.seed).to(device)
    loader = data.train_loader(cfg.train.batch_size, seed=unit.seed)
    every = cfg.train.checkpoint_every  # bookkeeping only (not in the fingerprint)
    if every is None:
        every = max(1, TOY_CHECKPOINT_ITERATIONS // len(loader)) if data.is_toy else 1
    train_cfg = dataclasses.replace(train_cfg, checkpoint_every=every)
    snapshots: dict[int, dict[str, Any]] = {}
    point_targets: torch.Tensor | None = None
    callback: Callable[[Trainer, dict[str, float]], None] | None = None
    if unit.save_artifacts and cfg.artifacts.feature_snapshots and data.is_toy:
        points, point_targets = art.select_points(data.train_x, data.train_y, cfg.artifacts.trajectories or 200)
        planned = train_cfg.epochs * len(loader)
        if train_cfg.max_iterations is not None:
            planned = min(planned, train_cfg.max_iterations)
        marks = {round(i * (planned - 1) / max(cfg.artifacts.feature_snapshots - 1, 1)) for i in range(cfg.artifacts.feature_snapshots)}
        snapshots = _load_snapshots(run_dir)  # taken before a kill: a resumed run does not see those iterations again

        def snapshot(trainer: Trainer, record: dict[str, float]) -> None:
            if record["iteration"] in marks:
                feats = art.features_of(trainer.model, points.to(device))
                snapshots[int(record["iteration"])] = {"iteration": record["iteration"], "features": feats.cpu().tolist()}
                write_json(run_dir / SNAPSHOTS_FILE, sorted(snapshots.values(), key=lambda s: s["iteration"]))

        callback = snapshot

    extra = {
        "experiment": cfg.name, "model": unit.model, "dataset": unit.dataset, "seed": unit.seed,
        "repeat": unit.repeat, "candidate": unit.candidate, "overrides": dict(unit.overrides),
        "model_spec": dataclasses.asdict(spec), "device": unit.device,
    }
    trainer = Trainer(model, train_cfg, out_dir=run_dir, callback=callback, extra_state=extra)
    return _Prepared(unit, fingerprint, data, model, loader, data.eval_loader(cfg.train.batch_size), trainer,
                     snapshots, point_targets)


def _finish(prep: _Prepared, error: SolverError | None, wall_time: float, *, together: int = 1) -> dict[str, Any]:
    """Write the run's summary, artifacts and (last) `result.json`; returns the result record."""
    unit, trainer, run_dir = prep.unit, prep.trainer, Path(prep.unit.run_dir)
    if error is None:
        status, reason, error_type, kind = "completed", None, None, None
    else:
        status, reason, error_type, kind = "failed", str(error), type(error).__name__, "solver"
        trainer.history.save(run_dir)
    result = {**trainer.summary(), **provenance(unit.device), "status": status, "reason": reason, "error_type": error_type,
              "failure_kind": kind, "wall_time": wall_time, "trained_together": together,
              "fingerprint": prep.fingerprint, "fingerprint_sha256": fingerprint_digest(prep.fingerprint)}
    if unit.save_artifacts and status == "completed" and prep.data.is_toy:
        result_artifacts = _artifacts(prep.model, prep.data, unit.config, torch.device(unit.device))
        if prep.snapshots:
            result_artifacts["feature_snapshots"] = sorted(prep.snapshots.values(), key=lambda s: s["iteration"])
            result_artifacts["feature_labels"] = prep.point_targets[:, 0].tolist()
        write_json(run_dir / "artifacts.json", result_artifacts)
    write_json(run_dir / "result.json", result)
    return result


def run_unit(unit: RunUnit) -> dict[str, Any]:
    """Train one model on one dataset; write history, summary, artifacts and `result.json`.

    Write order: `fingerprint.json` first, then (during training) `history.jsonl`/`epochs.json`
    and `checkpoint.pt` at every checkpoint, then `summary.json`, `artifacts.json`, and last
    `result.json` (atomically): a run is finished exactly when `result.json` exists, and a run
    killed before that resumes from its checkpoint with the same records an undisturbed run makes.

    A `SolverError` is caught and recorded as a failed run (with its reason); the history up to
    the failure is kept. Returns the result record.

    Raises:
        Exception: anything else (a crash); `_guarded` records it.
    """
    prep = _prepare(unit)
    started = time.perf_counter()
    try:
        prep.trainer.fit(prep.loader, eval_loader=prep.eval_loader)
        error = None
    except SolverError as err:
        error = err
    return _finish(prep, error, time.perf_counter() - started)


def run_group(group: RunGroup) -> list[dict[str, Any]]:
    """Train a group's runs together as one stacked ensemble (`anode.ensemble.EnsembleTrainer`).

    Every run gets the folder, files and result record `run_unit` would write, plus
    `trained_together` (the group's size); its `wall_time` is the group's time divided by its
    size. A member whose solve fails is recorded as failed while the others go on.

    Returns:
        The result records, in the order of `group.units`.

    Raises:
        Exception: a crash (`_guarded_group` records it for every member).
    """
    preps = [_prepare(unit) for unit in group.units]
    started = time.perf_counter()
    outcomes = EnsembleTrainer([p.trainer for p in preps]).fit(
        [p.loader for p in preps], eval_loaders=[p.eval_loader for p in preps])
    share = (time.perf_counter() - started) / len(preps)
    return [_finish(p, outcome if isinstance(outcome, SolverError) else None, share, together=len(preps))
            for p, outcome in zip(preps, outcomes)]


def _load_snapshots(run_dir: Path) -> dict[int, dict[str, Any]]:
    """Feature snapshots an earlier (killed) attempt of this run saved, by iteration."""
    path = run_dir / SNAPSHOTS_FILE
    if not path.exists():
        return {}
    return {int(s["iteration"]): s for s in read_json(path)}


def _artifacts(model: torch.nn.Module, data: Any, cfg: ExperimentConfig, device: torch.device) -> dict[str, Any]:
    spec = cfg.artifacts
    out: dict[str, Any] = {}
    model = model.cpu()
    if spec.trajectories:
        x, y = art.select_points(data.train_x, data.train_y, spec.trajectories)
        times, states = art.trajectories(model, x, spec.timesteps)
        out["trajectories"] = {"times": times.tolist(), "states": states.tolist(), "labels": y[:, 0].tolist()}
    if spec.input_map and data.train_x.shape[1] <= 2:
        out["input_map"] = art.input_map(model, data.train_x, spec.input_map)
        x, y = art.select_points(data.train_x, data.train_y, 300)
        out["input_map"]["points"] = x.tolist()
        out["input_map"]["point_labels"] = y[:, 0].tolist()
        if data.eval_x is not None:
            out["input_map"]["heldout_points"] = data.eval_x.tolist()
    if spec.vector_field and hasattr(model, "odeblock") and data.train_x.shape[1] + model.odeblock.augment_dim == 1:
        out["vector_field"] = art.vector_field_1d(model, data.train_x)
    model.to(device)
    return out


def _search_candidates(cfg: ExperimentConfig) -> list[dict[str, Any]]:
    if cfg.search is None:
        return []
    keys = sorted(cfg.search.space)
    grid = [dict(zip(keys, values)) for values in itertools.product(*(cfg.search.space[k] for k in keys))]
    if cfg.search.mode == "random" and cfg.search.num_samples < len(grid):
        order = torch.randperm(len(grid), generator=make_generator(cfg.seed))[: cfg.search.num_samples]
        grid = [grid[i] for i in sorted(order.tolist())]
    return grid


def finished_result(run_dir: Path, retry_failed: bool) -> dict[str, Any] | None:
    """The result of a finished run in `run_dir`, or None when it has none (or failed and `retry_failed`)."""
    path = run_dir / "result.json"
    if not path.exists():
        return None
    result = read_json(path)
    if retry_failed and result.get("status") == "failed":
        return None
    return result


def _guarded(unit: RunUnit) -> dict[str, Any]:
    """`run_unit`, turning an unexpected crash into a failed record so the experiment goes on.

    The record has `failure_kind` "crash" (a `SolverError` gives "solver"), the exception's type
    in `error_type` and its traceback. Setup errors (missing data, a model that does not fit the
    data) never reach here: `run_experiment`'s preflight raises them before any run starts.
    """
    try:
        return run_unit(unit)
    except Exception as err:  # recorded, not swallowed: the result says what happened
        return _crash_record(unit, err)


def _guarded_group(group: RunGroup) -> dict[str, Any]:
    """`run_group` as `_guarded` does `run_unit`: a crash is recorded for every member.

    Returns:
        `{"results": [one record per member, in order]}`.
    """
    try:
        return {"results": run_group(group)}
    except Exception as err:  # recorded, not swallowed: every member's result says what happened
        return {"results": [_crash_record(unit, err) for unit in group.units]}


def execute_item(item: RunUnit | RunGroup) -> dict[str, Any]:
    """The backends' task body: a unit alone, or a group together (a crash is recorded, not raised)."""
    return _guarded_group(item) if isinstance(item, RunGroup) else _guarded(item)


def _crash_record(unit: RunUnit, err: Exception) -> dict[str, Any]:
    fingerprint = unit_fingerprint(unit)
    result = {"status": "failed", "failure_kind": "crash", "reason": f"{type(err).__name__}: {err}",
              "error_type": type(err).__name__, "traceback": traceback.format_exc(), "model": unit.model,
              "dataset": unit.dataset, "seed": unit.seed, "repeat": unit.repeat, "candidate": unit.candidate,
              "fingerprint": fingerprint, "fingerprint_sha256": fingerprint_digest(fingerprint)}
    write_json(Path(unit.run_dir) / "result.json", result)
    return result


def warm_up() -> None:
    """A worker's first task (`LocalBackend.start`): unpickling this function imports the runner, and with
    it torch and the library, while the caller is still planning."""


def item_results(item: RunUnit | RunGroup, record: dict[str, Any]) -> list[tuple[RunUnit, dict[str, Any]]]:
    """(unit, result) of every run of an executed item (`execute_item`'s record: a unit's, or a group's)."""
    if isinstance(item, RunGroup):
        return list(zip(item.units, record["results"]))
    return [(item, record)]


def record_result(unit: RunUnit, result: dict[str, Any], log: Callable[[str], None]) -> None:
    """A finished run's result in its folder (when the backend lost it: a Ray worker died past its
    retries) and its one-line summary in `log`."""
    if not (Path(unit.run_dir) / "result.json").exists():
        write_json(Path(unit.run_dir) / "result.json", {**result, "model": unit.model, "dataset": unit.dataset, "seed": unit.seed})
    log(_one_line(unit, result))


def _one_line(unit: RunUnit, result: dict[str, Any]) -> str:
    """A finished run in one line; a failure's reason is given whole (its first line)."""
    what = f"{unit.dataset} / {unit.model} / " + (f"seed {unit.seed}" if unit.repeat is not None else f"search candidate {unit.candidate}")
    if result.get("status") != "completed":
        lines = str(result.get("reason") or "no reason recorded").strip().splitlines() or ["no reason recorded"]
        line = f"[failed] {what}: {lines[0]}"
        if result.get("failure_kind") == "crash":
            line += f" (unexpected error; traceback in {Path(unit.run_dir) / 'result.json'})"
        return line
    ev = result.get("eval") or {}
    extra = f", eval loss {ev['loss']:.4f}, acc {ev['accuracy']:.3f}" if ev else ""
    return (f"[done] {what}: loss {result['final_loss']:.4f}, NFE {result['final_nfe_forward']:.1f}"
            f"{extra}, {result['iterations']} it in {result['wall_time']:.1f}s")


def preflight(config: ExperimentConfig, candidates: list[dict[str, Any]] | None = None) -> None:
    """Build every dataset once and every model once (on CPU) so setup errors surface before any run.

    Nothing is written. Search candidates' model specs are validated too.

    Arguments:
        config: the experiment.
        candidates: its search candidates (default: computed from `config`).

    Raises:
        ConfigError: a search value the model spec rejects.
        FileNotFoundError, ValueError: missing or malformed data, a model that does not fit its data.
    """
    candidates = _search_candidates(config) if candidates is None else candidates
    for m in config.models:
        for cand in candidates:
            try:
                model_spec_with(m, cand)
            except (TypeError, ValueError) as err:
                raise ConfigError(f"search.space: model {m.name!r} with {cand}: {err}; change the search values") from err
    for d in config.datasets:
        data = build_data(d, config, seed=run_seed(config.seed, 0))
        for m in config.models:
            build_model(m, config, data, seed=run_seed(config.seed, 0))


def move_aside(out: Path) -> Path | None:
    """Move a non-empty `out` to a sibling `<out>.old-<YYYYmmdd-HHMMSS>[-n]`; returns where (None: nothing to move).

    A folder another live anode process is writing (its `.anode-lock`, see `experiments.lock`) is
    refused. When this process holds the folder's lock, everything but the lock moves (the lock
    stays, so the folder is never without it); otherwise the folder is renamed.

    Raises:
        OutputLocked: another live process holds `out`.
    """
    if not out.exists() or (out.is_dir() and not any(p.name != LOCK_FILE for p in out.iterdir())):
        return None
    check_unlocked(out)
    out = out.resolve()
    stem = f"{out.name}.old-{time.strftime('%Y%m%d-%H%M%S')}"
    target, n = out.with_name(stem), 1
    while target.exists():
        n += 1
        target = out.with_name(f"{stem}-{n}")
    if out.is_dir() and holds_lock(out):
        target.mkdir()
        for child in sorted(out.iterdir()):
            if child.name != LOCK_FILE:
                child.rename(target / child.name)
    else:
        out.rename(target)
    return target


def check_fingerprints(units: list[RunUnit], out: Path) -> None:
    """Refuse run folders on disk that were made with other settings than `units` give them.

    Only folders of `units` that hold a `fingerprint.json`, `result.json` or `checkpoint.pt` are
    checked; other folders under `out` are left alone.

    Raises:
        FingerprintMismatch: naming each differing run folder, its changed keys (old -> new) and
            the ways out (`--fresh`, or a new `--out` folder).
    """
    problems: list[str] = []
    for unit in units:
        run_dir = Path(unit.run_dir)
        if not any((run_dir / name).exists() for name in (FINGERPRINT_FILE, "result.json", "checkpoint.pt")):
            continue
        try:
            stored = read_fingerprint(run_dir)
        except ValueError as err:
            problems.append(f"  {_rel(run_dir, out)}: {err}")
            continue
        if stored is None:
            problems.append(f"  {_rel(run_dir, out)}: no fingerprint (made by an older anode); its settings are unknown")
            continue
        changes = diff_fingerprints(stored, unit_fingerprint(unit))
        if changes:
            problems.append(f"  {_rel(run_dir, out)}: " + "; ".join(changes))
    if problems:
        shown = problems[:20] + ([f"  ... and {len(problems) - 20} more"] if len(problems) > 20 else [])
        raise FingerprintMismatch(
            f"{out} holds {len(problems)} run(s) made with other settings than this config gives them "
            "(changed keys: old -> new):\n" + "\n".join(shown) + "\n"
            f"Results of different settings are not mixed. Either rerun with --fresh (moves {out} aside to "
            f"{out.name}.old-<time> and starts over) or use a new --out folder."
        )


def _rel(path: Path, base: Path) -> str:
    try:
        return str(path.relative_to(base))
    except ValueError:
        return str(path)


def run_experiment(
    config: ExperimentConfig,
    out_dir: str | os.PathLike[str],
    *,
    jobs: int = 1,
    device: str | None = None,
    progress: bool = True,
    retry_failed: bool = False,
    fresh: bool = False,
    select: Callable[[RunUnit], bool] | None = None,
    log: Callable[[str], None] | None = None,
    backend: str | Backend = "local",
    address: str | None = None,
    resources: dict[str, float] | None = None,
    together: int = 1,
    reuse: Mapping[str, Path] | None = None,
) -> dict[str, Any]:
    """Run (or resume) an experiment and write its aggregate.

    Layout: `out_dir/experiment.json` (the resolved config), `runs/<dataset>/<model>/seed-<s>/`
    (fingerprint.json, history.jsonl, epochs.json, summary.json, result.json, checkpoint.pt,
    artifacts.json), `runs/<dataset>/<model>/search/` and `search.json` when searching, and
    `aggregate.json`. Runs with a `result.json` are skipped, so rerunning a killed experiment
    resumes it (runs in flight continue from their last checkpoint).

    One writer per folder: a folder another live anode process is writing is refused at once
    (`OutputLocked`, naming that process); this call holds `out_dir/.anode-lock` while it runs
    (re-entrant within a process; a lock left by a killed process is taken over, logged).

    Order: (0) the folder's lock is checked; (1) preflight: every dataset and model is built once,
    so setup errors raise before anything is written; then the lock is taken; (2) with `fresh`,
    an existing `out_dir` is moved aside (the lock stays); (3) every run
    folder of this config already on disk is checked against its fingerprint (folders the config
    no longer produces are left alone and not read); (4) search, then repeats.

    Arguments:
        config: the experiment.
        out_dir: where results go.
        jobs: runs trained in parallel worker processes (one thread each; they die with this
            process on Linux); 1 runs in-process. On a GPU the workers share the card.
        device: "cpu", "cuda", ...; None picks CUDA when available.
        progress: progress bars (one-line summaries of finished runs go to `log` either way).
        retry_failed: rerun runs recorded as failed.
        fresh: move a non-empty `out_dir` aside to `<out_dir>.old-<YYYYmmdd-HHMMSS>` (logged) and start over.
        select: train only the pending repeat runs for which `select(unit)` is true (e.g. the runs
            that fit a time window); the others stay missing and the aggregate counts what exists.
        log: where one-line summaries go (default: tqdm.write; pass `lambda _: None` to silence).
        backend: where runs execute: "local" (this process or `jobs` worker processes), "ray"
            (one Ray task per run; see `anode.lab.experiments.backends.ray.RayBackend`), or a backend
            object from `backends.make_backend` (entered by the caller, reused across experiments).
        address: ray only: join this running cluster (None starts a local instance of `jobs` CPUs).
        resources: ray only: per-run task resources, keys "cpus" (default 1) and "gpus" (default 0).
        together: train up to this many runs together as one stacked ensemble (`anode.ensemble`:
            one batched solve and one optimiser step per iteration for all of them, each run keeping
            its own data order, steps, NFE, folder and result, equal to training it alone up to float
            rounding over the first epochs); runs whose models or settings cannot stack train alone
            (`experiments.grouping.group_key`). 1: every run alone. Stacked runs drift from their
            alone twins over long training as any change of float rounding makes them drift, so
            the fingerprint records `execution.stacked` and the two kinds are never mixed in a folder.
        reuse: finished runs of other experiments by fingerprint digest (`finished_runs`): a pending
            run with the same fingerprint (every setting that determines its numbers) is copied from
            there instead of trained, its names rewritten and `reused_from` added to its result;
            runs that save artifacts are always trained.

    Returns:
        The aggregate (also written to `aggregate.json`), with `runs_expected`, `runs_finished`
        and `runs_failed` counts of the repeat runs.

    Raises:
        ValueError: `jobs` or `together` < 1; a model that does not fit its data (preflight).
        FileNotFoundError: missing data (preflight).
        ConfigError: an invalid search value (preflight).
        FingerprintMismatch: run folders made with other settings (a `ConfigError`).
        OutputLocked: another live anode process is writing into `out_dir` (a `ConfigError`), raised
            before anything is built or written.
        ConfigError: unknown backend or resource key, Ray missing for "ray", or (ray) an output
            folder that some cluster node cannot see; raised before any run starts.
    """
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be a positive integer, got {jobs!r}")
    check_together(together)
    out = Path(out_dir)
    log = log or tqdm.write
    check_unlocked(out)  # at once, before the preflight builds anything
    candidates = _search_candidates(config)
    preflight(config, candidates)
    with output_lock(out, log=log):
        executor, owned = open_backend(backend, jobs=jobs, address=address, resources=resources)
        try:
            device = device or default_device(executor)
            if fresh:
                moved = move_aside(out)
                if moved is not None:
                    log(f"--fresh: moved the previous results in {out} aside to {moved}")
            if hasattr(executor, "check_output"):
                executor.check_output(out)
            return _run(config, out, executor, candidates, jobs=jobs, device=device, progress=progress,
                        retry_failed=retry_failed, select=select, log=log, together=together, reuse=reuse or {})
        finally:
            if owned:
                executor.__exit__(None, None, None)


def _run(config: ExperimentConfig, out: Path, executor: Backend, candidates: list[dict[str, Any]], *, jobs: int,
         device: str, progress: bool, retry_failed: bool, select: Callable[[RunUnit], bool] | None,
         log: Callable[[str], None], together: int, reuse: Mapping[str, Path]) -> dict[str, Any]:
    """Check fingerprints, write the config, run the search and the repeats, write the aggregate."""
    inner_progress = progress and jobs == 1 and isinstance(executor, LocalBackend)

    def report(unit: RunUnit, result: dict[str, Any]) -> None:
        record_result(unit, result, log)

    def report_item(item: RunUnit | RunGroup, record: dict[str, Any]) -> None:
        for unit, result in item_results(item, record):
            report(unit, result)

    def pending(units: list[RunUnit]) -> list[RunUnit]:
        return [unit for unit in units if finished_result(Path(unit.run_dir), retry_failed) is None]

    keys: dict[str, str | None] = {}  # group keys by run folder, computed once (data, model, checkpoint)
    search_units = _search_units(config, out, candidates, device=device, progress=inner_progress)
    known = {pair: best for pair, best in _known_choices(config, out, candidates).items() if best is not None}
    check_fingerprints(search_units + mark_stacked(repeat_units(config, out, known, device=device, progress=inner_progress,
                                                                 pairs=set(known) if config.search is not None else None),
                                                  together=together, keys=keys), out)
    write_json(out / "experiment.json", config.to_dict())
    chosen: dict[tuple[str, str], dict[str, Any]] = {}
    if config.search is not None:
        executor.execute(pending(search_units), fn=_guarded, on_result=report, progress=progress, desc=f"{config.name}: search")
        for d in config.datasets:
            for m in config.models:
                chosen[(d.name, m.name)] = _pick_best(model_dir(out, d.name, m.name), candidates)
    units = mark_stacked(repeat_units(config, out, chosen, device=device, progress=inner_progress), together=together,
                         keys=keys)
    check_fingerprints(units, out)  # repeats after a search: their values are known only now
    todo = [unit for unit in pending(units) if select is None or select(unit)]
    copied = {id(unit) for unit in todo if reuse_run(unit, reuse, log)}
    todo = [unit for unit in todo if id(unit) not in copied]
    executor.execute(plan_groups(todo, together=together, keys=keys), fn=execute_item, on_result=report_item, progress=progress,
                     desc=f"{config.name}: runs")
    aggregate = aggregate_experiment(config, out)
    write_json(out / "aggregate.json", aggregate)
    return aggregate


#: The files of a finished run that `reuse` copies as they are; `summary.json` and `result.json` follow
#: with the run's own names (not the checkpoint: a finished run is not resumed).
REUSED_FILES = ("fingerprint.json", "history.jsonl", "epochs.json")


def finished_runs(out_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """The completed runs under an experiment folder, by fingerprint digest (for `run_experiment(reuse=...)`)."""
    found: dict[str, Path] = {}
    for path in sorted(Path(out_dir).glob("runs/*/*/seed-*/result.json")):
        result = read_json(path)
        if result.get("status") == "completed" and result.get("fingerprint_sha256"):
            found.setdefault(result["fingerprint_sha256"], path.parent)
    return found


def reuse_run(unit: RunUnit, reuse: Mapping[str, Path], log: Callable[[str], None]) -> bool:
    """Copy `unit`'s run from an identical finished run in `reuse`; False when there is none."""
    if unit.save_artifacts or not reuse:
        return False
    source = reuse.get(fingerprint_digest(unit_fingerprint(unit)))
    if source is None:
        return False
    run_dir = Path(unit.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    spec = resolve_unit(unit)[0]
    names = {"experiment": unit.config.name, "model": unit.model, "dataset": unit.dataset,
             "model_spec": dataclasses.asdict(spec), "reused_from": str(source)}
    for name in REUSED_FILES:
        if (source / name).exists():
            shutil.copyfile(source / name, run_dir / name)
    write_json(run_dir / "summary.json", {**read_json(source / "summary.json"), **names})
    write_json(run_dir / "result.json", {**read_json(source / "result.json"), **names})  # last: the run is finished
    log(f"[reused] {unit.config.name}: {unit.dataset} / {unit.model} / seed {unit.seed}: identical to {source}")
    return True


def _search_units(config: ExperimentConfig, out: Path, candidates: list[dict[str, Any]], *, device: str,
                  progress: bool) -> list[RunUnit]:
    """One run per (dataset, model, search candidate)."""
    return [
        RunUnit(config, m.name, d.name, str(model_dir(out, d.name, m.name) / "search" / f"candidate-{i}"),
                run_seed(config.seed, 0), None, tuple(sorted(c.items())), config.search.epochs if config.search else None,
                False, device, progress, candidate=i)
        for d in config.datasets for m in config.models for i, c in enumerate(candidates)
    ]


def repeat_units(config: ExperimentConfig, out: Path, chosen: dict[tuple[str, str], dict[str, Any]], *, device: str,
                  progress: bool, pairs: set[tuple[str, str]] | None = None) -> list[RunUnit]:
    """One run per (repeat, dataset, model) with the search's chosen values (`pairs`: only these pairs)."""
    return [
        RunUnit(config, m.name, d.name, str(model_dir(out, d.name, m.name) / f"seed-{run_seed(config.seed, r)}"),
                run_seed(config.seed, r), r, tuple(sorted(chosen.get((d.name, m.name), {}).items())), None,
                r == 0 and _wants_artifacts(config), device, progress)
        for r in range(config.repeats) for d in config.datasets for m in config.models
        if pairs is None or (d.name, m.name) in pairs
    ]


def _known_choices(config: ExperimentConfig, out: Path, candidates: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any] | None]:
    """Per (dataset, model), the search's choice if every candidate already has a result (else None); nothing is written."""
    choices: dict[tuple[str, str], dict[str, Any] | None] = {}
    if config.search is None:
        return choices
    for d in config.datasets:
        for m in config.models:
            base = model_dir(out, d.name, m.name)
            done = all((base / "search" / f"candidate-{i}" / "result.json").exists() for i in range(len(candidates)))
            choices[(d.name, m.name)] = _score_candidates(base, candidates)[1] if done else None
    return choices


def _wants_artifacts(config: ExperimentConfig) -> bool:
    a = config.artifacts
    return bool(a.trajectories or a.feature_snapshots or a.input_map or a.vector_field)


def _score_candidates(model_dir: Path, candidates: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Each candidate's final loss and status, and the best one (failed runs rank last; {} if none completed)."""
    scored = []
    for i, cand in enumerate(candidates):
        result = read_json(model_dir / "search" / f"candidate-{i}" / "result.json")
        loss = result.get("final_loss") if result.get("status") == "completed" else None
        scored.append({"candidate": cand, "final_loss": loss, "status": result.get("status"), "reason": result.get("reason")})
    ok = [s for s in scored if s["final_loss"] is not None]
    best = min(ok, key=lambda s: s["final_loss"])["candidate"] if ok else {}
    return scored, best


def _pick_best(model_dir: Path, candidates: list[dict[str, Any]]) -> dict[str, Any]:
    """Best candidate by final training loss (failed runs rank last); written to `search.json`."""
    scored, best = _score_candidates(model_dir, candidates)
    write_json(model_dir / "search.json", {"candidates": scored, "best": best})
    return best

