"""Time one Adam step of a toy model's parameters: anode's `FlatAdam` against torch's Adam.

The parameters are those of the toy ANODE of `toy_iteration.py` (d = 2, p = 5, a time-dependent MLP
of width 32, linear readout: eight tensors, 1,583 numbers). Three optimisers step copies of them
with the same gradients, interleaved round by round (the order rotates):

* flat:          `anode.optim.FlatAdam` (what `Trainer` builds): the update once over flat buffers;
* foreach:       `torch.optim.Adam(foreach=True)`: each operation once per list of tensors;
* per_parameter: `torch.optim.Adam(foreach=False)`: each operation once per tensor (torch's default
                 on a CPU, and the 2019 code's).

Times are process CPU time of `step()` alone. The last lines are machine-readable: `flat/foreach`,
`flat/per_parameter` (ratios of median times) and `bitwise_equal` (true when the three optimisers'
parameters are bitwise equal after every round).

    python benchmarks/adam_step.py [--rounds 2000] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import anode
from anode.optim import FlatAdam


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2000, help="timed rounds (each steps every optimiser once)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args()
    if args.rounds < 1 or args.threads < 1:
        parser.error("--rounds and --threads must be >= 1")
    torch.set_num_threads(args.threads)
    with anode.seeded(0):
        model = anode.ODENet(2, 32, augment_dim=5, time_dependent=True)
    initial = [p.detach().clone() for p in model.parameters()]
    makers = {
        "flat": lambda ps: FlatAdam(ps, lr=1e-3),
        "foreach": lambda ps: torch.optim.Adam(ps, lr=1e-3, foreach=True),
        "per_parameter": lambda ps: torch.optim.Adam(ps, lr=1e-3, foreach=False),
    }
    params = {name: [p.clone().requires_grad_() for p in initial] for name in makers}
    optimisers = {name: make(params[name]) for name, make in makers.items()}
    names = list(makers)
    times: dict[str, list[float]] = {name: [] for name in names}
    gen = torch.Generator().manual_seed(0)
    equal = True
    for rnd in range(args.rounds + 10):
        grads = [torch.randn(p.shape, generator=gen) for p in initial]
        shift = rnd % len(names)
        for name in names[shift:] + names[:shift]:
            for p, g in zip(params[name], grads):
                p.grad = g.clone()
            start = time.process_time()
            optimisers[name].step()
            if rnd >= 10:  # the first rounds create the state
                times[name].append(time.process_time() - start)
        equal = equal and all(torch.equal(a, b) and torch.equal(a, c)
                              for a, b, c in zip(*(params[name] for name in names)))
    medians = {name: statistics.median(values) for name, values in times.items()}
    print(f"torch {torch.__version__}, anode {anode.__version__}, threads {torch.get_num_threads()}, "
          f"{len(initial)} tensors, {sum(p.numel() for p in initial)} numbers, {args.rounds} rounds")
    for name in names:
        print(f"  {name:<14} median {1e6 * medians[name]:8.1f} us")
    print(f"flat/foreach: {medians['flat'] / medians['foreach']:.3f}")
    print(f"flat/per_parameter: {medians['flat'] / medians['per_parameter']:.3f}")
    print(f"bitwise_equal: {'true' if equal else 'false'}")
    if not equal:
        raise SystemExit("FlatAdam's parameters differ from torch's Adam's")


if __name__ == "__main__":
    main()
