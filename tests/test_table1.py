"""Tests of anode.lab.table1: Table 1 accumulated run by run (planning, accumulation, refusal to mix, report, packing),
on a tiny stand-in for the GPU protocol (random IDX images, 4/3-filter models, one short epoch)."""

from __future__ import annotations

import json
import re
import tarfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pytest
import torch
from test_reproduce_images import write_idx

from anode.lab.claims import TOO_FEW
from anode.lab.experiments import FingerprintMismatch
from anode.lab.table1 import (
    ALLOWANCE,
    MARGIN,
    PlannedRun,
    WallClock,
    pack_results,
    plan_runs,
    probe_seconds_per_epoch,
    run_table1,
    runs_in_progress,
    seconds_per_epoch,
    table1_config,
    write_table1_report,
)
from anode.training import CHECKPOINT_FORMAT, load_checkpoint

pytestmark = pytest.mark.usefixtures("single_thread")

TINY = """name = "idx"
seed = 0
repeats = 3
[train]
epochs = {epochs}
lr = 1e-3
batch_size = 16
loss = "cross_entropy"
max_iterations = 2
[solver]
method = "dopri5"
[[datasets]]
kind = "image"
name = "idx"
dataset = "idx"
data_dir = "{data}"
train_subset = 32
test_subset = 32
[[models]]
name = "NODE"
role = "baseline"
kind = "convodenet"
hidden_dim = 4
time_dependent = false
[[models]]
name = "ANODE (p=5)"
role = "augmented"
kind = "convodenet"
hidden_dim = 3
augment_dim = 5
time_dependent = false
"""


@pytest.fixture
def tiny(tmp_path):
    data = write_idx(tmp_path / "data")

    def write(epochs: int = 1) -> Path:
        path = tmp_path / f"tiny-{epochs}.toml"
        path.write_text(TINY.format(epochs=epochs, data=data))
        return path

    return write


def test_plan_alternates_the_sides_and_keeps_runs_whole(tiny, tmp_path):
    cfg = table1_config("idx", config=tiny())
    timing = {"NODE": 96.0, "ANODE (p=5)": 48.0}  # planned seconds per epoch; one epoch a run
    plan = plan_runs(cfg, tmp_path / "none", seconds=250, seconds_per_epoch=timing)
    assert plan == [PlannedRun("ANODE (p=5)", 0, 48.0), PlannedRun("NODE", 0, 96.0), PlannedRun("ANODE (p=5)", 1, 48.0),
                    PlannedRun("ANODE (p=5)", 2, 48.0)]  # NODE's second run (96 s) no longer fits the 58 s left
    assert plan_runs(cfg, tmp_path / "none", seconds=40, seconds_per_epoch=timing) == []
    with pytest.raises(ValueError, match=r"no time estimate for \['NODE'\]"):
        plan_runs(cfg, tmp_path / "none", seconds=100, seconds_per_epoch={"ANODE (p=5)": 1.0})
    with pytest.raises(ValueError, match=r"seconds per epoch must be positive numbers, got \{'NODE': 0\.0\}"):
        plan_runs(cfg, tmp_path / "none", seconds=100, seconds_per_epoch={**timing, "NODE": 0.0})


