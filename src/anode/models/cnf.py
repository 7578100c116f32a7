"""Continuous normalizing flows (CNF, FFJORD) and augmented CNFs.

A CNF moves data x = z(0) along dz/dt = f(z, t) to z(T) and tracks the change of log-density,
d log p(z(t)) / dt = -tr(df/dz) (Chen et al. 2018, Grathwohl et al. 2019). With a standard normal
base density at t = T,

    log p(x) = log N(z(T); 0, I) + integral_0^T tr(df/dz(z(t), t)) dt.

The state handed to `anode.odesolve` is one tensor, [z, delta] concatenated along the last
dimension (delta(0) = 0, d delta / dt = -tr), so both solver backends, backpropagation and the
adjoint method work unchanged; the regularisers of Finlay et al. (2020) join the same state.

The trace is computed exactly (`trace="exact"`, for small dimensions: in closed form by forward-mode
tangents through the layers when the field is a plain MLP (`anode.ODEFunc`, see `mlp_trace`), else
with autograd, one backward pass per dimension) or estimated with Hutchinson's trick (`trace="hutchinson"`: e^T (df/dz) e
with one probe e per sample per solve, Gaussian or Rademacher, drawn from an explicit generator
and held fixed for the whole solve as in FFJORD). Samples are drawn from N(0, I) at t = T and
solved backwards to t = 0.

An augmented CNF (the question of Sec. 6 of Dupont et al. 2019) models the joint density of
[x, a], a in R^p drawn from q(a | x); it is trained on the evidence lower bound
E_q[log p(x, a) - log q(a | x)] and evaluated with the importance-weighted bound with K samples.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
from torch import nn

from ..config import SolverConfig
from ..regularisers import NOISE_KINDS, REGULARISERS, hutchinson_noise
from ..solve import NFE, odesolve
from .validation import check_int

__all__ = [
    "AUGMENTED_POSTERIORS",
    "CNF",
    "PROBE_KINDS",
    "TRACE_ESTIMATORS",
    "AugmentedCNF",
    "CNFDynamics",
    "GaussianPosterior",
    "StandardNormalPosterior",
    "exact_trace",
    "hutchinson_trace",
    "mlp_trace",
    "standard_normal_log_prob",
]

#: How the CNF computes tr(df/dz): "exact" (autograd, one backward pass per dimension) or
#: "hutchinson" (an unbiased one-probe estimate, FFJORD).
TRACE_ESTIMATORS: tuple[str, ...] = ("exact", "hutchinson")
#: Distributions of the Hutchinson probe: "gaussian" (N(0, I)) or "rademacher" (+-1, lower variance).
PROBE_KINDS: tuple[str, ...] = NOISE_KINDS
#: The q(a | x) of an augmented CNF: "standard_normal" (a ~ N(0, I), independent of x) or
#: "gaussian" (a learned diagonal Gaussian whose mean and log-std an MLP computes from x).
AUGMENTED_POSTERIORS: tuple[str, ...] = ("standard_normal", "gaussian")

_LOG_2PI = math.log(2.0 * math.pi)


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I) of each row of `z`.

    Arguments:
        z: points, shape `[batch, dim]`.

    Returns:
        Shape `[batch]`.
    """
    return -0.5 * (z.pow(2).sum(-1) + z.shape[-1] * _LOG_2PI)


