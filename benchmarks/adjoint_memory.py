"""Peak memory of one training step of a conv NODE at low and high NFE: adjoint vs backprop.

The adjoint method's promise is memory that does not grow with the number of solver steps. This
measures it: one `Trainer.step` (forward solve, cross-entropy, backward, Adam) of Table 1's MNIST
NODE (92 filters) on a batch of random images, at tolerances 1e-3 (few steps) and 1e-6 (many), each
in a fresh process, with the adjoint and, for contrast, backpropagating through the solver.

Memory is the step's peak above what the process held just before it: on a GPU
`torch.cuda.max_memory_allocated`, on a CPU the growth of the process's peak resident set
(`ru_maxrss`, measured after a no-grad forward solve has already touched the solver's working
memory). The last lines print, one ratio a line:

    memory_ratio: <peak at 1e-6 / peak at 1e-3 with the adjoint>   (target: <= 1.2)
    backprop_memory_ratio: <the same without the adjoint>            (grows with the NFE)

    python benchmarks/adjoint_memory.py [--batch-size 32] [--device cpu|cuda] [--json F]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
from typing import Any

import torch

from anode import ConvODENet, SolverConfig, TrainConfig, Trainer, seeded


def _peak_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def _measure(tol: float, adjoint: bool, batch: int, device_name: str, queue: Any) -> None:
    torch.set_num_threads(1)
    device = torch.device(device_name)
    solver = SolverConfig(method="dopri5", rtol=tol, atol=tol, adjoint=adjoint, max_num_steps=10_000)
    with seeded(0):
        model = ConvODENet((1, 28, 28), 92, augment_dim=0, output_dim=10, time_dependent=False, solver=solver).to(device)
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 1, 28, 28, generator=generator).to(device)
    y = torch.randint(0, 10, (batch,), generator=generator).to(device)
    trainer = Trainer(model, TrainConfig(loss="cross_entropy", progress=False))
    with torch.no_grad():
        model(x)  # the forward solve's working memory is now part of the baseline
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    before = _peak_bytes(device) if device.type == "cpu" else torch.cuda.memory_allocated(device)
    record = trainer.step(x, y)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    queue.put({"tol": tol, "adjoint": adjoint, "peak_mb": (_peak_bytes(device) - before) / 2**20,
               "nfe_forward": record["nfe_forward"], "nfe_backward": record["nfe_backward"]})


def measure(tol: float, adjoint: bool, batch: int, device: str) -> dict[str, Any]:
    """One step in a fresh process (so the CPU's peak resident set starts clean)."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_measure, args=(tol, adjoint, batch, device, queue))
    proc.start()
    result = queue.get(timeout=1800)
    proc.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tolerances", default="1e-3,1e-6", help="low,high (comma-separated)")
    parser.add_argument("--json", default=None, help="also write the numbers to this file")
    args = parser.parse_args()
    low, high = (float(t) for t in args.tolerances.split(","))
    rows = [measure(tol, adjoint, args.batch_size, args.device) for adjoint in (True, False) for tol in (low, high)]
    print(f"device: {args.device}; Table 1's MNIST NODE (92 filters), batch {args.batch_size}, dopri5, one training step")
    for r in rows:
        print(f"  {'adjoint ' if r['adjoint'] else 'backprop'} tol {r['tol']:g}: NFE fwd {r['nfe_forward']:.0f} "
              f"bwd {r['nfe_backward']:.0f}, peak {r['peak_mb']:.1f} MB above the baseline")
    by = {(r["adjoint"], r["tol"]): r["peak_mb"] for r in rows}
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)
    print(f"memory_ratio: {by[(True, high)] / max(by[(True, low)], 1e-9):.2f}")
    print(f"backprop_memory_ratio: {by[(False, high)] / max(by[(False, low)], 1e-9):.2f}")


if __name__ == "__main__":
    main()
