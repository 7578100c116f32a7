"""The Ray backend: every run unit is one Ray task with declared CPUs/GPUs, retried when its worker dies.

Ray is optional (`pip install "anode[ray]"`) and imported inside this module's functions only.
The task calls the same function as the local backend, so each run writes its own files
(`result.json` last, atomically) into the same layout; the output folder must therefore be visible
at the same path from every node (a shared file system), which `check_output` verifies.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from anode.lab.experiments.schema import ConfigError

__all__ = ["INSTALL_HINT", "RayBackend", "import_ray"]

INSTALL_HINT = "pip install 'anode[ray]' (or: pip install 'ray[default]')"
CHECK_TIMEOUT_S = 120.0


def import_ray() -> Any:
    """The `ray` module.

    Returns:
        The imported module.

    Raises:
        ConfigError: Ray is not installed (the message says how to install it).
    """
    try:
        import ray
    except ImportError as err:
        raise ConfigError(f"backend 'ray' needs Ray, which is not installed ({err}); install it with {INSTALL_HINT}") from None
    return ray


def _run_task(fn: Callable[[Any], dict[str, Any]], unit: Any, threads: int) -> dict[str, Any]:
    """Body of every Ray task: pin torch's threads to the declared CPUs, then run the unit."""
    import torch

    torch.set_num_threads(threads)
    return fn(unit)


def _probe_folder(folder: str, marker: str, token: str) -> dict[str, Any]:
    """Body of the shared-folder check on one node: read the driver's marker, write a reply beside it."""
    import socket

    host = socket.gethostname()
    try:
        seen = Path(folder, marker).read_text()
    except OSError as err:
        return {"host": host, "ok": False, "why": f"cannot read {Path(folder, marker)}: {err}"}
    if seen != token:
        return {"host": host, "ok": False, "why": f"{Path(folder, marker)} holds other content than the driver wrote"}
    reply = Path(folder, f"{marker}-{uuid.uuid4().hex}")
    try:
        reply.write_text(token)
    except OSError as err:
        return {"host": host, "ok": False, "why": f"cannot write in {folder}: {err}"}
    return {"host": host, "ok": True, "reply": reply.name}