def exact_trace(f: torch.Tensor, z: torch.Tensor, *, create_graph: bool,
                frobenius: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """tr(df/dz) per sample, and ||df/dz||_F^2, with one autograd pass per dimension.

    Sample i of `f` must depend on sample i of `z` only (no batch norm and the like).

    Arguments:
        f: the field's value, shape `[batch, dim]`, computed from `z` with grad enabled.
        z: the state, shape `[batch, dim]`, requiring grad.
        create_graph: keep the graph of the result (needed to differentiate it: backprop
            through the solver, or the adjoint's backward solve).
        frobenius: also compute ||df/dz||_F^2 (else None is returned in its place).

    Returns:
        `(trace, frobenius_squared)`, each of shape `[batch]` (the second None without `frobenius`).

    Raises:
        ValueError: `f` and `z` of different shapes, or not `[batch, dim]`.
    """
    if f.shape != z.shape or f.dim() != 2:
        raise ValueError(f"exact_trace needs f and z of the same shape [batch, dim], got {tuple(f.shape)} and {tuple(z.shape)}")
    trace = f.new_zeros(f.shape[0])
    norm = f.new_zeros(f.shape[0]) if frobenius else None
    for i in range(f.shape[1]):
        (row,) = torch.autograd.grad(f[:, i].sum(), z, create_graph=create_graph, retain_graph=True)
        trace = trace + row[:, i]
        if norm is not None:
            norm = norm + row.pow(2).sum(1)
    return trace, norm


def _activation_slope(name: str, pre: torch.Tensor, post: torch.Tensor) -> torch.Tensor:
    """d act / d pre at `pre` (`post` = act(pre)), differentiable where the activation is."""
    if name == "tanh":
        return 1 - post * post
    if name == "softplus":  # torch's softplus (beta 1, threshold 20) is linear above 20: slope 1 there
        return torch.where(pre > 20, torch.ones_like(pre), torch.sigmoid(pre))
    if name == "relu":
        return (pre > 0).to(pre.dtype)
    raise ValueError(f"no slope for activation {name!r}; valid choices: tanh, softplus, relu")


def mlp_trace(mlp: object, t: torch.Tensor, z: torch.Tensor, *,
              frobenius: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The field f(t, z) of a plain MLP, tr(df/dz) and ||df/dz||_F^2 per sample, in closed form.

    The Jacobian is carried through the layers as forward-mode tangents (one per input dimension):
    J = W_n diag(act'(a_{n-1})) W_{n-1} ... diag(act'(a_1)) W_1[:, z], plain tensor operations that
    autograd differentiates once more without a double backward. It equals `exact_trace`'s value to
    rounding at a fraction of its cost (no autograd pass per dimension).

    Arguments:
        mlp: the field's layers, an `anode.solvers.fused.MLPField` (what `ODEFunc.fused_mlp()`
            returns): weights, biases, activation, time_dependent.
        t: the time, a scalar tensor (read by a time-dependent field as its first input column).
        z: the state, shape `[batch, dim]`; the last layer must map back to `dim`.
        frobenius: also return ||df/dz||_F^2 (else None in its place).

    Returns:
        `(f, trace, frobenius_squared)`: f `[batch, dim]` (the same operations as `ODEFunc.forward`),
        the trace `[batch]` and the squared Frobenius norm `[batch]` or None.

    Raises:
        ValueError: `z` not `[batch, dim]` or a field that does not map R^dim to R^dim.
    """
    weights, biases = mlp.weights, mlp.biases  # type: ignore[attr-defined]
    offset = int(mlp.time_dependent)  # type: ignore[attr-defined]
    if z.dim() != 2 or weights[0].shape[1] != z.shape[1] + offset or weights[-1].shape[0] != z.shape[1]:
        raise ValueError(f"mlp_trace needs a state [batch, dim] and a field from R^dim to R^dim, got a state of shape "
                         f"{tuple(z.shape)} and layers {[tuple(w.shape) for w in weights]}")
    x = torch.cat([torch.ones_like(z[:, :1]) * t.to(z.dtype), z], 1) if offset else z
    act = {"tanh": torch.tanh, "relu": torch.relu, "softplus": nn.functional.softplus}[mlp.activation]  # type: ignore[attr-defined]
    if len(weights) == 3 and not frobenius:  # two hidden layers (`ODEFunc`): tr(J) as a bilinear form
        # tr(W3 S2 W2 S1 W1z) = sum_{k, m} s2[k] (W2 * (W1z W3)^T)[k, m] s1[m], with S = diag(s), s = act'(a):
        # one [batch, width] x [width, width] product instead of one per dimension
        pre1 = nn.functional.linear(x, weights[0], biases[0])
        h1 = act(pre1)
        pre2 = nn.functional.linear(h1, weights[1], biases[1])
        h2 = act(pre2)
        f = nn.functional.linear(h2, weights[2], biases[2])
        form = weights[1] * torch.matmul(weights[0][:, offset:], weights[2]).t()
        s1 = _activation_slope(mlp.activation, pre1, h1)  # type: ignore[attr-defined]
        s2 = _activation_slope(mlp.activation, pre2, h2)  # type: ignore[attr-defined]
        return f, (torch.matmul(s1, form.t()) * s2).sum(1), None
    tangent: torch.Tensor | None = None  # tangent[b, j, k] = d h_k / d z_j: [batch, dim, width]
    h = x
    for w, b in zip(weights[:-1], biases[:-1]):
        pre = nn.functional.linear(h, w, b)
        h = act(pre)
        moved = w[:, offset:].t() if tangent is None else torch.matmul(tangent, w.t())
        tangent = _activation_slope(mlp.activation, pre, h).unsqueeze(1) * moved  # type: ignore[attr-defined]
    w_last = weights[-1]
    f = nn.functional.linear(h, w_last, biases[-1])
    if tangent is None:  # one layer: a linear field, J = W
        jac = w_last[:, offset:].expand(z.shape[0], -1, -1)
        return f, jac.diagonal(dim1=1, dim2=2).sum(-1), jac.pow(2).sum((1, 2)) if frobenius else None
    jac_t = torch.matmul(tangent, w_last.t())  # [b, j, i] = d f_i / d z_j
    return f, jac_t.diagonal(dim1=1, dim2=2).sum(-1), jac_t.pow(2).sum((1, 2)) if frobenius else None


def hutchinson_trace(f: torch.Tensor, z: torch.Tensor, probe: torch.Tensor, *,
                     create_graph: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Hutchinson's estimate e^T (df/dz) e of tr(df/dz), and ||e^T df/dz||^2, per sample.

    Both are unbiased when E[e e^T] = I (a Gaussian or Rademacher probe): the first for the
    trace, the second for the squared Frobenius norm of the Jacobian.

    Arguments:
        f: the field's value `[batch, dim]`, computed from `z` with grad enabled.
        z: the state `[batch, dim]`, requiring grad.
        probe: e, shape `[batch, dim]`.
        create_graph: keep the graph of the result.

    Returns:
        `(trace_estimate, frobenius_estimate)`, each of shape `[batch]`.

    Raises:
        ValueError: shapes that differ.
    """
    if f.shape != z.shape or probe.shape != z.shape:
        raise ValueError(f"hutchinson_trace needs f, z and probe of one shape, got {tuple(f.shape)}, "
                         f"{tuple(z.shape)} and {tuple(probe.shape)}")
    (vjp,) = torch.autograd.grad(f, z, probe, create_graph=create_graph)
    return (vjp * probe).flatten(1).sum(1), vjp.pow(2).flatten(1).sum(1)


class CNFDynamics(nn.Module):
    """The dynamics of the solver's state s = [z, delta, integrals...] for one solve.

    ds/dt = [f(z, t), -tr(df/dz), ||f||^2 (kinetic energy), ||df/dz||_F^2 (Jacobian norm)]. A new
    instance is made for every solve and holds that solve's Hutchinson probe, so the probe stays
    fixed for the forward solve and for the adjoint's backward solve (the adjoint keeps the
    instance until `backward()`), and two solves never share a probe.

    With `reverse=True` it is the time-reversed dynamics ds/du = -F(s, T - u) on u in [0, T], used
    to solve from t = T back to t = 0 with increasing times (as both backends require); the
    regularisers' integrands keep their sign (they integrate positive quantities either way).

    Arguments:
        odefunc: the vector field `odefunc(t, z)` on `[batch, dim]`.
        dim: the dimension of z.
        trace: one of `TRACE_ESTIMATORS`.
        probe: the Hutchinson probe `[batch, dim]` (needed for `trace="hutchinson"`).
        kinetic_energy: integrate ||f||^2.
        jacobian_norm: integrate ||df/dz||_F^2 (exact with the exact trace, the Hutchinson
            estimate ||e^T df/dz||^2 with the same probe otherwise).
        reverse: the time-reversed dynamics.
        t_end: T (used with `reverse`).

    Raises:
        ValueError: an unknown `trace`, or `trace="hutchinson"` without a probe.
    """

    def __init__(self, odefunc: nn.Module, dim: int, *, trace: str = "exact", probe: torch.Tensor | None = None,
                 kinetic_energy: bool = False, jacobian_norm: bool = False, reverse: bool = False,
                 t_end: float = 1.0) -> None:
        super().__init__()
        if trace not in TRACE_ESTIMATORS:
            raise ValueError(f"unknown trace estimator {trace!r}; valid choices: {list(TRACE_ESTIMATORS)}")
        if trace == "hutchinson" and probe is None:
            raise ValueError("trace='hutchinson' needs a probe (see anode.regularisers.hutchinson_noise)")
        self.odefunc = odefunc
        self.dim = dim
        self.trace = trace
        self.probe = probe
        self.kinetic_energy = kinetic_energy
        self.jacobian_norm = jacobian_norm
        self.reverse = reverse
        self.t_end = t_end

    @property
    def names(self) -> tuple[str, ...]:
        """The regularisers integrated, in state order after [z, delta]."""
        return tuple(n for n, on in zip(REGULARISERS, (self.kinetic_energy, self.jacobian_norm)) if on)

    def forward(self, t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """ds/dt at the state `s` of shape `[batch, dim + 1 + len(names)]`."""
        if self.reverse:
            t = self.t_end - t
        mlp = self.odefunc.fused_mlp() if self.trace == "exact" and hasattr(self.odefunc, "fused_mlp") else None
        if mlp is not None:  # closed form, under the caller's grad mode
            f, trace, frobenius = mlp_trace(mlp, t, s[:, : self.dim], frobenius=self.jacobian_norm)
        else:
            f, trace, frobenius = self._autograd_trace(t, s)
        parts = [-f, trace.unsqueeze(1)] if self.reverse else [f, -trace.unsqueeze(1)]
        if self.kinetic_energy:
            parts.append(f.pow(2).sum(1, keepdim=True))
        if self.jacobian_norm and frobenius is not None:
            parts.append(frobenius.unsqueeze(1))
        return torch.cat(parts, 1)

    def _autograd_trace(self, t: torch.Tensor, s: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(f, trace, Frobenius term) of any field by autograd, detached when the caller has no grad."""
        outer_grad = torch.is_grad_enabled()
        with torch.enable_grad():
            # sliced with grad enabled: a view taken under no_grad of a state that requires grad says
            # requires_grad but is not in the graph (the adjoint's forward solve of a learned q's state)
            z = s[:, : self.dim]
            if not z.requires_grad:
                z = z.detach().requires_grad_(True)
            f = self.odefunc(t, z)
            if f.shape != z.shape:
                raise ValueError(f"the CNF's vector field must return the shape of its input {tuple(z.shape)}, "
                                 f"got {tuple(f.shape)}")
            if self.trace == "exact":
                trace, frobenius = exact_trace(f, z, create_graph=outer_grad, frobenius=self.jacobian_norm)
            else:
                trace, frobenius = hutchinson_trace(f, z, self.probe, create_graph=outer_grad)
        if not outer_grad:
            f, trace = f.detach(), trace.detach()
            frobenius = None if frobenius is None else frobenius.detach()
        return f, trace, frobenius


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; valid choices: {list(choices)}")
    return value  # type: ignore[return-value]


def _check_batch(x: object, dim: int, reference: torch.Tensor | None, what: str = "x") -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{what} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{what} must be a floating-point tensor, got dtype {x.dtype}; convert it with {what}.float()")
    if x.dim() != 2 or x.shape[1] != dim:
        raise ValueError(f"{what} of shape {tuple(x.shape)} does not match the model, which expects [batch, {dim}]")
    if reference is not None and x.dtype != reference.dtype:
        raise TypeError(f"{what} dtype {x.dtype} does not match the model's parameters ({reference.dtype}); "
                        f"convert one of them (x.to({reference.dtype}) or model.to({x.dtype}))")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{what} contains NaN or infinite values; clean the data before the model")
    return x


def _check_generator(generator: object, why: str) -> torch.Generator:
    if generator is None:
        raise ValueError(f"{why} needs generator= (a torch.Generator, e.g. anode.make_generator(0)): "
                         "anode draws randomness only from explicit generators")
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    return generator


def _check_not_inference_mode() -> None:
    if torch.is_inference_mode_enabled():
        raise RuntimeError("a CNF needs autograd for its trace, which torch.inference_mode() disables: "
                           "use torch.no_grad() instead")


class CNF(nn.Module):
    """A continuous normalizing flow on R^dim with a standard normal base density at t = T.

    `log_prob(x)` solves [x, 0] forward from t = 0 to t = T along [f, -tr(df/dz)] and returns
    log N(z(T); 0, I) - delta(T); `sample(n, generator=...)` draws z(T) ~ N(0, I) and solves
    backwards to t = 0. With a field f(z) = B z (linear), z(T) = expm(B T) x and
    log p(x) = log N(expm(B T) x; 0, I) + T tr(B).

    **Trace**: `trace="exact"` (autograd; cost grows with dim, for small dimensions) or
    `"hutchinson"` (one probe of kind `probe` per sample per solve, drawn from the `generator`
    passed to `log_prob`/`sample` and fixed during the solve, FFJORD). The field's sample i must
    depend on input sample i only.

    **Gradients**: `solver.adjoint` selects the adjoint method; the probe is held by the
    per-solve `CNFDynamics`, which the adjoint keeps until `backward()`. `nfe` counts the field's
    evaluations of the latest solve (forward; backward with the adjoint), one per evaluation of
    the whole [z, delta] dynamics.

    **Regularisers**: inside `with cnf.regularised(kinetic_energy=True, jacobian_norm=True)`,
    each solve also integrates ||f||^2 and ||df/dz||_F^2 (exact with the exact trace,
    Hutchinson with the same probe otherwise) and adds their batch means to `cnf.regularisation`.
    They join the solver's state, so adaptive step control sees them too.

    Autograd is needed for the trace even at evaluation: use `torch.no_grad()`, not
    `torch.inference_mode()`.

    Arguments:
        odefunc: the vector field `odefunc(t, z)`, an `nn.Module` on `[batch, dim]`.
        dim: the dimension of the data.
        trace: one of `TRACE_ESTIMATORS`.
        probe: one of `PROBE_KINDS` (used with `trace="hutchinson"`).
        solver: method, tolerances, gradient mode and backend.
        t_end: T > 0, the end of the time span [0, T].

    Raises:
        TypeError: `odefunc` not an `nn.Module`, `solver` not a `SolverConfig`.
        ValueError: `dim` < 1, an unknown `trace` or `probe` (the valid ones listed), `t_end` <= 0.
    """

    def __init__(self, odefunc: nn.Module, *, dim: int, trace: str = "exact", probe: str = "gaussian",
                 solver: SolverConfig = SolverConfig(), t_end: float = 1.0) -> None:
        super().__init__()
        if not isinstance(odefunc, nn.Module):
            raise TypeError(f"odefunc must be an nn.Module, got {type(odefunc).__name__}")
        if not isinstance(solver, SolverConfig):
            raise TypeError(f"solver must be an anode.SolverConfig, got {type(solver).__name__}")
        check_int("dim", dim, minimum=1)
        if isinstance(t_end, bool) or not isinstance(t_end, (int, float)) or not math.isfinite(t_end) or t_end <= 0:
            raise ValueError(f"t_end must be a finite number > 0, got {t_end!r}")
        self.odefunc = odefunc
        self.dim = dim
        self.trace = _check_choice("trace estimator", trace, TRACE_ESTIMATORS)
        self.probe = _check_choice("probe kind", probe, PROBE_KINDS)
        self.solver = solver
        self.t_end = float(t_end)
        self.nfe = NFE()
        self.regularisation: dict[str, torch.Tensor] = {}
        self._regularise: dict[str, bool] | None = None

    def _reference(self) -> torch.Tensor | None:
        return next(self.odefunc.parameters(), None)

    @contextlib.contextmanager
    def regularised(self, *, kinetic_energy: bool = False, jacobian_norm: bool = False) -> Iterator[dict[str, torch.Tensor]]:
        """Within the block, every solve also integrates the chosen regularisers.

        Arguments:
            kinetic_energy: integrate ||f||^2.
            jacobian_norm: integrate ||df/dz||_F^2.

        Returns:
            A context manager yielding `self.regularisation`: name -> the sum over the block's
            solves of the batch mean of each integral.

        Raises:
            ValueError: neither regulariser chosen.
        """
        if not (kinetic_energy or jacobian_norm):
            raise ValueError("regularised() needs kinetic_energy=True and/or jacobian_norm=True")
        previous = self._regularise
        self._regularise = {"kinetic_energy": kinetic_energy, "jacobian_norm": jacobian_norm}
        self.regularisation = {}
        try:
            yield self.regularisation
        finally:
            self._regularise = previous

    def _solve(self, z0: torch.Tensor, generator: torch.Generator | None, *, reverse: bool) -> torch.Tensor:
        """Solve [z0, 0, 0...] over [0, T] (reversed with `reverse`); returns the final state."""
        _check_not_inference_mode()
        probe = None
        if self.trace == "hutchinson":
            probe = hutchinson_noise(z0, generator=_check_generator(generator, "trace='hutchinson'"), kind=self.probe)
        options = self._regularise or {}
        dynamics = CNFDynamics(self.odefunc, self.dim, trace=self.trace, probe=probe, reverse=reverse,
                               t_end=self.t_end, **options)
        s0 = torch.cat([z0, z0.new_zeros(z0.shape[0], 1 + len(dynamics.names))], 1)
        times = torch.tensor([0.0, self.t_end], dtype=z0.dtype, device=z0.device)
        s = odesolve(dynamics, s0, times, self.solver, nfe=self.nfe)[-1]
        for i, name in enumerate(dynamics.names):
            mean = s[:, self.dim + 1 + i].mean()
            self.regularisation[name] = self.regularisation[name] + mean if name in self.regularisation else mean
        return s[:, : self.dim + 1]

    def transform(self, x: torch.Tensor, *, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Solve the data forward to the base: z(T) and delta(T) = -integral of tr(df/dz).

        Arguments:
            x: data `[batch, dim]`.
            generator: draws the Hutchinson probe (required with `trace="hutchinson"`).

        Returns:
            `(z, delta)` of shapes `[batch, dim]` and `[batch]`; log p(x) = log N(z) - delta.

        Raises:
            TypeError, ValueError: a bad batch, or a missing generator for the Hutchinson trace.
            RuntimeError: called under `torch.inference_mode()`.
            SolverError: the solve failed.
        """
        _check_batch(x, self.dim, self._reference())
        s = self._solve(x, generator, reverse=False)
        return s[:, : self.dim], s[:, self.dim]

    def log_prob(self, x: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """log p(x) of each row of `x` under the flow (an estimate with the Hutchinson trace).

        Arguments:
            x: data `[batch, dim]`.
            generator: draws the Hutchinson probe (required with `trace="hutchinson"`).

        Returns:
            Shape `[batch]`.

        Raises:
            TypeError, ValueError: a bad batch, or a missing generator for the Hutchinson trace.
            RuntimeError: called under `torch.inference_mode()`.
            SolverError: the solve failed.
        """
        z, delta = self.transform(x, generator=generator)
        return standard_normal_log_prob(z) - delta

    def forward(self, x: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """The same as `log_prob`."""
        return self.log_prob(x, generator=generator)

    def sample(self, n: int, *, generator: torch.Generator, return_log_prob: bool = False
               ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Draw `n` samples: z(T) ~ N(0, I), solved backwards to t = 0.

        Arguments:
            n: the number of samples.
            generator: draws the base points (and the Hutchinson probes).
            return_log_prob: also return log p of each sample (from the same solve).

        Returns:
            Samples `[n, dim]` (in the dtype and on the device of the field's parameters), or
            `(samples, log_prob)` with `return_log_prob`.

        Raises:
            ValueError: `n` < 1 or no generator.
            RuntimeError: called under `torch.inference_mode()`.
            SolverError: the solve failed.
        """
        check_int("n", n, minimum=1)
        generator = _check_generator(generator, "sample()")
        reference = self._reference()
        dtype = reference.dtype if reference is not None else torch.get_default_dtype()
        device = reference.device if reference is not None else torch.device("cpu")
        z = torch.randn(n, self.dim, generator=generator, device=generator.device, dtype=dtype).to(device)
        x, delta = self.inverse(z, generator=generator)
        if return_log_prob:
            return x, standard_normal_log_prob(z) - delta
        return x

    def inverse(self, z: torch.Tensor, *, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Solve base points backwards from t = T to t = 0: the inverse of `transform`.

        Arguments:
            z: base points `[batch, dim]`.
            generator: draws the Hutchinson probe (required with `trace="hutchinson"`).

        Returns:
            `(x, delta)` with x = z(0) `[batch, dim]` and delta `[batch]` such that
            log p(x) = log N(z) - delta (delta = -integral of tr(df/dz), as in `transform`).

        Raises:
            TypeError, ValueError: a bad batch, or a missing generator for the Hutchinson trace.
            RuntimeError: called under `torch.inference_mode()`.
            SolverError: the solve failed.
        """
        _check_batch(z, self.dim, self._reference(), what="z")
        s = self._solve(z, generator, reverse=True)
        return s[:, : self.dim], -s[:, self.dim]


class StandardNormalPosterior(nn.Module):
    """q(a | x) = N(a; 0, I), independent of x, with no parameters.

    Arguments:
        data_dim: d.
        augment_dim: p >= 1.

    Raises:
        ValueError: bad sizes.
    """

    def __init__(self, data_dim: int, augment_dim: int) -> None:
        super().__init__()
        check_int("data_dim", data_dim, minimum=1)
        check_int("augment_dim", augment_dim, minimum=1)
        self.data_dim, self.augment_dim = data_dim, augment_dim

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, log_std) of q(a | x), each `[batch, p]` (zeros)."""
        zeros = x.new_zeros(x.shape[0], self.augment_dim)
        return zeros, zeros


class GaussianPosterior(nn.Module):
    """A learned diagonal Gaussian q(a | x) = N(a; mu(x), diag(sigma(x)^2)).

    An MLP d -> hidden -> hidden -> 2p (softplus activations) gives mu and log sigma; its last layer
    starts at zero, so q starts as N(0, I).

    Arguments:
        data_dim: d.
        augment_dim: p >= 1.
        hidden_dim: width of the hidden layers.

    Raises:
        ValueError: bad sizes.
    """

    def __init__(self, data_dim: int, augment_dim: int, *, hidden_dim: int = 32) -> None:
        super().__init__()
        check_int("data_dim", data_dim, minimum=1)
        check_int("augment_dim", augment_dim, minimum=1)
        check_int("hidden_dim", hidden_dim, minimum=1)
        self.data_dim, self.augment_dim = data_dim, augment_dim
        self.net = nn.Sequential(nn.Linear(data_dim, hidden_dim), nn.Softplus(), nn.Linear(hidden_dim, hidden_dim),
                                 nn.Softplus(), nn.Linear(hidden_dim, 2 * augment_dim))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, log_std) of q(a | x), each `[batch, p]`."""
        out = self.net(x)
        return out[:, : self.augment_dim], out[:, self.augment_dim:]


class AugmentedCNF(nn.Module):
    """An augmented CNF: a CNF on [x, a] in R^(d+p), with a ~ q(a | x), trained on the ELBO.

    The flow models the joint density p(x, a); the data's density p(x) = integral p(x, a) da is
    bounded below by the ELBO E_q[log p(x, a) - log q(a | x)] (`elbo`, for training) and, more
    tightly, by the importance-weighted bound with K samples
    log (1/K) sum_k p(x, a_k) / q(a_k | x) (`iw_bound`, for test log-likelihoods; state K).
    The IW bound is nondecreasing in K in expectation and tends to log p(x) as K grows.

    p = 0 is not an augmented density model (there is nothing to integrate out): `augment_dim=0`
    is refused; use `CNF` for a plain flow.

    Arguments:
        odefunc: the vector field `odefunc(t, h)` on `[batch, d + p]`.
        data_dim: d.
        augment_dim: p >= 1.
        posterior: q(a | x), one of `AUGMENTED_POSTERIORS` ("standard_normal" or "gaussian", a
            learned diagonal Gaussian from an MLP on x), or an `nn.Module` mapping x to
            `(mean, log_std)`, each `[batch, p]`.
        posterior_hidden: hidden width of the "gaussian" posterior's MLP.
        trace, probe, solver, t_end: as for `CNF` (on dimension d + p).

    Raises:
        ValueError: `augment_dim=0` (use `CNF`), an unknown posterior, trace or probe (valid ones
            listed), or bad sizes.
        TypeError: bad types (see `CNF`).
    """

    def __init__(self, odefunc: nn.Module, *, data_dim: int, augment_dim: int,
                 posterior: str | nn.Module = "standard_normal", posterior_hidden: int = 32,
                 trace: str = "exact", probe: str = "gaussian", solver: SolverConfig = SolverConfig(),
                 t_end: float = 1.0) -> None:
        super().__init__()
        check_int("data_dim", data_dim, minimum=1)
        if isinstance(augment_dim, int) and not isinstance(augment_dim, bool) and augment_dim == 0:
            raise ValueError("augment_dim=0 is not an augmented density model (there is no a to integrate out): "
                             "use anode.CNF(odefunc, dim=data_dim) for a plain CNF, or give augment_dim >= 1")
        check_int("augment_dim", augment_dim, minimum=1)
        if isinstance(posterior, str):
            _check_choice("posterior", posterior, AUGMENTED_POSTERIORS)
            posterior = (StandardNormalPosterior(data_dim, augment_dim) if posterior == "standard_normal"
                         else GaussianPosterior(data_dim, augment_dim, hidden_dim=posterior_hidden))
        elif not isinstance(posterior, nn.Module):
            raise TypeError(f"posterior must be a name from {list(AUGMENTED_POSTERIORS)} or an nn.Module returning "
                            f"(mean, log_std), got {type(posterior).__name__}")
        self.data_dim, self.augment_dim = data_dim, augment_dim
        self.posterior = posterior
        self.cnf = CNF(odefunc, dim=data_dim + augment_dim, trace=trace, probe=probe, solver=solver, t_end=t_end)

    @property
    def nfe(self) -> NFE:
        """The NFE of the latest solve (the joint CNF's)."""
        return self.cnf.nfe

    def regularised(self, *, kinetic_energy: bool = False,
                    jacobian_norm: bool = False) -> contextlib.AbstractContextManager[dict[str, torch.Tensor]]:
        """`CNF.regularised` of the joint flow.

        Arguments:
            kinetic_energy: integrate ||f||^2.
            jacobian_norm: integrate ||df/dh||_F^2.

        Returns:
            The context manager, yielding the regularisation dict.

        Raises:
            ValueError: neither regulariser chosen.
        """
        return self.cnf.regularised(kinetic_energy=kinetic_energy, jacobian_norm=jacobian_norm)

    def sample_augmentation(self, x: torch.Tensor, *, generator: torch.Generator, k: int = 1
                            ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw a ~ q(a | x), `k` per row of `x` (reparametrised: gradients reach q's parameters).

        Arguments:
            x: data `[batch, d]`.
            generator: draws the noise.
            k: samples per data point.

        Returns:
            `(a, log_q)` of shapes `[k, batch, p]` and `[k, batch]`.

        Raises:
            TypeError, ValueError: a bad batch, `k` < 1 or no generator.
        """
        _check_batch(x, self.data_dim, None)
        check_int("k", k, minimum=1)
        generator = _check_generator(generator, "sampling a ~ q(a | x)")
        mean, log_std = self.posterior(x)
        eps = torch.randn((k, *mean.shape), generator=generator, device=generator.device, dtype=mean.dtype).to(mean.device)
        a = mean + log_std.exp() * eps
        log_q = standard_normal_log_prob(eps) - log_std.sum(-1)
        return a, log_q

    def joint_log_prob(self, x: torch.Tensor, a: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """log p(x, a) under the flow on [x, a].

        Arguments:
            x: data `[batch, d]`.
            a: augmentation `[batch, p]`.
            generator: draws the Hutchinson probe (required with `trace="hutchinson"`).

        Returns:
            Shape `[batch]`.

        Raises:
            TypeError, ValueError: bad shapes, or no generator for the Hutchinson trace.
            SolverError: the solve failed.
        """
        _check_batch(a, self.augment_dim, None, what="a")
        return self.cnf.log_prob(torch.cat([x, a], 1), generator=generator)

    def _log_weights(self, x: torch.Tensor, k: int, generator: torch.Generator | None) -> torch.Tensor:
        """log p(x, a_k) - log q(a_k | x), shape `[k, batch]`, from one solve of k * batch points."""
        generator = _check_generator(generator, "an augmented CNF's bound (it samples a ~ q(a | x))")
        a, log_q = self.sample_augmentation(x, generator=generator, k=k)
        xs = x.unsqueeze(0).expand(k, *x.shape)
        joint = torch.cat([xs, a], -1).reshape(k * x.shape[0], -1)
        log_p = self.cnf.log_prob(joint, generator=generator).reshape(k, x.shape[0])
        return log_p - log_q

    def elbo(self, x: torch.Tensor, *, generator: torch.Generator, k: int = 1) -> torch.Tensor:
        """The evidence lower bound E_q[log p(x, a) - log q(a | x)], a Monte Carlo mean over `k` draws.

        Arguments:
            x: data `[batch, d]`.
            generator: draws a (and the Hutchinson probes).
            k: draws per data point.

        Returns:
            Shape `[batch]`; maximise its mean to train.

        Raises:
            TypeError, ValueError: a bad batch, `k` < 1 or no generator.
            SolverError: the solve failed.
        """
        return self._log_weights(x, k, generator).mean(0)

    def iw_bound(self, x: torch.Tensor, *, k: int, generator: torch.Generator) -> torch.Tensor:
        """The importance-weighted bound log (1/K) sum_k p(x, a_k) / q(a_k | x), a_k ~ q(a | x).

        K = 1 is the ELBO; in expectation it increases with K towards log p(x).

        Arguments:
            x: data `[batch, d]`.
            k: K, the number of importance samples per point (report it with the number).
            generator: draws a (and the Hutchinson probes).

        Returns:
            Shape `[batch]`.

        Raises:
            TypeError, ValueError: a bad batch, `k` < 1 or no generator.
            SolverError: the solve failed.
        """
        check_int("k", k, minimum=1)
        log_w = self._log_weights(x, k, generator)
        return torch.logsumexp(log_w, 0) - math.log(k)

    def forward(self, x: torch.Tensor, *, generator: torch.Generator, k: int = 1) -> torch.Tensor:
        """The same as `elbo`."""
        return self.elbo(x, generator=generator, k=k)

    def sample(self, n: int, *, generator: torch.Generator) -> torch.Tensor:
        """Draw `n` samples of x: [x, a] from the joint flow, a dropped.

        Arguments:
            n: the number of samples.
            generator: draws the base points (and the Hutchinson probes).

        Returns:
            Shape `[n, d]`.

        Raises:
            ValueError: `n` < 1 or no generator.
            SolverError: the solve failed.
        """
        joint = self.cnf.sample(n, generator=generator)
        return joint[:, : self.data_dim]
