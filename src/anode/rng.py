"""Explicit randomness: generators from seeds, and seeded parameter initialisation."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

__all__ = ["make_generator", "seeded"]


def make_generator(seed: int | torch.Generator | None) -> torch.Generator:
    """Return a CPU `torch.Generator`: the one given, or a new one seeded with `seed`.

    Arguments:
        seed: an integer seed, an existing generator (returned as is), or None for seed 0.

    Returns:
        A `torch.Generator` on the CPU.

    Raises:
        TypeError: if `seed` is neither an int, a generator nor None.
    """
    if isinstance(seed, torch.Generator):
        return seed
    if seed is None:
        seed = 0
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int or a torch.Generator, got {seed!r} ({type(seed).__name__})")
    gen = torch.Generator()
    gen.manual_seed(seed)
    return gen


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run the block with torch's default RNG seeded, restoring the caller's RNG state afterwards.

    PyTorch layers draw their initial weights from the default RNG; building a model inside
    `with seeded(seed):` makes its initialisation reproducible without disturbing anyone
    else's random state.

    Arguments:
        seed: the seed.

    Raises:
        TypeError: `seed` is not an int.
    """
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {seed!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
