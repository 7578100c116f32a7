"""anode.odesolve and SolverConfig: accuracy against analytic solutions, convergence order,
gradients (gradcheck, adjoint vs backprop), NFE accounting and typed solver errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.autograd import gradcheck

import anode
import anode.config
import anode.solvers
from anode import NFE, ODEBlock, ODEFunc, ODENet, SolverConfig, odesolve
from anode.solvers.base import all_finite

pytestmark = pytest.mark.usefixtures("single_thread")

F64 = torch.float64


class Counter(nn.Module):
    """Wraps a vector field and counts the calls actually made to it (independently of anode)."""

    def __init__(self, field: nn.Module) -> None:
        super().__init__()
        self.field = field
        self.calls = 0
        # ODEBlock reads these to augment and shape-check.
        self.augment_dim = getattr(field, "augment_dim", 0)
        self.data_shape = getattr(field, "data_shape", None)

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.field(t, y)


def decay(t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return -y


# ---------------------------------------------------------------------------------------------
# Accuracy against analytic solutions
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "tol", "bound"),
    [
        # bounds are on the global error over [0, 2]; they reflect each method's error control
        # (torchdiffeq's dopri8 estimator is conservative about its own accuracy).
        ("dopri5", 1e-10, 1e-9),
        ("dopri8", 1e-12, 1e-7),
        ("bosh3", 1e-8, 2e-5),
        ("adaptive_heun", 1e-6, 2e-5),
    ],
)
def test_exponential_decay_adaptive(method: str, tol: float, bound: float) -> None:
    y0 = torch.tensor([1.0, -2.0, 0.5], dtype=F64)
    t = torch.linspace(0.0, 2.0, 5, dtype=F64)
    nfe = NFE()
    out = odesolve(decay, y0, t, SolverConfig(method=method, rtol=tol, atol=tol), nfe=nfe)
    exact = torch.exp(-t)[:, None] * y0
    assert out.shape == (5, 3)
    assert out.dtype == F64
    assert torch.equal(out[0], y0)
    assert (out - exact).abs().max().item() < bound
    assert nfe.forward > 0 and nfe.accepted_steps > 0


def test_tighter_tolerance_is_more_accurate() -> None:
    y0 = torch.ones(1, dtype=F64)
    t = torch.tensor([0.0, 1.0], dtype=F64)
    errors = [
        abs(odesolve(decay, y0, t, SolverConfig(rtol=tol, atol=tol))[-1].item() - math.exp(-1))
        for tol in (1e-3, 1e-6, 1e-9)
    ]
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 1e-9


def _linear_problem() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(4, 4, generator=gen, dtype=F64) - 1.5 * torch.eye(4, dtype=F64)  # non-normal
    y0 = torch.randn(3, 4, generator=gen, dtype=F64)  # a batch of 3 states
    t = torch.tensor([0.0, 0.3, 0.7, 1.0], dtype=F64)
    return a, y0, t


@pytest.mark.parametrize(
    ("solver", "bound"),
    [
        (SolverConfig(method="dopri5", rtol=1e-10, atol=1e-10), 1e-8),
        (SolverConfig(method="rk4", step_size=0.01), 1e-8),
    ],
    ids=["dopri5", "rk4"],
)
def test_linear_system_matches_matrix_exponential(solver: SolverConfig, bound: float) -> None:
    a, y0, t = _linear_problem()
    if solver.is_fixed_step:
        t = torch.tensor([0.0, 1.0], dtype=F64)  # fixed-step outputs between grid points are interpolated
    out = odesolve(lambda _t, y: y @ a.T, y0, t, solver)
    exact = torch.stack([y0 @ torch.linalg.matrix_exp(a * ti).T for ti in t])
    assert out.shape == (len(t), 3, 4)
    scale = exact.abs().max().item()
    assert scale > 0.1  # a non-trivial solution
    assert (out - exact).abs().max().item() < bound * max(1.0, scale)


def test_time_dependent_field_sees_t() -> None:
    # y' = cos(t), y(0) = 0 -> y = sin(t); a solver passing the wrong t would miss this.
    t = torch.linspace(0.0, 1.5, 4, dtype=F64)
    out = odesolve(lambda tt, y: torch.cos(tt) * torch.ones_like(y), torch.zeros(2, dtype=F64), t,
                   SolverConfig(rtol=1e-10, atol=1e-10))
    assert torch.allclose(out[:, 0], torch.sin(t), atol=1e-8)


@pytest.mark.parametrize(
    ("method", "steps", "low", "high"),
    [
        ("euler", (1 / 16, 1 / 32, 1 / 64), 0.8, 1.2),
        ("midpoint", (1 / 8, 1 / 16, 1 / 32), 1.8, 2.2),
        ("rk4", (1 / 4, 1 / 8, 1 / 16), 3.6, 4.4),
    ],
)
def test_convergence_order(method: str, steps: tuple[float, ...], low: float, high: float) -> None:
    y0 = torch.ones(1, dtype=F64)
    t = torch.tensor([0.0, 1.0], dtype=F64)
    errors = []
    for h in steps:
        out = odesolve(decay, y0, t, SolverConfig(method=method, step_size=h))
        errors.append(abs(out[-1].item() - math.exp(-1.0)))
    slope = np.polyfit(np.log(steps), np.log(errors), 1)[0]
    assert low < slope < high, (method, errors, slope)


def test_t_is_cast_to_state_dtype() -> None:
    out = odesolve(decay, torch.ones(2, dtype=F64), torch.tensor([0.0, 1.0]), SolverConfig(rtol=1e-9, atol=1e-9))
    assert out.dtype == F64
    assert abs(out[-1, 0].item() - math.exp(-1)) < 1e-8


# ---------------------------------------------------------------------------------------------
# Gradients
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "solver",
    [SolverConfig(method="rk4", step_size=0.25), SolverConfig(method="dopri5", rtol=1e-9, atol=1e-9)],
    ids=["rk4", "dopri5"],
)
def test_gradcheck_through_odenet(solver: SolverConfig) -> None:
    with anode.seeded(0):
        model = ODENet(2, 4, augment_dim=1, non_linearity="tanh", solver=solver).double()
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(3, 2, generator=gen, dtype=F64, requires_grad=True)
    assert gradcheck(model, (x,))

    name = "odeblock.odefunc.fc2.weight"
    weight = dict(model.named_parameters())[name].detach().clone().requires_grad_(True)

    def as_function_of_weight(w: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(model, {name: w}, (x.detach(),))

    assert gradcheck(as_function_of_weight, (weight,))


@pytest.mark.parametrize(
    "solver_kwargs",
    [dict(method="dopri5", rtol=1e-10, atol=1e-10), dict(method="rk4", step_size=0.05)],
    ids=["dopri5", "rk4"],
)
def test_adjoint_gradients_match_backprop(solver_kwargs: dict) -> None:
    results = []
    for adjoint in (False, True):
        with anode.seeded(1):
            model = ODENet(2, 8, augment_dim=2, time_dependent=True, non_linearity="tanh",
                           solver=SolverConfig(adjoint=adjoint, **solver_kwargs)).double()
        x = torch.randn(5, 2, generator=torch.Generator().manual_seed(3), dtype=F64).requires_grad_(True)
        model(x).pow(2).sum().backward()
        results.append(([x.grad] + [p.grad for p in model.parameters()], model.nfe.backward))
    (direct, nfe_direct), (adjoint, nfe_adjoint) = results
    assert nfe_direct == 0 and nfe_adjoint > 0  # really two different gradient methods
    assert len(direct) == len(adjoint) == 1 + 8
    for g_direct, g_adjoint in zip(direct, adjoint):
        assert g_direct is not None and g_adjoint is not None
        assert g_direct.abs().max() > 0
        torch.testing.assert_close(g_adjoint, g_direct, rtol=1e-6, atol=1e-8)


def test_adjoint_needs_a_module() -> None:
    with pytest.raises(TypeError, match="nn.Module"):
        odesolve(decay, torch.ones(2), torch.tensor([0.0, 1.0]), SolverConfig(adjoint=True))


# ---------------------------------------------------------------------------------------------
# NFE accounting
# ---------------------------------------------------------------------------------------------


def _counted_block(p: int = 1, solver: SolverConfig = SolverConfig(), seed: int = 0) -> tuple[ODEBlock, Counter]:
    with anode.seeded(seed):
        counter = Counter(ODEFunc(2, 16, augment_dim=p, time_dependent=True))
    return ODEBlock(counter, solver=solver), counter


def test_dopri5_nfe_contract_over_random_inputs_and_tolerances() -> None:
    gen = torch.Generator().manual_seed(0)
    total_rejected = 0
    for case in range(12):
        tol = 10.0 ** -float(torch.empty(()).uniform_(2, 7, generator=gen))
        block, counter = _counted_block(p=case % 3, solver=SolverConfig(rtol=tol, atol=tol), seed=case)
        scale = float(torch.empty(()).uniform_(0.5, 20.0, generator=gen))  # large inputs force rejections
        x = scale * torch.randn(int(torch.randint(1, 40, (), generator=gen)), 2, generator=gen)
        block(x)
        n = block.nfe
        assert n.forward == counter.calls
        assert n.accepted_steps >= 1
        assert n.forward == 2 + 6 * (n.accepted_steps + n.rejected_steps), (tol, n)
        assert n.backward == 0
        total_rejected += n.rejected_steps
    assert total_rejected > 0  # the contract was exercised with rejected steps too


def test_dopri5_nfe_contract_with_rejections_on_stiff_field() -> None:
    nfe = NFE()
    calls = []

    def stiff(t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return -200.0 * (y - torch.cos(t))

    odesolve(stiff, torch.ones(3), torch.tensor([0.0, 1.0]), SolverConfig(rtol=1e-5, atol=1e-5), nfe=nfe)
    assert nfe.rejected_steps > 0
    assert nfe.forward == len(calls) == 2 + 6 * (nfe.accepted_steps + nfe.rejected_steps)


@pytest.mark.parametrize(
    "solver",
    [SolverConfig(method="bosh3"), SolverConfig(method="rk4", step_size=0.25), SolverConfig(method="euler", step_size=0.1)],
    ids=["bosh3", "rk4", "euler"],
)
def test_forward_nfe_equals_actual_calls(solver: SolverConfig) -> None:
    block, counter = _counted_block(solver=solver)
    block(torch.randn(8, 2, generator=torch.Generator().manual_seed(0)))
    assert block.nfe.forward == counter.calls > 0
    if solver.method == "rk4":
        assert counter.calls == 4 * 4  # 4 steps x 4 stages
    if solver.method == "euler":
        assert counter.calls == 10


def test_backward_nfe_zero_without_adjoint() -> None:
    block, counter = _counted_block()
    out = block(torch.randn(8, 2, generator=torch.Generator().manual_seed(0)))
    forward_calls = counter.calls
    out.pow(2).sum().backward()
    assert counter.calls == forward_calls  # autograd replays operations, no new field calls
    assert block.nfe.backward == 0
    assert block.nfe.forward == forward_calls


def test_backward_nfe_counts_adjoint_calls() -> None:
    block, counter = _counted_block(solver=SolverConfig(adjoint=True))
    out = block(torch.randn(8, 2, generator=torch.Generator().manual_seed(0)))
    forward_calls = counter.calls
    assert block.nfe.forward == forward_calls and block.nfe.backward == 0
    out.pow(2).sum().backward()
    backward_calls = counter.calls - forward_calls
    assert backward_calls > 0
    assert block.nfe.backward == backward_calls
    assert block.nfe.forward == forward_calls  # backward does not touch the forward count
    n = block.nfe
    assert n.backward_accepted_steps > 0
    assert n.backward == 2 + 6 * (n.backward_accepted_steps + n.backward_rejected_steps)


@pytest.mark.parametrize("adjoint", [False, True])
def test_counts_reset_per_call(adjoint: bool) -> None:
    block, counter = _counted_block(solver=SolverConfig(rtol=1e-2, atol=1e-2, adjoint=adjoint))
    x = torch.randn(8, 2, generator=torch.Generator().manual_seed(0))
    block(x).sum().backward()
    first_forward, first_backward = block.nfe.forward, block.nfe.backward
    assert (first_backward > 0) == adjoint

    block.solver = SolverConfig(rtol=1e-6, atol=1e-6, adjoint=adjoint)
    before = counter.calls
    block(x)
    second = counter.calls - before
    assert second > first_forward  # tighter tolerance: more work
    assert block.nfe.forward == second  # not first_forward + second
    assert block.nfe.backward == 0  # the new forward call reset the backward count


def test_two_calls_before_one_backward_sum_both_adjoint_solves() -> None:
    gen = torch.Generator().manual_seed(0)
    x1, x2 = torch.randn(8, 2, generator=gen), 3 * torch.randn(8, 2, generator=gen)
    solver = SolverConfig(adjoint=True)

    def backward_calls(inputs: list[torch.Tensor]) -> tuple[int, int]:
        block, counter = _counted_block(solver=solver)
        loss = sum(block(x).pow(2).sum() for x in inputs)
        before = counter.calls
        loss.backward()
        return block.nfe.backward, counter.calls - before

    (alone1, calls1), (alone2, calls2) = backward_calls([x1]), backward_calls([x2])
    together, calls_together = backward_calls([x1, x2])
    assert alone1 == calls1 > 0 and alone2 == calls2 > 0
    assert together == calls_together
    assert together == alone1 + alone2


# ---------------------------------------------------------------------------------------------
# Solver errors
# ---------------------------------------------------------------------------------------------


def test_max_steps_exceeded() -> None:
    with pytest.raises(anode.MaxStepsExceeded, match=r"maximum number of steps.*raise max_num_steps") as info:
        odesolve(lambda t, y: -1000.0 * y, torch.ones(3, 2), torch.tensor([0.0, 1.0]), SolverConfig(max_num_steps=2))
    assert isinstance(info.value, anode.SolverError)
    assert isinstance(info.value.__cause__, AssertionError)


def test_max_steps_exceeded_through_model() -> None:
    with anode.seeded(0):
        model = ODENet(2, 16, solver=SolverConfig(rtol=1e-8, atol=1e-8, max_num_steps=1))
    with pytest.raises(anode.SolverError, match="loosen rtol/atol"):
        model(torch.randn(4, 2))


def test_step_size_underflow() -> None:
    # y' = 1/(t - 0.5)^2 has a non-integrable singularity at t = 0.5: the step shrinks to nothing.
    def singular(t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(y) / (t - 0.5) ** 2

    with pytest.raises(anode.StepSizeUnderflow, match="step size underflowed") as info:
        odesolve(singular, torch.full((1,), 0.3, dtype=F64), torch.tensor([0.0, 1.0]),
                 SolverConfig(rtol=1e-6, atol=1e-6, max_num_steps=100_000))
    assert isinstance(info.value, anode.SolverError)


def test_non_finite_state_fixed_step() -> None:
    with pytest.raises(anode.NonFiniteState, match="non-finite"):
        odesolve(lambda t, y: y * float("nan"), torch.ones(3, 2), torch.tensor([0.0, 1.0]),
                 SolverConfig(method="rk4", step_size=0.1))


def test_nan_field_adaptive_raises_solver_error() -> None:
    with pytest.raises(anode.SolverError, match="Things to try"):
        odesolve(lambda t, y: y * float("nan"), torch.ones(3, 2), torch.tensor([0.0, 1.0]), SolverConfig())


def test_nan_field_adaptive_is_non_finite_state() -> None:
    with pytest.raises(anode.NonFiniteState):
        odesolve(lambda t, y: y * float("nan"), torch.ones(3, 2), torch.tensor([0.0, 1.0]), SolverConfig())


def test_error_hierarchy() -> None:
    for kind in (anode.MaxStepsExceeded, anode.StepSizeUnderflow, anode.NonFiniteState):
        assert issubclass(kind, anode.SolverError)
    assert issubclass(anode.SolverError, RuntimeError)


def test_other_assertions_pass_through() -> None:
    # t not increasing: torchdiffeq's own input assertion is not a solver failure.
    with pytest.raises(AssertionError) as info:
        odesolve(decay, torch.ones(2), torch.tensor([0.0, 1.0, 0.5]), SolverConfig())
    assert not isinstance(info.value, anode.SolverError)


# ---------------------------------------------------------------------------------------------
# SolverConfig validation
# ---------------------------------------------------------------------------------------------


def test_unknown_method_lists_choices() -> None:
    with pytest.raises(ValueError, match=r"unknown ODE method 'rk45'.*dopri5.*rk4"):
        SolverConfig(method="rk45")


@pytest.mark.parametrize("field", ["rtol", "atol"])
@pytest.mark.parametrize("value", [0.0, -1e-3, float("nan"), float("inf")])
def test_non_positive_tolerance(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=f"{field} must be a finite positive number"):
        SolverConfig(**{field: value})


def test_tolerance_wrong_type() -> None:
    with pytest.raises(TypeError, match="rtol must be a number"):
        SolverConfig(rtol="1e-3")  # type: ignore[arg-type]


def test_fixed_step_needs_step_size() -> None:
    with pytest.raises(ValueError, match=r"'rk4' is fixed-step and needs step_size"):
        SolverConfig(method="rk4")


def test_step_size_rejected_for_adaptive() -> None:
    with pytest.raises(ValueError, match=r"only used by fixed-step methods.*remove step_size"):
        SolverConfig(method="dopri5", step_size=0.1)


def test_non_positive_step_size() -> None:
    with pytest.raises(ValueError, match="step_size must be a finite positive number"):
        SolverConfig(method="euler", step_size=0.0)


def test_adjoint_tolerances_need_adjoint() -> None:
    with pytest.raises(ValueError, match="only used with adjoint=True"):
        SolverConfig(adjoint_rtol=1e-5)
    assert SolverConfig(adjoint=True, adjoint_rtol=1e-5).adjoint_rtol == 1e-5


@pytest.mark.parametrize("value", [0, -3, 2.5, True])
def test_bad_max_num_steps(value: object) -> None:
    with pytest.raises(ValueError, match="max_num_steps must be a positive integer"):
        SolverConfig(max_num_steps=value)  # type: ignore[arg-type]


def test_adjoint_must_be_bool() -> None:
    with pytest.raises(TypeError, match="adjoint must be True or False"):
        SolverConfig(adjoint=1)  # type: ignore[arg-type]


def test_config_round_trip() -> None:
    cfg = SolverConfig(method="rk4", step_size=0.1, adjoint=True, adjoint_atol=1e-4)
    assert SolverConfig(**cfg.to_dict()) == cfg
    assert cfg.is_fixed_step and not SolverConfig().is_fixed_step


# ---------------------------------------------------------------------------------------------
# Solver backends
# ---------------------------------------------------------------------------------------------


def test_backend_default_and_choices() -> None:
    assert SolverConfig().backend == "torchdiffeq"
    assert SolverConfig(backend="anode").backend == "anode"
    with pytest.raises(ValueError, match=r"unknown solver backend 'fast'.*torchdiffeq.*anode"):
        SolverConfig(backend="fast")
    with pytest.raises(ValueError, match=r"unknown solver backend"):
        SolverConfig(backend=None)  # type: ignore[arg-type]


def test_anode_backend_rejects_methods_it_does_not_provide() -> None:
    with pytest.raises(ValueError, match=r"'dopri8' is not provided by the 'anode' backend.*backend='torchdiffeq'"):
        SolverConfig(method="dopri8", backend="anode")
    for method in anode.config.ANODE_BACKEND_METHODS:
        kwargs = {"step_size": 0.1} if method in anode.config.FIXED_STEP_METHODS else {}
        assert SolverConfig(method=method, backend="anode", **kwargs).backend == "anode"


def test_anode_backend_takes_only_the_adjoint_seminorm() -> None:
    semi = {"adjoint_options": {"norm": "seminorm"}}
    cfg = SolverConfig(backend="anode", adjoint=True, options=semi)
    assert cfg.adjoint_norm == "seminorm" and SolverConfig(backend="anode", adjoint=True).adjoint_norm == "default"
    assert SolverConfig(**cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match=r"passed to torchdiffeq only.*takes only .*seminorm"):
        SolverConfig(backend="anode", options={"first_step": 0.1})
    with pytest.raises(ValueError, match=r"passed to torchdiffeq only"):
        SolverConfig(backend="anode", adjoint=True, options={"adjoint_options": {"norm": "seminorm", "first_step": 0.1}})
    with pytest.raises(ValueError, match=r"configures the adjoint solve: set adjoint=True"):
        SolverConfig(backend="anode", options=semi)


def test_backend_round_trip_and_registry() -> None:
    cfg = SolverConfig(method="bosh3", backend="anode", adjoint=True)
    assert cfg.to_dict()["backend"] == "anode"
    assert SolverConfig(**cfg.to_dict()) == cfg
    assert set(anode.solvers.BACKEND_SOLVERS) == set(anode.config.BACKENDS)
    with pytest.raises(ValueError, match="valid choices"):
        anode.solvers.get_backend("nope")


def test_fixed_step_counts_steps_as_accepted() -> None:
    nfe = NFE()
    odesolve(decay, torch.ones(2), torch.tensor([0.0, 1.0]), SolverConfig(method="rk4", step_size=0.25), nfe=nfe)
    assert (nfe.forward, nfe.accepted_steps, nfe.rejected_steps) == (16, 4, 0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
def test_all_finite_is_exact_when_the_sum_overflows(dtype: torch.dtype) -> None:
    """`all_finite` reads the sum first: finite entries whose sum overflows are still finite."""
    big = torch.full((4, 3), torch.finfo(dtype).max, dtype=dtype)
    assert all_finite(big) and all_finite(-big) and all_finite(torch.empty(0, dtype=dtype))
    for bad in (float("nan"), float("inf"), float("-inf")):
        x = big.clone()
        x[2, 1] = bad
        assert not all_finite(x) and not all_finite(x.requires_grad_())
    assert all_finite(torch.ones(3, dtype=torch.complex64)) and not all_finite(torch.tensor([1j * math.inf]))
