"""Per-sample step control against batch control, torchdiffeq and torchode: a batch of Van der Pol oscillators
and an ANODE classifier's evaluation batch.

Van der Pol: 256 oscillators x'' = mu (1 - x^2) x' - x with mu log-uniform in [1, 10] (seed 0), x(0) = 2,
v(0) = 0, t in [0, 10], float64. Classifier: `anode.ODENet(2, 32, augment_dim=1, time_dependent=True)`
(float32, seeded) trained for 5 epochs (Adam, lr 1e-2, batch 64, dopri5 at rtol = atol = 1e-3) on the
concentric spheres g(x) in 2-D (200 inner, 400 outer points, seed 0), then its ODE block integrates the
augmented inputs of 256 test points (85 inner, 171 outer, seed 1) over t in [0, 1] under `torch.no_grad()`
(torchode gets the block's field with the time as a column, `t[:, None]`, as the per-sample solve passes it).

Both problems: dopri5 at rtol = atol = 1e-5, one torch thread, CPU time (best of --repeats). For each solver
(`anode_sample`: `SolverConfig(backend="anode", step_control="sample")`; `anode_batch`: the same with batch
control; `torchdiffeq`; `torchode`: Dopri5 with its IntegralController, one controller per sample) it prints
`<name>_ms` (its time), `<name>_calls` (its batched field calls) and `<name>_worst_error` (its worst sample's
largest absolute error against a per-sample solve at rtol = atol = 1e-11, of the classifier's field in
float64); then `anode_sample_nfe_per_sample_mean` and `_max` (the field evaluations of the average and of
the busiest sample under per-sample control) and the ratios `anode/torchode` (anode_sample_ms over
torchode_ms) and `calls_sample/calls_batch` (anode_sample_calls over anode_batch_calls). The classifier's
lines carry the prefix `classifier_` (`classifier_anode_sample_ms`, ..., `classifier_anode/torchode`,
`classifier_calls_sample/calls_batch`), after `classifier_train_s` (the training's CPU time in seconds) and
`classifier_test_accuracy` (the trained model's accuracy on the 256 test points). Every line is
`name: value`:

    python benchmarks/per_sample.py [--repeats 5]

torchode is a benchmark-only dependency (`pip install torchode`); without it the lines
`torchode: unavailable` and `classifier_torchode: unavailable` are printed and the rest goes on.
"""

from __future__ import annotations

import argparse
import copy
import time
from collections.abc import Callable

import torch

import anode
from anode import NFE, SolverConfig, odesolve
from anode.data import ConcentricSpheres

N, T_END, TOL = 256, 10.0, 1e-5
TIGHT = 1e-11


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


