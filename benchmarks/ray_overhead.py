"""Throughput of a small toy suite on the Ray backend against the local backend with the same parallelism.

The suite is the spheres experiment (ResNet, NODE and ANODE on g(x) in d = 1, 2 and the shifted sines)
at a reduced budget. Both backends run the same units with 2 at a time, one torch thread each:

* local: `run_experiment(..., jobs=2)` (a pool of 2 spawned worker processes);
* ray:   `run_experiment(..., backend="ray", jobs=2)`: a local Ray instance of 2 CPUs, one task per run.

Wall times include everything a user waits for: the local pool's process start-up, and Ray's instance
start-up and shutdown (also printed apart, with the ratio without it). Throughput = runs per minute.
With `--rounds R` the two alternate (local, ray, ray, local, ...) so that load from other processes
on a shared machine hits both alike; medians are printed.

    python benchmarks/ray_overhead.py [--repeats 2] [--max-iterations 60] [--jobs 2] [--rounds 2]

The last line is `ray/local: <ratio>` (throughput of Ray over local, start-up included; 1 = no overhead).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from anode.lab.experiments import load_config, run_experiment
from anode.lab.experiments.backends import make_backend
from anode.lab.reproduce.toy import builtin_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2, help="repeats of the spheres experiment (default 2)")
    parser.add_argument("--max-iterations", type=int, default=60, help="iterations per run (default 60)")
    parser.add_argument("--jobs", type=int, default=2, help="runs at once on both backends (default 2)")
    parser.add_argument("--rounds", type=int, default=2, help="timed rounds of each backend, alternating (default 2)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = load_config(builtin_config("toy/spheres")).with_budget(repeats=args.repeats, epochs=1,
                                                                  max_iterations=args.max_iterations)
    runs = cfg.repeats * len(cfg.datasets) * len(cfg.models)
    quiet = lambda _: None  # noqa: E731
    times: dict[str, list[float]] = {"local": [], "ray": [], "ray_runs": []}
    losses: dict[str, list[float]] = {}

    def timed_local(folder: Path) -> None:
        start = time.perf_counter()
        agg = run_experiment(cfg, folder, jobs=args.jobs, device="cpu", progress=False, log=quiet)
        times["local"].append(time.perf_counter() - start)
        losses["local"] = [g["final_loss"]["mean"] for g in agg["groups"]]

    def timed_ray(folder: Path) -> None:
        start = time.perf_counter()
        with make_backend("ray", jobs=args.jobs) as backend:
            run_start = time.perf_counter()
            agg = run_experiment(cfg, folder, jobs=args.jobs, device="cpu", progress=False, log=quiet, backend=backend)
            times["ray_runs"].append(time.perf_counter() - run_start)
        times["ray"].append(time.perf_counter() - start)
        losses["ray"] = [g["final_loss"]["mean"] for g in agg["groups"]]

    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            order = (timed_local, timed_ray) if r % 2 == 0 else (timed_ray, timed_local)
            for i, step in enumerate(order):
                step(Path(tmp) / f"round-{r}-{i}")
    local_s, ray_s, exec_s = (statistics.median(times[k]) for k in ("local", "ray", "ray_runs"))
    same = losses["local"] == losses["ray"]
    print(f"suite: spheres, {runs} runs x {args.max_iterations} iterations, {args.jobs} at a time, "
          f"{os.cpu_count()} CPU cores, torch {torch.__version__}; medians of {args.rounds} round(s)")
    print(f"local times {[round(t, 1) for t in times['local']]} s, ray times {[round(t, 1) for t in times['ray']]} s")
    print(f"local (--jobs {args.jobs}):   {local_s:7.1f} s   {60 * runs / local_s:6.1f} runs/min")
    print(f"ray (local instance): {ray_s:7.1f} s   {60 * runs / ray_s:6.1f} runs/min "
          f"(start-up + shutdown {ray_s - exec_s:.1f} s, runs {exec_s:.1f} s)")
    print(f"same final losses on both backends: {same}")
    print(f"ray/local without Ray's start-up: {local_s / exec_s:.3f}")
    print(f"ray/local: {local_s / ray_s:.3f}")


if __name__ == "__main__":
    main()
