"""Several experiments as one schedule: `run_suite`.

Calling `run_experiment` once per experiment waits for each experiment's last run before the
next one starts, so a worker idles whenever an experiment has fewer runs left than there are
workers. `run_suite` plans every experiment first and hands all their runs to the backend at
once: the same runs with the same numbers, with the same runs copied instead of trained, but no
worker waits while another run is still to do. Runs of several experiments that stack (the same
model and settings, e.g. a model with and without weight decay) train in one group: a stacked
member's arithmetic does not depend on the group it is in (`tests/test_ensemble.py`,
`tests/test_suite.py`), and a group's iteration costs much less than its members' alone (on one
CPU thread, 8 stacked runs take about 1.4 times as long per iteration as 4: `python
benchmarks/toy_suite.py --members 4|8`), so fewer, larger groups train faster. Each experiment is aggregated, and
`on_finished` called, as soon as its last run ends, so that its figures can be drawn while the
others train.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from anode.history import write_json
from anode.lab.experiments.aggregate import aggregate_experiment
from anode.lab.experiments.backends import Backend, default_device
from anode.lab.experiments.builders import build_data
from anode.lab.experiments.config import ExperimentConfig
from anode.lab.experiments.fingerprint import fingerprint_digest
from anode.lab.experiments.grouping import Keys, check_together, mark_stacked, plan_groups
from anode.lab.experiments.lock import check_unlocked, output_lock
from anode.lab.experiments.runner import (
    check_fingerprints,
    execute_item,
    finished_result,
    finished_runs,
    item_results,
    preflight,
    record_result,
    repeat_units,
    reuse_run,
    unit_fingerprint,
    warm_up,
)
from anode.lab.experiments.schema import ConfigError
from anode.lab.experiments.units import RunGroup, RunUnit, resolve_unit

__all__ = ["run_suite"]

#: Relative cost of an iteration of a ResNet run against an ODE run's (for ordering only).
RESNET_COST = 0.25


@dataclass
class _Plan:
    """One experiment of the suite: what it trains, what it copies once an earlier experiment's twin
    has finished, and the run folders still to finish."""

    config: ExperimentConfig
    out: Path
    items: list[RunUnit | RunGroup]
    keys: Keys
    waiting: list[tuple[RunUnit, RunUnit, str]] = field(default_factory=list)  # (this run, its twin trained earlier, their digest)
    open: set[str] = field(default_factory=set)
    aggregate: dict[str, Any] | None = None


def run_suite(
    configs: Sequence[ExperimentConfig],
    out_dir: str | Path,
    *,
    executor: Backend,
    device: str | None = None,
    progress: bool = False,
    retry_failed: bool = False,
    log: Callable[[str], None] | None = None,
    together: int = 1,
    on_finished: Callable[[ExperimentConfig, dict[str, Any]], None] | None = None,
) -> dict[str, dict[str, Any]]:
    """Run (or resume) several experiments through one backend as one schedule.

    The result is what calling `run_experiment(cfg, out_dir / cfg.name, ..., reuse=...)` for each
    config in turn gives, each experiment reusing the finished runs of the ones before it: the same
    runs with the same numbers, and a run whose fingerprint equals a run of an earlier experiment is
    copied from it (`reused_from`) once that run has finished (and trained after all when it
    failed). What differs is the schedule: runs that stack are grouped across experiments (a group
    belongs to the experiment of its first run; `trained_together` counts all its runs), and every
    run of every experiment is handed to the backend at once, the experiments with the longest
    runs first, the longest runs first within each.

    Arguments:
        configs: the experiments, in the order in which runs are reused (a run is copied from the
            first experiment that has it); none may have a search.
        out_dir: experiment `cfg.name` writes to `out_dir / cfg.name`.
        executor: an entered backend (`backends.open_backend`).
        device: "cpu", "cuda", ...; None: the backend's default.
        progress: a progress bar over the runs.
        retry_failed: rerun runs recorded as failed.
        log: where one-line summaries go (default: tqdm.write).
        together: train up to this many runs of one model together (see `run_experiment`).
        on_finished: called with each experiment's config and aggregate as soon as it is complete.

    Returns:
        The aggregates by experiment name, in the order of `configs`.

    One writer per folder: `out_dir` and every experiment folder `out_dir / cfg.name` are locked
    while the suite runs (`experiments.lock.output_lock`; re-entrant within a process, a lock left
    by a killed process is taken over).

    Raises:
        ConfigError: an experiment with a search (run it with `run_experiment`).
        OutputLocked: another live anode process is writing into `out_dir` or one of the experiment
            folders (a `ConfigError`), raised before anything is written.
        ValueError, FileNotFoundError, FingerprintMismatch: as `run_experiment`, before any run starts.
    """
    check_together(together)
    searched = [cfg.name for cfg in configs if cfg.search is not None]
    if searched:
        raise ConfigError(f"run_suite runs experiments without a search; {searched} have one: run them with run_experiment")
    log = log or tqdm.write
    folders = [Path(out_dir), *(Path(out_dir) / cfg.name for cfg in configs)]
    for folder in folders:  # every refusal before any lock is taken
        check_unlocked(folder)
    with contextlib.ExitStack() as locks:
        for folder in folders:
            locks.enter_context(output_lock(folder, log=log))
        return _run_suite(configs, Path(out_dir), executor=executor, device=device, progress=progress,
                          retry_failed=retry_failed, log=log, together=together, on_finished=on_finished)


def _run_suite(
    configs: Sequence[ExperimentConfig],
    out_dir: Path,
    *,
    executor: Backend,
    device: str | None,
    progress: bool,
    retry_failed: bool,
    log: Callable[[str], None],
    together: int,
    on_finished: Callable[[ExperimentConfig, dict[str, Any]], None] | None,
) -> dict[str, dict[str, Any]]:
    """`run_suite`'s work, with the output folders locked."""
    device = device or default_device(executor)
    if hasattr(executor, "start"):  # local workers import torch while the runs are planned here
        executor.start(warm_up)
    plans = _plan(configs, Path(out_dir), executor=executor, device=device, together=together, retry_failed=retry_failed,
                  log=log)
    by_run = {run_dir: plan for plan in plans for run_dir in plan.open}  # each run's own experiment (a group may span several)
    twins: dict[str, list[tuple[_Plan, RunUnit, str]]] = {}
    for plan in plans:
        for unit, twin, digest in plan.waiting:
            twins.setdefault(twin.run_dir, []).append((plan, unit, digest))
    retrain: dict[int, list[RunUnit]] = {}  # by plan index: runs whose twin failed

    def finish(plan: _Plan) -> None:
        if plan.open or plan.aggregate is not None:
            return
        plan.aggregate = aggregate_experiment(plan.config, plan.out)
        write_json(plan.out / "aggregate.json", plan.aggregate)
        if on_finished is not None:
            on_finished(plan.config, plan.aggregate)

    def done(item: RunUnit | RunGroup, record: dict[str, Any]) -> None:
        for unit, result in item_results(item, record):
            record_result(unit, result, log)
            plan = by_run[unit.run_dir]
            plan.open.discard(unit.run_dir)
            for waiting_plan, waiting, digest in twins.pop(unit.run_dir, []):
                if result.get("status") == "completed" and reuse_run(waiting, {digest: Path(unit.run_dir)}, log):
                    waiting_plan.open.discard(waiting.run_dir)
                    finish(waiting_plan)
                else:  # the twin failed: train this run too, as run_experiment would have
                    retrain.setdefault(plans.index(waiting_plan), []).append(waiting)
            finish(plan)

    for plan in plans:
        finish(plan)  # nothing left to train
    items = [item for plan in _by_cost(plans) for item in plan.items]
    executor.execute(items, fn=execute_item, on_result=done, progress=progress, desc="suite: runs")
    if retrain:
        again = []
        for index, units in sorted(retrain.items()):
            again += plan_groups(units, together=together, keys=plans[index].keys)
            by_run.update({unit.run_dir: plans[index] for unit in units})
        executor.execute(again, fn=execute_item, on_result=done, progress=progress, desc="suite: runs")
    unfinished = {plan.config.name: sorted(plan.open) for plan in plans if plan.aggregate is None}
    if unfinished:  # every run was handed out and reported once: this is a bug, not a user error
        raise RuntimeError(f"internal error: runs never reported back: {unfinished}")
    return {plan.config.name: plan.aggregate for plan in plans}  # type: ignore[misc]


