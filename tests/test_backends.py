"""Tests of the runner's backends: validation, Ray missing, and (with Ray installed) a local Ray instance of
2 CPUs whose results equal the local backend's, including after a worker is killed mid-run."""

from __future__ import annotations

import copy
import json
import sys
import tempfile
from pathlib import Path

import pytest
from test_runner import TINY as RUNNER_TINY

from anode.history import read_json
from anode.lab.cli import main
from anode.lab.experiments import ConfigError, parse_config, run_experiment
from anode.lab.experiments.backends import default_device, make_backend
from anode.lab.experiments.backends.local import LocalBackend

pytestmark = pytest.mark.usefixtures("single_thread")

TINY = {k: v for k, v in RUNNER_TINY.items() if k != "artifacts"}  # the runner tests' experiment, no artifacts


def tiny(**changes) -> dict:
    data = copy.deepcopy(TINY)
    data.update(changes)
    return data


def run(cfg, out, **kwargs):
    kwargs.setdefault("progress", False)
    kwargs.setdefault("device", "cpu")
    kwargs.setdefault("log", lambda _: None)
    return run_experiment(cfg, out, **kwargs)


def histories(out: Path) -> dict[str, list[dict]]:
    """Every run's per-iteration history (without wall times), keyed by its folder."""
    found = {}
    for path in sorted(out.glob("runs/**/history.jsonl")):
        records = [json.loads(line) for line in path.read_text().splitlines()]
        found[str(path.parent.relative_to(out))] = [{k: v for k, v in r.items() if k != "time"} for r in records]
    return found


def assert_same_histories(a: dict[str, list[dict]], b: dict[str, list[dict]]) -> None:
    assert sorted(a) == sorted(b) and a
    for key in a:
        assert len(a[key]) == len(b[key]), key
        for ra, rb in zip(a[key], b[key]):
            assert ra.keys() == rb.keys()
            for name in ra:
                assert ra[name] == pytest.approx(rb[name], abs=1e-6), (key, name)


# ----------------------------------------------------------------------------- validation (no Ray needed)


def test_unknown_backend_and_misplaced_options_fail_before_any_run(tmp_path):
    cfg = parse_config(tiny())
    with pytest.raises(ConfigError, match=r"unknown backend 'spark'; valid choices: \['local', 'ray'\]"):
        run(cfg, tmp_path / "a", backend="spark")
    with pytest.raises(ConfigError, match=r"address='auto' apply to backend 'ray' only"):
        run(cfg, tmp_path / "b", address="auto")
    with pytest.raises(ConfigError, match=r"max_retries=5 apply to backend 'ray' only"):
        make_backend("local", max_retries=5)
    with pytest.raises(ConfigError, match=r"unknown resource keys \['tpus'\]; valid keys: \['cpus', 'gpus'\]"):
        run(cfg, tmp_path / "c", backend="ray", resources={"tpus": 1})
    assert not any((tmp_path / name).exists() for name in "abc")


def test_local_backend_object_is_reused_and_default_device(tmp_path):
    cfg = parse_config(tiny(repeats=1, models=TINY["models"][:1]))
    with LocalBackend(jobs=1) as backend:
        agg = run(cfg, tmp_path / "exp", backend=backend)
        assert default_device(backend) in ("cpu", "cuda")
    assert agg["groups"][0]["completed"] == 1
    with pytest.raises(ConfigError, match="with a backend object, give them to make_backend"):
        run(cfg, tmp_path / "exp", backend=LocalBackend(), address="auto")
    with pytest.raises(ValueError, match="jobs must be a positive integer, got 0"):
        LocalBackend(jobs=0)


def test_local_workers_started_early_serve_the_runs():
    """`start` spawns the workers before any run is handed out (the suite runner calls it before
    planning); `execute` then uses those same processes. With one job it starts nothing."""
    with LocalBackend(jobs=1) as backend:
        backend.start()
        assert backend._pool is None
    with LocalBackend(jobs=2) as backend:
        backend.start()
        started = set(backend._pool._processes)
        assert len(started) == 2
        seen: list[tuple[int, int]] = []
        backend.execute([1, 2, 3], fn=abs, on_result=lambda unit, record: seen.append((unit, record)), progress=False,
                        desc="test")
        assert sorted(seen) == [(1, 1), (2, 2), (3, 3)] and set(backend._pool._processes) == started


def test_local_workers_run_one_torch_thread_each_and_the_calling_process_is_left_alone():
    """The thread policy (docs/install.md): `--jobs N` > 1 workers set one torch thread each; with one job
    the runs train in the calling process, whose setting anode does not touch."""
    import operator

    import torch

    with LocalBackend(jobs=2) as backend:
        backend.start(warm_up=torch.get_num_threads)  # a module-level function each worker runs first
        seen: list[int] = []
        backend.execute([torch.get_num_threads] * 2, fn=operator.call, on_result=lambda unit, record: seen.append(record),
                        progress=False, desc="test")
    assert seen == [1, 1]
    before = torch.get_num_threads()
    with LocalBackend(jobs=1) as backend:
        backend.execute([torch.get_num_threads], fn=operator.call, on_result=lambda unit, record: seen.append(record),
                        progress=False, desc="test")
    assert seen[-1] == before == torch.get_num_threads()


