"""The "anode" solver backend on its own terms: fixed-grid methods equal to torchdiffeq's, NFE and
step accounting, convergence orders, gradcheck, adjoint against backprop, typed errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from test_solve import Counter, decay
from torch import nn
from torch.autograd import gradcheck

import anode
from anode import NFE, ODEBlock, ODEFunc, ODENet, SolverConfig, odesolve

pytestmark = pytest.mark.usefixtures("single_thread")

F64 = torch.float64
FIXED = ("euler", "midpoint", "heun2", "heun3", "rk4")


def _block(solver: SolverConfig, *, p: int = 2, seed: int = 0, dtype: torch.dtype = torch.float32,
           non_linearity: str = "tanh") -> tuple[ODEBlock, Counter]:
    with anode.seeded(seed):
        counter = Counter(ODEFunc(2, 16, augment_dim=p, time_dependent=True, non_linearity=non_linearity)).to(dtype)
    return ODEBlock(counter, solver=solver), counter


def _assert_gradients_close(grads_a: list[torch.Tensor], grads_r: list[torch.Tensor]) -> None:
    """Each gradient equals its reference to a few ulp of the reference's largest entry. Two backward
    passes sum the same terms in different orders (and the CPU's kernels choose orders too: AMD and
    Intel machines differ), so entries near zero can differ relatively; on an AMD EPYC the largest
    difference was 1.4e-7 (float32) and 2.7e-16 (float64) of the largest entry."""
    for g_a, g_r in zip(grads_a, grads_r, strict=True):
        scale, eps = float(g_r.abs().max()), torch.finfo(g_r.dtype).eps
        assert scale > 0
        torch.testing.assert_close(g_a, g_r, rtol=16 * eps, atol=16 * eps * scale)


# ---------------------------------------------------------------------------------------------
# Fixed-grid methods: same grid, same increments, same interpolation as torchdiffeq
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("device_arithmetic", [False, True], ids=["host", "device-path"])
@pytest.mark.parametrize("dtype", [torch.float32, F64], ids=["float32", "float64"])
@pytest.mark.parametrize("method", FIXED)
def test_fixed_step_equals_torchdiffeq(method: str, dtype: torch.dtype, device_arithmetic: bool,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from anode.solvers import rk

    if device_arithmetic:  # the stage-time arithmetic used off the CPU, forced here
        monkeypatch.setattr(rk, "_host_arrays", lambda device: False)
    gen = torch.Generator().manual_seed(0)
    x = 2.0 * torch.randn(16, 2, generator=gen).to(dtype)
    times = torch.tensor([0.0, 0.13, 0.5, 0.77, 1.0])  # off-grid times use linear interpolation
    results = {}
    for backend in ("torchdiffeq", "anode"):
        block, counter = _block(SolverConfig(method=method, step_size=0.1, backend=backend), dtype=dtype)
        xb = x.clone().requires_grad_(True)
        out = block(xb, eval_times=times)
        out.pow(2).sum().backward()
        grads = [xb.grad] + [p.grad for p in block.parameters()]
        results[backend] = (out.detach(), grads, block.nfe, counter.calls)
    (out_r, grads_r, nfe_r, calls_r), (out_a, grads_a, nfe_a, calls_a) = results["torchdiffeq"], results["anode"]
    assert torch.equal(out_a, out_r)  # op for op as torchdiffeq: bitwise equal
    assert nfe_a == nfe_r
    assert nfe_a.forward == calls_a == calls_r
    stages = {"euler": 1, "midpoint": 2, "heun2": 2, "heun3": 3, "rk4": 4}[method]
    assert nfe_a.accepted_steps == 10 and nfe_a.forward == 10 * stages and nfe_a.rejected_steps == 0
    _assert_gradients_close(grads_a, grads_r)


def test_rk4_is_the_three_eighths_rule() -> None:
    # One step of y' = t^3 (y(0) = 0, h = 1): the 3/8 rule gives (0 + 3/27 + 3*8/27 + 1) / 8 = 0.25
    # exactly (it integrates cubics exactly), as does classic RK4; on y' = t^4 they differ:
    # 3/8 rule (0 + 3/81 + 3*16/81 + 1)/8 = 0.20370..., classic (0 + 2/16 + 2/16 + 1)/6 = 0.208333...
    out = odesolve(lambda t, y: torch.ones_like(y) * t**4, torch.zeros(1, dtype=F64), torch.tensor([0.0, 1.0]),
                   SolverConfig(method="rk4", step_size=1.0, backend="anode"))
    assert out[-1].item() == pytest.approx((3 / 81 + 48 / 81 + 1) / 8, rel=1e-14)


@pytest.mark.parametrize(
    ("method", "ratio"),
    [("euler", 2.0), ("midpoint", 4.0), ("heun3", 8.0), ("rk4", 16.0)],
)
def test_convergence_order_error_ratio(method: str, ratio: float) -> None:
    """Halving the step divides the global error by 2^order (y' = -y on [0, 1], float64)."""
    y0 = torch.ones(1, dtype=F64)
    t = torch.tensor([0.0, 1.0], dtype=F64)
    errors = []
    for h in (1 / 8, 1 / 16, 1 / 32):
        out = odesolve(decay, y0, t, SolverConfig(method=method, step_size=h, backend="anode"))
        errors.append(abs(out[-1].item() - math.exp(-1.0)))
    ratios = [errors[0] / errors[1], errors[1] / errors[2]]
    for r in ratios:
        assert r == pytest.approx(ratio, rel=0.1), (method, errors, ratios)


def test_adaptive_accuracy_against_matrix_exponential() -> None:
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(4, 4, generator=gen, dtype=F64) - 1.5 * torch.eye(4, dtype=F64)
    y0 = torch.randn(3, 4, generator=gen, dtype=F64)
    t = torch.tensor([0.0, 0.3, 0.7, 1.0], dtype=F64)
    exact = torch.stack([y0 @ torch.linalg.matrix_exp(a * ti).T for ti in t])
    for method, tol, bound in (("dopri5", 1e-10, 1e-8), ("bosh3", 1e-8, 1e-5)):
        out = odesolve(lambda _t, y: y @ a.T, y0, t, SolverConfig(method=method, rtol=tol, atol=tol, backend="anode"))
        assert torch.equal(out[0], y0)
        assert (out - exact).abs().max().item() < bound * exact.abs().max().item()


# ---------------------------------------------------------------------------------------------
# NFE and step accounting
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "stages"), [("dopri5", 6), ("bosh3", 3)])
def test_adaptive_nfe_contract(method: str, stages: int) -> None:
    gen = torch.Generator().manual_seed(1)
    total_rejected = 0
    for case in range(8):
        tol = 10.0 ** -float(torch.empty(()).uniform_(2, 6, generator=gen))
        block, counter = _block(SolverConfig(method=method, rtol=tol, atol=tol, backend="anode"), p=case % 3, seed=case,
                                non_linearity="relu")
        block(float(torch.empty(()).uniform_(0.5, 20.0, generator=gen)) * torch.randn(24, 2, generator=gen))
        n = block.nfe
        assert n.forward == counter.calls
        assert n.forward == 2 + stages * (n.accepted_steps + n.rejected_steps), n
        assert n.backward == 0
        total_rejected += n.rejected_steps
    # a stiff field forces rejections
    nfe, calls = NFE(), []

    def stiff(t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return -200.0 * (y - torch.cos(t))

    odesolve(stiff, torch.ones(3), torch.tensor([0.0, 1.0]), SolverConfig(method=method, rtol=1e-5, atol=1e-5,
                                                                           backend="anode"), nfe=nfe)
    assert nfe.forward == len(calls) == 2 + stages * (nfe.accepted_steps + nfe.rejected_steps)
    assert total_rejected + nfe.rejected_steps > 0 and nfe.rejected_steps > 0


def test_backprop_makes_no_field_calls_and_adjoint_counts_them() -> None:
    x = torch.randn(8, 2, generator=torch.Generator().manual_seed(0))
    block, counter = _block(SolverConfig(backend="anode"))
    block(x).pow(2).sum().backward()
    assert block.nfe.backward == 0 and counter.calls == block.nfe.forward

    block, counter = _block(SolverConfig(backend="anode", adjoint=True))
    out = block(x)
    forward_calls = counter.calls
    assert block.nfe.forward == forward_calls
    out.pow(2).sum().backward()
    n = block.nfe
    assert n.backward == counter.calls - forward_calls > 0
    assert n.backward == 2 + 6 * (n.backward_accepted_steps + n.backward_rejected_steps)
    assert n.forward == forward_calls


# ---------------------------------------------------------------------------------------------
# Gradients
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "solver",
    [SolverConfig(method="rk4", step_size=0.25, backend="anode"),
     SolverConfig(method="dopri5", rtol=1e-9, atol=1e-9, backend="anode"),
     SolverConfig(method="heun3", step_size=0.2, backend="anode")],
    ids=["rk4", "dopri5", "heun3"],
)
def test_gradcheck_backprop(solver: SolverConfig) -> None:
    # (Adaptive solvers differentiate the discrete map only partially, as torchdiffeq does: later
    # step sizes are detached. At dopri5's 1e-9 that is invisible; bosh3 fails gradcheck at any
    # tolerance with either backend, so it is checked against torchdiffeq's gradients instead.)
    with anode.seeded(0):
        model = ODENet(2, 4, augment_dim=1, time_dependent=True, non_linearity="tanh", solver=solver).double()
    x = torch.randn(3, 2, generator=torch.Generator().manual_seed(1), dtype=F64, requires_grad=True)
    assert gradcheck(model, (x,))
    name = "odeblock.odefunc.fc2.weight"
    weight = dict(model.named_parameters())[name].detach().clone().requires_grad_(True)
    assert gradcheck(lambda w: torch.func.functional_call(model, {name: w}, (x.detach(),)), (weight,))


