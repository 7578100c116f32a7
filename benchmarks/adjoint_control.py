"""How the adjoint is controlled under per-sample step control: one joint controller over the adjoint state
(default norm, or the seminorm) after a per-sample or a batch forward, against backprop through the
per-sample solve, on the problems of `benchmarks/per_sample.py` with gradients.

Problems (prefix):

- `vdp_`: per_sample.py's batch with a learnable mu: 256 oscillators x'' = mu (1 - x^2) x' - x,
  mu = exp(log_mu) with `log_mu` an `nn.Parameter` (one per sample, mu log-uniform in [1, 10], seed 0),
  x(0) = 2, v(0) = 0, t in [0, 10], float64, loss mean_i |y_i(t_end)|^2 / 2. Its adjoint solve, backwards
  in time, is unstable (the limit cycle attracts forwards, so it repels backwards): every adjoint variant
  fails there, with any control, and the lines say so.
- `vdp_mild_`: the same with mu log-uniform in [0.1, 1] on t in [0, 5], where the adjoint solve is
  well posed.
- `classifier_`: `anode.ODENet(2, 32, augment_dim=1, time_dependent=True)` trained as in per_sample.py
  (5 epochs, float32), then the binary cross-entropy (with logits) of its 256 test points, their
  augmented inputs h0 = [x, 0] the ODE's y0; theta is the ODE block's field parameters (the adjoint's
  dL/dtheta), the readout stays fixed.

Variants, all `SolverConfig(backend="anode", method="dopri5", rtol=1e-5, atol=1e-5)`:

- `sample_joint`: `step_control="sample"`, `adjoint=True` (the library's behaviour: per-sample forward,
  one joint backward controller with torchdiffeq's default adjoint norm
  max(|dL/dt|, rms(y), rms(a), max_i rms(dL/dtheta_i)));
- `sample_seminorm`: the same with the seminorm max(|dL/dt|, rms(y), rms(a)) (Kidger et al. 2021);
- `batch_joint`, `batch_seminorm`: the same with `step_control="batch"`;
- `sample_backprop`: `step_control="sample"`, backprop through the per-sample solve (discretise-then-
  optimise), the cost reference.

The seminorm variants pass `options={"adjoint_options": {"norm": "seminorm"}}` (torchdiffeq's seminorm;
the anode backend's backward steps and gradients equal torchdiffeq's there,
tests/test_backend_equality.py).

Per problem, first the reference gradients: backprop through the per-sample solve at rtol = atol = 1e-10
in float64 (the classifier's copy in float64), with `reference_check_backprop_1e-9` (its distance to the
same at 1e-9) and `reference_check_adjoint_1e-10` (to the batch-controlled adjoint at 1e-10, or its
failure): largest difference over the largest value, dL/dtheta and dL/dy0 together. Then per variant
(`<problem><variant>_...`): `fwd_calls` (batched forward calls), `fwd_nfe_sample_mean` and `_max`
(per-sample NFE; under batch control every sample is in every call, so both equal the calls),
`fwd_calls_perturbed` (the calls' min..max and median over 5 runs from y0 + 1e-6 N(0, 1), seeds 0-4: how
much the counts move with the input), `bwd_calls` (batched calls of the adjoint solve, 0 for backprop),
`bwd_calls_perturbed`, `bwd_accepted` and `bwd_rejected` (its steps), `ms` (CPU time of forward +
backward, best of --repeats), `grad_theta_error` and `grad_y0_error` (largest absolute error of
dL/dtheta and of dL/dy0 over the largest absolute reference value) and `grad_y0_worst_sample_error` (the
worst sample's largest error of dL/dy0_i over its largest reference value); a variant whose solve fails
prints its counts up to the failure and `failed: <error type>`. One torch thread; every line is
`name: value`:

    python benchmarks/adjoint_control.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from torch import nn

import anode
from anode import NFE, SolverConfig, odesolve
from anode.data import ConcentricSpheres

N, TOL, TIGHT = 256, 1e-5, 1e-10
PERTURBED = 5  # runs from perturbed initial states, for the spread of the counts
MILD_MU, MILD_T_END = (0.1, 1.0), 5.0  # a Van der Pol batch whose adjoint (backward-in-time) solve is well posed

SEMINORM = {"adjoint_options": {"norm": "seminorm"}}
#: name -> (step_control, adjoint, seminorm)
VARIANTS: dict[str, tuple[str, bool, bool]] = {
    "sample_joint": ("sample", True, False),
    "sample_seminorm": ("sample", True, True),
    "batch_joint": ("batch", True, False),
    "batch_seminorm": ("batch", True, True),
    "sample_backprop": ("sample", False, False),
}


class VanDerPol(nn.Module):
    """The batch's field with a learnable mu = exp(log_mu), one per sample."""

    def __init__(self, mu: torch.Tensor) -> None:
        super().__init__()
        self.log_mu = nn.Parameter(mu.log())

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x, v = y[:, 0], y[:, 1]
        return torch.stack([v, self.log_mu.exp() * (1 - x * x) * v - x], 1)