def _units(item: RunUnit | RunGroup) -> tuple[RunUnit, ...]:
    return item.units if isinstance(item, RunGroup) else (item,)


def _plan(configs: Sequence[ExperimentConfig], out: Path, *, executor: Backend, device: str, together: int,
          retry_failed: bool, log: Callable[[str], None]) -> list[_Plan]:
    """Every experiment's checks, folders, copies and groups, in order (nothing is trained).

    The runs to train are grouped over all experiments at once (`plan_groups`); a group is an item
    of the plan of its first run's experiment."""
    reuse: dict[str, Path] = {}  # finished runs on disk of the experiments before, by fingerprint digest
    trained: dict[str, RunUnit] = {}  # runs the experiments before train in this call, by fingerprint digest
    keys: Keys = {}  # group keys of every experiment's runs, by run folder
    plans = []
    owner: dict[str, _Plan] = {}  # the plan of each run to train, by run folder
    to_train: list[RunUnit] = []
    for cfg in configs:
        exp_out = out / cfg.name
        preflight(cfg, [])
        if hasattr(executor, "check_output"):
            executor.check_output(exp_out)
        units = mark_stacked(repeat_units(cfg, exp_out, {}, device=device, progress=False), together=together, keys=keys)
        check_fingerprints(units, exp_out)
        write_json(exp_out / "experiment.json", cfg.to_dict())
        plan = _Plan(cfg, exp_out, [], keys)
        train, digests = [], []
        for unit in units:
            if finished_result(Path(unit.run_dir), retry_failed) is not None or reuse_run(unit, reuse, log):
                continue
            digest = fingerprint_digest(unit_fingerprint(unit))
            twin = None if unit.save_artifacts else trained.get(digest)
            if twin is not None:
                plan.waiting.append((unit, twin, digest))
            else:
                train.append(unit)
                digests.append(digest)
            plan.open.add(unit.run_dir)
        plans.append(plan)
        owner.update((unit.run_dir, plan) for unit in train)
        to_train += train
        reuse = {**finished_runs(exp_out), **reuse}
        for unit, digest in zip(train, digests):  # twins for the later experiments only
            trained.setdefault(digest, unit)
    for item in plan_groups(to_train, together=together, keys=keys):
        owner[_units(item)[0].run_dir].items.append(item)
    return plans


def _by_cost(plans: list[_Plan]) -> list[_Plan]:
    """The plans with their items longest first, experiments with the longest items first (so
    that short runs fill the end, while finished experiments' figures are drawn)."""
    sizes: dict[tuple[str, str], int] = {}

    def cost(item: RunUnit | RunGroup) -> float:
        unit = _units(item)[0]
        spec, dataset_spec, train_cfg = resolve_unit(unit)
        key = (unit.config.name, unit.dataset)
        if key not in sizes:
            sizes[key] = int(build_data(dataset_spec, unit.config, seed=unit.seed).train_x.shape[0])
        iterations = train_cfg.epochs * math.ceil(sizes[key] / unit.config.train.batch_size)
        if train_cfg.max_iterations is not None:
            iterations = min(iterations, train_cfg.max_iterations)
        return iterations * (RESNET_COST if spec.kind == "resnet" else 1.0)

    costs = {id(item): cost(item) for plan in plans for item in plan.items}
    for plan in plans:
        plan.items.sort(key=lambda item: -costs[id(item)])
    return sorted(plans, key=lambda plan: -max((costs[id(item)] for item in plan.items), default=0.0))
