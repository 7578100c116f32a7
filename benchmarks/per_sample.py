"""Per-sample step control against batch control, torchdiffeq and torchode on a batch of Van der Pol oscillators.

256 oscillators x'' = mu (1 - x^2) x' - x with mu log-uniform in [1, 10] (seed 0), x(0) = 2, v(0) = 0,
t in [0, 10], dopri5 at rtol = atol = 1e-5, float64, one torch thread, CPU time (best of --repeats).
For each solver it prints its time in ms, its batched field calls and its worst sample's error against
a solve at rtol = atol = 1e-11, then the ratios `anode/torchode` and `calls_sample/calls_batch`:

    python benchmarks/per_sample.py [--repeats 5]

torchode is a benchmark-only dependency (`pip install torchode`); without it the line
`torchode: unavailable` is printed and the rest goes on.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from anode import NFE, SolverConfig, odesolve

N, T_END, TOL = 256, 10.0, 1e-5


class VanDerPol(torch.nn.Module):
    """The batch's field, one mu per sample; counts its (batched) calls."""

    def __init__(self, mu: torch.Tensor) -> None:
        super().__init__()
        self.mu, self.calls = mu, 0

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        x, v = y[:, 0], y[:, 1]
        return torch.stack([v, self.mu * (1 - x * x) * v - x], 1)


def cpu_ms(run: Callable[[], torch.Tensor], repeats: int) -> tuple[float, torch.Tensor]:
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.process_time()
        out = run()
        best = min(best, time.process_time() - start)
    return 1e3 * best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    mu = torch.exp(torch.rand(N, generator=gen, dtype=torch.float64) * torch.log(torch.tensor(10.0, dtype=torch.float64)))
    y0 = torch.tensor([[2.0, 0.0]], dtype=torch.float64).repeat(N, 1)
    t = torch.tensor([0.0, T_END], dtype=torch.float64)
    field = VanDerPol(mu)
    with torch.no_grad():
        ref = odesolve(field, y0, t, SolverConfig(rtol=1e-11, atol=1e-11, backend="anode", step_control="sample",
                                                  max_num_steps=10**6))[-1]

    def anode_run(control: str) -> Callable[[], torch.Tensor]:
        solver = SolverConfig(rtol=TOL, atol=TOL, backend="anode", step_control=control)
        return lambda: odesolve(field, y0, t, solver)[-1]

    def torchdiffeq_run() -> torch.Tensor:
        return odesolve(field, y0, t, SolverConfig(rtol=TOL, atol=TOL))[-1]

    runs: dict[str, Callable[[], torch.Tensor]] = {
        "anode_sample": anode_run("sample"), "anode_batch": anode_run("batch"), "torchdiffeq": torchdiffeq_run}
    try:
        import torchode as to

        def torchode_run() -> torch.Tensor:
            term = to.ODETerm(lambda t, y: field(t, y))
            step = to.Dopri5(term=term)
            control = to.IntegralController(atol=TOL, rtol=TOL, term=term)
            solver = to.AutoDiffAdjoint(step, control)
            sol = solver.solve(to.InitialValueProblem(y0=y0, t_eval=t.repeat(N, 1)))
            return sol.ys[:, -1]

        runs["torchode"] = torchode_run
    except ImportError:
        print("torchode: unavailable")

    times: dict[str, float] = {}
    calls: dict[str, float] = {}
    nfe = NFE()
    for name, run in runs.items():
        with torch.no_grad():
            ms, out = cpu_ms(run, args.repeats)
            field.calls = 0
            run()
            calls[name] = field.calls
            if name == "anode_sample":
                odesolve(field, y0, t, SolverConfig(rtol=TOL, atol=TOL, backend="anode", step_control="sample"),
                         nfe=nfe)
        times[name] = ms
        err = float((out - ref).abs().max())
        print(f"{name}_ms: {ms:.1f}")
        print(f"{name}_calls: {calls[name]}")
        print(f"{name}_worst_error: {err:.2e}")
    print(f"anode_sample_nfe_per_sample_mean: {nfe.per_sample_mean:.1f}")
    print(f"anode_sample_nfe_per_sample_max: {nfe.per_sample_max}")
    if "torchode" in times:
        print(f"anode/torchode: {times['anode_sample'] / times['torchode']:.3f}")
    print(f"calls_sample/calls_batch: {calls['anode_sample'] / calls['anode_batch']:.3f}")


if __name__ == "__main__":
    main()
