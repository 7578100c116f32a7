"""Tests of anode.table1: Table 1 accumulated run by run (planning, accumulation, refusal to mix, report, packing),
on a tiny stand-in for the GPU protocol (random IDX images, 4/3-filter models, one short epoch)."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pytest

from anode.claims import TOO_FEW
from anode.experiments import FingerprintMismatch
from anode.table1 import PlannedRun, pack_finished, plan_runs, run_table1, table1_config

from test_reproduce_images import write_idx

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
    timing = {"NODE": 60.0, "ANODE (p=5)": 30.0}  # seconds per epoch; one epoch; allowance 1.6 -> 96 s / 48 s
    plan = plan_runs(cfg, tmp_path / "none", seconds=250, seconds_per_epoch=timing)
    assert plan == [PlannedRun("ANODE (p=5)", 0, 48.0), PlannedRun("NODE", 0, 96.0), PlannedRun("ANODE (p=5)", 1, 48.0),
                    PlannedRun("ANODE (p=5)", 2, 48.0)]  # NODE's second run (96 s) no longer fits the 58 s left
    assert plan_runs(cfg, tmp_path / "none", seconds=40, seconds_per_epoch=timing) == []
    with pytest.raises(ValueError, match=r"no time estimate for \['NODE'\]"):
        plan_runs(cfg, tmp_path / "none", seconds=100, seconds_per_epoch={"ANODE (p=5)": 1.0})
    with pytest.raises(ValueError, match="allowance must be a positive number"):
        plan_runs(cfg, tmp_path / "none", seconds=100, seconds_per_epoch=timing, allowance=0)


def test_results_accumulate_window_by_window(tiny, tmp_path):
    results = tmp_path / "table1"
    timing = {"NODE": 10.0, "ANODE (p=5)": 10.0}
    quiet = {"config": tiny(), "device": "cpu", "timing": timing, "log": lambda _: None}

    first = run_table1("idx", results_dir=results, minutes=0.6, **quiet)  # 36 s: two runs of 16 s
    assert [(p["model"], p["repeat"]) for p in first["planned"]] == [("ANODE (p=5)", 0), ("NODE", 0)]
    assert first["aggregate"]["runs_finished"] == 2
    report = (results / "idx" / "report.md").read_text()
    assert "(1 of 3)" in report and TOO_FEW in report  # one repeat a side: no verdict yet
    result = json.loads((results / "idx" / "runs" / "idx" / "node" / "seed-0" / "result.json").read_text())
    assert result["machine"] and result["anode_version"] and "fingerprint" in result

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


def test_pack_keeps_finished_runs_only(tiny, tmp_path):
    results = tmp_path / "table1"
    run_table1("idx", results_dir=results, minutes=0.3, config=tiny(), device="cpu",
               timing={"NODE": 10.0, "ANODE (p=5)": 10.0}, log=lambda _: None)
    cut = results / "idx" / "runs" / "idx" / "node" / "seed-1"  # a run cut off by the time limit
    cut.mkdir(parents=True)
    (cut / "history.jsonl").write_text("{}\n")
    packed = pack_finished(results, tmp_path / "pack.tgz")
    assert "table1/idx/runs/idx/anode-p-5/seed-0/result.json" in packed
    assert "table1/idx/runs/idx/anode-p-5/seed-0/history.jsonl" in packed
    assert not any("seed-1" in p or p.endswith(".pt") or p.endswith("report.html") for p in packed)
    assert "table1/idx/report.md" in packed and "table1/README.md" in packed
    with tarfile.open(tmp_path / "pack.tgz") as tar:
        assert sorted(tar.getnames()) == sorted(packed)


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
