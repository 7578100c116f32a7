"""Tests of `anode reproduce images` (anode.lab.reproduce.images): budgets, early data errors, end-to-end reports
on tiny IDX files written here and on the shared MNIST when present."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest

import anode.lab.reproduce.images as ri
from anode.lab.claims import VERDICTS
from anode.lab.experiments import ConfigError
from anode.lab.experiments.config import ImageSpec

pytestmark = pytest.mark.usefixtures("single_thread")

SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"

IDX_STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")




def idx_bytes(arr: np.ndarray) -> bytes:
    magic = 2051 if arr.ndim == 3 else 2049
    return magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in arr.shape) + arr.astype(np.uint8).tobytes()


def write_idx(folder: Path, n_train: int = 64, n_test: int = 64, classes: int = 10) -> Path:
    """MNIST-format files of random 28x28 images (labels cycle through `classes`)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    arrays = (rng.integers(0, 256, (n_train, 28, 28)), np.arange(n_train) % classes,
              rng.integers(0, 256, (n_test, 28, 28)), np.arange(n_test) % classes)
    for stem, arr in zip(IDX_STEMS, arrays):
        (folder / stem).write_bytes(idx_bytes(arr))
    return folder


def shrunk(filters: dict[str, int]):
    """A stand-in for image_experiment with fewer filters per model (the architecture otherwise unchanged)."""
    real = ri.image_experiment

    def image_experiment(*args, **kwargs):
        cfg, note = real(*args, **kwargs)
        models = tuple(dataclasses.replace(m, hidden_dim=filters.get(m.name, 4)) for m in cfg.models)
        return dataclasses.replace(cfg, models=models), note

    return image_experiment