@dataclass
class Problem:
    field: nn.Module
    y0: torch.Tensor
    t: torch.Tensor
    loss: Callable[[torch.Tensor], torch.Tensor]  # of the final state

    @property
    def theta(self) -> tuple[torch.Tensor, ...]:
        return tuple(p for p in self.field.parameters() if p.requires_grad)


def gradients(problem: Problem, solver: SolverConfig, *, nfe: NFE | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(dL/dtheta flattened, dL/dy0) of one forward + backward."""
    y0 = problem.y0.detach().clone().requires_grad_(True)
    out = odesolve(problem.field, y0, problem.t, solver, nfe=nfe)
    g_y0, *g_theta = torch.autograd.grad(problem.loss(out[-1]), (y0, *problem.theta))
    return torch.cat([g.reshape(-1) for g in g_theta]), g_y0


def describe(values: list[int]) -> str:
    """'min..max (median m)' of counts, or 'failed' when no run finished."""
    if not values:
        return "failed"
    values = sorted(values)
    return f"{values[0]}..{values[-1]} (median {values[len(values) // 2]})"


def rel_error(g: torch.Tensor, ref: torch.Tensor) -> float:
    return float((g.to(ref.dtype) - ref).abs().max() / ref.abs().max())


def reference(prefix: str, problem64: Problem) -> tuple[torch.Tensor, torch.Tensor]:
    """Backprop through the per-sample solve at TIGHT; prints its distance to the same at 10 x TIGHT and to
    the batch-controlled adjoint at TIGHT (or the adjoint's failure)."""
    tight = {"backend": "anode", "max_num_steps": 10**6}
    ref = gradients(problem64, SolverConfig(rtol=TIGHT, atol=TIGHT, step_control="sample", **tight))
    both = torch.cat([ref[0], ref[1].reshape(-1)])
    looser = gradients(problem64, SolverConfig(rtol=10 * TIGHT, atol=10 * TIGHT, step_control="sample", **tight))
    print(f"{prefix}reference_check_backprop_1e-9: {rel_error(torch.cat([looser[0], looser[1].reshape(-1)]), both):.2e}")
    try:
        check = gradients(problem64, SolverConfig(rtol=TIGHT, atol=TIGHT, adjoint=True, **tight))
        print(f"{prefix}reference_check_adjoint_1e-10: {rel_error(torch.cat([check[0], check[1].reshape(-1)]), both):.2e}")
    except anode.SolverError as err:
        print(f"{prefix}reference_check_adjoint_1e-10: failed ({type(err).__name__})")
    return ref


def compare(prefix: str, problem: Problem, ref: tuple[torch.Tensor, torch.Tensor], repeats: int) -> None:
    ref_theta, ref_y0 = ref
    for name, (control, adjoint, semi) in VARIANTS.items():
        solver = SolverConfig(rtol=TOL, atol=TOL, backend="anode", step_control=control, adjoint=adjoint,
                              options=SEMINORM if semi else {})
        p = f"{prefix}{name}_"
        nfe = NFE()
        try:
            g_theta, g_y0 = gradients(problem, solver, nfe=nfe)
        except anode.SolverError as err:  # the counts up to the failure, then the error's type
            print(f"{p}fwd_calls: {nfe.forward}")
            print(f"{p}bwd_calls: {nfe.backward}")
            print(f"{p}failed: {type(err).__name__}")
            continue
        best = float("inf")
        for _ in range(repeats):
            start = time.process_time()
            gradients(problem, solver)
            best = min(best, time.process_time() - start)
        spread = {"fwd": [], "bwd": []}
        for k in range(PERTURBED):  # the counts' spread: y0 + 1e-6 N(0, 1), seeds 0 .. PERTURBED - 1
            counts = NFE()
            noise = torch.randn(problem.y0.shape, generator=torch.Generator().manual_seed(k), dtype=problem.y0.dtype)
            with contextlib.suppress(anode.SolverError):
                gradients(replace(problem, y0=problem.y0 + 1e-6 * noise), solver, nfe=counts)
                spread["fwd"].append(counts.forward)
                spread["bwd"].append(counts.backward)
        per_sample = nfe.per_sample or [nfe.forward]
        rows_ref, rows = ref_y0.reshape(len(ref_y0), -1), g_y0.to(ref_y0.dtype).reshape(len(ref_y0), -1)
        worst = float(((rows - rows_ref).abs().amax(1) / rows_ref.abs().amax(1)).max())
        print(f"{p}fwd_calls: {nfe.forward}")
        print(f"{p}fwd_nfe_sample_mean: {sum(per_sample) / len(per_sample):.1f}")
        print(f"{p}fwd_nfe_sample_max: {max(per_sample)}")
        print(f"{p}fwd_calls_perturbed: {describe(spread['fwd'])}")
        print(f"{p}bwd_calls: {nfe.backward}")
        print(f"{p}bwd_calls_perturbed: {describe(spread['bwd'])}")
        print(f"{p}bwd_accepted: {nfe.backward_accepted_steps}")
        print(f"{p}bwd_rejected: {nfe.backward_rejected_steps}")
        print(f"{p}ms: {1e3 * best:.1f}")
        print(f"{p}grad_theta_error: {rel_error(g_theta, ref_theta):.2e}")
        print(f"{p}grad_y0_error: {rel_error(g_y0, ref_y0):.2e}")
        print(f"{p}grad_y0_worst_sample_error: {worst:.2e}")


def van_der_pol(prefix: str, mu_range: tuple[float, float], t_end: float, repeats: int) -> None:
    lo, hi = mu_range
    gen = torch.Generator().manual_seed(0)
    u = torch.rand(N, generator=gen, dtype=torch.float64)
    mu = lo * torch.exp(u * torch.log(torch.tensor(hi / lo, dtype=torch.float64)))
    y0 = torch.tensor([[2.0, 0.0]], dtype=torch.float64).repeat(N, 1)
    t = torch.tensor([0.0, t_end], dtype=torch.float64)
    problem = Problem(VanDerPol(mu), y0, t, lambda y: y.pow(2).sum(1).mean() / 2)
    compare(prefix, problem, reference(prefix, problem), repeats)


def classifier(repeats: int) -> None:
    train = ConcentricSpheres(2, num_points_inner=200, num_points_outer=400, seed=0)
    with anode.seeded(0):
        model = anode.ODENet(2, 32, augment_dim=1, time_dependent=True, solver=SolverConfig(rtol=1e-3, atol=1e-3))
    anode.fit(model, train.loader(batch_size=64, seed=0), anode.TrainConfig(epochs=5, lr=1e-2, progress=False))
    model.eval()
    test = ConcentricSpheres(2, num_points_inner=85, num_points_outer=171, seed=1)

    def make(net: anode.ODENet, dtype: torch.dtype) -> Problem:
        block = net.odeblock
        for p in net.linear_layer.parameters():
            p.requires_grad_(False)
        target = (test.targets.reshape(-1, 1).to(dtype) + 1) / 2
        loss = nn.BCEWithLogitsLoss()
        with torch.no_grad():
            h0 = block.augment(test.data.to(dtype))
        return Problem(block.augmenter.dynamics(block.field()), h0, torch.tensor([0.0, 1.0], dtype=dtype),
                       lambda h: loss(net.linear_layer(h), target))

    problem64 = make(copy.deepcopy(model).double(), torch.float64)
    compare("classifier_", make(model, torch.float32), reference("classifier_", problem64), repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    van_der_pol("vdp_", (1.0, 10.0), 10.0, args.repeats)
    van_der_pol("vdp_mild_", MILD_MU, MILD_T_END, args.repeats)
    classifier(args.repeats)


if __name__ == "__main__":
    main()
