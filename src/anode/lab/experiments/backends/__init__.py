"""Where the runs of an experiment execute: in this process / local worker processes, or on Ray.

Every backend has one interface, `execute(units, *, fn, on_result, progress, desc)`: it calls
`fn(unit)` for each run unit somewhere and hands each returned record to `on_result(unit, record)`
in the driver as it arrives. `fn` writes the run's files itself (the runner passes its
`run_unit` wrapper), so every backend produces the same folder layout. Backends are context
managers: `__enter__` acquires what they need (worker pool, Ray connection), `__exit__` releases it.
A backend may also have `start()`, which the suite runner calls before planning so that workers
start up meanwhile (the local backend's do), and `check_output(path)` (Ray: a shared folder).

Backends know runs, never claims or reports; optional dependencies are imported inside the
backend that needs them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from anode.lab.experiments.schema import ConfigError

__all__ = ["BACKENDS", "Backend", "make_backend"]

BACKENDS: tuple[str, ...] = ("local", "ray")


class Backend(Protocol):
    """What the runner needs from a backend."""

    def __enter__(self) -> Backend: ...

    def __exit__(self, *exc: object) -> None: ...

    def execute(self, units: Sequence[Any], *, fn: Callable[[Any], dict[str, Any]],
                on_result: Callable[[Any, dict[str, Any]], None], progress: bool, desc: str) -> None: ...


def make_backend(
    name: str,
    *,
    jobs: int = 1,
    address: str | None = None,
    cpus_per_run: float = 1.0,
    gpus_per_run: float = 0.0,
    max_retries: int = 3,
) -> Backend:
    """A backend by name, validated before any run starts.

    Arguments:
        name: "local" (this process, or `jobs` worker processes) or "ray" (one Ray task per run).
        jobs: local: worker processes (1 runs in-process); ray without `address`: the local Ray
            instance gets `jobs * cpus_per_run` CPUs, so `jobs` runs go at once.
        address: ray only: join this existing cluster ("auto", "ray://host:10001", "host:6379");
            None starts a local Ray instance and shuts it down afterwards.
        cpus_per_run: ray only: CPUs declared by (and torch threads of) each run's task.
        gpus_per_run: ray only: GPUs declared by each run's task (fractions share a card).
        max_retries: ray only: times a task is retried when its worker process dies (a killed
            worker's run resumes from its last checkpoint).

    Returns:
        The backend (use it as a context manager).

    Raises:
        ConfigError: unknown name, options that the backend does not take, bad resource numbers,
            or Ray missing for "ray" (the message says how to install it).
    """
    if name not in BACKENDS:
        raise ConfigError(f"unknown backend {name!r}; valid choices: {list(BACKENDS)}")
    if name == "local":
        given = [f"{k}={v!r}" for k, v, d in (("address", address, None), ("cpus_per_run", cpus_per_run, 1.0),
                                             ("gpus_per_run", gpus_per_run, 0.0), ("max_retries", max_retries, 3)) if v != d]
        if given:
            raise ConfigError(f"{', '.join(given)} apply to backend 'ray' only; pass backend='ray' (--backend ray) or drop them")
        from anode.lab.experiments.backends.local import LocalBackend

        return LocalBackend(jobs=jobs)
    from anode.lab.experiments.backends.ray import RayBackend

    return RayBackend(jobs=jobs, address=address, cpus_per_run=cpus_per_run, gpus_per_run=gpus_per_run,
                      max_retries=max_retries)


RESOURCE_KEYS: tuple[str, ...] = ("cpus", "gpus")


def open_backend(
    backend: str | Backend,
    *,
    jobs: int = 1,
    address: str | None = None,
    resources: dict[str, float] | None = None,
) -> tuple[Backend, bool]:
    """A backend ready to execute: built and entered from a name, or a given (already entered) object.

    Arguments:
        backend: "local", "ray", or a backend object that the caller entered and will exit.
        jobs: see `make_backend`.
        address: ray only: see `make_backend`.
        resources: ray only: per-run resources, {"cpus": float, "gpus": float}.

    Returns:
        `(backend, owned)`: `owned` is True when this call entered it (the caller then exits it).

    Raises:
        ConfigError: see `make_backend`; unknown resource keys; options passed with a backend object.
    """
    if not isinstance(backend, str):
        if address is not None or resources:
            raise ConfigError("address and resources configure a backend by name; with a backend object, "
                              "give them to make_backend instead")
        return backend, False
    resources = dict(resources or {})
    unknown = sorted(set(resources) - set(RESOURCE_KEYS))
    if unknown:
        raise ConfigError(f"unknown resource keys {unknown}; valid keys: {list(RESOURCE_KEYS)}")
    options: dict[str, Any] = {}
    if "cpus" in resources:
        options["cpus_per_run"] = resources["cpus"]
    if "gpus" in resources:
        options["gpus_per_run"] = resources["gpus"]
    made = make_backend(backend, jobs=jobs, address=address, **options)
    made.__enter__()
    return made, True


def default_device(backend: Backend) -> str:
    """The device runs use when none is given: "cuda" for Ray tasks that declare GPUs, "cpu" for
    other Ray tasks (Ray hides the GPUs from them), and CUDA when available for the local backend."""
    gpus = getattr(backend, "gpus_per_run", None)
    if gpus is not None:
        return "cuda" if gpus > 0 else "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