def compare(prefix: str, field: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], y0: torch.Tensor,
            t: torch.Tensor, ref: torch.Tensor, repeats: int,
            torchode_field: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """Time, count and check every solver on one batch; print the `prefix`ed lines (see the docstring)."""

    def config(control: str | None) -> SolverConfig:
        if control is None:
            return SolverConfig(rtol=TOL, atol=TOL)  # the torchdiffeq backend
        return SolverConfig(rtol=TOL, atol=TOL, backend="anode", step_control=control)

    solvers = {"anode_sample": config("sample"), "anode_batch": config("batch"), "torchdiffeq": config(None)}
    runs: dict[str, tuple[Callable[[], torch.Tensor], Callable[[], int]]] = {}
    nfe_sample = NFE()

    def add(name: str, solver: SolverConfig) -> None:
        def count() -> int:
            nfe = nfe_sample if name == "anode_sample" else NFE()
            odesolve(field, y0, t, solver, nfe=nfe)
            return nfe.forward

        runs[name] = (lambda: odesolve(field, y0, t, solver)[-1], count)

    for name, solver in solvers.items():
        add(name, solver)
    try:
        import torchode as to

        calls = [0]

        def counted(tt: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            calls[0] += 1
            return torchode_field(tt, y)

        def torchode_solve(f: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> torch.Tensor:
            term = to.ODETerm(f)
            step = to.Dopri5(term=term)
            control = to.IntegralController(atol=TOL, rtol=TOL, term=term)
            solver = to.AutoDiffAdjoint(step, control)
            sol = solver.solve(to.InitialValueProblem(y0=y0, t_eval=t.repeat(y0.shape[0], 1)))
            return sol.ys[:, -1]

        def torchode_count() -> int:
            calls[0] = 0
            torchode_solve(counted)
            return calls[0]

        runs["torchode"] = (lambda: torchode_solve(torchode_field), torchode_count)
    except ImportError:
        print(f"{prefix}torchode: unavailable")

    times: dict[str, float] = {}
    n_calls: dict[str, int] = {}
    for name, (run, count) in runs.items():
        with torch.no_grad():
            ms, out = cpu_ms(run, repeats)
            n_calls[name] = count()
        times[name] = ms
        err = float((out.to(ref.dtype) - ref).abs().max())
        print(f"{prefix}{name}_ms: {ms:.1f}")
        print(f"{prefix}{name}_calls: {n_calls[name]}")
        print(f"{prefix}{name}_worst_error: {err:.2e}")
    print(f"{prefix}anode_sample_nfe_per_sample_mean: {nfe_sample.per_sample_mean:.1f}")
    print(f"{prefix}anode_sample_nfe_per_sample_max: {nfe_sample.per_sample_max}")
    if "torchode" in times:
        print(f"{prefix}anode/torchode: {times['anode_sample'] / times['torchode']:.3f}")
    print(f"{prefix}calls_sample/calls_batch: {n_calls['anode_sample'] / n_calls['anode_batch']:.3f}")


def tight(field: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], y0: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The reference: a per-sample solve at rtol = atol = TIGHT (the final states)."""
    with torch.no_grad():
        return odesolve(field, y0, t, SolverConfig(rtol=TIGHT, atol=TIGHT, backend="anode", step_control="sample",
                                                   max_num_steps=10**6))[-1]


def van_der_pol(repeats: int) -> None:
    gen = torch.Generator().manual_seed(0)
    mu = torch.exp(torch.rand(N, generator=gen, dtype=torch.float64) * torch.log(torch.tensor(10.0, dtype=torch.float64)))
    y0 = torch.tensor([[2.0, 0.0]], dtype=torch.float64).repeat(N, 1)
    t = torch.tensor([0.0, T_END], dtype=torch.float64)
    field = VanDerPol(mu)
    compare("", field, y0, t, tight(field, y0, t), repeats, lambda tt, y: field(tt, y))


def classifier(repeats: int) -> None:
    start = time.process_time()
    train = ConcentricSpheres(2, num_points_inner=200, num_points_outer=400, seed=0)
    with anode.seeded(0):
        model = anode.ODENet(2, 32, augment_dim=1, time_dependent=True, solver=SolverConfig(rtol=1e-3, atol=1e-3))
    anode.fit(model, train.loader(batch_size=64, seed=0), anode.TrainConfig(epochs=5, lr=1e-2, progress=False))
    print(f"classifier_train_s: {time.process_time() - start:.1f}")
    test = ConcentricSpheres(2, num_points_inner=85, num_points_outer=171, seed=1)
    model.eval()
    with torch.no_grad():
        pred = torch.where(model(test.data) > 0, 1.0, -1.0)
        print(f"classifier_test_accuracy: {float((pred == test.targets).float().mean()):.3f}")
        block = model.odeblock
        field = block.augmenter.dynamics(block.field())
        h0 = block.augment(test.data)
        block64 = copy.deepcopy(block).double()
        ref = tight(block64.augmenter.dynamics(block64.field()), h0.double(), torch.tensor([0.0, 1.0], dtype=torch.float64))
    compare("classifier_", field, h0, torch.tensor([0.0, 1.0]), ref, repeats, lambda tt, y: field(tt[:, None], y))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    van_der_pol(args.repeats)
    classifier(args.repeats)


if __name__ == "__main__":
    main()