class RayBackend:
    """Runs each unit as one Ray task (`num_cpus`, `num_gpus`, `max_retries` declared per task).

    Without `address` a local Ray instance with `jobs * cpus_per_run` CPUs is started on entry and
    shut down on exit. With `address` the driver joins that cluster and disconnects on exit. An
    instance already initialised in this process (`ray.init` by the caller) is used as is and left
    running.

    Arguments:
        jobs: runs at once on a local instance (its CPU count is `jobs * cpus_per_run`); ignored
            with `address` (the cluster's resources decide).
        address: an existing cluster ("auto", "host:6379", "ray://host:10001"), or None.
        cpus_per_run: CPUs each task declares; the task runs torch with that many threads (at least 1).
        gpus_per_run: GPUs each task declares (0 for CPU runs; 0.5 puts two runs on a card).
        max_retries: retries of a task whose worker process died (e.g. killed, out of memory);
            the retried run resumes from its last checkpoint. Python errors are not retried: the
            run records them as a failed run, as with the local backend.

    Raises:
        ConfigError: Ray is not installed, or a resource number is invalid.
    """

    def __init__(self, *, jobs: int = 1, address: str | None = None, cpus_per_run: float = 1.0,
                 gpus_per_run: float = 0.0, max_retries: int = 3) -> None:
        if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
            raise ConfigError(f"jobs must be a positive integer, got {jobs!r}")
        for name, value, low in (("cpus_per_run", cpus_per_run, 0.0), ("gpus_per_run", gpus_per_run, 0.0)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < low:
                raise ConfigError(f"{name} must be a finite number >= {low:g}, got {value!r}")
        if cpus_per_run == 0 and gpus_per_run == 0:
            raise ConfigError("cpus_per_run and gpus_per_run are both 0: a run must declare some resource; "
                              "use --ray-cpus-per-run 1 (the default)")
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ConfigError(f"max_retries must be an integer >= 0, got {max_retries!r}")
        if address is not None and (not isinstance(address, str) or not address.strip()):
            raise ConfigError(f"address must be a Ray address such as 'auto' or 'host:6379', got {address!r}")
        self.ray = import_ray()  # fails here, before any run, when Ray is missing
        self.jobs, self.address = jobs, address
        self.cpus_per_run, self.gpus_per_run, self.max_retries = float(cpus_per_run), float(gpus_per_run), max_retries
        self._owned = False

    def __enter__(self) -> RayBackend:
        """Start the local instance or join the cluster (unless Ray is already initialised here).

        Raises:
            ConfigError: no Ray cluster at `address`.
        """
        ray = self.ray
        if ray.is_initialized():  # the caller's instance or connection: used as is, left running
            return self
        if self.address is not None:
            try:
                ray.init(address=self.address, logging_level=logging.WARNING, log_to_driver=False)
            except ConnectionError as err:
                raise ConfigError(f"cannot join a Ray cluster at address {self.address!r} ({err}); start one with "
                                  "`ray start --head` and pass its address (e.g. --address HEAD_IP:6379 or auto on "
                                  "a node of the cluster), or drop --address to start a local instance") from None
        else:
            ray.init(num_cpus=max(1, math.ceil(self.jobs * self.cpus_per_run)), include_dashboard=False,
                     logging_level=logging.WARNING, log_to_driver=False)
        self._owned = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self._owned:
            self.ray.shutdown()
            self._owned = False

    def check_output(self, out_dir: str | os.PathLike[str]) -> None:
        """Check that every alive node of the cluster can read and write `out_dir` at the same path.

        A marker written here is read by one task pinned to each node, which writes a reply beside
        it; the marker and replies are removed afterwards.

        Arguments:
            out_dir: the experiment's output folder (created if needed).

        Raises:
            ConfigError: a node cannot see the folder (it is not on a shared file system) or did
                not answer within two minutes.
        """
        ray = self.ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        folder = Path(out_dir).resolve()
        folder.mkdir(parents=True, exist_ok=True)
        marker, token = f".anode-ray-check-{uuid.uuid4().hex}", uuid.uuid4().hex
        (folder / marker).write_text(token)
        probe = ray.remote(_probe_folder)
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        try:
            refs = {probe.options(num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
                    .remote(str(folder), marker, token): n for n in nodes}
            try:
                answers = ray.get(list(refs), timeout=CHECK_TIMEOUT_S)
            except ray.exceptions.GetTimeoutError:
                raise ConfigError(f"the shared-folder check of {folder} got no answer from every Ray node within "
                                  f"{CHECK_TIMEOUT_S:.0f} s; check the cluster (`ray status`)") from None
            for node, answer in zip(refs.values(), answers):
                where = f"Ray node {node.get('NodeManagerAddress')} ({answer['host']})"
                if not answer["ok"]:
                    raise ConfigError(f"output folder {folder} is not shared with {where}: {answer['why']}. "
                                      "With --backend ray every node writes its runs there, so --out must be on a "
                                      "shared file system (e.g. NFS) mounted at the same path on every node")
                if not (folder / answer["reply"]).exists():
                    raise ConfigError(f"output folder {folder} is not shared with {where}: a file it wrote there is "
                                      "not visible here. --out must be on a shared file system (e.g. NFS) mounted "
                                      "at the same path on every node")
        finally:
            for path in folder.glob(f"{marker}*"):
                path.unlink(missing_ok=True)

    def execute(self, units: Sequence[Any], *, fn: Callable[[Any], dict[str, Any]],
                on_result: Callable[[Any, dict[str, Any]], None], progress: bool, desc: str) -> None:
        """Submit one task per unit and pass each record to `on_result(unit, record)` as tasks finish.

        Relative `run_dir`s are made absolute (the driver's working directory) before submission.
        A task whose worker died more than `max_retries` times is reported to `on_result` as a
        failed record (the runner records it as a failed run; `retry_failed` trains it again,
        resuming from its last checkpoint).

        Arguments:
            units: the run units (dataclasses with a `run_dir`).
            fn: a module-level function that runs one unit and returns its record.
            on_result: called in the driver for every finished unit.
            progress: show a progress bar over the units.
            desc: the progress bar's label.
        """
        ray = self.ray
        if not units:
            return
        task = ray.remote(_run_task).options(num_cpus=self.cpus_per_run, num_gpus=self.gpus_per_run,
                                             max_retries=self.max_retries, retry_exceptions=False)
        threads = max(1, int(self.cpus_per_run))
        fn_ref = ray.put(fn)
        pending = {task.remote(fn_ref, _absolute(unit), threads): unit for unit in units}
        bar = tqdm(total=len(units), desc=desc, disable=not progress, leave=True)
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    unit = pending.pop(ref)
                    try:
                        record = ray.get(ref)
                    except ray.exceptions.RayError as err:  # worker/node died past its retries, out of memory, ...
                        record = {"status": "failed", "error_type": type(err).__name__,
                                  "reason": f"Ray task failed after {self.max_retries} retries: {err}"}
                    on_result(unit, record)
                    bar.update()
        finally:
            bar.close()
            for ref in pending:
                ray.cancel(ref, force=True)


def _absolute(unit: Any) -> Any:
    run_dir = getattr(unit, "run_dir", None)
    if dataclasses.is_dataclass(unit) and isinstance(run_dir, str) and not os.path.isabs(run_dir):
        return dataclasses.replace(unit, run_dir=os.path.abspath(run_dir))
    return unit