def test_plan_continues_the_run_in_progress_and_ends_with_a_partial_run(tiny, tmp_path):
    cfg = table1_config("idx", config=tiny(epochs=10))
    timing = {"NODE": 10.0, "ANODE (p=5)": 5.0}  # a whole run: 100 s / 50 s
    plan = plan_runs(cfg, tmp_path / "none", seconds=180, seconds_per_epoch=timing)
    assert plan == [PlannedRun("ANODE (p=5)", 0, 50.0), PlannedRun("NODE", 0, 100.0),
                    PlannedRun("ANODE (p=5)", 1, 30.0, partial=True)]  # 6 of its 10 epochs fit the 30 s left
    assert plan_runs(cfg, tmp_path / "none", seconds=180, seconds_per_epoch=timing, partial=False) == plan[:2]
    slow = {"NODE": 30.0, "ANODE (p=5)": 30.0}
    assert plan_runs(cfg, tmp_path / "none", seconds=59, seconds_per_epoch=slow) == []  # < 2 epochs of a partial run

    # NODE repeat 0 stopped at epoch 7 in an earlier window: it goes first, with its 3 remaining epochs
    run_dir = tmp_path / "exp" / "runs" / "idx" / "node" / "seed-0"
    run_dir.mkdir(parents=True)
    torch.save({"format": CHECKPOINT_FORMAT, "epoch": 7}, run_dir / "checkpoint.pt")
    assert runs_in_progress(tmp_path / "exp", cfg) == [("NODE", 0, 7)]
    plan = plan_runs(cfg, tmp_path / "exp", seconds=100, seconds_per_epoch=timing)
    assert plan == [PlannedRun("NODE", 0, 30.0, start_epoch=7), PlannedRun("ANODE (p=5)", 0, 50.0),
                    PlannedRun("ANODE (p=5)", 1, 20.0, partial=True)]
    # too little time to finish it: it continues as the partial run, before any other
    assert plan_runs(cfg, tmp_path / "exp", seconds=25, seconds_per_epoch=timing) == [
        PlannedRun("NODE", 0, 25.0, start_epoch=7, partial=True)]


def test_results_accumulate_window_by_window(tiny, tmp_path):
    results = tmp_path / "table1"
    timing = {"NODE": 16.0, "ANODE (p=5)": 16.0}
    quiet = {"config": tiny(), "device": "cpu", "timing": timing, "log": lambda _: None, "clock": TestClock()}

    first = run_table1("idx", results_dir=results, minutes=0.75, **quiet)  # 45 s: two runs of 16 s, 13 s to spare
    assert [(p["model"], p["repeat"]) for p in first["planned"]] == [("ANODE (p=5)", 0), ("NODE", 0)]
    assert first["aggregate"]["runs_finished"] == 2
    report = (results / "idx" / "report.md").read_text()
    assert "(1 of 3; no std from one run)" in report and TOO_FEW in report  # one repeat a side: no verdict, no spread
    result = json.loads((results / "idx" / "runs" / "idx" / "node" / "seed-0" / "result.json").read_text())
    assert result["machine"] and result["anode_version"] and "fingerprint" in result
    assert result["segments"] == 1 and 0 < result["elapsed"] <= result["wall_time"]
    estimates = seconds_per_epoch(results / "idx", table1_config("idx", config=tiny()))
    assert estimates["NODE"] == result["elapsed"]  # one epoch; run_table1 plans it x MARGIN, a probe x ALLOWANCE
    assert MARGIN < ALLOWANCE
    path = results / "idx" / "runs" / "idx" / "node" / "seed-0" / "result.json"
    path.write_text(json.dumps({**result, "segments": 2}))  # as if it had been resumed once
    report = write_table1_report(results, cfg=table1_config("idx", config=tiny()), dataset="idx").read_text()
    assert "Trained in more than one window (resumed from a checkpoint): NODE repeat 0 (2 segments)." in report
    path.write_text(json.dumps(result))

    second = run_table1("idx", results_dir=results, minutes=10, **quiet)
    assert sorted((p["model"], p["repeat"]) for p in second["planned"]) == [
        ("ANODE (p=5)", 1), ("ANODE (p=5)", 2), ("NODE", 1), ("NODE", 2)]  # the finished ones are not redone
    assert second["aggregate"]["runs_finished"] == 6
    assert "(3 of 3)" in (results / "idx" / "report.md").read_text()
    index = (results / "README.md").read_text()
    assert "| idx |" in index and "(3 of 3)" in index
    third = run_table1("idx", results_dir=results, minutes=10, **quiet)
    assert third["planned"] == []

    # a different protocol never mixes with the finished runs
    with pytest.raises(FingerprintMismatch, match=r"train\.epochs: 1 -> 2"):
        run_table1("idx", results_dir=results, minutes=10, **{**quiet, "config": tiny(epochs=2)})


