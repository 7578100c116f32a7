"""Data-parallel training of ONE run with DistributedDataParallel, launched by `torchrun`.

The library part: `DistributedTrainer` and `ShardedLoader` train any model of yours under torchrun;
`anode.lab.distributed.train_run` (the command line's `anode train`) runs one run of an experiment
config with them:

    torchrun --standalone --nproc-per-node 2 -m anode train images/mnist --out runs/mnist-ddp

What it guarantees:

- The global batch is the single-process batch. Every rank shuffles with the same seed, takes the
  same global batch and keeps its own contiguous shard (`ShardedLoader`), so the union of the
  shards at a step is exactly the batch one process would see.
- The update is the single-process update. Each rank's mean loss is weighted by its shard's share
  of the global batch before DDP averages the gradients, so the averaged gradient is the gradient
  of the global mean loss (also for an uneven last batch). With a fixed-step solver one DDP step
  equals one single-process step up to floating-point summation order.
- Rank 0 alone writes `history.jsonl`, `epochs.json`, `summary.json`, `checkpoint.pt` (atomically)
  and `result.json` into `--out`; every rank resumes from `--out/checkpoint.pt`, so rerunning a
  killed job continues it (on several nodes `--out` must be on a shared file system).
- The recorded loss and accuracy are those of the global batch (summed over ranks).

NFE is per shard: an adaptive solver (dopri5) picks its steps from the shard it integrates, so
ranks take different numbers of steps and the updates are no longer exactly the single-process
ones. Each iteration record holds `nfe_forward` / `nfe_backward` as the mean over ranks and
`nfe_forward_max` / `nfe_backward_max` as the maximum (the slowest rank sets the pace). A solver
failure on one rank ends the whole job (torchrun stops the other ranks); rerun to resume from the
last checkpoint. Under per-sample step control a sample that fails in a rank's shard is such a
failure (the rank raises before the optimiser step, as `Trainer.step` does). Evaluation is not
sharded: every rank evaluates the full held-out set.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from anode.data.loader import TensorLoader
from anode.solve import translate_solver_errors
from anode.training.config import TrainConfig
from anode.training.evaluation import check_failed_samples, count_nfe
from anode.training.losses import count_correct
from anode.training.trainer import Trainer

__all__ = ["DistributedTrainer", "ShardedLoader", "dist_env"]


def dist_env() -> tuple[int, int, int]:
    """`(rank, world_size, local_rank)` from torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK).

    Returns:
        `(0, 1, 0)` outside torchrun.

    Raises:
        ValueError: a variable is not an integer, or the rank is outside [0, world_size).
    """
    values = {}
    for name, default in (("RANK", 0), ("WORLD_SIZE", 1), ("LOCAL_RANK", 0)):
        text = os.environ.get(name)
        try:
            values[name] = default if text is None else int(text)
        except ValueError:
            raise ValueError(f"environment variable {name}={text!r} is not an integer; launch with torchrun") from None
    rank, world, local = values["RANK"], values["WORLD_SIZE"], values["LOCAL_RANK"]
    if world < 1 or not 0 <= rank < world or local < 0:
        raise ValueError(f"inconsistent torchrun environment RANK={rank}, WORLD_SIZE={world}, LOCAL_RANK={local}")
    return rank, world, local


class ShardedLoader:
    """This rank's contiguous shard of every global batch of a `TensorLoader`.

    All ranks draw the same permutation from the wrapped loader's generator (same seed), split each
    global batch into `world_size` nearly equal contiguous parts (`torch.tensor_split`) and keep part
    `rank`; the shards of a step together are the batch a single process would see. The
    transform is applied to the shard only. `state_dict`/`load_state_dict` are the wrapped loader's,
    so checkpoints resume with the same batches.

    Arguments:
        loader: the single-process loader (its batch size is the global batch size).
        rank: this process's rank.
        world_size: number of processes.

    Raises:
        ValueError: a bad rank/world size, or a (last) batch with fewer samples than ranks.
    """

    def __init__(self, loader: TensorLoader, *, rank: int, world_size: int) -> None:
        if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
            raise ValueError(f"world_size must be a positive integer, got {world_size!r}")
        if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < world_size:
            raise ValueError(f"rank must be an integer in [0, {world_size}), got {rank!r}")
        n, size = loader.num_samples, loader.batch_size
        last = n % size
        if size < world_size or (last and not loader.drop_last and last < world_size):
            raise ValueError(f"every global batch needs at least one sample per rank: batch size {size} with {n} "
                             f"samples leaves a batch of {last or size} for {world_size} ranks; use a batch size "
                             f">= {world_size} that leaves no smaller last batch, or fewer processes")
        self.loader, self.rank, self.world_size = loader, rank, world_size

    def __len__(self) -> int:
        return len(self.loader)

    @property
    def num_samples(self) -> int:
        """Samples in one pass over all ranks."""
        return self.loader.num_samples

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        inner = self.loader
        n = inner.inputs.shape[0]
        order = torch.randperm(n, generator=inner.generator) if inner.shuffle else torch.arange(n)
        for b in range(len(inner)):
            batch = order[b * inner.batch_size : (b + 1) * inner.batch_size]
            idx = torch.tensor_split(batch, self.world_size)[self.rank]
            x, y = inner.inputs[idx], inner.targets[idx]
            yield (inner.transform(x) if inner.transform is not None else x), y

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.loader.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.loader.load_state_dict(state)


class DistributedTrainer(Trainer):
    """A `Trainer` whose steps run under DistributedDataParallel; rank 0 writes, every rank resumes.

    `self.model` stays the plain module (checkpoints load into a single-process model); the DDP
    wrapper is `self.ddp`. With `world_size` 1 it trains like `Trainer` and records the same extra
    fields (max NFE equal to the mean).

    Arguments:
        model: the module, already on its device.
        config: optimisation settings.
        out_dir: the run folder (written by rank 0, read by every rank when resuming).
        rank: this process's rank.
        world_size: number of processes (> 1 needs an initialised process group).
        extra_state: plain data stored in checkpoints and the summary.

    Raises:
        ValueError: world_size > 1 without an initialised `torch.distributed` process group.
    """

    def __init__(self, model: nn.Module, config: TrainConfig, *, out_dir: str | os.PathLike[str], rank: int = 0,
                 world_size: int = 1, extra_state: dict[str, Any] | None = None) -> None:
        import torch.distributed as dist

        if world_size > 1 and not dist.is_initialized():
            raise ValueError(f"world_size {world_size} needs an initialised process group; launch with torchrun")
        if config.kinetic_energy or config.jacobian_norm:
            raise ValueError(f"data-parallel training does not apply NFE regularisers yet (kinetic_energy = "
                             f"{config.kinetic_energy}, jacobian_norm = {config.jacobian_norm}): set both to 0, or train "
                             "in one process (anode experiment)")
        super().__init__(model, config, out_dir=out_dir if rank == 0 else None, extra_state=extra_state)
        self.rank, self.world_size, self.run_dir = rank, world_size, Path(out_dir)
        device = next(model.parameters()).device
        self._comm_device = device if world_size > 1 and dist.get_backend() == "nccl" else torch.device("cpu")
        if world_size > 1:
            from torch.nn.parallel import DistributedDataParallel

            self.ddp: nn.Module = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        else:
            self.ddp = model

    def step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        """One synchronised optimiser step on this rank's shard; returns the global iteration record.

        Raises:
            SolverError: this rank's forward or (adjoint) backward solve failed, or (per-sample control,
                `sample_failure="skip"`) a sample of its shard failed, before the optimiser step
                (`Trainer.step`).
        """
        start = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        n_local = x.shape[0]
        n_global = self._all_gather([float(n_local)])[:, 0].sum().item()
        pred = self.ddp(x)
        check_failed_samples(self.blocks, where=f"training iteration {self.iteration} (rank {self.rank})")
        nfe_forward = count_nfe(self.model, self.blocks)[0]
        loss = self.loss_fn(pred, y)
        with translate_solver_errors("backward pass (adjoint solve)"):
            # DDP averages gradients over ranks: weight by this shard's share of the global batch
            (loss * (n_local * self.world_size / n_global)).backward()
        self.optimizer.step()
        correct = int(count_correct(pred.detach(), y, self.config.loss))
        stats = self._all_gather([float(loss.detach()) * n_local, float(correct), float(nfe_forward),
                                  float(count_nfe(self.model, self.blocks)[1])])
        record = {
            "iteration": self.iteration, "epoch": self.epoch,
            "loss": stats[:, 0].sum().item() / n_global, "accuracy": stats[:, 1].sum().item() / n_global,
            "nfe_forward": stats[:, 2].mean().item(), "nfe_backward": stats[:, 3].mean().item(),
            "nfe_forward_max": stats[:, 2].max().item(), "nfe_backward_max": stats[:, 3].max().item(),
            "time": time.perf_counter() - start,
        }
        self.iteration += 1
        self.history.iterations.append(record)
        if self.callback is not None:
            self.callback(self, record)
        return record

    def _all_gather(self, values: list[float]) -> torch.Tensor:
        """`values` of every rank as a (world_size, len(values)) float64 CPU tensor."""
        mine = torch.tensor(values, dtype=torch.float64, device=self._comm_device)
        if self.world_size == 1:
            return mine.cpu().unsqueeze(0)
        import torch.distributed as dist

        parts = [torch.empty_like(mine) for _ in range(self.world_size)]
        dist.all_gather(parts, mine)
        return torch.stack(parts).cpu()

    def fit(self, train_loader: Any, *, eval_loader: Any = None, resume: bool = True) -> Any:
        """Train (see `Trainer.fit`); every rank first resumes from the run folder's checkpoint if present.

        Raises:
            SolverError: a solve on this rank failed.
            ValueError: the ranks did not all find the same checkpoint (the run folder is not shared).
        """
        path = self.run_dir / "checkpoint.pt"
        if resume and path.exists():
            self.load_checkpoint(path, train_loader=train_loader)
        starts = self._all_gather([float(self.iteration)])[:, 0].tolist()
        if len(set(starts)) > 1:  # every rank sees the same gathered list, so every rank raises
            raise ValueError(f"the ranks would start at different iterations {[int(s) for s in starts]}: {path} is not "
                             "visible to every rank; put --out on a file system shared by all nodes")
        return super().fit(train_loader, eval_loader=eval_loader, resume=False)