@pytest.mark.parametrize(
    "solver_kwargs",
    [{"method": "dopri5", "rtol": 1e-10, "atol": 1e-10}, {"method": "rk4", "step_size": 0.05}],
    ids=["dopri5", "rk4"],
)
def test_adjoint_matches_backprop(solver_kwargs: dict) -> None:
    results = []
    for adjoint in (False, True):
        with anode.seeded(1):
            model = ODENet(2, 8, augment_dim=2, time_dependent=True, non_linearity="tanh",
                           solver=SolverConfig(adjoint=adjoint, backend="anode", **solver_kwargs)).double()
        x = torch.randn(5, 2, generator=torch.Generator().manual_seed(3), dtype=F64).requires_grad_(True)
        model(x).pow(2).sum().backward()
        results.append(([x.grad] + [p.grad for p in model.parameters()], model.nfe.backward))
    (direct, nfe_direct), (adjoint, nfe_adjoint) = results
    assert nfe_direct == 0 and nfe_adjoint > 0
    for g_direct, g_adjoint in zip(direct, adjoint):
        assert g_direct.abs().max() > 0
        torch.testing.assert_close(g_adjoint, g_direct, rtol=1e-6, atol=1e-8)


def test_training_step_with_anode_backend_matches_torchdiffeq() -> None:
    """Ten Adam steps of the toy ANODE give the same losses with either backend."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 2, generator=gen)
    y = torch.where(x.norm(dim=1, keepdim=True) < 1.0, -1.0, 1.0)
    losses = {}
    for backend in ("torchdiffeq", "anode"):
        with anode.seeded(0):
            model = ODENet(2, 32, augment_dim=5, time_dependent=True, solver=SolverConfig(backend=backend))
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        history = []
        for _ in range(10):
            opt.zero_grad()
            loss = nn.functional.smooth_l1_loss(model(x), y)
            loss.backward()
            opt.step()
            history.append((loss.item(), model.nfe.forward, model.nfe.accepted_steps, model.nfe.rejected_steps))
        losses[backend] = history
    ref, new = np.array(losses["torchdiffeq"]), np.array(losses["anode"])
    np.testing.assert_array_equal(new[:, 1:], ref[:, 1:])  # same NFE and steps at every iteration
    assert new[0, 0] == ref[0, 0]  # the first loss is bitwise equal (same forward operations)
    # Gradients agree to ~1e-7 relative (autograd accumulation order); Adam divides each update
    # by the root of its running squared gradient, which amplifies such differences in near-zero
    # gradient entries, so after ten steps the losses agree to ~5e-5 relative rather than bitwise.
    np.testing.assert_allclose(new[:, 0], ref[:, 0], rtol=5e-4)


# ---------------------------------------------------------------------------------------------
# Failures: the same typed errors as the torchdiffeq backend
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["torchdiffeq", "anode"])
def test_max_steps_exceeded(backend: str) -> None:
    with pytest.raises(anode.MaxStepsExceeded, match=r"maximum number of steps.*raise max_num_steps"):
        odesolve(lambda t, y: -1000.0 * y, torch.ones(3, 2), torch.tensor([0.0, 1.0]),
                 SolverConfig(max_num_steps=2, backend=backend))


@pytest.mark.parametrize("backend", ["torchdiffeq", "anode"])
def test_step_size_underflow(backend: str) -> None:
    def singular(t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(y) / (t - 0.5) ** 2

    with pytest.raises(anode.StepSizeUnderflow, match="step size underflowed"):
        odesolve(singular, torch.full((1,), 0.3, dtype=F64), torch.tensor([0.0, 1.0]),
                 SolverConfig(rtol=1e-6, atol=1e-6, max_num_steps=100_000, backend=backend))


@pytest.mark.parametrize("backend", ["torchdiffeq", "anode"])
@pytest.mark.parametrize("solver_kwargs", [{}, {"method": "rk4", "step_size": 0.1}], ids=["dopri5", "rk4"])
def test_nan_field_is_non_finite_state(backend: str, solver_kwargs: dict) -> None:
    with pytest.raises(anode.NonFiniteState, match="Things to try"):
        odesolve(lambda t, y: y * float("nan"), torch.ones(3, 2), torch.tensor([0.0, 1.0]),
                 SolverConfig(backend=backend, **solver_kwargs))


def test_anode_backend_input_errors() -> None:
    solver = SolverConfig(backend="anode")
    with pytest.raises(ValueError, match="strictly increasing"):
        odesolve(decay, torch.ones(2), torch.tensor([0.0, 1.0, 0.5]), solver)
    with pytest.raises(TypeError, match=r"float32 or float64.*backend='torchdiffeq'"):
        odesolve(decay, torch.ones(2, dtype=torch.float16), torch.tensor([0.0, 1.0]), solver)
    with pytest.raises(ValueError, match="does not differentiate with respect to t"):
        odesolve(decay, torch.ones(2), torch.tensor([0.0, 1.0], requires_grad=True), solver)
    with pytest.raises(anode.NonFiniteState):
        odesolve(decay, torch.tensor([1.0, float("inf")]), torch.tensor([0.0, 1.0]), solver)


@pytest.mark.parametrize("method", ["dopri5", "bosh3"])
@pytest.mark.parametrize("device_arithmetic", [False, True], ids=["host", "device-path"])
def test_solve_without_graph_is_bitwise_the_graphed_solve(method: str, device_arithmetic: bool,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a graph an adaptive solve writes each stage once into a column buffer instead of
    stacking the stages anew: the same operands in the same layout, so the same solution bits and
    steps as the solve with a graph (which stacks, as torchdiffeq does)."""
    from anode.solvers import rk

    if device_arithmetic:
        monkeypatch.setattr(rk, "_host_arrays", lambda device: False)
    stacks = []  # stage sums by torch.stack: every stage with a graph, only the dense output's without
    real_stage_sum = rk._stage_sum
    monkeypatch.setattr(rk, "_stage_sum", lambda ks, coef: stacks.append(1) or real_stage_sum(ks, coef))
    gen = torch.Generator().manual_seed(3)
    for dtype in (torch.float32, F64):
        field = anode.ConvODEFunc((1, 6, 6), 8, augment_dim=2, time_dependent=True).to(dtype)
        y0 = torch.cat([torch.randn(4, 1, 6, 6, generator=gen), torch.zeros(4, 2, 6, 6)], 1).to(dtype)
        t = torch.tensor([0.0, 0.3, 1.0], dtype=dtype)
        solver = SolverConfig(backend="anode", method=method, rtol=1e-5, atol=1e-5)
        graphed_nfe, bare_nfe = NFE(), NFE()
        stacks.clear()
        graphed = odesolve(field, y0.clone().requires_grad_(True), t, solver, nfe=graphed_nfe)
        stacked_with_graph = len(stacks)
        stacks.clear()
        with torch.no_grad():
            bare = odesolve(field, y0, t, solver, nfe=bare_nfe)
        assert stacked_with_graph >= bare_nfe.accepted_steps and len(stacks) <= len(t) - 1  # the buffer was used
        assert graphed.requires_grad and not bare.requires_grad
        assert bare_nfe == graphed_nfe and bare_nfe.accepted_steps > 2
        assert torch.equal(bare, graphed.detach())