def test_pack_keeps_finished_runs_and_the_checkpoint_of_a_run_in_progress(tiny, tmp_path):
    results = tmp_path / "table1"
    run_table1("idx", results_dir=results, minutes=0.3, config=tiny(), device="cpu",
               timing={"NODE": 16.0, "ANODE (p=5)": 16.0}, log=lambda _: None, clock=TestClock())
    assert (results / "idx" / "runs" / "idx" / "anode-p-5" / "seed-0" / "checkpoint.pt").exists()
    cut = results / "idx" / "runs" / "idx" / "node" / "seed-1"  # cut off before its first checkpoint: nothing to resume
    cut.mkdir(parents=True)
    (cut / "history.jsonl").write_text("{}\n")
    going = results / "idx" / "runs" / "idx" / "node" / "seed-2"  # cut off after a checkpoint: resumes next time
    going.mkdir(parents=True)
    (going / "checkpoint.pt").write_bytes(b"x")
    (going / "checkpoint.pt.tmp").write_bytes(b"half-written")
    (going / "fingerprint.json").write_text("{}")
    packed = pack_results(results, tmp_path / "pack.tgz")
    assert "table1/idx/runs/idx/anode-p-5/seed-0/result.json" in packed
    assert "table1/idx/runs/idx/anode-p-5/seed-0/history.jsonl" in packed
    assert sorted(p for p in packed if "seed-2" in p) == ["table1/idx/runs/idx/node/seed-2/checkpoint.pt",
                                                          "table1/idx/runs/idx/node/seed-2/fingerprint.json"]
    assert not any("seed-1" in p or p.endswith("report.html") for p in packed)
    assert [p for p in packed if p.endswith(".pt")] == ["table1/idx/runs/idx/node/seed-2/checkpoint.pt"]
    assert "table1/idx/report.md" in packed and "table1/README.md" in packed
    with tarfile.open(tmp_path / "pack.tgz") as tar:
        assert sorted(tar.getnames()) == sorted(packed)


PARTIAL = TINY.replace("max_iterations = 2\n", "eval_every = 100000\n")


class TestClock:
    """A window's clock for tests: time stands still except where the window waits for its child process.
    The window's wait ends once the child has checkpointed an epoch in `run_dir` (or has ended), however long
    the machine takes, and then counts as the whole wait; the wait after the stop request joins the child
    (up to `limit` real seconds) and counts as 1 s."""

    __test__ = False  # not a test class

    def __init__(self, run_dir: Path | None = None, *, limit: float = 600.0) -> None:
        self.run_dir, self.limit, self.time, self.window_over = run_dir, limit, 1000.0, False

    def now(self) -> float:
        return self.time

    def _trained_an_epoch(self) -> bool:
        path = self.run_dir / "checkpoint.pt" if self.run_dir is not None else None
        return path is not None and path.exists() and load_checkpoint(path)["epoch"] >= 1

    def wait(self, proc, seconds: float) -> None:
        give_up = time.monotonic() + self.limit
        if not self.window_over:
            while proc.is_alive() and not self._trained_an_epoch() and time.monotonic() < give_up:
                proc.join(timeout=0.2)
            self.window_over = True
            self.time += seconds if proc.is_alive() else 0.0
            return
        proc.join(timeout=self.limit)
        self.time += 1.0


