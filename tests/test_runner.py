"""Tests of anode.lab.experiments.run_experiment (layout, aggregates, artifacts, resume, failures, search) and figures."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
from matplotlib.figure import Figure

import anode
import anode.lab.experiments
import anode.lab.experiments.runner as runner_mod
from anode.history import read_json
from anode.lab.experiments import ConfigError, FingerprintMismatch, aggregate_experiment, load_histories, parse_config, run_experiment
from anode.lab.experiments.figures import experiment_figures, load_experiment, read_artifacts, save_experiment_figures
from anode.lab.experiments.fingerprint import diff_fingerprints, fingerprint_digest, run_fingerprint

pytestmark = pytest.mark.usefixtures("single_thread")

TINY = {
    "name": "tiny",
    "seed": 0,
    "repeats": 2,
    "train": {"epochs": 1, "batch_size": 32, "max_iterations": 3},
    "datasets": [{"kind": "spheres", "name": "spheres 2d", "dim": 2, "num_points_inner": 30, "num_points_outer": 60}],
    "models": [{"name": "NODE", "kind": "odenet", "hidden_dim": 8},
               {"name": "ANODE (p=1)", "kind": "odenet", "hidden_dim": 8, "augment_dim": 1}],
    "artifacts": {"trajectories": 5, "timesteps": 4, "feature_snapshots": 2, "input_map": 6},
}
RUN_FILES = ("history.jsonl", "epochs.json", "summary.json", "result.json", "checkpoint.pt")
MODELS = {"NODE": "node", "ANODE (p=1)": "anode-p-1"}


def tiny(**changes) -> dict:
    data = copy.deepcopy(TINY)
    data.update(changes)
    return data


def run(cfg, out, **kwargs):
    kwargs.setdefault("progress", False)
    kwargs.setdefault("jobs", 1)
    kwargs.setdefault("device", "cpu")
    kwargs.setdefault("log", lambda _: None)
    return run_experiment(cfg, out, **kwargs)




@pytest.fixture(scope="module")
def tiny_exp(tmp_path_factory):
    """The tiny experiment run once: (config, directory, aggregate)."""
    cfg = parse_config(TINY)
    out = tmp_path_factory.mktemp("tiny") / "exp"
    agg = run(cfg, out)
    return cfg, out, agg


def seed_dirs(out: Path, model_slug: str) -> list[Path]:
    return sorted((out / "runs" / "spheres-2d" / model_slug).glob("seed-*"))


# ----------------------------------------------------------------------------- layout and aggregate


def test_layout(tiny_exp):
    cfg, out, _ = tiny_exp
    assert load_experiment(out) == cfg  # experiment.json holds the resolved config
    assert (out / "aggregate.json").is_file()
    for model_slug in MODELS.values():
        dirs = seed_dirs(out, model_slug)
        assert [d.name for d in dirs] == ["seed-0", "seed-1"]
        for d in dirs:
            for name in RUN_FILES:
                assert (d / name).is_file(), d / name
            result = read_json(d / "result.json")
            assert result["status"] == "completed" and result["reason"] is None and result["error_type"] is None
            assert result["iterations"] == 3 and result["repeat"] == int(d.name[-1])
            assert len((d / "history.jsonl").read_text().splitlines()) == 3
            ckpt = anode.load_checkpoint(d / "checkpoint.pt")
            assert ckpt["iteration"] == 3


def test_aggregate_is_mean_and_std_over_the_repeats(tiny_exp):
    cfg, out, agg = tiny_exp
    assert read_json(out / "aggregate.json") == agg
    assert agg["experiment"] == "tiny" and agg["repeats"] == 2
    assert [(g["dataset"], g["model"]) for g in agg["groups"]] == [("spheres 2d", "NODE"), ("spheres 2d", "ANODE (p=1)")]
    for group in agg["groups"]:
        losses = [read_json(d / "result.json")["final_loss"] for d in seed_dirs(out, MODELS[group["model"]])]
        assert group["completed"] == 2 and group["failed"] == 0 and group["failures"] == []
        assert group["final_loss"]["n"] == 2
        assert group["final_loss"]["mean"] == pytest.approx(statistics.mean(losses))
        assert group["final_loss"]["std"] == pytest.approx(statistics.stdev(losses))
        assert group["final_nfe_forward"]["mean"] > 0
        assert group["eval_loss"] == {"mean": None, "std": None, "n": 0}  # no held-out data
    params = {g["model"]: g["num_parameters"]["mean"] for g in agg["groups"]}
    assert params["ANODE (p=1)"] > params["NODE"]
    assert aggregate_experiment(cfg, out) == agg  # recomputable from the files


def test_repeats_differ_and_are_reproducible(tiny_exp, tmp_path):
    _cfg, out, _ = tiny_exp
    h0, h1 = load_histories(out, "spheres 2d", "NODE")
    assert not np.array_equal(h0.array("loss"), h1.array("loss"))  # different seeds
    one = parse_config(tiny(repeats=1, models=TINY["models"][:1], artifacts={}))
    run(one, tmp_path / "again")
    (again,) = load_histories(tmp_path / "again", "spheres 2d", "NODE")
    np.testing.assert_array_equal(again.array("loss"), h0.array("loss"))
    np.testing.assert_array_equal(again.array("nfe_forward"), h0.array("nfe_forward"))


def test_artifacts_of_the_first_repeat(tiny_exp):
    _, out, _ = tiny_exp
    for model, dim in (("NODE", 2), ("ANODE (p=1)", 3)):
        first, second = seed_dirs(out, MODELS[model])
        assert (first / "artifacts.json").is_file() and not (second / "artifacts.json").exists()
        arts = read_artifacts(out, "spheres 2d", model)
        traj = arts["trajectories"]
        assert np.asarray(traj["states"]).shape == (4, 5, dim)  # timesteps x points x (d + p)
        assert len(traj["times"]) == 4 and traj["times"][0] == 0.0 and traj["times"][-1] == 1.0
        assert len(traj["labels"]) == 5 and set(traj["labels"]) <= {-1.0, 1.0}
        snaps = arts["feature_snapshots"]
        assert [s["iteration"] for s in snaps] == [0, 2]
        assert all(np.asarray(s["features"]).shape == (5, dim) for s in snaps)
        imap = arts["input_map"]
        assert len(imap["xs"]) == len(imap["ys"]) == 6 and np.asarray(imap["values"]).shape == (6, 6)
        assert np.asarray(imap["points"]).shape == (90, 2) and len(imap["point_labels"]) == 90
        assert "heldout_points" not in imap


def test_trajectories_start_at_the_data_points(tiny_exp):
    _, out, _ = tiny_exp
    arts = read_artifacts(out, "spheres 2d", "ANODE (p=1)")
    start = np.asarray(arts["trajectories"]["states"])[0]
    assert np.allclose(start[:, 2], 0.0)  # the augmented coordinate starts at zero
    assert np.all(np.linalg.norm(start[:, :2], axis=1) <= 1.5 + 1e-6)


# ----------------------------------------------------------------------------- resume


def test_rerun_resumes_without_training(tiny_exp, tmp_path, monkeypatch):
    _, out, agg = tiny_exp
    copy_dir = tmp_path / "copy"
    shutil.copytree(out, copy_dir)
    results = sorted(copy_dir.glob("runs/*/*/seed-*/result.json"))
    assert len(results) == 4
    stamps = {p: p.stat().st_mtime_ns for p in results}
    calls = []

    def no_training(unit):
        calls.append(unit)
        raise AssertionError("run_unit called on a finished run")

    monkeypatch.setattr(runner_mod, "run_unit", no_training)
    again = run(parse_config(TINY), copy_dir)
    assert calls == []
    assert {p: p.stat().st_mtime_ns for p in results} == stamps
    assert again["groups"] == agg["groups"]


def test_more_repeats_trains_only_the_new_ones(tiny_exp, tmp_path, monkeypatch):
    _, out, _ = tiny_exp
    copy_dir = tmp_path / "copy"
    shutil.copytree(out, copy_dir)
    trained = []
    real = runner_mod.run_unit
    monkeypatch.setattr(runner_mod, "run_unit", lambda unit: trained.append((unit.model, unit.seed)) or real(unit))
    agg = run(parse_config(tiny(repeats=3, artifacts={})), copy_dir)
    assert sorted(trained) == [("ANODE (p=1)", 2), ("NODE", 2)]
    assert all(g["final_loss"]["n"] == 3 for g in agg["groups"])


def test_jobs_must_be_positive(tmp_path):
    cfg = parse_config(TINY)
    for jobs in (0, -1, True, 1.5):
        with pytest.raises(ValueError, match="jobs must be a positive integer"):
            run(cfg, tmp_path / "x", jobs=jobs)


# ----------------------------------------------------------------------------- failures


def test_solver_failure_is_recorded_and_the_rest_completes(tmp_path, monkeypatch):
    real_build = runner_mod.build_model

    def build(spec, cfg, data, *, seed):
        model = real_build(spec, cfg, data, seed=seed)
        if spec.name == "ANODE (p=1)":
            forward, calls = model.forward, []

            def failing(*args, **kwargs):
                calls.append(1)
                if len(calls) >= 2:  # the first step succeeds, the second one fails
                    raise anode.MaxStepsExceeded("max_num_steps exceeded (forced by the test)")
                return forward(*args, **kwargs)

            model.forward = failing
        return model

    monkeypatch.setattr(runner_mod, "build_model", build)
    lines = []
    cfg = parse_config(tiny(artifacts={}))
    agg = run(cfg, tmp_path / "exp", log=lines.append)

    for d in seed_dirs(tmp_path / "exp", "anode-p-1"):
        result = read_json(d / "result.json")
        assert result["status"] == "failed" and result["error_type"] == "MaxStepsExceeded"
        assert "forced by the test" in result["reason"]
        assert len((d / "history.jsonl").read_text().splitlines()) == 1  # history up to the failure is kept
    for d in seed_dirs(tmp_path / "exp", "node"):
        assert read_json(d / "result.json")["status"] == "completed"
    node, anode_group = agg["groups"]
    assert (node["completed"], node["failed"]) == (2, 0) and node["final_loss"]["n"] == 2
    assert (anode_group["completed"], anode_group["failed"]) == (0, 2)
    assert anode_group["final_loss"] == {"mean": None, "std": None, "n": 0}
    assert [(f["seed"], f["error_type"]) for f in anode_group["failures"]] == [(0, "MaxStepsExceeded"), (1, "MaxStepsExceeded")]
    assert all("forced by the test" in f["reason"] for f in anode_group["failures"])
    assert sum(line.startswith("[failed]") for line in lines) == 2 and sum(line.startswith("[done]") for line in lines) == 2
    assert all(f["failure_kind"] == "solver" for f in anode_group["failures"])
    assert (agg["runs_expected"], agg["runs_finished"], agg["runs_failed"]) == (4, 4, 2)

    # a rerun keeps the failures; retry_failed trains them again (now without the forced failure)
    monkeypatch.setattr(runner_mod, "build_model", real_build)
    assert run(cfg, tmp_path / "exp")["groups"][1]["failed"] == 2
    retried = run(cfg, tmp_path / "exp", retry_failed=True)
    assert retried["groups"][1]["completed"] == 2 and retried["groups"][1]["failures"] == []


def test_unexpected_crash_is_recorded_as_failed(tmp_path, monkeypatch):
    real_build = runner_mod.build_model

    def build(spec, cfg, data, *, seed):
        model = real_build(spec, cfg, data, seed=seed)
        if spec.name == "NODE":
            def crash(*args, **kwargs):
                raise RuntimeError("out of memory (simulated) " + "with a long explanation " * 12 + "END")

            model.forward = crash
        return model

    monkeypatch.setattr(runner_mod, "build_model", build)
    lines = []
    agg = run(parse_config(tiny(repeats=1, artifacts={})), tmp_path / "exp", log=lines.append)
    result = read_json(tmp_path / "exp" / "runs" / "spheres-2d" / "node" / "seed-0" / "result.json")
    assert result["status"] == "failed" and result["error_type"] == "RuntimeError" and result["failure_kind"] == "crash"
    assert "out of memory (simulated)" in result["reason"] and "Traceback" in result["traceback"]
    assert result["fingerprint"]["model"]["hidden_dim"] == 8
    assert agg["groups"][0]["failed"] == 1 and agg["groups"][1]["completed"] == 1
    assert agg["groups"][0]["failures"][0]["failure_kind"] == "crash"
    assert (agg["runs_expected"], agg["runs_finished"], agg["runs_failed"]) == (2, 2, 1)
    (failed,) = [line for line in lines if line.startswith("[failed]")]
    assert failed.split(": ", 1)[1].startswith(result["reason"])  # the whole reason, not cut mid-word
    assert "END" in failed and "unexpected error; traceback in" in failed


# ----------------------------------------------------------------------------- fingerprints, --fresh, preflight


def test_runs_store_their_fingerprint(tiny_exp):
    _, out, _ = tiny_exp
    run_dir = seed_dirs(out, "anode-p-1")[1]
    stored = read_json(run_dir / "fingerprint.json")
    result = read_json(run_dir / "result.json")
    assert stored["fingerprint"] == result["fingerprint"]
    assert stored["sha256"] == result["fingerprint_sha256"] == fingerprint_digest(stored["fingerprint"])
    fp = stored["fingerprint"]
    assert fp["model"]["augment_dim"] == 1 and "name" not in fp["model"] and "lr" not in fp["model"]
    assert fp["dataset"] == {"kind": "spheres", "dim": 2, "inner_range": [0.0, 0.5], "outer_range": [1.0, 1.5],
                             "num_points_inner": 30, "num_points_outer": 60, "holdout_angle": None}
    assert fp["train"] == {"epochs": 1, "lr": 1e-3, "weight_decay": 0.0, "loss": "huber", "max_iterations": 3,
                           "eval_every": 1, "batch_size": 32, "kinetic_energy": 0.0, "jacobian_norm": 0.0}
    assert fp["run"] == {"kind": "repeat", "repeat": 1, "seed": 1} and fp["experiment"] == {"seed": 0}
    assert fp["solver"]["method"] == "dopri5"


def test_fingerprint_ignores_display_fields_and_names_changes():
    cfg = parse_config(TINY)
    spec = cfg.models[1]

    def fp(config, model=spec, **kw):
        kw = {"seed": 1, "repeat": 1, **kw}
        return run_fingerprint(config=config, model=model, dataset=config.datasets[0],
                               train=anode.TrainConfig(epochs=config.train.epochs, max_iterations=3, progress=False), **kw)

    renamed = parse_config(tiny(description="other words", paper="Sec. 9",
                                datasets=[{**TINY["datasets"][0], "name": "renamed data"}]))
    assert fp(renamed, model=dataclasses.replace(spec, name="renamed model")) == fp(cfg)
    longer = parse_config(tiny(train={**TINY["train"], "epochs": 2}, seed=4))
    assert diff_fingerprints(fp(cfg), fp(longer)) == ["experiment.seed: 0 -> 4", "train.epochs: 1 -> 2"]
    assert diff_fingerprints(fp(cfg), fp(cfg, model=dataclasses.replace(spec, augment_dim=2))) == ["model.augment_dim: 1 -> 2"]
    assert diff_fingerprints({"a": {"b": 1}}, {"a": {"c": "x"}}) == ['a.b: 1 -> (absent)', 'a.c: (absent) -> "x"']
    # a setting added to anode after a run was made is no change while it sits at its default ...
    older = fp(cfg)
    del older["solver"]["max_num_steps"], older["train"]["eval_every"]
    assert diff_fingerprints(older, fp(cfg)) == []
    # ... but is one when set otherwise, and a stored value that differs from today's default is caught
    other = fp(parse_config(tiny(solver={"max_num_steps": 50})))
    assert diff_fingerprints(older, other) == ["solver.max_num_steps: (absent) -> 50"]
    assert diff_fingerprints(other, fp(cfg)) == ["solver.max_num_steps: 50 -> 1000"]
    search = fp(cfg, repeat=None, candidate=2, candidate_values={"lr": 0.1})
    assert search["run"] == {"kind": "search", "candidate": 2, "values": {"lr": 0.1}, "seed": 1}


def test_changed_settings_are_refused_before_any_training(tiny_exp, tmp_path, monkeypatch):
    _, out, _ = tiny_exp
    copy_dir = tmp_path / "copy"
    shutil.copytree(out, copy_dir)
    monkeypatch.setattr(runner_mod, "run_unit", lambda unit: pytest.fail("trained despite a fingerprint mismatch"))
    longer = parse_config(tiny(train={**TINY["train"], "epochs": 2}, repeats=3))
    with pytest.raises(FingerprintMismatch, match=r"(?s)holds 4 run\(s\).*runs/spheres-2d/node/seed-0: train\.epochs: 1 -> 2"
                       r".*--fresh.*new --out folder") as info:
        run(longer, copy_dir)
    assert isinstance(info.value, ConfigError)
    assert "seed-2" not in str(info.value)  # runs not on disk yet are not mismatches
    assert read_json(copy_dir / "experiment.json") == read_json(out / "experiment.json")  # nothing written
    # renaming the experiment or describing it differently is not a change of results
    assert run(parse_config(tiny(description="a new description")), copy_dir)["runs_finished"] == 4


def test_runs_without_fingerprint_or_in_progress_are_checked(tiny_exp, tmp_path, monkeypatch):
    _, out, _ = tiny_exp
    copy_dir = tmp_path / "copy"
    shutil.copytree(out, copy_dir)
    old = seed_dirs(copy_dir, "node")[0]
    (old / "fingerprint.json").unlink()
    result = read_json(old / "result.json")
    del result["fingerprint"]
    anode.history.write_json(old / "result.json", result)
    with pytest.raises(FingerprintMismatch, match=r"seed-0: no fingerprint \(made by an older anode\)"):
        run(parse_config(TINY), copy_dir)
    shutil.rmtree(old)
    # an interrupted run (checkpoint, no result) made with another learning rate
    in_progress = seed_dirs(copy_dir, "anode-p-1")[1]
    (in_progress / "result.json").unlink()
    faster = parse_config(tiny(train={**TINY["train"], "lr": 0.1}))
    with pytest.raises(FingerprintMismatch, match=r"anode-p-1/seed-1: train\.lr: 0\.001 -> 0\.1") as info:
        run(faster, copy_dir)
    assert "node/seed-1" in str(info.value) and "node/seed-0" not in str(info.value)


def test_fresh_moves_the_old_results_aside(tiny_exp, tmp_path):
    _, out, _ = tiny_exp
    copy_dir = tmp_path / "exp"
    shutil.copytree(out, copy_dir)
    lines = []
    one = parse_config(tiny(repeats=1, models=TINY["models"][:1], artifacts={}, train={**TINY["train"], "max_iterations": 2}))
    agg = run(one, copy_dir, fresh=True, log=lines.append)
    (moved,) = tmp_path.glob("exp.old-*")
    assert re.fullmatch(r"exp\.old-\d{8}-\d{6}", moved.name)
    assert any(str(moved) in line and "--fresh" in line for line in lines)
    assert len(seed_dirs(moved, "node")) == 2 and (moved / "aggregate.json").exists()  # the old results, intact
    assert [d.name for d in seed_dirs(copy_dir, "node")] == ["seed-0"] and not seed_dirs(copy_dir, "anode-p-1")
    assert agg["runs_finished"] == 1 and read_json(seed_dirs(copy_dir, "node")[0] / "result.json")["iterations"] == 2
    run(one, tmp_path / "empty", fresh=True)  # nothing to move: no error, no sibling
    assert not list(tmp_path.glob("empty.old-*"))


def test_fewer_repeats_read_only_their_own_runs(tiny_exp, tmp_path):
    cfg, out, agg = tiny_exp
    assert (agg["runs_expected"], agg["runs_finished"], agg["runs_failed"]) == (4, 4, 0)
    copy_dir = tmp_path / "copy"
    shutil.copytree(out, copy_dir)
    fewer = run(parse_config(tiny(repeats=1)), copy_dir)
    assert all(g["completed"] == 1 and g["final_loss"]["n"] == 1 for g in fewer["groups"])
    assert (fewer["runs_expected"], fewer["runs_finished"]) == (2, 2)
    assert len(load_histories(copy_dir, "spheres 2d", "NODE")) == 1  # experiment.json now says 1 repeat
    assert len(load_histories(copy_dir, "spheres 2d", "NODE", config=cfg)) == 2
    assert [d.name for d in seed_dirs(copy_dir, "node")] == ["seed-0", "seed-1"]  # the extra run is left alone


def test_setup_errors_raise_before_anything_is_written(tmp_path):
    missing = parse_config(tiny(datasets=[{"kind": "image", "name": "mnist", "dataset": "mnist",
                                           "data_dir": str(tmp_path / "no-such-folder")}],
                                models=[{"name": "conv", "kind": "convodenet", "hidden_dim": 4}], artifacts={}))
    with pytest.raises(FileNotFoundError, match="no-such-folder"):
        run(missing, tmp_path / "exp")
    mismatch = parse_config(tiny(models=[{"name": "conv", "kind": "convodenet", "hidden_dim": 4}], artifacts={}))
    with pytest.raises(ValueError, match="needs image data"):
        run(mismatch, tmp_path / "exp")
    bad_search = parse_config(tiny(search={"space": {"hidden_dim": [4, 0]}}))
    with pytest.raises(ConfigError, match=r"search\.space: model 'NODE' with \{'hidden_dim': 0\}: hidden_dim must be >= 1"):
        run(bad_search, tmp_path / "exp")
    assert not (tmp_path / "exp").exists()


# ----------------------------------------------------------------------------- search


def test_grid_search_picks_the_best_candidate_for_the_repeats(tmp_path):
    cfg = parse_config(tiny(repeats=1, models=TINY["models"][:1], artifacts={},
                            search={"space": {"lr": [1e-3, 1e-1]}, "epochs": 1}))
    agg = run(cfg, tmp_path / "exp")
    model_dir = tmp_path / "exp" / "runs" / "spheres-2d" / "node"
    search = read_json(model_dir / "search.json")
    assert [c["candidate"] for c in search["candidates"]] == [{"lr": 1e-3}, {"lr": 1e-1}]
    assert all(c["status"] == "completed" and c["final_loss"] is not None for c in search["candidates"])
    best = min(search["candidates"], key=lambda c: c["final_loss"])["candidate"]
    assert search["best"] == best
    for i, cand in enumerate(search["candidates"]):
        result = read_json(model_dir / "search" / f"candidate-{i}" / "result.json")
        assert result["train_config"]["lr"] == cand["candidate"]["lr"] and result["repeat"] is None
    result = read_json(model_dir / "seed-0" / "result.json")
    assert result["overrides"] == best and result["train_config"]["lr"] == best["lr"]
    assert agg["groups"][0]["final_loss"]["n"] == 1  # search runs are not repeats


def test_changed_search_space_is_refused(tmp_path):
    base = tiny(repeats=1, models=TINY["models"][:1], artifacts={}, search={"space": {"lr": [1e-3, 1e-1]}, "epochs": 1})
    run(parse_config(base), tmp_path / "exp")
    seed0 = tmp_path / "exp" / "runs" / "spheres-2d" / "node" / "seed-0"
    assert read_json(seed0 / "fingerprint.json")["fingerprint"]["train"]["lr"] == read_json(seed0 / "result.json")["overrides"]["lr"]
    changed = parse_config({**base, "search": {"space": {"lr": [1e-3, 1e-2]}, "epochs": 1}})
    with pytest.raises(FingerprintMismatch, match=r"search/candidate-1: run\.values\.lr: 0\.1 -> 0\.01; train\.lr: 0\.1 -> 0\.01"):
        run(changed, tmp_path / "exp")


def test_search_over_an_architecture_value(tmp_path):
    cfg = parse_config(tiny(repeats=1, models=TINY["models"][:1], artifacts={},
                            search={"space": {"hidden_dim": [2, 16]}}))
    run(cfg, tmp_path / "exp")
    model_dir = tmp_path / "exp" / "runs" / "spheres-2d" / "node"
    best = read_json(model_dir / "search.json")["best"]
    result = read_json(model_dir / "seed-0" / "result.json")
    assert result["overrides"] == best and result["model_spec"]["hidden_dim"] == best["hidden_dim"]
    counts = {c: read_json(model_dir / "search" / f"candidate-{i}" / "result.json")["num_parameters"]
              for i, c in enumerate((2, 16))}
    assert counts[16] > counts[2]
    assert result["num_parameters"] == counts[best["hidden_dim"]]


def test_random_search_draws_a_seeded_subset():
    space = {"lr": [1e-3, 1e-2, 1e-1], "weight_decay": [0.0, 1e-4]}
    cfg = parse_config(tiny(search={"space": space, "mode": "random", "num_samples": 3}))
    cands = runner_mod._search_candidates(cfg)
    assert len(cands) == 3 and len({tuple(sorted(c.items())) for c in cands}) == 3
    assert all(c["lr"] in space["lr"] and c["weight_decay"] in space["weight_decay"] for c in cands)
    assert cands == runner_mod._search_candidates(cfg)
    grid = parse_config(tiny(search={"space": space}))
    assert len(runner_mod._search_candidates(grid)) == 6


# ----------------------------------------------------------------------------- parallel runs


def test_parallel_jobs_give_the_same_results_as_in_process(tiny_exp, tmp_path):
    _, out, agg = tiny_exp
    started = time.perf_counter()
    par = run(parse_config(TINY), tmp_path / "par", jobs=2)
    assert time.perf_counter() - started < 120
    for g_seq, g_par in zip(agg["groups"], par["groups"]):
        assert g_par["final_loss"] == g_seq["final_loss"]
        for seq_h, par_h in zip(load_histories(out, "spheres 2d", g_seq["model"]),
                                load_histories(tmp_path / "par", "spheres 2d", g_seq["model"])):
            np.testing.assert_array_equal(seq_h.array("loss"), par_h.array("loss"))


# ----------------------------------------------------------------------------- figures


def test_experiment_figures(tiny_exp):
    _, out, _ = tiny_exp
    figs = experiment_figures(out)
    expected = {"loss/spheres-2d", "nfe/spheres-2d", "nfe_vs_loss/spheres-2d"}
    for model_slug in MODELS.values():
        expected |= {f"flow/spheres-2d/{model_slug}", f"features/spheres-2d/{model_slug}", f"map/spheres-2d/{model_slug}"}
    assert set(figs) == expected
    assert all(isinstance(f, Figure) for f in figs.values())
    loss_ax = figs["loss/spheres-2d"].axes[0]
    assert len(loss_ax.get_lines()) >= 2  # one mean curve per model
    assert max(len(line.get_xdata()) for line in loss_ax.get_lines()) == 3  # 3 iterations


def test_save_experiment_figures_writes_pngs(tiny_exp, tmp_path):
    _, out, _ = tiny_exp
    paths = save_experiment_figures(out, tmp_path / "figs", gifs=True)
    pngs = sorted(p.name for p in paths if p.suffix == ".png")
    assert "loss__spheres-2d.png" in pngs and "map__spheres-2d__node.png" in pngs and len(pngs) == 9
    gifs = [p for p in paths if p.suffix == ".gif"]
    assert {p.name for p in gifs} >= {"flow__spheres-2d__node.gif", "features__spheres-2d__anode-p-1.gif"}
    for p in paths:
        assert p.is_file() and p.stat().st_size > 500
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths if p.suffix == ".png")


def test_figures_need_an_experiment_dir(tmp_path):
    with pytest.raises(FileNotFoundError, match="not an experiment directory"):
        experiment_figures(tmp_path)


# ----------------------------------------------------------------------------- kill -9 and rerun

KILL_TOML = """
name = "killed"
seed = 3
repeats = 2

