"""The adaptive loop of `anode.solvers.loop`: the stage buffer of a solve without a graph, and the
switch to stacking when a field's output needs a graph only later in the solve."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchdiffeq._impl.misc import _rms_norm, _select_initial_step

from anode import NFE, SolverConfig, odesolve
from anode.solvers.control import Counts, StepControl, select_initial_step, tolerance_tensors

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


FIELDS = {  # name -> f(t, y) in the state's dtype; between them every branch of Hairer's selection
    "linear": lambda t, y: -y * (1 + t),
    "oscillating": lambda t, y: torch.sin(50 * y) * 3,  # d2 > d1
    "tiny": lambda t, y: y * 1e-20,  # d1 < 1e-5 (h0 = 1e-6), d1, d2 <= 1e-15: h1 = max(1e-6, h0 / 1000)
    "zero": lambda t, y: torch.zeros_like(y),  # the same branches with d1 = d2 = 0
}


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("field", list(FIELDS))
@pytest.mark.parametrize("method", ["dopri5", "bosh3"])
def test_the_initial_step_on_the_host_is_the_graphed_one_and_torchdiffeqs(dtype: torch.dtype, field: str,
                                                                          method: str) -> None:
    """Without a graph the one-controller initial step runs its scalar arithmetic in NumPy: the same
    step size and intermediates as with a graph (torch's operations), and torchdiffeq's step size."""
    func = FIELDS[field]
    gen = torch.Generator().manual_seed(7)
    branches = set()
    for scale in (1e-14, 1e-3, 1.0, 1e4):
        y0 = (torch.randn(16, 5, generator=gen, dtype=F64) * scale).to(dtype)
        t0 = torch.tensor(0.25, dtype=F64)
        order = StepControl(method, y0, 1e-4, 1e-6, 100, "test").order - 1
        f0 = func(t0.to(dtype), y0)
        calls = NFE()
        host = select_initial_step(func, t0, y0, f0, order, 1e-4, 1e-6, Counts(calls))
        y0_graph = y0.clone().requires_grad_()
        graph = select_initial_step(func, t0, y0_graph, func(t0.to(dtype), y0_graph), order, 1e-4, 1e-6, Counts(NFE()))
        assert isinstance(host.h, np.float64) and isinstance(graph.h, torch.Tensor) and calls.forward == 1
        for name in ("h", "d0", "d1", "d2", "h0", "h1"):
            assert float(getattr(host, name)) == getattr(graph, name).item(), name
        branches.add((host.h0_varies, host.h1_power, float(host.d2) > float(host.d1)))
        assert (host.h0_varies, host.h1_power) == (graph.h0_varies, graph.h1_power)
        assert torch.equal(host.f1, graph.f1.detach())
        rtol, atol = tolerance_tensors(1e-4, 1e-6, y0.device)
        ref = _select_initial_step(lambda t, y: func(t.to(y.dtype), y), t0, y0, order, rtol, atol, _rms_norm, f0=f0)
        assert float(host.h) == float(ref)
    assert branches == BRANCHES[field]  # (h0 = 0.01 d0 / d1?, h1 a power?, d2 > d1?)


BRANCHES = {"linear": {(True, True, False), (False, True, False)},  # (False, ...): y0 ~ 1e-14, d0 < 1e-5
            "oscillating": {(True, True, False), (True, True, True), (False, True, True)},
            "tiny": {(False, False, False)}, "zero": {(False, False, False)}}
