"""NFE regularisers (Finlay et al. 2020): analytic values, Hutchinson noise, gradients (backprop,
adjoint, gradcheck) and their use through ODEBlock.regularised."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import anode
from anode import NFE, ODEBlock, ODENet, SolverConfig
from anode.regularisers import RegularisedField, hutchinson_noise, regularised_odesolve

pytestmark = pytest.mark.usefixtures("single_thread")

TIGHT = SolverConfig(rtol=1e-10, atol=1e-10)


class Linear(nn.Module):
    """f(h) = h A^T with a fixed matrix A."""

    def __init__(self, matrix: torch.Tensor) -> None:
        super().__init__()
        self.matrix = nn.Parameter(matrix)

    def forward(self, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return h @ self.matrix.T


def _x(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_kinetic_energy_of_linear_decay_equals_its_integral() -> None:
    a, t0, t1 = 0.7, 0.5, 2.0
    y0 = _x(4, 3)
    field = Linear(-a * torch.eye(3, dtype=torch.float64))
    states, integrals = regularised_odesolve(field, y0, torch.tensor([t0, t1]), TIGHT, kinetic_energy=True)
    # h(t) = y0 exp(-a (t - t0)); int ||f||^2 = a ||y0||^2 (1 - exp(-2 a (t1 - t0))) / 2
    expected = a * y0.pow(2).sum(1) * (1 - math.exp(-2 * a * (t1 - t0))) / 2
    torch.testing.assert_close(integrals["kinetic_energy"], expected, rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(states[-1], y0 * math.exp(-a * (t1 - t0)), rtol=1e-7, atol=1e-9)
    assert set(integrals) == {"kinetic_energy"}


def test_jacobian_norm_of_a_scaled_rotation_is_exact_with_rademacher_noise() -> None:
    a, span = 1.5, 2.0
    rotation = torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=torch.float64)
    field = Linear(a * rotation)
    y0 = _x(6, 2)
    _, integrals = regularised_odesolve(field, y0, torch.tensor([0.0, span]), TIGHT, jacobian_norm=True,
                                        kinetic_energy=True, generator=torch.Generator().manual_seed(0),
                                        noise_kind="rademacher")
    # ||e^T J||^2 = a^2 ||e||^2 = a^2 d for +-1 noise: the Frobenius norm ||J||_F^2 = 2 a^2 exactly
    torch.testing.assert_close(integrals["jacobian_norm"], torch.full((6,), 2 * a**2 * span, dtype=torch.float64))
    # a rotation keeps ||h||, so ||f||^2 = a^2 ||y0||^2 all along
    torch.testing.assert_close(integrals["kinetic_energy"], a**2 * y0.pow(2).sum(1) * span, rtol=1e-7, atol=1e-9)


def test_hutchinson_estimate_is_unbiased_for_a_random_matrix() -> None:
    matrix = _x(3, 3, seed=5)
    field = Linear(matrix)
    y0 = torch.zeros(4000, 3, dtype=torch.float64)  # the Jacobian does not depend on the state
    _, integrals = regularised_odesolve(field, y0, torch.tensor([0.0, 1.0]), SolverConfig(), jacobian_norm=True,
                                        generator=torch.Generator().manual_seed(1))
    frobenius = float(matrix.pow(2).sum())
    assert float(integrals["jacobian_norm"].mean().detach()) == pytest.approx(frobenius, rel=0.05)


def test_explicit_noise_gives_its_own_estimate() -> None:
    matrix = _x(2, 2, seed=3)
    noise = _x(5, 2, seed=4)
    _, integrals = regularised_odesolve(Linear(matrix), torch.zeros(5, 2, dtype=torch.float64),
                                        torch.tensor([0.0, 0.5]), TIGHT, jacobian_norm=True, noise=noise)
    torch.testing.assert_close(integrals["jacobian_norm"], 0.5 * (noise @ matrix).pow(2).sum(1))


def test_noise_is_seeded() -> None:
    like = torch.zeros(3, 4)
    a = hutchinson_noise(like, generator=torch.Generator().manual_seed(7))
    b = hutchinson_noise(like, generator=torch.Generator().manual_seed(7))
    r = hutchinson_noise(like, generator=torch.Generator().manual_seed(7), kind="rademacher")
    assert torch.equal(a, b) and a.shape == like.shape
    assert set(r.unique().tolist()) <= {-1.0, 1.0}
    with pytest.raises(ValueError, match=r"unknown noise kind 'uniform'; valid choices: \['gaussian', 'rademacher'\]"):
        hutchinson_noise(like, generator=torch.Generator(), kind="uniform")


def test_regulariser_argument_errors() -> None:
    field = Linear(torch.eye(2, dtype=torch.float64))
    y0 = torch.zeros(2, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="jacobian_norm needs noise= or generator="):
        regularised_odesolve(field, y0, torch.tensor([0.0, 1.0]), jacobian_norm=True)
    with pytest.raises(ValueError, match="needs kinetic_energy=True or jacobian_norm=True"):
        regularised_odesolve(field, y0, torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"noise must have the shape of y0 \(2, 2\), got \(3, 2\)"):
        regularised_odesolve(field, y0, torch.tensor([0.0, 1.0]), jacobian_norm=True, noise=torch.zeros(3, 2))
    with pytest.raises(ValueError, match="jacobian_norm=True needs the Hutchinson noise"):
        RegularisedField(field, (2,), jacobian_norm=True)
    block = ODEBlock(field)
    with pytest.raises(ValueError, match="jacobian_norm needs generator="):
        with block.regularised(jacobian_norm=True):
            pass
    with pytest.raises(ValueError, match="unknown noise_kind 'x'"):
        with block.regularised(kinetic_energy=True, noise_kind="x"):
            pass


def _tiny(seed: int = 0, **kwargs: object) -> ODENet:
    with anode.seeded(seed):
        return ODENet(2, 6, augment_dim=1, non_linearity="tanh", time_dependent=True, **kwargs).double()  # type: ignore[arg-type]


def _regularised_loss(model: ODENet, x: torch.Tensor) -> torch.Tensor:
    with model.odeblock.regularised(kinetic_energy=True, jacobian_norm=True,
                                    generator=torch.Generator().manual_seed(0)) as reg:
        pred = model(x)
    return pred.pow(2).mean() + 0.3 * reg["kinetic_energy"] + 0.2 * reg["jacobian_norm"]


def test_block_regularised_records_batch_means_and_leaves_no_trace() -> None:
    model = _tiny()
    x = _x(5, 2)
    with model.odeblock.regularised(kinetic_energy=True) as reg:
        model(x)
        first = reg["kinetic_energy"].detach().clone()
        model(x)
    torch.testing.assert_close(reg["kinetic_energy"].detach(), 2 * first)  # summed over calls
    _, integrals = regularised_odesolve(model.odeblock.odefunc, model.odeblock.augment(x), torch.tensor([0.0, 1.0]),
                                        model.odeblock.solver, kinetic_energy=True)
    torch.testing.assert_close(first, integrals["kinetic_energy"].mean().detach())
    plain = model(x)  # outside the block: an ordinary solve
    assert plain.shape == (5, 1) and model.odeblock._regularise is None


def test_gradcheck_regularised_tiny_model() -> None:
    model = _tiny(solver=SolverConfig(method="rk4", step_size=0.25))
    x = _x(3, 2).requires_grad_(True)
    weight = model.odeblock.odefunc.fc1.weight.detach().clone().requires_grad_(True)

    def loss(x_in: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        del model.odeblock.odefunc.fc1.weight
        model.odeblock.odefunc.fc1.weight = w  # a plain tensor: gradcheck differentiates through it
        try:
            return _regularised_loss(model, x_in)
        finally:
            del model.odeblock.odefunc.fc1.weight
            model.odeblock.odefunc.fc1.weight = nn.Parameter(weight.detach().clone())

    assert torch.autograd.gradcheck(loss, (x, weight), eps=1e-6, atol=1e-5)


def test_adjoint_gradients_of_a_regularised_loss_match_backprop() -> None:
    solver = SolverConfig(rtol=1e-9, atol=1e-9)
    backprop, adjoint = _tiny(solver=solver), _tiny(solver=SolverConfig(rtol=1e-9, atol=1e-9, adjoint=True))
    x = _x(4, 2)
    grads = []
    for model in (backprop, adjoint):
        model.zero_grad()
        _regularised_loss(model, x).backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    assert adjoint.nfe.backward > 0 and backprop.nfe.backward == 0
    for g_backprop, g_adjoint in zip(*grads):
        torch.testing.assert_close(g_adjoint, g_backprop, rtol=1e-5, atol=1e-7)


def test_regularised_solve_counts_nfe() -> None:
    calls = []

    class Counting(Linear):
        def forward(self, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
            calls.append(1)
            return super().forward(t, h)

    nfe = NFE()
    regularised_odesolve(Counting(-torch.eye(2, dtype=torch.float64)), _x(3, 2), torch.tensor([0.0, 1.0]),
                         kinetic_energy=True, nfe=nfe)
    assert nfe.forward == len(calls) > 0 and (nfe.forward - 2) % 6 == 0
