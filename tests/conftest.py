"""Shared fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(scope="module")
def single_thread() -> Iterator[None]:
    """Run a module's tiny-tensor tests on one intra-op thread, restoring the count afterwards.

    The models under test are small, so extra threads only add synchronisation, and on a shared
    2-core machine an oversubscribed thread pool makes them 5-25x slower.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
