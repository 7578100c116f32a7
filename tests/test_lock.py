"""One writer per output folder: a live holder in another process refuses at once (naming it), a
lock left by a killed process is taken over, and the lock is re-entrant within a process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from anode.lab.experiments import parse_config, run_experiment
from anode.lab.experiments.lock import LOCK_FILE, OutputLocked, holds_lock, lock_holder, output_lock
from anode.lab.experiments.runner import move_aside
from anode.lab.experiments.schema import ConfigError

pytestmark = pytest.mark.usefixtures("single_thread")

HOLDER = textwrap.dedent("""
    import sys
    from anode.lab.experiments.lock import output_lock
    with output_lock(sys.argv[1], command="anode experiment holder"):
        print("locked", flush=True)
        sys.stdin.read()  # hold until the test closes stdin
""")

TINY = {
    "name": "tiny", "seed": 0, "repeats": 1, "train": {"epochs": 1, "batch_size": 32, "max_iterations": 1},
    "datasets": [{"kind": "spheres", "name": "spheres 2d", "dim": 2, "num_points_inner": 10, "num_points_outer": 20}],
    "models": [{"name": "NODE", "kind": "odenet", "hidden_dim": 4}],
}


@pytest.fixture
def holder(tmp_path):
    """Another process holding `tmp_path / "out"`'s lock."""
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        yield out, proc
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)


def test_a_second_process_is_refused_at_once_naming_the_first(holder) -> None:
    out, proc = holder
    started = time.perf_counter()
    with pytest.raises(OutputLocked, match=rf"pid {proc.pid} on host {socket.gethostname()}.*anode experiment holder"):
        with output_lock(out, command="second"):
            pass
    assert time.perf_counter() - started < 2
    assert issubclass(OutputLocked, ConfigError)  # the CLI maps ConfigError to exit status 2
    with pytest.raises(OutputLocked, match=rf"pid {proc.pid}"):  # before any preflight or training
        run_experiment(parse_config(TINY), out, jobs=1, device="cpu", progress=False, log=lambda _: None)
    assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE]  # nothing written
    (out / "experiment.json").write_text("{}")  # as the holder would have written
    with pytest.raises(OutputLocked, match=rf"pid {proc.pid}"):  # --fresh (or `anode reproduce toy --fresh`)
        move_aside(out)
    assert (out / "experiment.json").exists()
    assert lock_holder(out)["pid"] == proc.pid


def test_the_lock_is_released_when_the_holder_ends(holder) -> None:
    out, proc = holder
    proc.stdin.close()
    proc.wait(timeout=30)
    assert not (out / LOCK_FILE).exists()
    with output_lock(out, command="next") as path:
        assert json.loads(path.read_text())["pid"] == os.getpid()
    assert not path.exists()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_stale_lock_of_a_killed_process_is_taken_over(tmp_path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    stale = {"pid": _dead_pid(), "host": socket.gethostname(), "command": "anode experiment killed",
             "started": "2026-01-01T00:00:00", "token": "old"}
    (out / LOCK_FILE).write_text(json.dumps(stale))
    lines: list[str] = []
    with output_lock(out, command="mine", log=lines.append) as path:
        assert json.loads(path.read_text())["pid"] == os.getpid()
    assert len(lines) == 1 and f"pid {stale['pid']}" in lines[0] and "taking over" in lines[0]
    assert not (out / LOCK_FILE).exists()
    assert sorted(p.name for p in out.iterdir()) == []  # no debris


def test_unreadable_lock_is_taken_over_and_other_hosts_are_refused(tmp_path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / LOCK_FILE).write_text("")
    lines: list[str] = []
    with output_lock(out, log=lines.append):
        pass
    assert "unreadable" in lines[0]
    other = {"pid": 1, "host": "another-machine", "command": "anode reproduce toy", "started": "now", "token": "x"}
    (out / LOCK_FILE).write_text(json.dumps(other))
    with pytest.raises(OutputLocked, match=rf"another-machine.*delete {out / LOCK_FILE}"):
        with output_lock(out):
            pass


def test_reentrant_within_a_process(tmp_path) -> None:
    out = tmp_path / "out"
    with output_lock(out, command="outer") as path:
        token = json.loads(path.read_text())["token"]
        with output_lock(out, command="inner"):
            assert holds_lock(out)
            assert json.loads(path.read_text())["token"] == token
        assert path.exists() and holds_lock(out)
        agg = run_experiment(parse_config(TINY), out, jobs=1, device="cpu", progress=False, log=lambda _: None)
        assert agg["runs_finished"] == 1 and path.exists()
        moved = run_experiment(parse_config(TINY), out, jobs=1, device="cpu", progress=False, log=lambda _: None,
                               fresh=True)
        assert moved["runs_finished"] == 1 and path.exists()  # --fresh moved the rest aside, not the lock
        old = [p for p in tmp_path.iterdir() if p.name.startswith("out.old-")]
        assert len(old) == 1 and not (old[0] / LOCK_FILE).exists() and (old[0] / "aggregate.json").exists()
    assert not path.exists() and not holds_lock(out)