def _partial_run_window(tiny, tmp_path, *, clock, stopped: str) -> None:
    """One Table 1 window whose time fits no whole run: one partial run in a child process, stopped at the
    window's end; its last checkpoint is where the next window continues it (reported as in progress).
    `stopped` is the pattern of the log line that says when it was asked to stop and when it ended."""
    data = tmp_path / "data"
    tiny()  # writes the IDX data
    config = tmp_path / "long.toml"
    config.write_text(PARTIAL.format(epochs=100000, data=data))  # far more epochs than the window allows
    results, log = tmp_path / "table1", []
    run_dir = results / "idx" / "runs" / "idx" / "anode-p-5" / "seed-0"
    out = run_table1("idx", results_dir=results, minutes=8 / 60, config=config, device="cpu",
                     timing={"NODE": 1.0, "ANODE (p=5)": 1.0}, log=log.append, clock=clock(run_dir))
    assert [(p["model"], p["repeat"], p["partial"]) for p in out["planned"]] == [("ANODE (p=5)", 0, True)]
    cfg = table1_config("idx", config=config)
    [(model, repeat, done)] = runs_in_progress(results / "idx", cfg)
    assert (model, repeat) == ("ANODE (p=5)", 0) and 0 < done < 100000
    # asked to stop (SIGTERM) a quarter of its 8 s before the deadline: it checkpointed where it stood and ended
    assert any(re.search(rf"{stopped}, at epoch {done} of 100000", line) for line in log), log
    assert not (run_dir / "result.json").exists() and load_checkpoint(run_dir / "checkpoint.pt")["segments"] == 1
    assert f"ANODE (p=5) repeat 0 at epoch {done} of 100000" in (results / "idx" / "report.md").read_text()
    assert plan_runs(cfg, results / "idx", seconds=5, seconds_per_epoch={"NODE": 1.0, "ANODE (p=5)": 1.0}) == [
        PlannedRun("ANODE (p=5)", 0, 5.0, start_epoch=done, partial=True)]
    # the next window plans ANODE from its run in progress and probes only NODE, which has no run yet
    state = load_checkpoint(run_dir / "checkpoint.pt")
    position = state["epoch_position"]  # batches into the next epoch when the stop came mid-epoch (2 an epoch here)
    assert 0 <= position < 2 and state["iteration"] == 2 * done + position
    assert seconds_per_epoch(results / "idx", cfg) == pytest.approx({"ANODE (p=5)": state["elapsed"] / (done + position / 2)})
    assert list(probe_seconds_per_epoch(cfg, device="cpu", iterations=1, models=["NODE"])) == ["NODE"]


def test_a_partial_run_stops_at_the_windows_end_and_the_next_window_resumes_it(tiny, tmp_path):
    """On a test clock whose window ends once the child has trained an epoch, however long the machine takes
    (a loaded machine only makes the test slower)."""
    _partial_run_window(tiny, tmp_path, clock=TestClock,
                        stopped="asked to stop after 6 s as planned, checkpointed and ended after 7 s")


@pytest.mark.slow
def test_a_partial_run_stops_on_wall_clock_time(tiny, tmp_path):
    """On the real clock (an idle machine: it needs a whole epoch inside an 8-second window)."""
    _partial_run_window(tiny, tmp_path, clock=lambda run_dir: WallClock(),
                        stopped="asked to stop after [56] s as planned, checkpointed and ended after [5-9] s")


def test_minutes_must_be_positive(tiny, tmp_path):
    with pytest.raises(ValueError, match="minutes must be a positive number, got 0"):
        run_table1("idx", results_dir=tmp_path, minutes=0, config=tiny(), device="cpu", log=lambda _: None)


@pytest.mark.slow
def test_device_script_end_to_end_on_cpu(tiny, tmp_path):
    """tools/device_table1.sh with the tiny stand-in: probe, plan, train, report and pack within its limit."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "LIMIT": "150", "RESERVE": "20", "DATA": str(tmp_path / "data"), "DATASETS": "idx",
           "RESULTS": str(tmp_path / "res"), "OUT": str(tmp_path / "out"), "CONFIG": str(tiny()), "DEVICE": "cpu",
           "OMP_NUM_THREADS": "1", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    done = subprocess.run(["bash", "tools/device_table1.sh"], cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "probe:" in done.stdout and "files packed" in done.stdout
    with tarfile.open(tmp_path / "out" / "table1.tgz") as tar:
        names = tar.getnames()
    assert "res/idx/report.md" in names and any(n.endswith("seed-0/result.json") for n in names)