def test_ray_missing_fails_with_the_install_command(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    cfg = parse_config(tiny())
    with pytest.raises(ConfigError, match=r"backend 'ray' needs Ray.*pip install 'anode\[ray\]'"):
        run(cfg, tmp_path / "exp", backend="ray")
    assert not (tmp_path / "exp").exists()  # nothing ran, nothing written
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(tiny()))
    code = main(["experiment", str(config), "--out", str(tmp_path / "cli"), "--backend", "ray", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "pip install 'anode[ray]'" in err
    assert not (tmp_path / "cli").exists()


def test_ray_only_flags_need_backend_ray(tmp_path, capsys):
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(tiny()))
    code = main(["experiment", str(config), "--out", str(tmp_path / "o"), "--address", "auto", "--ray-gpus-per-run", "1"])
    assert code == 2
    assert "--address, --ray-gpus-per-run need --backend ray (got --backend local)" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:  # an argparse usage error
        main(["experiment", str(config), "--out", str(tmp_path / "o"), "--backend", "ray", "--ray-cpus-per-run", "-1"])
    assert exc.value.code == 2
    assert "--ray-cpus-per-run: expected a number >= 0 such as 1 or 0.5, got '-1'" in capsys.readouterr().err


def test_ray_address_without_a_cluster_names_the_fix(tmp_path, monkeypatch):
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        pytest.skip("a Ray instance is already running in this process")
    if Path(tempfile.gettempdir(), "ray", "ray_current_cluster").exists():
        pytest.skip("a cluster started by `ray start` runs on this machine: address 'auto' would join it")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with pytest.raises(ConfigError, match=r"cannot join a Ray cluster at address 'auto'.*ray start --head"):
        run(parse_config(tiny()), tmp_path / "exp", backend="ray", address="auto")
    assert not (tmp_path / "exp").exists()


def test_ray_resource_numbers_are_validated(monkeypatch):
    pytest.importorskip("ray")
    with pytest.raises(ConfigError, match="cpus_per_run must be a finite number >= 0, got -1"):
        make_backend("ray", cpus_per_run=-1)
    with pytest.raises(ConfigError, match="both 0: a run must declare some resource"):
        make_backend("ray", cpus_per_run=0, gpus_per_run=0)
    with pytest.raises(ConfigError, match="max_retries must be an integer >= 0, got -2"):
        make_backend("ray", max_retries=-2)


# ----------------------------------------------------------------------------- a local Ray instance


KILL_TARGETS = ("kill-me", "kill-no-retry")


@pytest.fixture(scope="module")
def ray_instance(tmp_path_factory):
    """A local Ray instance of 2 CPUs whose workers kill themselves once, right after the first checkpoint
    of a run whose folder contains one of KILL_TARGETS (a marker file per target: only on the first
    attempt, only once). Yields {target: marker path}."""
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        pytest.skip("a Ray instance is already running in this process")
    folder = tmp_path_factory.mktemp("ray-hook")
    markers = {target: str(folder / f"killed-{target}") for target in KILL_TARGETS}

    def kill_after_first_checkpoint() -> None:  # runs in every new worker process (pickled by value)
        import os
        import signal

        from anode.training import Trainer

        save = Trainer._save

        def save_then_die(self, out_dir, train_loader):
            save(self, out_dir, train_loader)
            for target, marker in markers.items():
                if target in str(out_dir):
                    try:
                        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                    except FileExistsError:
                        return
                    os.kill(os.getpid(), signal.SIGKILL)

        Trainer._save = save_then_die

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=str(folder / "ray"),
             runtime_env={"worker_process_setup_hook": kill_after_first_checkpoint})
    try:
        yield {target: Path(marker) for target, marker in markers.items()}
    finally:
        ray.shutdown()


def test_ray_results_equal_local_backend(ray_instance, tmp_path):
    cfg = parse_config(tiny(search={"space": {"lr": [1e-3, 1e-2]}, "epochs": 1}))
    local = run(cfg, tmp_path / "local", jobs=1)
    remote = run(cfg, tmp_path / "ray", backend="ray", jobs=2)
    assert len(histories(tmp_path / "ray")) == 8  # 2 models x (2 repeats + 2 search candidates)
    assert_same_histories(histories(tmp_path / "local"), histories(tmp_path / "ray"))
    assert read_json(tmp_path / "ray" / "runs" / "spheres-2d" / "node" / "search.json")["best"] == \
        read_json(tmp_path / "local" / "runs" / "spheres-2d" / "node" / "search.json")["best"]
    for a, b in zip(local["groups"], remote["groups"]):
        assert (a["model"], a["completed"]) == (b["model"], b["completed"])
        assert a["final_loss"]["mean"] == pytest.approx(b["final_loss"]["mean"], abs=1e-6)
    assert not list((tmp_path / "ray").glob(".anode-ray-check-*"))  # the shared-folder check cleaned up
    assert not any(marker.exists() for marker in ray_instance.values())  # no run folder matched a kill target


