"""The local backend: runs in this process, or in a pool of spawned worker processes."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

from tqdm.auto import tqdm

__all__ = ["LocalBackend"]


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)


class LocalBackend:
    """Run units in-process (`jobs` = 1) or in `jobs` spawned worker processes with one torch thread each.

    Arguments:
        jobs: worker processes; 1 (or a single unit) runs in this process.

    Raises:
        ValueError: `jobs` is not a positive integer.
    """

    def __init__(self, *, jobs: int = 1) -> None:
        if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
            raise ValueError(f"jobs must be a positive integer, got {jobs!r}")
        self.jobs = jobs

    def __enter__(self) -> LocalBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def execute(self, units: Sequence[Any], *, fn: Callable[[Any], dict[str, Any]],
                on_result: Callable[[Any, dict[str, Any]], None], progress: bool, desc: str) -> None:
        """Call `fn(unit)` for every unit and pass each record to `on_result(unit, record)` as it finishes.

        Arguments:
            units: the run units (picklable when `jobs` > 1).
            fn: a module-level function (picklable) that runs one unit and returns its record.
            on_result: called in this process for every finished unit.
            progress: show a progress bar over the units.
            desc: the progress bar's label.
        """
        bar = tqdm(total=len(units), desc=desc, disable=not progress, leave=True)
        try:
            if self.jobs <= 1 or len(units) <= 1:
                for unit in units:
                    on_result(unit, fn(unit))
                    bar.update()
            else:
                ctx = multiprocessing.get_context("spawn")
                with ProcessPoolExecutor(max_workers=self.jobs, mp_context=ctx, initializer=_worker_init) as pool:
                    futures = {pool.submit(fn, unit): unit for unit in units}
                    for future in as_completed(futures):
                        on_result(futures[future], future.result())
                        bar.update()
        finally:
            bar.close()