def check_report(out: Path, exp_name: str, models: list[str]) -> dict:
    for name in ("report.html", "report.md", "summary.json"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["budget"] == "smoke"
    assert len(summary["claims"]) == 3 and all(c["verdict"] in VERDICTS for c in summary["claims"])
    assert summary["loss_level"] is not None  # both models have completed runs
    groups = summary["aggregate"]["groups"]
    assert [g["model"] for g in groups] == models
    assert all(g["completed"] == 1 and g["failed"] == 0 for g in groups)
    assert all(g["eval_accuracy"]["n"] == 1 and 0.0 <= g["eval_accuracy"]["mean"] <= 1.0 for g in groups)
    for fig in ("loss", "nfe", "nfe_vs_loss", "accuracy_vs_nfe"):
        assert (out / "figures" / f"{fig}.png").is_file(), fig
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 4 and 'src="figures' not in page
    md = (out / "report.md").read_text()
    assert "![loss](figures/loss.png)" in md and "Budget: smoke" in md
    for claim in summary["claims"]:
        assert claim["claim"] in md
    assert (out / exp_name / "aggregate.json").is_file()
    return summary


# ----------------------------------------------------------------------------- image_experiment


def test_unknown_dataset_lists_choices():
    with pytest.raises(ConfigError,
                       match=r"unknown image dataset 'imagenet'; valid choices: \['mnist', 'idx', 'cifar10', 'svhn', 'tinyimagenet'\]"):
        ri.image_experiment("imagenet", budget="small")


def test_unknown_budget_lists_choices():
    with pytest.raises(ConfigError, match=r"unknown budget 'huge'; valid choices: \['paper', 'small', 'smoke'\]"):
        ri.image_experiment("mnist", budget="huge")


def test_small_budget_is_a_stated_stand_in_with_three_repeats():
    """The CPU budget of Table 1: 3 repeats a model (so its claims get verdicts), at a scale the note states."""
    cfg, note = ri.image_experiment("mnist", budget="small", data_dir="/some/where")
    assert cfg.train.batch_size == 32 and cfg.train.max_iterations == 200
    assert cfg.repeats == 3 and cfg.train.epochs == 1
    (ds,) = cfg.datasets
    assert isinstance(ds, ImageSpec) and ds.test_subset == 1000 and ds.train_subset == 6400
    assert ds.data_dir == "/some/where" and ds.dataset == "mnist"
    assert "stand-in" in note and "1/8 of the filters" in note and "200 iterations (one epoch)" in note and "3 repeats" in note
    assert [(m.name, m.hidden_dim, m.augment_dim) for m in cfg.models] == [("NODE", 12, 0), ("ANODE (p=5)", 8, 5)]


def test_paper_budget_keeps_the_config():
    cfg, _ = ri.image_experiment("cifar10", budget="paper")
    assert (cfg.repeats, cfg.train.epochs, cfg.train.batch_size, cfg.train.max_iterations) == (5, 20, 256, None)
    assert cfg.datasets[0].train_subset is None and cfg.datasets[0].test_subset is None
    assert cfg.solver.adjoint and cfg.solver.method == "dopri5"


def test_smoke_budget():
    cfg, _ = ri.image_experiment("idx", budget="smoke")
    assert (cfg.repeats, cfg.train.max_iterations, cfg.train.batch_size) == (1, 2, 32)
    assert (cfg.datasets[0].train_subset, cfg.datasets[0].test_subset) == (64, 64)


def test_sweep_p_adds_anode_models():
    cfg, _ = ri.image_experiment("mnist", budget="small", sweep_p=(1, 5, 10))
    assert [(m.name, m.hidden_dim, m.augment_dim) for m in cfg.models] == [
        ("NODE", 12, 0), ("ANODE (p=5)", 8, 5), ("ANODE (p=1)", 8, 1), ("ANODE (p=10)", 8, 10)]
    assert len({m.name for m in cfg.models}) == len(cfg.models)


def test_weight_decay_applies_to_every_model():
    cfg, _ = ri.image_experiment("mnist", budget="small", sweep_p=(2,), weight_decay=1e-4)
    assert [m.weight_decay for m in cfg.models] == [1e-4] * 3
    base, _ = ri.image_experiment("mnist", budget="small")
    assert [m.weight_decay for m in base.models] == [None, None]


def test_repeats_and_epochs_override_the_budget_and_say_so():
    cfg, note = ri.image_experiment("mnist", budget="paper", repeats=3, epochs=2)
    assert (cfg.repeats, cfg.train.epochs, cfg.train.batch_size) == (3, 2, 256)
    assert note.endswith("overridden on the command line: repeats = 3, epochs = 2")
    _, plain = ri.image_experiment("mnist", budget="paper")
    assert "overridden" not in plain


@pytest.mark.parametrize("key, value", [("repeats", 0), ("epochs", -1), ("epochs", 1.5), ("repeats", True)])
def test_bad_overrides_are_refused(key, value):
    with pytest.raises(ConfigError, match=f"{key} must be a positive integer, got {value!r}"):
        ri.image_experiment("mnist", budget="paper", **{key: value})


# ----------------------------------------------------------------------------- data errors before training


def test_missing_data_dir_fails_before_training(tmp_path, monkeypatch):
    monkeypatch.setattr(ri, "run_experiment", lambda *a, **k: pytest.fail("must not train"))
    missing = tmp_path / "no-such-data"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        ri.reproduce_images(tmp_path / "out", dataset="idx", data_dir=str(missing), budget="smoke", device="cpu",
                            progress=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=r"no IDX files found in .*empty"):
        ri.reproduce_images(tmp_path / "out", dataset="idx", data_dir=str(empty), budget="smoke", device="cpu",
                            progress=False)
    assert not (tmp_path / "out").exists()


def test_no_data_dir_at_all(tmp_path, monkeypatch):
    monkeypatch.delenv("ANODE_DATA_DIR", raising=False)
    monkeypatch.setattr(ri, "run_experiment", lambda *a, **k: pytest.fail("must not train"))
    with pytest.raises(ValueError, match="no data directory: pass data_dir=... or set .*ANODE_DATA_DIR"):
        ri.reproduce_images(tmp_path / "out", dataset="idx", budget="smoke", device="cpu", progress=False)


def test_too_few_test_images_for_the_budget_fails_early(tmp_path, monkeypatch):
    data = write_idx(tmp_path / "data", n_train=64, n_test=32)
    monkeypatch.setattr(ri, "run_experiment", lambda *a, **k: pytest.fail("must not train"))
    with pytest.raises(ValueError, match=r"test_subset must be an int in 1\.\.32"):
        ri.reproduce_images(tmp_path / "out", dataset="idx", data_dir=str(data), budget="smoke", device="cpu",
                            progress=False)


# ----------------------------------------------------------------------------- end to end


def test_reproduce_images_on_tiny_idx_fast(tmp_path, monkeypatch):
    """The whole pipeline with the paper's architecture at 4/3 filters (same budget, same code path)."""
    data = write_idx(tmp_path / "data")
    monkeypatch.setattr(ri, "image_experiment", shrunk({"NODE": 4, "ANODE (p=5)": 3}))
    out = tmp_path / "out"
    html = ri.reproduce_images(out, dataset="idx", data_dir=str(data), budget="smoke", device="cpu", progress=False)
    assert html == out / "report.html"
    summary = check_report(out, "idx", ["NODE", "ANODE (p=5)"])
    counts = [g["num_parameters"]["mean"] for g in summary["aggregate"]["groups"]]
    assert counts[0] < 84_395 and counts[1] < 84_816  # the shrunk models did run
    result = json.loads((out / "idx" / "runs" / "idx" / "anode-p-5" / "seed-0" / "result.json").read_text())
    assert result["iterations"] == 2 and result["model_spec"]["augment_dim"] == 5
    assert "IDX files in" in (out / "report.md").read_text()


def test_reproduce_images_sweep_p_fast(tmp_path, monkeypatch):
    data = write_idx(tmp_path / "data")
    monkeypatch.setattr(ri, "image_experiment", shrunk({}))
    out = tmp_path / "out"
    ri.reproduce_images(out, dataset="idx", data_dir=str(data), budget="smoke", device="cpu", progress=False,
                        sweep_p=(1,))
    check_report(out, "idx", ["NODE", "ANODE (p=5)", "ANODE (p=1)"])
    assert (out / "idx" / "runs" / "idx" / "anode-p-1" / "seed-0" / "result.json").is_file()


def test_report_only_after_a_cut_off_job_fast(tmp_path, monkeypatch):
    """A job stopped after its first repeat: --report-only reports the finished runs and trains nothing."""
    data = write_idx(tmp_path / "data")
    monkeypatch.setattr(ri, "image_experiment", shrunk({"NODE": 4, "ANODE (p=5)": 3}))
    out = tmp_path / "out"
    ri.reproduce_images(out, dataset="idx", data_dir=str(data), budget="smoke", device="cpu", progress=False)
    monkeypatch.setattr(ri, "run_experiment", lambda *a, **k: pytest.fail("must not train"))
    ri.reproduce_images(out, dataset="idx", data_dir=str(data), budget="smoke", device="cpu", progress=False,
                        repeats=2, train=False)
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["runs_expected"], summary["runs_finished"]) == (4, 2)
    assert summary["command"].endswith("--data-dir " + str(data) + " --repeats 2")
    assert summary["runs_wall_time_s"] > 0
    md = (out / "report.md").read_text()
    assert "Runs finished (completed or failed in the solver): 2 of 4. The missing runs were not trained" in md
    assert "report only: nothing was trained" in md and "repeats = 2" in md
    assert [g["completed"] for g in summary["aggregate"]["groups"]] == [1, 1]


