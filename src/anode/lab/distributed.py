"""One run of an experiment config, data-parallel under `torchrun` (`anode train`); the training itself
is `anode.training.distributed`'s `DistributedTrainer` and `ShardedLoader`."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import torch

from anode.history import write_json
from anode.lab.experiments.builders import build_data, build_model
from anode.lab.experiments.paths import run_seed
from anode.training.config import TrainConfig
from anode.training.distributed import DistributedTrainer, ShardedLoader, dist_env

__all__ = ["train_run"]


def train_run(
    config: Any,
    out_dir: str | os.PathLike[str],
    *,
    model: str | None = None,
    dataset: str | None = None,
    repeat: int = 0,
    device: str | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Train one run of an experiment config, data-parallel when launched by torchrun.

    Under torchrun (WORLD_SIZE > 1) it joins the process group (NCCL on CUDA, gloo on CPU), each
    process on `cuda:LOCAL_RANK` or the CPU; otherwise it trains in this process alone. The run
    has the seed, model and data of the same run of `anode experiment` (repeat `repeat`).

    Arguments:
        config: an `ExperimentConfig` (budget overrides already applied).
        out_dir: the run folder: history.jsonl, epochs.json, summary.json, checkpoint.pt, result.json.
        model: the model's name (None: the config's only model; required when it has several).
        dataset: the dataset's name (None: the config's only dataset).
        repeat: which repeat's seed to use (0-based).
        device: "cpu" or "cuda" (None: CUDA when available); with CUDA each rank uses its LOCAL_RANK GPU.
        progress: progress bars on rank 0.

    Returns:
        The result record (`summary` plus status, world size and wall time), also in `result.json`.

    Raises:
        ValueError: an unknown or ambiguous model/dataset name, a bad repeat, a batch size too
            small for the number of ranks, or a bad torchrun environment.
        SolverError: a solve failed (the checkpoint of the last finished epoch stays).
    """
    import torch.distributed as dist

    rank, world, local_rank = dist_env()
    spec = _pick(config.models, model, "model", "--model")
    data_spec = _pick(config.datasets, dataset, "dataset", "--dataset")
    if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 0:
        raise ValueError(f"repeat must be an integer >= 0, got {repeat!r}")
    kind = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if kind.startswith("cuda"):
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device(kind)
    owned = False
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", rank=rank, world_size=world)
        owned = True
    try:
        seed = run_seed(config.seed, repeat)
        data = build_data(data_spec, config, seed=seed)
        net = build_model(spec, config, data, seed=seed).to(dev)
        train = config.train
        train_cfg = TrainConfig(
            epochs=train.epochs, lr=spec.lr if spec.lr is not None else train.lr,
            weight_decay=spec.weight_decay if spec.weight_decay is not None else train.weight_decay, loss=train.loss,
            max_iterations=train.max_iterations, eval_every=train.eval_every, progress=progress and rank == 0,
        )
        loader = ShardedLoader(data.train_loader(train.batch_size, seed=seed), rank=rank, world_size=world)
        extra = {"experiment": config.name, "model": spec.name, "dataset": data_spec.name, "seed": seed, "repeat": repeat,
                 "device": str(dev.type), "world_size": world,
                 "nfe_note": "per shard: nfe_forward/nfe_backward are means over ranks, *_max the maximum"}
        trainer = DistributedTrainer(net, train_cfg, out_dir=out_dir, rank=rank, world_size=world, extra_state=extra)
        started = time.perf_counter()
        trainer.fit(loader, eval_loader=data.eval_loader(train.batch_size))
        result = {**trainer.summary(), "status": "completed", "reason": None, "error_type": None,
                  "wall_time": time.perf_counter() - started}
        if rank == 0:
            write_json(Path(out_dir) / "result.json", result)
        return result
    finally:
        if owned:
            dist.destroy_process_group()


def _pick(items: tuple[Any, ...], name: str | None, what: str, flag: str) -> Any:
    names = [item.name for item in items]
    if name is None:
        if len(items) != 1:
            raise ValueError(f"the config has {len(items)} {what}s {names}; choose one with {flag}")
        return items[0]
    for item in items:
        if item.name == name:
            return item
    raise ValueError(f"unknown {what} {name!r}; the config's {what}s: {names}")
