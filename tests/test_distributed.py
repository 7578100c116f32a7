"""Tests of anode.training.distributed and anode.lab.distributed: data-parallel training of one run under torchrun (2 CPU processes, gloo),
on tiny IDX image files written here."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import anode
from anode.data.loader import TensorLoader
from anode.history import read_json
from anode.lab.distributed import train_run
from anode.lab.experiments import parse_config, run_experiment
from anode.training.distributed import ShardedLoader, dist_env

pytestmark = pytest.mark.usefixtures("single_thread")

SRC = str(Path(anode.__file__).resolve().parents[1])
IDX_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def idx_bytes(arr: np.ndarray) -> bytes:
    magic = 2051 if arr.ndim == 3 else 2049
    return magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in arr.shape) + arr.astype(np.uint8).tobytes()


def write_images(folder: Path, n_train: int = 64, n_test: int = 16) -> Path:
    """A learnable 4-class set of 6x6 images: class c lights up row c (plus noise)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)

    def images(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = np.arange(n) % 4
        x = rng.integers(0, 60, (n, 6, 6))
        x[np.arange(n), labels, :] = 250
        return x.astype(np.uint8), labels.astype(np.uint8)

    (tx, ty), (vx, vy) = images(n_train), images(n_test)
    for stem, arr in zip(IDX_NAMES, (tx, ty, vx, vy)):
        (folder / (stem + ".gz")).write_bytes(gzip.compress(idx_bytes(arr)))
    return folder


def config(data_dir: Path, *, method: str = "rk4", epochs: int = 1, max_iterations: int | None = None) -> dict:
    solver = {"method": "rk4", "step_size": 0.25} if method == "rk4" else {"method": method, "rtol": 1e-5, "atol": 1e-5}
    return {
        "name": "ddp", "seed": 0, "repeats": 1,
        "train": {"epochs": epochs, "batch_size": 16, "lr": 1e-2, "loss": "cross_entropy", "max_iterations": max_iterations},
        "solver": solver,
        "datasets": [{"kind": "image", "name": "tiny", "dataset": "idx", "data_dir": str(data_dir)}],
        "models": [{"name": "ANODE", "kind": "convodenet", "hidden_dim": 4, "augment_dim": 1}],
    }


def torchrun(cfg: dict, out: Path, tmp_path: Path, *, script: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """`torchrun --standalone --nproc-per-node 2 -m anode train CONFIG --out OUT` (or a wrapper script)."""
    path = tmp_path / f"config-{out.name}.json"
    path.write_text(json.dumps(cfg))
    target = [str(script)] if script is not None else ["-m", "anode"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", *target,
           "train", str(path), "--out", str(out), "--device", "cpu", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")]), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    if check:
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def records(path: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k != "time"} for line in path.read_text().splitlines()]


# ----------------------------------------------------------------------------- in-process pieces


def test_sharded_loader_shards_the_global_batches():
    x, y = torch.arange(10).float().unsqueeze(1), torch.arange(10)
    whole = [b.flatten().tolist() for b, _ in TensorLoader(x, y, batch_size=4, seed=3)]
    shards = [[b.flatten().tolist() for b, _ in ShardedLoader(TensorLoader(x, y, batch_size=4, seed=3), rank=r, world_size=2)]
              for r in range(2)]
    assert [a + b for a, b in zip(*shards)] == whole  # the shards of a step are the global batch
    assert [len(s) for s in shards[0]] == [2, 2, 1] and [len(s) for s in shards[1]] == [2, 2, 1]
    loader = ShardedLoader(TensorLoader(x, y, batch_size=4, seed=3), rank=0, world_size=2)
    loader.load_state_dict(TensorLoader(x, y, batch_size=4, seed=3).state_dict())
    assert len(loader) == 3 and loader.num_samples == 10
    with pytest.raises(ValueError, match=r"leaves a batch of 1 for 2 ranks; use a batch size >= 2"):
        ShardedLoader(TensorLoader(x[:9], y[:9], batch_size=4), rank=1, world_size=2)
    with pytest.raises(ValueError, match=r"rank must be an integer in \[0, 2\), got 2"):
        ShardedLoader(TensorLoader(x, y, batch_size=4), rank=2, world_size=2)


def test_dist_env_and_name_errors(tmp_path, monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert dist_env() == (0, 1, 0)
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match="WORLD_SIZE='two' is not an integer; launch with torchrun"):
        dist_env()
    monkeypatch.delenv("WORLD_SIZE")
    cfg = parse_config(config(write_images(tmp_path / "data")))
    with pytest.raises(ValueError, match=r"unknown model 'NODE'; the config's models: \['ANODE'\]"):
        train_run(cfg, tmp_path / "run", model="NODE")


# ----------------------------------------------------------------------------- torchrun, 2 CPU processes


def test_one_ddp_step_equals_one_single_process_step(tmp_path, monkeypatch):
    data = write_images(tmp_path / "data")
    cfg = config(data, max_iterations=1)
    torchrun(cfg, tmp_path / "ddp", tmp_path)
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    run_experiment(parse_config(cfg), tmp_path / "single", device="cpu", progress=False, log=lambda _: None)
    single = tmp_path / "single" / "runs" / "tiny" / "anode" / "seed-0"
    ddp_state = anode.load_checkpoint(tmp_path / "ddp" / "checkpoint.pt")
    single_state = anode.load_checkpoint(single / "checkpoint.pt")
    assert ddp_state["iteration"] == single_state["iteration"] == 1
    assert ddp_state["model"].keys() == single_state["model"].keys()
    for key, value in single_state["model"].items():
        torch.testing.assert_close(ddp_state["model"][key], value, atol=1e-5, rtol=0, msg=key)
    (a,), (b,) = records(tmp_path / "ddp" / "history.jsonl"), records(single / "history.jsonl")
    assert a["loss"] == pytest.approx(b["loss"], abs=1e-5) and a["accuracy"] == b["accuracy"]
    assert a["nfe_forward"] == a["nfe_forward_max"] == b["nfe_forward"]  # fixed steps: same NFE on every rank
    result = read_json(tmp_path / "ddp" / "result.json")
    assert result["world_size"] == 2 and result["status"] == "completed"


KILLER = '''
import os, signal, sys
from anode.training.distributed import DistributedTrainer
save = DistributedTrainer._save
def save_then_die(self, out_dir, train_loader):
    save(self, out_dir, train_loader)
    os.kill(os.getpid(), signal.SIGKILL)  # rank 0, right after its first checkpoint
DistributedTrainer._save = save_then_die
from anode.lab.cli import main
sys.exit(main())
'''


def test_ddp_run_killed_after_a_checkpoint_resumes_and_records_nfe_per_rank(tmp_path):
    data = write_images(tmp_path / "data")
    cfg = config(data, method="dopri5", epochs=3)  # 4 iterations per epoch; adaptive: NFE differs per rank
    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    killed = torchrun(cfg, tmp_path / "killed", tmp_path, script=script, check=False)
    assert killed.returncode != 0
    assert not (tmp_path / "killed" / "result.json").exists()
    at_kill = anode.load_checkpoint(tmp_path / "killed" / "checkpoint.pt")
    assert (at_kill["epoch"], at_kill["iteration"]) == (1, 4)
    torchrun(cfg, tmp_path / "killed", tmp_path)  # the rerun resumes
    torchrun(cfg, tmp_path / "undisturbed", tmp_path)
    resumed, undisturbed = records(tmp_path / "killed" / "history.jsonl"), records(tmp_path / "undisturbed" / "history.jsonl")
    assert len(resumed) == 12
    for a, b in zip(resumed, undisturbed):
        assert a.keys() == b.keys()
        for key in a:
            assert a[key] == pytest.approx(b[key], abs=1e-6), key
    assert all(r["nfe_forward_max"] >= r["nfe_forward"] > 0 for r in resumed)
    assert any(r["nfe_forward_max"] > r["nfe_forward"] for r in resumed)  # the ranks' adaptive steps differ
    epochs = read_json(tmp_path / "killed" / "epochs.json")
    assert len(epochs) == 3 and epochs[-1]["loss"] < epochs[0]["loss"]  # it learns
    result = read_json(tmp_path / "killed" / "result.json")
    assert result["iterations"] == 12 and result["world_size"] == 2 and result["eval"]["accuracy"] is not None


def test_train_without_torchrun_equals_the_experiment_run(tmp_path, monkeypatch, capsys):
    from anode.lab.cli import main

    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    cfg = config(write_images(tmp_path / "data"), max_iterations=3)
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps(cfg))
    assert main(["train", str(path), "--out", str(tmp_path / "one"), "--device", "cpu", "--no-progress"]) == 0
    assert "trained ANODE on tiny with 1 process(es): 3 iterations" in capsys.readouterr().out
    run_experiment(parse_config(cfg), tmp_path / "exp", device="cpu", progress=False, log=lambda _: None)
    ours, theirs = (records(tmp_path / "one" / "history.jsonl"),
                    records(tmp_path / "exp" / "runs" / "tiny" / "anode" / "seed-0" / "history.jsonl"))
    assert [r["loss"] for r in ours] == [r["loss"] for r in theirs]  # the same run, bit for bit
    assert all(r["nfe_forward_max"] == r["nfe_forward"] for r in ours)
    assert read_json(tmp_path / "one" / "result.json")["world_size"] == 1
    assert main(["train", str(path), "--out", str(tmp_path / "x"), "--model", "NODE"]) == 2
    assert "unknown model 'NODE'; the config's models: ['ANODE']" in capsys.readouterr().err


def test_data_parallel_trainer_refuses_regularisers_it_does_not_apply(tmp_path):
    from anode import ODENet, TrainConfig
    from anode.training.distributed import DistributedTrainer

    model = ODENet(2, 4)
    with pytest.raises(ValueError, match=r"does not apply NFE regularisers yet \(kinetic_energy = 0.1"):
        DistributedTrainer(model, TrainConfig(kinetic_energy=0.1), out_dir=tmp_path)
