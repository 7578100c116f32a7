"""Time one training iteration of a 2-D CNF with the exact trace: a plain torchdiffeq loop against anode.CNF.

One iteration = zero_grad + log-density of 512 two-moons points + mean negative log-likelihood +
backward (through the solver) + an SGD step with learning rate 0 (so every timed repeat is the same
iteration), for a time-dependent tanh MLP of width 64 on R^2, dopri5 at rtol = atol = 1e-5, one
thread:

* reference:         the loop of torchdiffeq's examples/cnf.py and FFJORD's toy example: an
                     `nn.Module` on the tuple state (z, logp), z.requires_grad_(True), the exact trace
                     summed over autograd.grad of each output coordinate with create_graph=True,
                     `odeint(..., method="dopri5")`;
* anode-torchdiffeq: `anode.CNF(field, dim=2, trace="exact")` with `SolverConfig(backend="torchdiffeq")`
                     (the state is one tensor [z, delta]);
* anode-anode:       the same with `SolverConfig(backend="anode")`.

anode computes the exact trace of an `anode.ODEFunc` in closed form (`anode.models.mlp_trace`:
a bilinear form in the two layers' activation slopes, differentiated by ordinary autograd) where
the reference differentiates the field once per dimension with `create_graph=True`. All three take
the same number of steps (printed NFE) and give the same loss to the printed digits. Prints the
median of `--repeats` iterations of each as `name: value` lines, then `anode/reference` (the
anode backend) and `anode-torchdiffeq/reference`.

Usage: python benchmarks/cnf_iteration.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch
import torchdiffeq
from torch import nn

import anode
from anode.data import make_density

RTOL = ATOL = 1e-5


def field() -> anode.ODEFunc:
    with anode.seeded(0):
        return anode.ODEFunc(2, 64, time_dependent=True, non_linearity="tanh")


class ReferenceCNF(nn.Module):
    """The dynamics of (z, logp) as in torchdiffeq's examples/cnf.py and FFJORD's toy example."""

    def __init__(self, f: nn.Module) -> None:
        super().__init__()
        self.f = f
        self.nfe = 0

    def forward(self, t: torch.Tensor, states: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        z = states[0]
        self.nfe += 1
        with torch.set_grad_enabled(True):
            z.requires_grad_(True)
            dz = self.f(t, z)
            trace = torch.zeros(z.shape[0])
            for i in range(z.shape[1]):
                trace = trace + torch.autograd.grad(dz[:, i].sum(), z, create_graph=True)[0][:, i]
        return dz, -trace.view(-1, 1)


def reference_step(model: ReferenceCNF, optimiser: torch.optim.Optimizer, x: torch.Tensor) -> tuple[int, float]:
    optimiser.zero_grad()
    model.nfe = 0
    z, delta = torchdiffeq.odeint(model, (x, torch.zeros(x.shape[0], 1)), torch.tensor([0.0, 1.0]),
                                  rtol=RTOL, atol=ATOL, method="dopri5")
    log_p = -0.5 * (z[-1].pow(2).sum(1) + 2 * math.log(2 * math.pi)) - delta[-1].view(-1)
    loss = -log_p.mean()
    loss.backward()
    optimiser.step()
    return model.nfe, loss.item()


def anode_step(model: anode.CNF, optimiser: torch.optim.Optimizer, x: torch.Tensor) -> tuple[int, float]:
    optimiser.zero_grad()
    loss = -model.log_prob(x).mean()
    loss.backward()
    optimiser.step()
    return model.nfe.forward, loss.item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    x = make_density("two_moons", 512, seed=0)
    medians = {}
    for name in ("reference", "anode-torchdiffeq", "anode-anode"):
        if name == "reference":
            model: nn.Module = ReferenceCNF(field())
            step = reference_step
        else:
            model = anode.CNF(field(), dim=2, solver=anode.SolverConfig(rtol=RTOL, atol=ATOL, backend=name.split("-")[1]))
            step = anode_step
        optimiser = torch.optim.SGD(model.parameters(), lr=0.0)
        step(model, optimiser, x)  # warm-up
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            nfe, loss = step(model, optimiser, x)
            times.append(time.perf_counter() - start)
        medians[name] = statistics.median(times)
        print(f"{name}_ms: {medians[name] * 1e3:.1f}")
        print(f"{name}_nfe: {nfe}")
        print(f"{name}_loss: {loss:.6f}")
    print(f"anode-torchdiffeq/reference: {medians['anode-torchdiffeq'] / medians['reference']:.2f}")
    print(f"anode/reference: {medians['anode-anode'] / medians['reference']:.2f}")


if __name__ == "__main__":
    main()