@pytest.mark.slow
def test_reproduce_images_on_tiny_idx_paper_models(tmp_path):
    data = write_idx(tmp_path / "data")
    out = tmp_path / "out"
    ri.reproduce_images(out, dataset="idx", data_dir=str(data), budget="smoke", device="cpu", progress=False)
    summary = check_report(out, "idx", ["NODE", "ANODE (p=5)"])
    assert [g["num_parameters"]["mean"] for g in summary["aggregate"]["groups"]] == [84_395, 84_816]


@pytest.mark.slow  # about 20 s (reads and checksums all 70,000 images); the fast idx test covers the pipeline
@pytest.mark.skipif(not SHARED_MNIST.is_dir(), reason=f"shared MNIST not found at {SHARED_MNIST}")
def test_reproduce_images_on_real_mnist_smoke(tmp_path):
    out = tmp_path / "out"
    ri.reproduce_images(out, dataset="mnist", data_dir=str(SHARED_MNIST), budget="smoke", device="cpu", progress=False)
    summary = check_report(out, "mnist", ["NODE", "ANODE (p=5)"])
    assert [g["num_parameters"]["mean"] for g in summary["aggregate"]["groups"]] == [84_395, 84_816]
    assert "MNIST (original IDX files)" in (out / "report.md").read_text()