def test_ray_retries_a_killed_worker_and_resumes_from_its_checkpoint(ray_instance, tmp_path):
    # 3 epochs of 2 iterations; the worker of one run dies right after its epoch-1 checkpoint
    cfg = parse_config(tiny(repeats=1, train={"epochs": 3, "batch_size": 48}))
    run(cfg, tmp_path / "local", jobs=1)
    out = tmp_path / "kill-me"
    remote = run(cfg, out, backend="ray")
    assert ray_instance["kill-me"].exists()  # a worker was killed mid-run
    assert all(g["completed"] == 1 for g in remote["groups"])
    assert_same_histories(histories(tmp_path / "local"), histories(out))
    for path in out.glob("runs/**/result.json"):
        assert read_json(path)["iterations"] == 6


def test_ray_task_failing_past_its_retries_is_reported_and_retried_by_a_rerun(ray_instance, tmp_path):
    cfg = parse_config(tiny(repeats=1, models=TINY["models"][:1], train={"epochs": 2, "batch_size": 48}))
    out, lines = tmp_path / "kill-no-retry", []
    with make_backend("ray", max_retries=0) as backend:
        agg = run(cfg, out, backend=backend, log=lines.append)
    assert ray_instance["kill-no-retry"].exists()
    assert len(lines) == 1 and lines[0].startswith("[failed] spheres 2d / NODE / seed 0: Ray task failed after 0 retries")
    run_dir = out / "runs" / "spheres-2d" / "node" / "seed-0"
    failed = read_json(run_dir / "result.json")  # recorded as a failed run, with Ray's reason
    assert failed["status"] == "failed" and failed["model"] == "NODE" and "Ray task failed" in failed["reason"]
    assert (run_dir / "checkpoint.pt").is_file() and agg["groups"][0]["failed"] == 1
    assert run(cfg, out, backend="ray")["groups"][0]["failed"] == 1  # a plain rerun keeps it
    again = run(cfg, out, backend="ray", retry_failed=True)  # retried: resumes from its checkpoint
    assert again["groups"][0]["completed"] == 1
    assert read_json(run_dir / "result.json")["iterations"] == 4


def test_cli_experiment_on_ray(ray_instance, tmp_path, capsys):
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(tiny(repeats=1)))
    code = main(["experiment", str(config), "--out", str(tmp_path / "exp"), "--backend", "ray", "--ray-cpus-per-run", "1",
                 "--no-figures", "--no-progress"])
    assert code == 0 and f"results in {tmp_path / 'exp'}" in capsys.readouterr().out
    assert [g["completed"] for g in read_json(tmp_path / "exp" / "aggregate.json")["groups"]] == [1, 1]


def test_shared_folder_probe_reads_the_marker_and_answers(tmp_path):
    from anode.lab.experiments.backends.ray import _probe_folder

    (tmp_path / "marker").write_text("token")
    answer = _probe_folder(str(tmp_path), "marker", "token")
    assert answer["ok"] and (tmp_path / answer["reply"]).read_text() == "token"
    missing = _probe_folder(str(tmp_path / "elsewhere"), "marker", "token")
    assert not missing["ok"] and "cannot read" in missing["why"]
    other = _probe_folder(str(tmp_path), "marker", "another token")
    assert not other["ok"] and "other content than the driver wrote" in other["why"]


class _Stop(Exception):
    """Raised by a stand-in run_experiment once it has seen its arguments."""


def test_reproduce_passes_the_backend_through(ray_instance, tmp_path, monkeypatch):
    import anode.lab.reproduce.images as ri
    import anode.lab.reproduce.toy as rt
    from anode.lab.experiments.backends.ray import RayBackend

    seen = []

    def fake_run_experiment(cfg, out, **kwargs):
        seen.append(kwargs)
        raise _Stop

    def fake_run_suite(configs, out, **kwargs):
        seen.append(kwargs)
        raise _Stop

    monkeypatch.setattr(rt, "run_suite", fake_run_suite)
    with pytest.raises(_Stop):
        rt.reproduce_toy(tmp_path / "toy", budget="smoke", backend="ray", resources={"cpus": 1}, progress=False)
    assert isinstance(seen[-1]["executor"], RayBackend)  # one Ray backend object for the whole suite
    monkeypatch.setattr(ri, "run_experiment", fake_run_experiment)
    monkeypatch.setattr(ri, "build_data", lambda *a, **k: None)
    with pytest.raises(_Stop):
        ri.reproduce_images(tmp_path / "img", dataset="idx", data_dir=str(tmp_path), budget="smoke", backend="ray",
                            address="auto", resources={"gpus": 1}, progress=False)
    assert (seen[-1]["backend"], seen[-1]["address"], seen[-1]["resources"]) == ("ray", "auto", {"gpus": 1})
    assert seen[-1]["device"] == "cuda"  # ray tasks that declare GPUs run on CUDA
