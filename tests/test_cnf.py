"""CNFs and augmented CNFs (anode.models.cnf) and the 2-D densities (anode.data.densities): values checked."""

from __future__ import annotations

import dataclasses
import itertools
import math

import pytest
import torch
from torch import nn

import anode
from anode.data import DENSITIES, make_density
from anode.models import CNFDynamics, exact_trace, hutchinson_trace, mlp_trace, standard_normal_log_prob
from anode.regularisers import hutchinson_noise
from anode.solvers.fused import MLPField


class Linear(nn.Module):
    """f(t, z) = B z, counting its calls."""

    def __init__(self, b: torch.Tensor) -> None:
        super().__init__()
        self.b = nn.Parameter(b.clone())
        self.calls = 0

    def forward(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return z @ self.b.T


def tight(backend: str = "torchdiffeq", **kwargs: object) -> anode.SolverConfig:
    return anode.SolverConfig(method="dopri5", rtol=1e-9, atol=1e-9, backend=backend, **kwargs)


def mlp_field(dim: int, seed: int = 0) -> anode.ODEFunc:
    with anode.seeded(seed):
        return anode.ODEFunc(dim, 16, time_dependent=True, non_linearity="tanh").double()


def random_matrix(dim: int, seed: int, scale: float = 0.5) -> torch.Tensor:
    return scale * torch.randn(dim, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def points(n: int, dim: int, seed: int) -> torch.Tensor:
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# ---- traces -----------------------------------------------------------------------------------


def test_exact_trace_equals_the_trace_of_the_autograd_jacobian() -> None:
    field = mlp_field(3)
    z = points(5, 3, 1).requires_grad_(True)
    t = torch.tensor(0.3, dtype=torch.float64)
    trace, frobenius = exact_trace(field(t, z), z, create_graph=False)
    for i in range(5):
        jac = torch.autograd.functional.jacobian(lambda v: field(t, v.unsqueeze(0)).squeeze(0), z[i].detach())
        assert trace[i].item() == pytest.approx(torch.trace(jac).item(), abs=1e-12)
        assert frobenius[i].item() == pytest.approx(jac.pow(2).sum().item(), abs=1e-12)


@pytest.mark.parametrize("activation", ["tanh", "softplus", "relu"])
@pytest.mark.parametrize("time_dependent", [True, False])
@pytest.mark.parametrize("frobenius", [False, True])
def test_the_closed_form_mlp_trace_equals_autograds(activation: str, time_dependent: bool, frobenius: bool) -> None:
    with anode.seeded(4):
        field = anode.ODEFunc(3, 16, time_dependent=time_dependent, non_linearity=activation).double()
    z = 3 * points(7, 3, 2)
    t = torch.tensor(0.3, dtype=torch.float64)
    f, trace, frob = mlp_trace(field.fused_mlp(), t, z, frobenius=frobenius)
    zz = z.clone().requires_grad_(True)
    f_ref = field(t, zz)
    trace_ref, frob_ref = exact_trace(f_ref, zz, create_graph=False)
    assert torch.equal(f, f_ref)  # the same operations as ODEFunc.forward
    torch.testing.assert_close(trace, trace_ref, rtol=0, atol=1e-13)
    if frobenius:
        torch.testing.assert_close(frob, frob_ref, rtol=1e-13, atol=1e-13)
    else:
        assert frob is None


@pytest.mark.parametrize("layers", [1, 2, 4])
def test_the_closed_form_trace_of_mlps_of_any_depth(layers: int) -> None:
    gen = torch.Generator().manual_seed(5)
    sizes = [3, *([8] * (layers - 1)), 2]  # a time column, then z in R^2
    weights = tuple(torch.randn(o, i, generator=gen, dtype=torch.float64) / 2 for i, o in itertools.pairwise(sizes))
    biases = tuple(torch.randn(o, generator=gen, dtype=torch.float64) for o in sizes[1:])
    spec = MLPField(weights, biases, "tanh", True)
    z, t = points(6, 2, 3).requires_grad_(True), torch.tensor(0.7, dtype=torch.float64)
    f, trace, frob = mlp_trace(spec, t, z.detach(), frobenius=True)
    x = torch.cat([torch.full((6, 1), 0.7, dtype=torch.float64), z], 1)
    for i, (w, b) in enumerate(zip(weights, biases)):
        x = torch.nn.functional.linear(x, w, b)
        x = torch.tanh(x) if i < len(weights) - 1 else x
    trace_ref, frob_ref = exact_trace(x, z, create_graph=False)
    torch.testing.assert_close(f, x.detach(), rtol=0, atol=1e-14)
    torch.testing.assert_close(trace, trace_ref, rtol=0, atol=1e-13)
    torch.testing.assert_close(frob, frob_ref, rtol=1e-13, atol=1e-13)


def test_the_closed_form_trace_is_differentiable_and_used_by_the_cnf(monkeypatch: pytest.MonkeyPatch) -> None:
    field = mlp_field(2)
    z, t = points(4, 2, 6).requires_grad_(True), torch.tensor(0.4, dtype=torch.float64, requires_grad=True)
    spec = field.fused_mlp()
    assert torch.autograd.gradcheck(lambda zz, tt, *ps: mlp_trace(MLPField(ps[::2], ps[1::2], "tanh", True), tt, zz)[1],
                                    (z, t, *spec.params))
    # a CNF of an ODEFunc takes the closed form (autograd's trace never runs); the same field behind a
    # wrapper takes autograd: the same density
    wrapped = nn.Sequential()
    wrapped.forward = lambda tt, zz: field(tt, zz)  # type: ignore[method-assign]
    x = points(5, 2, 7)
    calls = []

    def counted(*args, **kwargs):
        calls.append(1)
        return exact_trace(*args, **kwargs)

    monkeypatch.setattr(anode.models.cnf, "exact_trace", counted)
    closed = anode.CNF(field, dim=2, solver=tight()).log_prob(x)
    assert calls == []
    generic = anode.CNF(wrapped, dim=2, solver=tight()).log_prob(x)
    assert calls
    torch.testing.assert_close(closed, generic, rtol=0, atol=1e-8)
    with pytest.raises(ValueError, match="from R\\^dim to R\\^dim"):
        mlp_trace(spec, torch.tensor(0.0, dtype=torch.float64), points(4, 3, 0))


@pytest.mark.parametrize("kind", ["gaussian", "rademacher"])
def test_hutchinson_is_unbiased(kind: str) -> None:
    field = mlp_field(3)
    n = 4000
    z = points(1, 3, 2).expand(n, 3).clone().requires_grad_(True)
    t = torch.tensor(0.5, dtype=torch.float64)
    f = field(t, z)
    exact, frobenius = exact_trace(f, z, create_graph=False)
    probe = hutchinson_noise(z, generator=torch.Generator().manual_seed(3), kind=kind)
    estimate, frob_estimate = hutchinson_trace(f, z, probe, create_graph=False)
    for values, target in ((estimate, exact[0]), (frob_estimate, frobenius[0])):
        stderr = values.std() / math.sqrt(n)
        assert stderr > 0
        assert abs(values.mean().item() - target.item()) < 3 * stderr.item()


def test_the_cnf_log_density_with_hutchinson_probes_is_unbiased_one_probe_per_sample() -> None:
    solver = anode.SolverConfig(method="rk4", step_size=0.125)  # fixed steps: the estimate is linear in the probe terms
    field = mlp_field(2)
    x = points(1, 2, 4).expand(2000, 2).clone()
    exact = anode.CNF(field, dim=2, solver=solver)
    hutch = anode.CNF(field, dim=2, trace="hutchinson", probe="rademacher", solver=solver)
    with torch.no_grad():
        target = exact.log_prob(x[:1])[0].item()
        values = hutch.log_prob(x, generator=torch.Generator().manual_seed(5))
    assert values.std() > 0  # one probe per sample: the estimates differ
    assert abs(values.mean().item() - target) < 3 * values.std().item() / math.sqrt(len(values))


# ---- analytic densities ----------------------------------------------------------------------


@pytest.mark.parametrize("backend", anode.solvers.BACKEND_SOLVERS)
@pytest.mark.parametrize("adjoint", [False, True])
def test_a_linear_field_gives_the_analytic_gaussian_log_density(backend: str, adjoint: bool) -> None:
    # The field -A z maps data x at t = 0 to z(1) = expm(-A) x ~ N(0, I); the flow's samples are
    # x = expm(A) z(1), so log p(x) = log N(expm(-A) x; 0, I) - tr(A).
    a = random_matrix(3, 6)
    x = points(7, 3, 7)
    cnf = anode.CNF(Linear(-a), dim=3, solver=tight(backend, adjoint=adjoint))
    log_p = cnf.log_prob(x)
    expected = standard_normal_log_prob(x @ torch.linalg.matrix_exp(-a).T) - torch.trace(a)
    torch.testing.assert_close(log_p, expected, rtol=0, atol=1e-7)
    # the gradient with respect to A matches the analytic one
    log_p.sum().backward()
    a_var = a.clone().requires_grad_(True)
    analytic = standard_normal_log_prob(x @ torch.linalg.matrix_exp(-a_var).T) - torch.trace(a_var)
    (grad,) = torch.autograd.grad(analytic.sum(), a_var)
    torch.testing.assert_close(-cnf.odefunc.b.grad, grad, rtol=1e-5, atol=1e-6)


def test_sampling_solves_backwards_from_the_base() -> None:
    a = random_matrix(2, 8)
    cnf = anode.CNF(Linear(-a), dim=2, solver=tight())
    with torch.no_grad():
        x, log_p = cnf.sample(6, generator=torch.Generator().manual_seed(9), return_log_prob=True)
    z = torch.randn(6, 2, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    torch.testing.assert_close(x, z @ torch.linalg.matrix_exp(a).T, rtol=0, atol=1e-7)
    torch.testing.assert_close(log_p, standard_normal_log_prob(z) - torch.trace(a), rtol=0, atol=1e-7)


@pytest.mark.parametrize("tol", [1e-4, 1e-7])
def test_forward_then_backward_reconstructs_the_input(tol: float) -> None:
    cnf = anode.CNF(mlp_field(2, seed=3), dim=2, solver=anode.SolverConfig(rtol=tol, atol=tol))
    x = points(32, 2, 10)
    with torch.no_grad():
        z, delta = cnf.transform(x)
        back, delta_back = cnf.inverse(z)
    error = (back - x).abs().max().item()
    assert error < 100 * tol
    assert (delta - delta_back).abs().max().item() < 100 * tol
    assert (z - x).abs().max().item() > 1e3 * tol  # the flow moved the points


def test_nfe_counts_every_evaluation_of_the_field() -> None:
    field = Linear(random_matrix(2, 11))
    cnf = anode.CNF(field, dim=2, solver=anode.SolverConfig(method="rk4", step_size=0.25))
    cnf.log_prob(points(4, 2, 12))
    assert cnf.nfe.forward == field.calls == 16 and cnf.nfe.backward == 0
    field.calls = 0
    adjoint = anode.CNF(field, dim=2, solver=tight(adjoint=True))
    adjoint.log_prob(points(4, 2, 12)).sum().backward()
    assert adjoint.nfe.forward + adjoint.nfe.backward == field.calls and adjoint.nfe.backward > 0


@pytest.mark.parametrize("trace", ["exact", "hutchinson"])
def test_both_backends_give_equal_log_densities(trace: str) -> None:
    x = points(16, 2, 13)
    values = []
    for backend in anode.solvers.BACKEND_SOLVERS:
        cnf = anode.CNF(mlp_field(2, seed=4), dim=2, trace=trace,
                        solver=anode.SolverConfig(rtol=1e-6, atol=1e-6, backend=backend))
        values.append(cnf.log_prob(x, generator=torch.Generator().manual_seed(14)).detach())
    torch.testing.assert_close(values[0], values[1], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("trace", ["exact", "hutchinson"])
def test_the_adjoint_gives_the_gradients_of_backprop(trace: str) -> None:
    x = points(8, 2, 15)
    grads = []
    for adjoint in (False, True):
        cnf = anode.CNF(mlp_field(2, seed=5), dim=2, trace=trace, solver=tight(adjoint=adjoint))
        with cnf.regularised(kinetic_energy=True, jacobian_norm=True) as reg:
            loss = -cnf.log_prob(x, generator=torch.Generator().manual_seed(16)).mean() + sum(reg.values())
        grads.append(torch.autograd.grad(loss, list(cnf.parameters())))
    for backprop, adjoint in zip(*grads):
        torch.testing.assert_close(backprop, adjoint, rtol=1e-5, atol=1e-7)


def test_the_regularisers_integrate_the_kinetic_energy_and_the_jacobian_norm() -> None:
    b = random_matrix(2, 17)
    x = points(5, 2, 18)
    cnf = anode.CNF(Linear(b), dim=2, solver=tight())
    with cnf.regularised(kinetic_energy=True, jacobian_norm=True) as reg:
        log_p = cnf.log_prob(x)
    # z(t) = expm(B t) x; the kinetic energy integral_0^1 ||B z(t)||^2 dt by Simpson's rule on 2001 points
    ts = torch.linspace(0, 1, 2001, dtype=torch.float64)
    speed = torch.stack([(x @ torch.linalg.matrix_exp(b * t).T @ b.T).pow(2).sum(1) for t in ts])
    weights = torch.ones(2001, dtype=torch.float64)
    weights[1:-1:2], weights[2:-1:2] = 4, 2
    kinetic = (weights[:, None] * speed).sum(0) / (3 * 2000)
    assert reg["kinetic_energy"].item() == pytest.approx(kinetic.mean().item(), rel=1e-7)
    assert reg["jacobian_norm"].item() == pytest.approx(b.pow(2).sum().item(), rel=1e-9)  # exact trace: exact norm
    # the regularisers do not change the density
    torch.testing.assert_close(log_p, anode.CNF(Linear(b), dim=2, solver=tight()).log_prob(x), rtol=0, atol=1e-7)


@pytest.mark.parametrize("trace", ["exact", "hutchinson"])
def test_dynamics_without_grad_on_a_state_that_requires_grad(trace: str) -> None:
    """The adjoint's forward solve calls the field under no_grad with a state that requires grad (an
    augmented CNF's learned q): the trace must still be taken (regression: a view sliced under
    no_grad claims requires_grad but is not in the graph)."""
    field = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 2)).double()
    generic = nn.Module()
    generic.forward = lambda t, z: field(z)  # type: ignore[method-assign]
    probe = points(4, 2, 11)
    s = torch.cat([points(4, 2, 12), torch.zeros(4, 1, dtype=torch.float64)], 1).requires_grad_(True) * 1.0
    dynamics = CNFDynamics(generic, 2, trace=trace, probe=probe)
    with torch.no_grad():
        out = dynamics(torch.tensor(0.0, dtype=torch.float64), s)
    assert not out.requires_grad
    torch.testing.assert_close(out, dynamics(torch.tensor(0.0, dtype=torch.float64), s.detach()), rtol=0, atol=0)


def test_dynamics_reversed_keep_positive_regularisers() -> None:
    dynamics = CNFDynamics(Linear(random_matrix(2, 19)), 2, kinetic_energy=True, reverse=True)
    out = dynamics(torch.tensor(0.0, dtype=torch.float64), torch.cat([points(3, 2, 20), torch.zeros(3, 2, dtype=torch.float64)], 1))
    assert bool((out[:, 3] > 0).all())


# ---- augmented CNFs ----------------------------------------------------------------------------


def test_elbo_below_iw_bound_below_the_exact_marginal_which_the_bound_approaches() -> None:
    # joint h = [x, a] (d = 2, p = 1), field B h: h = expm(-B) z(1) ~ N(0, S), S = M M^T, M = expm(-B);
    # the marginal of x is N(0, S[:2, :2]), and q(a | x) = N(0, 1) is not the posterior.
    b = random_matrix(3, 21, scale=0.5)
    model = anode.AugmentedCNF(Linear(b), data_dim=2, augment_dim=1, solver=anode.SolverConfig(rtol=1e-5, atol=1e-5))
    x = points(100, 2, 22) * 0.8
    m = torch.linalg.matrix_exp(-b)
    cov = (m @ m.T)[:2, :2]
    exact = torch.distributions.MultivariateNormal(torch.zeros(2, dtype=torch.float64), cov).log_prob(x).mean().item()
    gen = torch.Generator().manual_seed(23)
    with torch.no_grad():
        elbo = model.elbo(x, generator=gen, k=64).mean().item()
        bounds = {k: model.iw_bound(x, k=k, generator=gen).mean().item() for k in (1, 4, 32, 256)}
    gaps = {k: exact - value for k, value in bounds.items()}
    assert elbo < bounds[4] < bounds[32] < bounds[256] < exact
    assert gaps[1] > 0.3  # a visible gap at K = 1 ...
    assert gaps[256] < 0.02 * gaps[1]  # ... which the bound closes as K grows
    assert abs(bounds[1] - elbo) < 0.25 * gaps[1]  # K = 1 is the ELBO (up to Monte Carlo error)


def test_augment_dim_zero_is_refused_with_a_pointer_to_the_plain_cnf() -> None:
    with pytest.raises(ValueError, match=r"augment_dim=0 is not an augmented density model.*anode\.CNF"):
        anode.AugmentedCNF(mlp_field(2), data_dim=2, augment_dim=0)


def test_learned_posterior_gets_gradients_and_training_is_deterministic() -> None:
    def train(seed: int) -> tuple[list[float], torch.Tensor]:
        with anode.seeded(seed):
            model = anode.AugmentedCNF(anode.ODEFunc(3, 16, non_linearity="tanh"), data_dim=2, augment_dim=1,
                                       posterior="gaussian", trace="hutchinson", probe="rademacher",
                                       solver=anode.SolverConfig(rtol=1e-4, atol=1e-4))
        optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
        gen = torch.Generator().manual_seed(seed)
        data = make_density("two_moons", 64, seed=seed)
        losses = []
        for _ in range(3):
            optimiser.zero_grad()
            loss = -model.elbo(data, generator=gen).mean()
            loss.backward()
            assert model.posterior.net[-1].weight.grad.abs().sum() > 0
            optimiser.step()
            losses.append(loss.item())
        with torch.no_grad():
            iw = model.iw_bound(data[:8], k=4, generator=gen)
        return losses, iw

    first, second, other = train(0), train(0), train(1)
    assert first[0] == second[0] and torch.equal(first[1], second[1])
    assert first[0] != other[0]


def test_augmented_samples_are_data_points() -> None:
    model = anode.AugmentedCNF(mlp_field(4), data_dim=2, augment_dim=2, solver=anode.SolverConfig(rtol=1e-4, atol=1e-4))
    with torch.no_grad():
        first = model.sample(5, generator=torch.Generator().manual_seed(0))
        again = model.sample(5, generator=torch.Generator().manual_seed(0))
    assert first.shape == (5, 2) and torch.equal(first, again)


def test_cnf_log_prob_is_deterministic_with_the_same_generator_seed() -> None:
    cnf = anode.CNF(mlp_field(2), dim=2, trace="hutchinson", solver=anode.SolverConfig(rtol=1e-5, atol=1e-5))
    x = points(10, 2, 24)
    with torch.no_grad():
        a = cnf.log_prob(x, generator=torch.Generator().manual_seed(1))
        b = cnf.log_prob(x, generator=torch.Generator().manual_seed(1))
        c = cnf.log_prob(x, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)


# ---- errors ------------------------------------------------------------------------------------


def test_error_paths_name_the_bad_value() -> None:
    field = mlp_field(2)
    with pytest.raises(ValueError, match=r"unknown probe kind 'normal'; valid choices: \['gaussian', 'rademacher'\]"):
        anode.CNF(field, dim=2, trace="hutchinson", probe="normal")
    with pytest.raises(ValueError, match=r"unknown trace estimator 'approx'; valid choices: \['exact', 'hutchinson'\]"):
        anode.CNF(field, dim=2, trace="approx")
    with pytest.raises(ValueError, match=r"unknown posterior 'flow'; valid choices"):
        anode.AugmentedCNF(mlp_field(3), data_dim=2, augment_dim=1, posterior="flow")
    with pytest.raises(ValueError, match=r"trace='hutchinson' needs generator="):
        anode.CNF(field, dim=2, trace="hutchinson").log_prob(points(2, 2, 0))
    with pytest.raises(ValueError, match=r"does not match the model, which expects \[batch, 2\]"):
        anode.CNF(field, dim=2).log_prob(points(2, 3, 0))
    with pytest.raises(RuntimeError, match=r"use torch.no_grad\(\) instead"), torch.inference_mode():
        anode.CNF(field, dim=2).log_prob(points(2, 2, 0))
    with pytest.raises(ValueError, match=r"unknown density 'swiss_roll'; valid choices: \['checkerboard', "):
        make_density("swiss_roll", 10)
    with pytest.raises(ValueError, match=r"num_points must be an integer >= 1, got 0"):
        make_density("two_moons", 0)


# ---- densities --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(DENSITIES))
def test_densities_shapes_seeds_and_scale(name: str) -> None:
    x = make_density(name, 501, seed=3)
    assert x.shape == (501, 2) and x.dtype == torch.float32 and bool(torch.isfinite(x).all())
    assert torch.equal(x, make_density(name, 501, seed=3))
    assert torch.equal(x, DENSITIES[name](501, seed=torch.Generator().manual_seed(3)))
    assert not torch.equal(x, make_density(name, 501, seed=4))
    assert x.abs().max() < 6 and x.std(0).min() > 0.5


def test_density_shapes_match_their_description() -> None:
    rings = make_density("concentric_rings", 4000, seed=0, noise=0.0).double().norm(dim=1)
    torch.testing.assert_close(torch.unique(rings.round(decimals=4)), torch.tensor([0.75, 1.5, 2.25, 3.0], dtype=torch.float64))
    gaussians = make_density("eight_gaussians", 800, seed=0, noise=0.0).double()
    torch.testing.assert_close(gaussians.norm(dim=1), torch.full((800,), 4 / 1.414, dtype=torch.float64))
    board = make_density("checkerboard", 4000, seed=0)
    cells = (torch.floor(board[:, 0] / 2) + torch.floor(board[:, 1] / 2)) % 2
    assert bool((cells == 0).all())  # only the dark squares


# ---- per-sample step control -------------------------------------------------------------------


@pytest.mark.parametrize("augmented", [False, True])
def test_per_sample_step_control_gives_each_point_its_own_solve(augmented: bool) -> None:
    """A CNF (and an augmented CNF) with step_control="sample": every point keeps its own steps, so
    its log-density is its own solve's (equal to solving it alone, to the rounding of a batched
    matrix product), within the tolerance of batch control's, with per-point NFE recorded."""
    dim = 3 if augmented else 2
    field = mlp_field(dim, seed=8)
    x = 2 * points(6, 2, 9)
    solver = anode.SolverConfig(rtol=1e-7, atol=1e-7, backend="anode", step_control="sample")
    if augmented:
        a = points(6, 1, 10)
        model = anode.AugmentedCNF(field, data_dim=2, augment_dim=1, solver=solver)
        batch_model = anode.AugmentedCNF(field, data_dim=2, augment_dim=1,
                                         solver=dataclasses.replace(solver, step_control="batch"))
        log_p = model.joint_log_prob(x, a)
        batch = batch_model.joint_log_prob(x, a)
        alone = torch.cat([model.joint_log_prob(x[i:i + 1], a[i:i + 1]) for i in range(6)])
        nfe = model.nfe
    else:
        model = anode.CNF(field, dim=2, solver=solver)
        batch_model = anode.CNF(field, dim=2, solver=dataclasses.replace(solver, step_control="batch"))
        log_p = model.log_prob(x)
        nfe = dataclasses.replace(model.nfe)
        batch = batch_model.log_prob(x)
        alone = torch.cat([model.log_prob(x[i:i + 1]) for i in range(6)])
    torch.testing.assert_close(log_p, alone, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(log_p, batch, rtol=0, atol=1e-5)
    if not augmented:
        # the points differ in difficulty: the easy ones stop early; the batched calls are the hardest point's
        assert len(nfe.per_sample) == 6 and nfe.forward == max(nfe.per_sample) > min(nfe.per_sample)
    log_p.sum().backward()  # backprop through the per-sample solve
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in field.parameters())
