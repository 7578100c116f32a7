"""The local backend: runs in this process, or in a pool of spawned worker processes."""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

from tqdm.auto import tqdm

__all__ = ["LocalBackend"]


_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _die_with_parent() -> bool:
    """Ask Linux to SIGKILL this process when its parent dies (no-op elsewhere).

    A worker of a killed experiment must not keep writing into a run folder while a rerun of
    the same command starts training it again.

    Returns:
        True when the request is in place (Linux with a working `prctl`).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    parent = multiprocessing.parent_process()
    if parent is not None and os.getppid() != parent.pid:  # the parent died before prctl took effect
        os._exit(1)
    return True


def _worker_init() -> None:
    import torch

    _die_with_parent()
    torch.set_num_threads(1)


def _no_op() -> None:
    """A worker's first task when the caller names none: starting the worker is the point."""


class LocalBackend:
    """Run units in-process (`jobs` = 1) or in `jobs` spawned worker processes with one torch thread each.

    Workers die with this process (Linux: `PR_SET_PDEATHSIG`), so a killed experiment leaves no
    orphan writing into a run folder while a rerun starts.

    Arguments:
        jobs: worker processes; 1 (or a single unit) runs in this process.

    Raises:
        ValueError: `jobs` is not a positive integer.
    """

    def __init__(self, *, jobs: int = 1) -> None:
        if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
            raise ValueError(f"jobs must be a positive integer, got {jobs!r}")
        self.jobs = jobs
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> LocalBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def start(self, warm_up: Callable[[], object] | None = None) -> None:
        """Start the worker processes now, so that their start-up (importing torch, and `warm_up`'s
        module) overlaps the caller's planning instead of following it; without workers (`jobs` = 1)
        nothing happens. `execute` starts them anyway when needed.

        Arguments:
            warm_up: a module-level function each worker runs first (the runner passes its own
                `warm_up`, so that workers import the runner before the first run arrives).
        """
        if self.jobs > 1:
            pool = self._workers()
            for _ in range(self.jobs):
                pool.submit(warm_up if warm_up is not None else _no_op)

    def _workers(self) -> ProcessPoolExecutor:
        """The worker pool, started on first use and kept until `__exit__`, so that a suite of
        experiments run through one backend pays the workers' start-up (importing torch) once."""
        if self._pool is None or getattr(self._pool, "_broken", False):
            ctx = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(max_workers=self.jobs, mp_context=ctx, initializer=_worker_init)
        return self._pool

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
                pool = self._workers()
                futures = {pool.submit(fn, unit): unit for unit in units}
                try:
                    for future in as_completed(futures):
                        on_result(futures[future], future.result())
                        bar.update()
                except BaseException:
                    for future in futures:
                        future.cancel()
                    raise
        finally:
            bar.close()
