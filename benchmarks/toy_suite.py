"""Throughput of repeats trained together: R runs of the spheres-2d ANODE, stacked vs one after another.

Every variant trains the same R runs (run r: weights from seed r, batches in the order of a
`TensorLoader` seeded with r) for the same number of iterations, on g(x) in d = 2 (3000 points,
batch 64, ANODE p = 1 with a time-dependent MLP of width 32, dopri5 at rtol = atol = 1e-3,
SmoothL1 loss, Adam lr 1e-3: the toy suite's settings):

* reference: the 2019 code's loop written directly on torchdiffeq (`toy_iteration.RefODENet`),
             the R runs one after another;
* alone:     anode's `Trainer` (backend "anode"), the R runs one after another;
* together:  anode's `EnsembleTrainer`: the R runs as one stacked model, one batched solve in
             which every run keeps its own step sizes and NFE, one Adam step per iteration.

The variants run one after another in this process, on one intra-op thread by default; times are
process CPU time (`--clock wall` for wall-clock; both are printed). The last lines are
machine-readable: `throughput_ratio` (reference time / together time: how many times more runs per
second), `together/alone`, and `nfe_equal` (true when every run's NFE at every iteration is the same
together as alone). Above them: the largest relative loss difference together vs alone, and the
first iteration at which it exceeds 1e-5 (the stacked arithmetic rounds like the model alone in the
forward pass, bit for bit, but its gradients differ in the last bits, and Adam, which rescales every
coordinate's step to about `lr`, lets such differences grow over the iterations).

    python benchmarks/toy_suite.py [--members 8] [--iterations 100] [--threads 1] [--clock cpu|wall]
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

import anode
from anode.data.loader import TensorLoader
from anode.data.toy import ConcentricSpheres
from anode.ensemble import EnsembleTrainer
from anode.training import TrainConfig, Trainer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from toy_iteration import RefODENet

DATA_DIM, AUGMENT_DIM, HIDDEN, BATCH, TOL, LR = 2, 1, 32, 64, 1e-3, 1e-3


def _model(seed: int) -> anode.ODENet:
    with anode.seeded(seed):
        return anode.ODENet(DATA_DIM, HIDDEN, augment_dim=AUGMENT_DIM, time_dependent=True,
                            solver=anode.SolverConfig(method="dopri5", rtol=TOL, atol=TOL, backend="anode"))


def _loaders(data: ConcentricSpheres, members: int) -> list[TensorLoader]:
    return [TensorLoader(data.data, data.targets, batch_size=BATCH, seed=r) for r in range(members)]


def _config(iterations: int, loader: TensorLoader) -> TrainConfig:
    return TrainConfig(epochs=-(-iterations // len(loader)), max_iterations=iterations, lr=LR, progress=False)


def reference(data: ConcentricSpheres, members: int, iterations: int) -> list[list[int]]:
    """The 2019 loop, run by run; returns each run's NFE per iteration."""
    nfes = []
    for r, loader in enumerate(_loaders(data, members)):
        model = RefODENet(DATA_DIM, HIDDEN, augment_dim=AUGMENT_DIM, tol=TOL)
        model.load_state_dict(_model(r).state_dict())
        opt, loss_fn, run = torch.optim.Adam(model.parameters(), lr=LR), nn.SmoothL1Loss(), []
        batches = itertools.chain.from_iterable(loader for _ in itertools.count())
        for x, y in itertools.islice(batches, iterations):
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            run.append(model.odeblock.odefunc.nfe)
            loss.backward()
            opt.step()
        nfes.append(run)
    return nfes


def alone(data: ConcentricSpheres, members: int, iterations: int) -> list[anode.History]:
    histories = []
    for r, loader in enumerate(_loaders(data, members)):
        trainer = Trainer(_model(r), _config(iterations, loader))
        histories.append(trainer.fit(loader))
    return histories


def together(data: ConcentricSpheres, members: int, iterations: int) -> list[anode.History]:
    loaders = _loaders(data, members)
    trainers = [Trainer(_model(r), _config(iterations, loaders[r])) for r in range(members)]
    return EnsembleTrainer(trainers).fit(loaders)  # type: ignore[return-value]


def timed(fn: Callable[[], object]) -> tuple[object, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.process_time() - cpu, time.perf_counter() - wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=8, help="runs (repeats) R")
    parser.add_argument("--iterations", type=int, default=100, help="iterations per run")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu", help="which time the ratios use")
    args = parser.parse_args()
    if args.members < 1 or args.iterations < 1 or args.threads < 1:
        parser.error("--members, --iterations and --threads must be >= 1")
    torch.set_num_threads(args.threads)
    data = ConcentricSpheres(DATA_DIM, seed=0)
    together(data, 2, 3)  # warm-up: first calls of the solver and optimiser paths

    results = {}
    for name, fn in (("reference", reference), ("alone", alone), ("together", together)):
        out, cpu, wall = timed(lambda fn=fn: fn(data, args.members, args.iterations))
        results[name] = (out, cpu, wall)
    print(f"R = {args.members} runs x {args.iterations} iterations, {torch.get_num_threads()} thread(s)")
    print(f"{'variant':<10} {'cpu s':>8} {'wall s':>8} {'runs/s (cpu)':>13}")
    for name, (_, cpu, wall) in results.items():
        print(f"{name:<10} {cpu:8.2f} {wall:8.2f} {args.members / cpu:13.2f}")
    pick = 1 if args.clock == "cpu" else 2
    ref_nfe, histories_alone, histories_together = results["reference"][0], results["alone"][0], results["together"][0]
    nfe_equal = all(
        isinstance(b, anode.History) and len(a.iterations) == len(b.iterations) == args.iterations
        and all(ra["nfe_forward"] == rb["nfe_forward"] for ra, rb in zip(a.iterations, b.iterations))
        for a, b in zip(histories_alone, histories_together)
    )
    drift = [[abs(ra["loss"] - rb["loss"]) / abs(ra["loss"]) for ra, rb in zip(a.iterations, b.iterations)]
             for a, b in zip(histories_alone, histories_together)]
    first = min((next((i for i, d in enumerate(run) if d > 1e-5), len(run)) for run in drift), default=0)
    print(f"largest relative loss difference together vs alone: {max(max(run) for run in drift):.1e}; "
          f"all runs within 1e-5 up to iteration {first} of {args.iterations}")
    same_as_reference = sum(n == r["nfe_forward"] for run, h in zip(ref_nfe, histories_alone)
                            for n, r in zip(run, h.iterations))
    print(f"iterations with the reference's NFE (alone): {same_as_reference} of {args.members * args.iterations}")
    print(f"throughput_ratio: {results['reference'][pick] / results['together'][pick]:.2f}")
    print(f"together/alone: {results['together'][pick] / results['alone'][pick]:.3f}")
    print(f"nfe_equal: {str(nfe_equal).lower()}")


if __name__ == "__main__":
    main()