def test_solve_without_graph_refuses_a_field_of_the_wrong_shape() -> None:
    with torch.no_grad(), pytest.raises(ValueError, match=r"returned shape \(1, 2\) for a state of shape \(3, 2\)"):
        odesolve(lambda t, y: y[:1], torch.ones(3, 2), torch.tensor([0.0, 1.0]), SolverConfig(backend="anode"))


@pytest.mark.parametrize("method", ["euler", "rk4", "bosh3"])
def test_adjoint_equals_torchdiffeq_adjoint(method: str) -> None:
    """anode's adjoint pass (own solver) reproduces torchdiffeq's odeint_adjoint: counts and gradients."""
    kwargs = {"step_size": 0.1} if method in ("euler", "rk4") else {"rtol": 1e-4, "atol": 1e-4}
    x = 2.0 * torch.randn(16, 2, generator=torch.Generator().manual_seed(0))
    times = torch.tensor([0.0, 0.35, 1.0])
    results = {}
    for backend in ("torchdiffeq", "anode"):
        block, counter = _block(SolverConfig(method=method, adjoint=True, backend=backend, **kwargs),
                                non_linearity="relu")
        xb = x.clone().requires_grad_(True)
        block(xb, eval_times=times).pow(2).sum().backward()
        results[backend] = ([xb.grad] + [p.grad for p in block.parameters()], block.nfe, counter.calls)
    (grads_r, nfe_r, calls_r), (grads_a, nfe_a, calls_a) = results["torchdiffeq"], results["anode"]
    assert nfe_a == nfe_r and calls_a == calls_r
    assert nfe_a.backward > 0 and nfe_a.backward_accepted_steps > 0
    _assert_gradients_close(grads_a, grads_r)


