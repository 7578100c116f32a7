"""Tests of anode.lab.experiments.suite: several experiments as one schedule equal them run one after another."""

from __future__ import annotations

import copy
import json

import pytest
from test_runner import TINY, run

from anode.history import read_json
from anode.lab.experiments import ConfigError, parse_config
from anode.lab.experiments.backends.local import LocalBackend
from anode.lab.experiments.runner import finished_runs
from anode.lab.experiments.suite import run_suite

pytestmark = pytest.mark.usefixtures("single_thread")

TIMING = ("wall_time", "total_time", "elapsed", "time", "seconds_per_iteration", "reused_from", "run_dir", "started", "finished")


def _configs(**solver):
    first = copy.deepcopy(TINY)
    first.update(name="first", train={"epochs": 2, "batch_size": 32}, solver=solver)
    second = copy.deepcopy(TINY)
    second.update(name="second", train={"epochs": 2, "batch_size": 32}, solver=solver,
                  models=[TINY["models"][0], {"name": "NODE wide", "kind": "odenet", "hidden_dim": 12}])
    return [parse_config(first), parse_config(second)]


def _suite(configs, out, **kwargs):
    with LocalBackend(jobs=1) as executor:
        return run_suite(configs, out, executor=executor, device="cpu", **kwargs)


def _results(root):
    return {path.relative_to(root).as_posix(): read_json(path) for path in sorted(root.glob("*/runs/*/*/seed-*/result.json"))}


def _numbers(result):
    return {k: v for k, v in result.items() if k not in TIMING and k != "trained_together"}


def _history(result_path):
    """A run's per-iteration records without their timings."""
    lines = (result_path.parent / "history.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in lines]


def test_a_suite_equals_its_experiments_run_one_after_another(tmp_path):
    configs = _configs()
    sequential_log: list[str] = []
    reuse = {}
    for cfg in configs:
        run(cfg, tmp_path / "one-by-one" / cfg.name, together=8, reuse=reuse, log=sequential_log.append)
        reuse = {**finished_runs(tmp_path / "one-by-one" / cfg.name), **reuse}
    suite_log: list[str] = []
    finished: list[str] = []
    aggregates = _suite(configs, tmp_path / "suite", together=8, log=suite_log.append,
                        on_finished=lambda cfg, agg: finished.append(cfg.name))

    one_by_one, suite = _results(tmp_path / "one-by-one"), _results(tmp_path / "suite")
    assert one_by_one.keys() == suite.keys() and len(suite) == 8
    for name in suite:  # the same runs, the same numbers (runs are seeded), to the last bit
        assert _numbers(suite[name]) == _numbers(one_by_one[name]), name
        assert ("reused_from" in suite[name]) == ("reused_from" in one_by_one[name]), name
        assert _history(tmp_path / "suite" / name) == _history(tmp_path / "one-by-one" / name), name
    # ... though second's NODE seed 0 (it saves artifacts, so it is no copy of first's) trains in
    # first's NODE group: groups span experiments.
    together = {name: result["trained_together"] for name, result in suite.items() if "reused_from" not in result}
    assert together["second/runs/spheres-2d/node/seed-0/result.json"] == together["first/runs/spheres-2d/node/seed-0/result.json"] == 3
    assert one_by_one["first/runs/spheres-2d/node/seed-0/result.json"]["trained_together"] == 2
    copied = suite["second/runs/spheres-2d/node/seed-1/result.json"]
    assert copied["reused_from"] == str(tmp_path / "suite" / "first" / "runs" / "spheres-2d" / "node" / "seed-1")
    assert [line for line in suite_log if line.startswith("[reused]")] == [
        line.replace("one-by-one", "suite") for line in sequential_log if line.startswith("[reused]")]
    assert len([line for line in suite_log if line.startswith("[done]")]) == 7  # 8 runs, 1 copied
    assert sorted(finished) == ["first", "second"] and list(aggregates) == ["first", "second"]
    for cfg in configs:
        assert aggregates[cfg.name] == read_json(tmp_path / "suite" / cfg.name / "aggregate.json")

    # Rerun: everything is finished, nothing trains, every experiment is aggregated again.
    again: list[str] = []
    rerun_log: list[str] = []
    _suite(configs, tmp_path / "suite", together=8, log=rerun_log.append, on_finished=lambda cfg, agg: again.append(cfg.name))
    assert rerun_log == [] and sorted(again) == ["first", "second"]


def test_experiments_are_aggregated_as_soon_as_their_runs_end(tmp_path):
    events: list[str] = []
    _suite(_configs(), tmp_path, together=8, log=events.append, on_finished=lambda cfg, agg: events.append(f"finished {cfg.name}"))
    first_finished = min(i for i, e in enumerate(events) if e.startswith("finished"))
    last_run = max(i for i, e in enumerate(events) if e.startswith(("[done]", "[failed]")))
    assert first_finished < last_run  # the first experiment's figures can be drawn while the other trains


def test_a_run_whose_twin_failed_is_trained_itself(tmp_path):
    """When the earlier experiment's identical run fails, the later one trains (as run_experiment would)."""
    log: list[str] = []
    _suite(_configs(max_num_steps=1), tmp_path, together=8, log=log.append)
    result = read_json(tmp_path / "second" / "runs" / "spheres-2d" / "node" / "seed-1" / "result.json")
    assert result["status"] == "failed" and "reused_from" not in result
    assert not any(line.startswith("[reused]") for line in log)
    assert sum(line.startswith("[failed] spheres 2d / NODE / seed 1") for line in log) == 2  # trained in both


def test_a_suite_refuses_experiments_with_a_search(tmp_path):
    data = copy.deepcopy(TINY)
    data["search"] = {"space": {"lr": [1e-3, 1e-2]}}
    cfg = parse_config(data)
    with pytest.raises(ConfigError, match="without a search"):
        _suite([cfg], tmp_path)
