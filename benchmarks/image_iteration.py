"""Time one training iteration of Table 1's parameter-matched NODE and ANODE side by side.

One iteration is exactly what `anode reproduce images` does per batch: `Trainer.step` (zero_grad,
forward solve, cross-entropy, backward, Adam step) with the dataset config's solver (MNIST: dopri5,
rtol = atol = 1e-3, adjoint) at the config's batch size (256), on real batches in the training
loader's order. Both models start from their seed-0 weights; their iterations are interleaved
(NODE, ANODE, NODE, ...) so that machine noise hits both alike. Printed: median seconds per
iteration, forward/backward NFE, and the ratio ANODE / NODE (the paper: at equal parameters ANODE
is cheaper per iteration). Beside each model's step it measures the step's floor, what its function
evaluations alone cost: nfe_f x t_f + nfe_b x t_vjp, with t_f one bare evaluation of the vector
field on the solver's state and t_vjp one evaluation plus its vector-Jacobian product; the last
lines print `step/floor node: x` and `step/floor anode: x` (the rest of a step is solver overhead).

With `--processes K` it then runs K worker processes at once (alternately NODE and ANODE, one
thread each), all starting their timed iterations together, and prints the throughput (iterations
per second, all workers together) relative to one process at a time. On a GPU that says whether
runs should share the card (`anode reproduce images --jobs K`).

    python benchmarks/image_iteration.py --data-dir ../shared/data [--iterations 10] [--processes 10] [--json F]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import statistics
import time
from typing import Any

import torch

from anode import TrainConfig, Trainer
from anode.lab.experiments.builders import build_data, build_model
from anode.lab.reproduce.images import image_experiment


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _setup(args: argparse.Namespace, model_index: int, device: torch.device) -> tuple[str, Trainer, Any]:
    cfg, _ = image_experiment(args.dataset, budget="paper", data_dir=args.data_dir)
    if args.backend is not None:
        cfg = dataclasses.replace(cfg, solver=dataclasses.replace(cfg.solver, backend=args.backend))
    spec = cfg.models[model_index]
    data = build_data(cfg.datasets[0], cfg, seed=cfg.seed)
    model = build_model(spec, cfg, data, seed=cfg.seed).to(device)
    model.odeblock.compile_field = args.compile_field
    trainer = Trainer(model, TrainConfig(lr=cfg.train.lr, loss=cfg.train.loss, progress=False))
    batch = args.batch_size or cfg.train.batch_size
    loader = data.train_loader(batch, seed=cfg.seed)
    loader.batch_size = batch
    return spec.name, trainer, iter(loader)


def _timed_steps(trainer: Trainer, batches: Any, count: int, device: torch.device) -> list[dict[str, float]]:
    out = []
    for _ in range(count):
        x, y = next(batches)
        x, y = x.to(device), y.to(device)
        _sync(device)
        start = time.perf_counter()
        record = trainer.step(x, y)
        _sync(device)
        out.append({**record, "time": time.perf_counter() - start})
    return out


def _worker(args: argparse.Namespace, model_index: int, barrier: Any, queue: Any) -> None:
    torch.set_num_threads(1)
    device = torch.device(args.device)
    name, trainer, batches = _setup(args, model_index, device)
    _timed_steps(trainer, batches, args.warmup, device)
    barrier.wait()
    start = time.perf_counter()
    records = _timed_steps(trainer, batches, args.iterations, device)
    queue.put({"model": name, "elapsed": time.perf_counter() - start, "times": [r["time"] for r in records]})


def field_floor(trainer: Trainer, x: torch.Tensor, device: torch.device, repeats: int = 20) -> tuple[float, float]:
    """Median seconds of one bare vector-field evaluation (t_f) and of one evaluation plus its VJP (t_vjp).

    The state has the solver's shape: the batch augmented with the block's p zero channels.
    """
    block = trainer.model.odeblock
    field = block.field()  # the compiled wrapper with --compile-field, as the solver calls it
    h = block.augment(x.to(device)).detach()
    t = torch.tensor(0.5, device=device)
    params = [p for p in field.parameters() if p.requires_grad]

    def timed(fn: Any) -> float:
        times = []
        for _ in range(repeats + 2):
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            times.append(time.perf_counter() - start)
        return statistics.median(times[2:])

    with torch.no_grad():
        t_f = timed(lambda: field(t, h))

    def vjp() -> None:
        hh = h.clone().requires_grad_(True)
        out = field(t, hh)
        torch.autograd.grad(out, [hh, *params], torch.ones_like(out))

    return t_f, timed(vjp)


def side_by_side(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """Interleaved iterations of the two models in this process."""
    setups = [_setup(args, i, device) for i in (0, 1)]
    for _, trainer, batches in setups:
        _timed_steps(trainer, batches, args.warmup, device)
    records: dict[str, list[dict[str, float]]] = {name: [] for name, _, _ in setups}
    for _ in range(args.iterations):
        for name, trainer, batches in setups:
            records[name] += _timed_steps(trainer, batches, 1, device)
    out = {}
    for name, trainer, batches in setups:
        recs = records[name]
        x, _ = next(batches)
        t_f, t_vjp = field_floor(trainer, x, device)
        nfe_f = statistics.mean(r["nfe_forward"] for r in recs)
        nfe_b = statistics.mean(r["nfe_backward"] for r in recs)
        step = statistics.median(r["time"] for r in recs)
        floor = nfe_f * t_f + nfe_b * t_vjp
        out[name] = {"s_per_iteration": step, "nfe_forward": nfe_f, "nfe_backward": nfe_b, "loss_last": recs[-1]["loss"],
                     "t_f": t_f, "t_vjp": t_vjp, "floor_s": floor, "step_over_floor": step / floor}
    return out


def concurrent(args: argparse.Namespace) -> dict[str, Any]:
    """K worker processes at once; their per-iteration times and the overall throughput."""
    ctx = multiprocessing.get_context("spawn")
    barrier, queue = ctx.Barrier(args.processes, timeout=300), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(args, k % 2, barrier, queue)) for k in range(args.processes)]
    for p in procs:
        p.start()
    try:
        results = [queue.get(timeout=600) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
    per_model: dict[str, list[float]] = {}
    for r in results:
        per_model.setdefault(r["model"], []).extend(r["times"])
    wall = max(r["elapsed"] for r in results)
    return {"processes": args.processes, "iterations_per_s": args.processes * args.iterations / wall,
            "s_per_iteration": {m: statistics.median(t) for m, t in per_model.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--data-dir", default=None, help="data folder (or set ANODE_DATA_DIR)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the config's (256)")
    parser.add_argument("--iterations", type=int, default=10, help="timed iterations per model")
    parser.add_argument("--warmup", type=int, default=3, help="untimed iterations first")
    parser.add_argument("--processes", type=int, default=0, help="also time K processes at once (0: skip)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads in the side-by-side part")
    parser.add_argument("--backend", default=None, choices=("torchdiffeq", "anode"),
                        help="solver backend (default: the config's, torchdiffeq)")
    parser.add_argument("--compile-field", action="store_true",
                        help="evaluate the vector field through torch.compile (ODEBlock(compile_field=True))")
    parser.add_argument("--json", default=None, help="also write the numbers to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    seq = side_by_side(args, device)
    (node, a), (anode_name, b) = seq.items()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {args.threads} thread(s)"
    print(f"device: {name}; {args.iterations} timed iterations per model after {args.warmup} warm-up")
    for model, r in seq.items():
        print(f"  {model:14s} {r['s_per_iteration'] * 1e3:8.1f} ms/it  NFE fwd {r['nfe_forward']:.1f}  bwd {r['nfe_backward']:.1f}"
              f"  t_f {r['t_f'] * 1e3:.2f} ms  t_vjp {r['t_vjp'] * 1e3:.2f} ms  floor {r['floor_s'] * 1e3:.1f} ms")
    print(f"ratio {anode_name} / {node} time per iteration: {b['s_per_iteration'] / a['s_per_iteration']:.2f}")
    result: dict[str, Any] = {"device": name, "side_by_side": seq}
    _write(args.json, result)
    if args.processes > 0:
        conc = concurrent(args)
        sequential_rate = 2.0 / (a["s_per_iteration"] + b["s_per_iteration"])
        conc["throughput_vs_one_at_a_time"] = conc["iterations_per_s"] / sequential_rate
        result["concurrent"] = conc
        times = ", ".join(f"{m} {t * 1e3:.1f} ms/it" for m, t in conc["s_per_iteration"].items())
        print(f"{args.processes} processes at once: {times}; throughput / one at a time: "
              f"{conc['throughput_vs_one_at_a_time']:.2f}")
    _write(args.json, result)
    for label, r in (("node", a), ("anode", b)):  # last lines: one ratio a line
        print(f"step/floor {label}: {r['step_over_floor']:.2f}")


def _write(path: str | None, result: dict[str, Any]) -> None:
    if path:
        with open(path, "w") as fh:
            json.dump(result, fh, indent=1)


if __name__ == "__main__":
    main()