[train]
epochs = 4
batch_size = 16
lr = 1e-2
checkpoint_every = 1

[[datasets]]
kind = "spheres"
name = "spheres"
dim = 2
num_points_inner = 40
num_points_outer = 80

[[models]]
name = "NODE"
hidden_dim = 8

[[models]]
name = "ANODE"
hidden_dim = 8
augment_dim = 1

[artifacts]
trajectories = 4
timesteps = 3
feature_snapshots = 4
"""
SRC = Path(__file__).resolve().parents[1] / "src"


def _children(pid: int) -> list[int]:
    """Pool workers (spawned `spawn_main` processes) whose parent is `pid`."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == pid and b"spawn_main" in cmdline:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")  # a zombie waiting to be reaped has stopped running


def _records(run: Path) -> tuple[list[dict], list[dict]]:
    """A run's per-iteration and per-epoch records without their wall-clock fields."""
    iterations = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    epochs = read_json(run / "epochs.json")
    return ([{k: v for k, v in r.items() if k != "time"} for r in iterations],
            [{k: v for k, v in r.items() if k != "time"} for r in epochs])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; workers die with their parent on Linux only")
def test_kill_9_mid_run_then_rerun_gives_the_undisturbed_histories(tmp_path):
    config_path = tmp_path / "killed.toml"
    config_path.write_text(KILL_TOML)
    reference = tmp_path / "reference"
    run(anode.lab.experiments.load_config(config_path), reference)

    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "anode", "experiment", str(config_path), "--out", str(out), "--jobs", "2",
           "--no-progress", "--no-figures"]
    log = (tmp_path / "first.log").open("wb")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline, in_flight = time.monotonic() + 60, []
        while not in_flight and time.monotonic() < deadline and proc.poll() is None:
            in_flight = [p.parent for p in out.glob("runs/*/*/seed-*/checkpoint.pt") if not (p.parent / "result.json").exists()]
            time.sleep(0.005)
        workers = _children(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)  # kill -9 of the main process only
        proc.wait(timeout=10)
        assert in_flight, f"no run was seen mid-training: {(tmp_path / 'first.log').read_text()}"
        assert workers, "the experiment had no pool workers to kill"
        deadline = time.monotonic() + 2  # SIGKILLed at once by the kernel; a run's rest would take longer
        while any(_alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not any(_alive(w) for w in workers), "pool workers outlived the killed main process"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # nothing of the test may linger
        log.close()
    unfinished = [d for d in out.glob("runs/*/*/seed-*") if not (d / "result.json").exists()]
    assert set(in_flight) & set(unfinished), "the run seen mid-training finished before the kill: nothing was cut"

    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert again.returncode == 0, again.stdout + again.stderr
    ref_runs = sorted(p.relative_to(reference) for p in reference.glob("runs/*/*/seed-*"))
    assert ref_runs == sorted(p.relative_to(out) for p in out.glob("runs/*/*/seed-*")) and len(ref_runs) == 4
    for rel in ref_runs:
        assert _records(out / rel) == _records(reference / rel), rel
        assert read_json(out / rel / "result.json")["status"] == "completed"
        assert not list((out / rel).glob(".*.tmp"))
    for rel in (p.relative_to(reference) for p in reference.glob("runs/*/*/seed-*/artifacts.json")):
        killed, ref = read_json(out / rel), read_json(reference / rel)
        assert killed["feature_snapshots"] == ref["feature_snapshots"] and len(ref["feature_snapshots"]) == 4
        assert killed["trajectories"] == ref["trajectories"]