@pytest.mark.parametrize("backend", ["torchdiffeq", "anode"])
def test_adjoint_pass_failure_is_typed(backend: str) -> None:
    # a loose forward solve, then an adjoint solve far too tight for its step budget
    block, _ = _block(SolverConfig(rtol=1e-2, atol=1e-2, adjoint=True, adjoint_rtol=1e-12, adjoint_atol=1e-12,
                                   max_num_steps=5, backend=backend), non_linearity="relu")
    out = block(5.0 * torch.randn(16, 2, generator=torch.Generator().manual_seed(0)))
    with pytest.raises(anode.MaxStepsExceeded, match="backward pass"), anode.translate_solver_errors("backward pass"):
        out.pow(2).sum().backward()


def test_tableaux_are_torchdiffeqs() -> None:
    from torchdiffeq._impl.bosh3 import _BOGACKI_SHAMPINE_TABLEAU, _BS_C_MID
    from torchdiffeq._impl.dopri5 import _DORMAND_PRINCE_SHAMPINE_TABLEAU, DPS_C_MID

    from anode.solvers.rk import ADAPTIVE_TABLEAUX

    for name, (ref, mid) in {"dopri5": (_DORMAND_PRINCE_SHAMPINE_TABLEAU, DPS_C_MID),
                             "bosh3": (_BOGACKI_SHAMPINE_TABLEAU, _BS_C_MID)}.items():
        tab = ADAPTIVE_TABLEAUX[name]
        assert torch.equal(torch.tensor(tab.alpha, dtype=F64), ref.alpha)
        assert len(tab.beta) == len(ref.beta)
        for row, ref_row in zip(tab.beta, ref.beta):
            assert torch.equal(torch.tensor(row, dtype=F64), ref_row)
        assert torch.equal(torch.tensor(tab.beta[-1] + (0.0,), dtype=F64), ref.c_sol)  # first same as last
        assert torch.equal(torch.tensor(tab.c_error, dtype=F64), ref.c_error)
        assert torch.equal(torch.tensor(tab.c_mid, dtype=F64), mid)


