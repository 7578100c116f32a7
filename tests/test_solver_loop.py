"""The adaptive loop of `anode.solvers.loop`: the stage buffer of a solve without a graph, and the
switch to stacking when a field's output needs a graph only later in the solve."""

from __future__ import annotations

import pytest
import torch

from anode import NFE, SolverConfig, odesolve

pytestmark = pytest.mark.usefixtures("single_thread")

F64 = torch.float64


def test_a_solve_with_nothing_requiring_grad_is_the_no_grad_solve() -> None:
    y0 = torch.randn(4, 3, dtype=F64, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([0.0, 0.3, 1.0], dtype=F64)
    w = torch.randn(3, 3, dtype=F64, generator=torch.Generator().manual_seed(1))
    for control in ("batch", "sample"):
        solver = SolverConfig(backend="anode", rtol=1e-6, atol=1e-6, step_control=control)
        nfe_a, nfe_b = NFE(), NFE()
        a = odesolve(lambda s, y: torch.tanh(y @ w) * (1 + s), y0, t, solver, nfe=nfe_a)
        with torch.no_grad():
            b = odesolve(lambda s, y: torch.tanh(y @ w) * (1 + s), y0, t, solver, nfe=nfe_b)
        assert torch.equal(a, b) and nfe_a == nfe_b
    ref = odesolve(lambda s, y: torch.tanh(y @ w) * (1 + s), y0, t, SolverConfig(rtol=1e-6, atol=1e-6))
    assert torch.equal(odesolve(lambda s, y: torch.tanh(y @ w) * (1 + s), y0, t,
                                SolverConfig(backend="anode", rtol=1e-6, atol=1e-6)), ref)


@pytest.mark.parametrize("control", ["batch", "sample"])
def test_a_field_whose_parameter_enters_later_gets_its_gradient(control: str) -> None:
    """The field's output requires grad only from t > 0.5: the loop started with its stage buffer and
    goes over to stacking; the gradient is torchdiffeq's (batch control) or its rows' (per sample)."""
    y0 = torch.randn(3, 2, dtype=F64, generator=torch.Generator().manual_seed(2))
    t = torch.tensor([0.0, 1.0], dtype=F64)

    def run(backend: str, step_control: str, rows: slice = slice(None)) -> tuple[torch.Tensor, torch.Tensor]:
        w = torch.tensor(0.7, dtype=F64, requires_grad=True)

        def field(s: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            late = bool((s > 0.5).all()) if s.dim() == 0 else bool((s > 0.5).any())
            return -y * w if late else -y * 0.7

        solver = SolverConfig(backend=backend, rtol=1e-6, atol=1e-6, step_control=step_control)
        out = odesolve(field, y0[rows], t, solver)
        out[-1].sum().backward()
        return out.detach(), w.grad

    out, grad = run("anode", control)
    assert grad is not None and torch.isfinite(grad) and float(grad) != 0.0
    if control == "batch":
        ref_out, ref_grad = run("torchdiffeq", "batch")
        assert torch.equal(out, ref_out)
        torch.testing.assert_close(grad, ref_grad, rtol=1e-12, atol=0)
