"""Batching of in-memory tensors, without a per-sample Python pipeline."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

from ..rng import make_generator

__all__ = ["TensorLoader"]


class TensorLoader:
    """Iterate over `(inputs, targets)` mini-batches of tensors held in memory.

    Shuffling uses its own `torch.Generator`, so the global RNG is never touched and the
    order is reproducible from the seed. The generator state is part of `state_dict()`, so
    a resumed run sees the same batches as an uninterrupted one.

    Arguments:
        inputs: tensor whose first dimension indexes samples (any dtype, e.g. uint8 images).
        targets: tensor with the same first dimension.
        batch_size: samples per batch (the last batch may be smaller unless `drop_last`).
        shuffle: reshuffle at the start of every pass.
        seed: seed or generator for shuffling.
        drop_last: drop a final incomplete batch.
        transform: applied to each input batch (e.g. uint8 -> normalised float); identity if None.

    Raises:
        ValueError: on mismatched lengths, empty data or a non-positive batch size.
    """

    def __init__(
        self,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        *,
        batch_size: int = 64,
        shuffle: bool = True,
        seed: int | torch.Generator | None = 0,
        drop_last: bool = False,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        if inputs.shape[0] != targets.shape[0]:
            raise ValueError(
                f"inputs and targets must have the same number of samples, got {inputs.shape[0]} and {targets.shape[0]}"
            )
        if inputs.shape[0] == 0:
            raise ValueError("cannot build a loader over an empty dataset (0 samples)")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.inputs = inputs
        self.targets = targets
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.transform = transform
        self.generator = make_generator(seed)

    def __len__(self) -> int:
        n = self.inputs.shape[0]
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    @property
    def num_samples(self) -> int:
        """Number of samples in one pass."""
        return int(self.inputs.shape[0])

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = self.inputs.shape[0]
        order = torch.randperm(n, generator=self.generator) if self.shuffle else None
        for b in range(len(self)):
            if order is None:
                x = self.inputs[b * self.batch_size : (b + 1) * self.batch_size]
                y = self.targets[b * self.batch_size : (b + 1) * self.batch_size]
            else:
                idx = order[b * self.batch_size : (b + 1) * self.batch_size]
                x, y = self.inputs[idx], self.targets[idx]
            yield (self.transform(x) if self.transform is not None else x), y

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The shuffling generator's state (to resume with identical batches)."""
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore the shuffling generator's state saved by `state_dict`."""
        self.generator.set_state(state["generator"])