@pytest.mark.parametrize("method", FIXED)
def test_fixed_tableaux_describe_the_steps(method: str) -> None:
    """One step of the generic explicit RK formula with FIXED_TABLEAUX[method] equals the solver's step."""
    from anode.solvers.rk import FIXED_TABLEAUX

    def field(t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.cos(3 * t) * y + t**2

    tab = FIXED_TABLEAUX[method]
    y0, h = torch.tensor([0.7, -1.3], dtype=F64), 0.5
    ks = [field(torch.tensor(0.0, dtype=F64), y0)]
    for c, row in zip(tab.c, tab.a):
        t_stage = torch.tensor(h if c is None else c * h, dtype=F64)
        ks.append(field(t_stage, y0 + h * sum(a * k for a, k in zip(row, ks))))
    expected = y0 + h * sum(b * k for b, k in zip(tab.b, ks))
    out = odesolve(field, y0, torch.tensor([0.0, h], dtype=F64), SolverConfig(method=method, step_size=h, backend="anode"))
    torch.testing.assert_close(out[-1], expected, rtol=1e-14, atol=1e-14)
    assert len(tab.b) == len(tab.c) + 1 == {"euler": 1, "midpoint": 2, "heun2": 2, "heun3": 3, "rk4": 4}[method]


@pytest.mark.parametrize("method", ["dopri5", "bosh3"])
def test_dense_output_gradients_in_first_and_later_steps(method: str) -> None:
    """Outputs inside the first step (whose size carries a gradient), at later steps, and several in
    one step: float64 gradients equal torchdiffeq's to rounding."""
    times = torch.tensor([0.0, 1e-4, 2e-4, 0.5, 0.51, 1.0], dtype=F64)
    x = torch.randn(8, 2, generator=torch.Generator().manual_seed(4), dtype=F64)
    results = {}
    for backend in ("torchdiffeq", "anode"):
        block, _ = _block(SolverConfig(method=method, rtol=1e-4, atol=1e-4, backend=backend), dtype=F64,
                          non_linearity="softplus")
        xb = x.clone().requires_grad_(True)
        out = block(xb, eval_times=times)
        weight = torch.randn(out.shape, generator=torch.Generator().manual_seed(5), dtype=F64)
        (out * weight).sum().backward()
        results[backend] = (out.detach(), [xb.grad] + [p.grad for p in block.parameters()], block.nfe)
    (out_r, grads_r, nfe_r), (out_a, grads_a, nfe_a) = results["torchdiffeq"], results["anode"]
    assert nfe_a == nfe_r and nfe_a.accepted_steps >= 2
    assert torch.equal(out_a, out_r)
    for g_a, g_r in zip(grads_a, grads_r):
        assert g_r.abs().max() > 0
        torch.testing.assert_close(g_a, g_r, rtol=1e-12, atol=1e-14)
