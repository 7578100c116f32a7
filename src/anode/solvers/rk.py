"""anode's own explicit Runge-Kutta solver: torchdiffeq's numbers with less Python work per step.

What it reproduces from torchdiffeq 0.2.5 (`_impl/rk_common.py`, `misc.py`, `interp.py`,
`solvers.py`, `fixed_grid.py`), so that the same problem takes the same accepted and rejected
steps and the same number of function evaluations (NFE):

* adaptive methods (dopri5, bosh3): Hairer's initial step selection (`select_initial_step`,
  with the same autograd graph, since the first step size depends on y0 and the parameters),
  the mixed-precision time handling (times in float64, stage times in the state's dtype, the
  last stage just before t1 via `nextafter`), the RMS error norm of
  `err / (atol + rtol * max(|y0|, |y1|))`, accept when the ratio is <= 1, the step-size
  update `dt * min(10, max(0.9 / ratio ** (1 / order), 0.2 or 1))`, FSAL reuse of the last
  stage, `max_num_steps` counted per output interval (accepted and rejected steps), and the
  4th-order dense output (`_interp_fit` / `_interp_evaluate`) at every output time. The
  gradient paths through time are kept too: when the first step is accepted, its size (a
  function of y0 and the parameters) moves every later grid time, exactly as in torchdiffeq.
* fixed-grid methods (euler, midpoint, heun2, heun3, rk4 as torchdiffeq's 3/8-rule
  `rk4_alt_step_func`): the same grid (`_grid_constructor_from_step_size`) and linear
  interpolation to the output times.

* the adjoint method (`solvers/adjoint.py`): the augmented state, dynamics, default adjoint norm
  and per-interval restarts of torchdiffeq's `OdeintAdjointMethod`, solved backwards by this code.

The forward pass repeats torchdiffeq's floating-point operations (same stacked stage sums, same
norm, same dense-output formula), so solutions are bitwise equal to torchdiffeq's and every
accept/reject decision is the same; gradients differ only by autograd's accumulation order.
`tests/test_backend_equality.py` checks this on hundreds of random problems.

What is faster: time and step-size control live in Python floats (float32 stage times emulated
with NumPy, which rounds like torch's 0-dim float32 tensors), so an adaptive step makes exactly
one host synchronisation (reading the error ratio) instead of torchdiffeq's eight or so; stage
coefficients and stage times come from one NumPy operation each instead of tensor arithmetic;
the error estimate and norm run without autograd; the dense output is fitted only for the steps
that contain an output time, valued without autograd and differentiated through its exact
linearisation (see `_interp_evaluate`); the vector field is called directly (no wrapper modules: counting
wrapper, `_PerturbFunc`, callbacks) and NFE is counted in the Python loop; abs() calls that cannot
change a value or a gradient are skipped; Hairer's initial step reads its thresholds in two host
synchronisations instead of five; and a solve without a graph (the adjoint's two passes, inference)
writes each stage once into a buffer laid out as `torch.stack(ks, -1)` instead of stacking all
earlier stages anew at every stage (the same operands in the same layout, so the same bits).

Not supported (use backend="torchdiffeq"): dopri8, fehlberg2, adaptive_heun, the Adams methods,
states other than float32/float64, gradients with respect to t, decreasing t.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ..config import SolverConfig
from .base import (
    ADVICE,
    NFE,
    MaxStepsExceeded,
    NonFiniteState,
    StepSizeUnderflow,
    VectorField,
    all_finite,
)
from .caches import bounded_cache

# The solver's building blocks (step control, counts, initial step, dense output) are public for
# `solvers.fused`, `solvers.adjoint` and `ensemble.solve`, which reuse them op for op.
__all__ = [
    "ADAPTIVE_TABLEAUX",
    "FIXED_TABLEAUX",
    "AcceptedStep",
    "AdaptiveConsts",
    "AdaptiveTableau",
    "Counts",
    "Failure",
    "FixedTableau",
    "InitialStep",
    "StepControl",
    "adaptive_consts",
    "check_inputs",
    "integrate",
    "interp_value",
    "interp_weights",
    "next_step_size",
    "next_step_sizes",
    "numpy_type",
    "rms_norm",
    "rms_norm_per_sample",
    "select_initial_step",
    "select_initial_steps",
    "solve",
    "stage_dot",
]

# torchdiffeq's step-size controller constants (RKAdaptiveStepsizeODESolver defaults).
_SAFETY, _IFACTOR, _DFACTOR = 0.9, 10.0, 0.2


@dataclass(frozen=True)
class AdaptiveTableau:
    """An embedded explicit RK pair with the first-same-as-last property, as torchdiffeq stores it.

    Arguments:
        order: torchdiffeq's `order` (step-size exponent 1/order; initial step uses order - 1).
        alpha: nodes of stages 2..s+1 (the last one is 1: the FSAL stage at t1).
        beta: rows of the RK matrix for those stages; the last row is the solution weights.
        c_error: weights of the error estimate over all s+1 stages.
        c_mid: weights giving y at the step's midpoint (for the 4th-order dense output).
    """

    order: int
    alpha: tuple[float, ...]
    beta: tuple[tuple[float, ...], ...]
    c_error: tuple[float, ...]
    c_mid: tuple[float, ...]


@dataclass(frozen=True)
class FixedTableau:
    """A fixed-step explicit RK method.

    Arguments:
        order: order of accuracy.
        c: nodes of stages 2..s; `None` marks a stage evaluated at t1 itself (rk4's last stage).
        a: rows of the RK matrix for stages 2..s.
        b: solution weights over the s stages.
    """

    order: int
    c: tuple[float | None, ...]
    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]


# Same Python expressions as torchdiffeq's float64 tables (dopri5.py, bosh3.py), so the same values.
ADAPTIVE_TABLEAUX: dict[str, AdaptiveTableau] = {
    "dopri5": AdaptiveTableau(
        order=5,
        alpha=(1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0),
        beta=(
            (1 / 5,),
            (3 / 40, 9 / 40),
            (44 / 45, -56 / 15, 32 / 9),
            (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
            (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
            (35 / 384, 0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
        ),
        c_error=(
            35 / 384 - 1951 / 21600,
            0,
            500 / 1113 - 22642 / 50085,
            125 / 192 - 451 / 720,
            -2187 / 6784 - -12231 / 42400,
            11 / 84 - 649 / 6300,
            -1.0 / 60.0,
        ),
        c_mid=(
            6025192743 / 30085553152 / 2,
            0,
            51252292925 / 65400821598 / 2,
            -2691868925 / 45128329728 / 2,
            187940372067 / 1594534317056 / 2,
            -1776094331 / 19743644256 / 2,
            11237099 / 235043384 / 2,
        ),
    ),
    "bosh3": AdaptiveTableau(
        order=3,
        alpha=(1 / 2, 3 / 4, 1.0),
        beta=((1 / 2,), (0.0, 3 / 4), (2 / 9, 1 / 3, 4 / 9)),
        c_error=(2 / 9 - 7 / 24, 1 / 3 - 1 / 4, 4 / 9 - 1 / 3, -1 / 8),
        c_mid=(0.0, 0.5, 0.0, 0.0),
    ),
}

# The fixed-grid steps are computed op for op as torchdiffeq writes them (`_fixed_increment`);
# these tableaux document them (and a test checks the two agree).
FIXED_TABLEAUX: dict[str, FixedTableau] = {
    "euler": FixedTableau(order=1, c=(), a=(), b=(1.0,)),
    "midpoint": FixedTableau(order=2, c=(0.5,), a=((0.5,),), b=(0.0, 1.0)),
    "heun2": FixedTableau(order=2, c=(1.0,), a=((1.0,),), b=(0.5, 0.5)),
    "heun3": FixedTableau(order=3, c=(1 / 3, 2 / 3), a=((1 / 3,), (0.0, 2 / 3)), b=(1 / 4, 0.0, 3 / 4)),
    # torchdiffeq's RK4 is the 3/8 rule (rk4_alt_step_func), its last stage at t1 exactly.
    "rk4": FixedTableau(
        order=4, c=(1 / 3, 2 / 3, None), a=((1 / 3,), (-1 / 3, 1.0), (1.0, -1.0, 1.0)), b=(1 / 8, 3 / 8, 3 / 8, 1 / 8)
    ),
}


def numpy_type(dtype: torch.dtype) -> type:
    """The NumPy scalar type that rounds like `dtype` (np.float32 or np.float64).

    Raises:
        TypeError: a dtype other than float32/float64 (the anode backend integrates only those).
    """
    if dtype == torch.float32:
        return np.float32
    if dtype == torch.float64:
        return np.float64
    raise TypeError(
        f"the 'anode' solver backend integrates float32 or float64 states, got {dtype}; "
        f"convert the state (y0.float()) or use SolverConfig(backend='torchdiffeq')"
    )


@dataclass(frozen=True)
class AdaptiveConsts:
    """A tableau's coefficients rounded to one dtype (as torchdiffeq's `.to(y0.dtype)` does)."""

    alpha: np.ndarray
    one_idx: np.ndarray  # stages at alpha == 1 (evaluated just before t1)
    beta: tuple[np.ndarray, ...]
    c_error: np.ndarray
    c_mid: np.ndarray


@bounded_cache(maxsize=16)
def adaptive_consts(method: str, np_t: type) -> AdaptiveConsts:
    """The tableau of adaptive `method` rounded to the NumPy type `np_t` (made once per pair)."""
    tab = ADAPTIVE_TABLEAUX[method]
    alpha = np.array(tab.alpha, dtype=np_t)
    return AdaptiveConsts(
        alpha=alpha,
        one_idx=np.flatnonzero(alpha == 1),
        beta=tuple(np.array(row, dtype=np_t) for row in tab.beta),
        c_error=np.array(tab.c_error, dtype=np_t),
        c_mid=np.array(tab.c_mid, dtype=np_t),
    )


@bounded_cache(maxsize=64)
def _tableau_tensors(method: str, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, ...]:
    """(alpha, c_mid, c_error, beta rows...) as tensors in the state's dtype, plus the mask of the
    stages at alpha == 1 last: built once per method, dtype and device."""
    tab = ADAPTIVE_TABLEAUX[method]
    rows = (tab.alpha, tab.c_mid, tab.c_error, *tab.beta)
    with torch.inference_mode(False):  # cached: ordinary tensors even when first built in inference mode
        tensors = tuple(torch.tensor(row, dtype=torch.float64).to(dtype=dtype, device=device) for row in rows)
        return (*tensors, tensors[0] == 1)


def _host_arrays(device: torch.device) -> bool:
    """Whether per-step coefficients and stage times are computed with NumPy and wrapped without a
    copy (CPU), or as tensor ops on the device (no host-to-device copy, no synchronisation).
    Both round identically (float32/float64 IEEE products and sums)."""
    return device.type == "cpu"


def _coefficients(row: np.ndarray, dt_y: np.floating, host: bool, row_t: torch.Tensor,
                  dt_t: torch.Tensor | None = None) -> torch.Tensor:
    """`row * dt` in the state's dtype: from the host (NumPy, wrapped without a copy), on the device
    (`row_t * dt`), or, when the step size carries a gradient (`dt_t`), as a differentiable product."""
    if dt_t is not None:
        return row_t * dt_t
    if host:
        return torch.from_numpy(row * dt_y)
    return row_t * float(dt_y)


def _stage_sum(ks: list[torch.Tensor], coef: torch.Tensor) -> torch.Tensor:
    """sum_j coef[j] * ks[j] as torchdiffeq computes it (`torch.sum(k * coef, dim=-1)` over the
    stacked stages), so that the rounding, and hence the float32 gradient noise, is the same.
    (`linalg.vecdot` is that product and sum, in one call from Python.)"""
    return stage_dot(torch.stack(ks, -1), coef)


def stage_dot(stacked: torch.Tensor, coef: torch.Tensor) -> torch.Tensor:
    """`torch.sum(stacked * coef, dim=-1)` with its bits: `linalg.vecdot` in one call, except for the
    stages of a 0-d state (a 1-D `stacked`), where vecdot is a BLAS dot product that rounds otherwise."""
    if stacked.dim() == 1:
        return torch.sum(stacked * coef, dim=-1)
    return torch.linalg.vecdot(stacked, coef, dim=-1)


def _plus(a: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor | None:
    if a is None:
        return b
    if b is None:
        return a
    return a + b


class Counts:
    """Where a solve adds its counts: the forward fields of an `NFE`, or (adjoint pass) the backward ones."""

    __slots__ = ("backward", "nfe")

    def __init__(self, nfe: NFE, *, backward: bool = False) -> None:
        self.nfe, self.backward = nfe, backward

    def call(self) -> None:
        if self.backward:
            self.nfe.backward += 1
        else:
            self.nfe.forward += 1

    def calls(self, n: int) -> None:
        """`n` calls of the field."""
        if self.backward:
            self.nfe.backward += n
        else:
            self.nfe.forward += n

    def step(self, accepted: bool) -> None:
        n = self.nfe
        if self.backward:
            if accepted:
                n.backward_accepted_steps += 1
            else:
                n.backward_rejected_steps += 1
        elif accepted:
            n.accepted_steps += 1
        else:
            n.rejected_steps += 1


class Failure:
    """Builds the typed errors with torchdiffeq-like texts (and the advice)."""

    @staticmethod
    def underflow(dt: float, last: torch.Tensor | None, y: torch.Tensor, phase: str) -> Exception:
        if (last is not None and not bool(torch.isfinite(last).all())) or not bool(torch.isfinite(y).all()):
            return NonFiniteState(f"the vector field returned NaN or inf during the {phase}. {ADVICE}")
        return StepSizeUnderflow(f"the solver's step size underflowed during the {phase} (underflow in dt {dt}). {ADVICE}")

    @staticmethod
    def max_steps(n_steps: int, max_num_steps: int, phase: str) -> Exception:
        return MaxStepsExceeded(
            f"the solver exceeded its maximum number of steps during the {phase} "
            f"(max_num_steps exceeded ({n_steps}>={max_num_steps})). {ADVICE}"
        )

    @staticmethod
    def non_finite(phase: str) -> Exception:
        return NonFiniteState(f"the ODE state became non-finite (NaN or inf) during the {phase}. {ADVICE}")


def rms_norm(x: torch.Tensor) -> torch.Tensor:
    """torchdiffeq's default error norm, sqrt(mean(x ** 2)), with the same bits and gradients."""
    # torchdiffeq's _rms_norm is x.abs().pow(2).mean().sqrt(); for real x, pow(x, 2) == pow(|x|, 2)
    # bit for bit, and so are the gradients (2|x| * sign(x) == 2x exactly), so the abs is dropped.
    return x.pow(2).mean().sqrt()


@bounded_cache(maxsize=64)
def _tolerance_tensors(rtol: float, atol: float, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """rtol and atol as float64 0-dim tensors (as torchdiffeq makes them), built once per value."""
    with torch.inference_mode(False):
        return (torch.as_tensor(rtol, dtype=torch.float64, device=device),
                torch.as_tensor(atol, dtype=torch.float64, device=device))


@dataclass(frozen=True)
class InitialStep:
    """`select_initial_step`'s result `h` and the intermediates its derivative needs (`solvers.fused`).

    `h0_varies`: h0 = 0.01 d0 / d1 (else the constant 1e-6); `h1_power`: h1 = (0.01 / max(d1, d2))
    ** (1 / (order + 1)) (else max(1e-6, h0 / 1000))."""

    h: torch.Tensor
    scale: torch.Tensor
    d0: torch.Tensor
    d1: torch.Tensor
    d2: torch.Tensor
    h0: torch.Tensor
    h1: torch.Tensor
    f1: torch.Tensor
    h0_varies: bool
    h1_power: bool


def select_initial_step(
    func: VectorField, t0: torch.Tensor, y0: torch.Tensor, f0: torch.Tensor, order: int, rtol: float, atol: float,
    counts: Counts, norm: Callable[[torch.Tensor], torch.Tensor] = rms_norm,
) -> InitialStep:
    """torchdiffeq's `_select_initial_step` (Hairer et al. II.4), op for op (keeps its autograd graph).

    torchdiffeq also takes `.abs()` of d0, d1, d2, h0 and h1, which are non-negative by
    construction: dropping them changes neither values nor gradients (sign(x) = 1 for x > 0, and
    for x = 0 those quantities do not feed a gradient path).
    """
    dtype, device = y0.dtype, y0.device
    rtol_t, atol_t = _tolerance_tensors(rtol, atol, device)
    scale = atol_t + torch.abs(y0) * rtol_t
    d0 = norm(y0 / scale)
    d1 = norm(f0 / scale)
    # torchdiffeq compares each tensor with a Python threshold (rounded to the tensor's dtype) and takes
    # Python's max(d1, d2): the same decisions from host copies, read in two synchronisations instead of five.
    d0_v, d1_v = torch.stack([d0.detach(), d1.detach()]).tolist()
    np_d = numpy_type(d1.dtype)
    h0_varies = not (d0_v < np_d(1e-5) or d1_v < np_d(1e-5))
    if h0_varies:
        h0 = 0.01 * d0 / d1
    else:
        h0 = torch.tensor(1e-6, dtype=dtype, device=device)
    y1 = y0 + h0 * f0
    # torchdiffeq's probe time is t0 + h0 in y1's dtype: the state's, except for a 0-d state, whose
    # 0-d arithmetic with the float64 tolerances (scale, h0, y1) promotes to float64.
    f1 = func((t0 + h0).to(y1.dtype), y1)
    counts.call()
    d2 = norm((f1 - f0) / scale) / h0
    d2_v = d2.item()
    h1_power = not (d1_v <= np_d(1e-15) and d2_v <= np_d(1e-15))
    if h1_power:
        h1 = (0.01 / (d2 if d2_v > d1_v else d1)) ** (1.0 / float(order + 1))  # Python's max: d1 on a tie
    else:
        h1 = torch.max(torch.tensor(1e-6, dtype=dtype, device=device), h0 * 1e-3)
    h = torch.min(100 * h0, h1).to(t0.dtype)
    return InitialStep(h, scale, d0, d1, d2, h0, h1, f1, h0_varies, h1_power)


def next_step_size(dt: float, ratio: float, order: int) -> float:
    """torchdiffeq's `_optimal_step_size` (float64 arithmetic, NaN propagating like torch.min/max)."""
    if ratio == 0:
        return dt * _IFACTOR
    if math.isnan(ratio):
        return math.nan
    dfactor = 1.0 if ratio < 1 else _DFACTOR
    factor = min(_IFACTOR, max(_SAFETY / ratio ** (1.0 / order), dfactor))
    return dt * factor


class AcceptedStep:
    """The latest accepted adaptive step, with its dense output fitted on first use."""

    __slots__ = ("coeffs", "dt", "dt_shadow", "ks", "t0", "t0_shadow", "t1", "tensors", "y0", "y1")

    def __init__(self, y0: torch.Tensor, y1: torch.Tensor, ks: list[torch.Tensor], t0: float, t1: float, dt: float,
                 t0_shadow: torch.Tensor | None, dt_shadow: torch.Tensor | None,
                 tensors: tuple[torch.Tensor, ...]) -> None:
        self.y0, self.y1, self.ks = y0, y1, ks
        self.t0, self.t1, self.dt = t0, t1, dt
        self.t0_shadow, self.dt_shadow = t0_shadow, dt_shadow
        self.tensors = tensors
        self.coeffs: list[torch.Tensor] | None = None


def _interp_fit(step: AcceptedStep, consts: AdaptiveConsts, np_t: type) -> list[torch.Tensor]:
    """torchdiffeq's `_interp_fit` (4th-order polynomial through y0, y_mid, y1 with end slopes),
    op for op, without autograd (the gradient is attached by `_interp_evaluate`). On the CPU the
    element-wise arithmetic runs in NumPy (the same IEEE operations, hence the same bits, for a
    third of the dispatch cost); the stage sum stays in torch (its reduction order)."""
    y0, y1, ks = step.y0.detach(), step.y1.detach(), [k.detach() for k in step.ks]
    dt_y = np_t(step.dt)  # dt.type_as(y0)
    dt = float(dt_y)
    host = _host_arrays(y0.device)
    y_mid = y0 + _stage_sum(ks, _coefficients(consts.c_mid, dt_y, host, step.tensors[1]))
    f0, f1 = ks[0], ks[-1]
    host = host and all(v.dtype == y0.dtype for v in (y1, y_mid, f0, f1))  # else (e.g. autocast) torch's promotions
    if host:
        y0, y1, y_mid, f0, f1 = (v.numpy() for v in (y0, y1, y_mid, f0, f1))
    a = 2 * dt * (f1 - f0) - 8 * (y1 + y0) + 16 * y_mid
    b = dt * (5 * f0 - 3 * f1) + 18 * y0 + 14 * y1 - 32 * y_mid
    c = dt * (f1 - 4 * f0) - 11 * y0 - 5 * y1 + 16 * y_mid
    d = dt * f0
    coeffs = [d, c, b, a]
    # (np.asarray: the arithmetic of 0-d arrays, a 0-d state's, gives NumPy scalars)
    return [step.y0.detach(), *(torch.from_numpy(np.asarray(v)) for v in coeffs)] if host else [y0, *coeffs]


def interp_value(step: AcceptedStep, t: float, np_t: type, consts: AdaptiveConsts) -> tuple[torch.Tensor, np.floating]:
    """torchdiffeq's `_interp_evaluate` value at output time `t` in [t0, t1] of the step, by its own
    operations (the same bits), without autograd; also x = (t - t0) / (t1 - t0) in the state's dtype."""
    with torch.no_grad():
        if step.coeffs is None:
            step.coeffs = _interp_fit(step, consts, np_t)
        host = _host_arrays(step.y0.device) and all(v.dtype == step.y0.dtype for v in step.coeffs)
        e, d, c, b, a = (v.numpy() for v in step.coeffs) if host else step.coeffs
        x = np_t((t - step.t0) / (step.t1 - step.t0))
        value = e + d * float(x)
        x_power = x
        for coefficient in (c, b, a):
            x_power = x_power * x  # float32 powers, as torchdiffeq's 0-dim tensors
            value = value + coefficient * float(x_power)
    return (torch.from_numpy(np.asarray(value)) if host else value), x


def interp_weights(dt: float, x: float, consts: AdaptiveConsts) -> tuple[list[float], list[float]]:
    """The dense output's exact linearisation at x for a step of size dt (in the state's dtype):
    (weights of y0, y1 and the stages k_0..k_s; weights of the stages in dP/d(dt) at fixed x)."""
    x2, x3, x4 = x * x, x**3, x**4
    q = 16 * x2 - 32 * x3 + 16 * x4  # weight of y_mid
    u = [q * m for m in consts.c_mid.tolist()]
    u[0] += x - 4 * x2 + 5 * x3 - 2 * x4
    u[-1] += x2 - 3 * x3 + 2 * x4
    weights = [1 - 11 * x2 + 18 * x3 - 8 * x4 + q, -5 * x2 + 14 * x3 - 8 * x4, *(dt * w for w in u)]
    return weights, u


def _interp_weight_slopes(dt: float, x: float, consts: AdaptiveConsts) -> list[float]:
    """d/dx of `interp_weights`'s weights of y0, y1 and k_0..k_s (so dP/dx = the same sum)."""
    x2, x3 = x * x, x**3
    dq = 32 * x - 96 * x2 + 64 * x3
    du = [dq * m for m in consts.c_mid.tolist()]
    du[0] += 1 - 8 * x + 15 * x2 - 8 * x3
    du[-1] += 2 * x - 9 * x2 + 8 * x3
    return [-22 * x + 54 * x2 - 32 * x3 + dq, -10 * x + 42 * x2 - 32 * x3, *(dt * w for w in du)]


def _interp_slope(step: AcceptedStep, x: float) -> torch.Tensor:
    """dP/dx of the fitted dense output at x (no autograd; `interp_value` fitted it)."""
    _, d, c, b, a = step.coeffs
    x2, x3 = x * x, x**3
    return d + 2 * x * c + 3 * x2 * b + 4 * x3 * a


def _interp_evaluate(step: AcceptedStep, t: float, np_t: type, dtype: torch.dtype, device: torch.device,
                     consts: AdaptiveConsts) -> torch.Tensor:
    """torchdiffeq's `_interp_evaluate` at output time `t` in [t0, t1] of the step.

    The value is computed without autograd by torchdiffeq's own operations (so it has the same
    bits). The gradient is attached separately, as `value + (g - g.detach())` (which adds exactly
    zero) with `g` the polynomial's exact linearisation: a weighted sum of y0, y1 and the stages
    (weights from x and dt on the host), plus dP/dx times x's dependence on the grid-time shadows
    and dP/d(dt) times the step-size shadow. That is the same Jacobian as autograd through
    torchdiffeq's formula, in about a third of the autograd nodes.
    """
    value, x = interp_value(step, t, np_t, consts)
    y0, y1, ks = step.y0, step.y1, step.ks
    if not torch.is_grad_enabled() or not any(v.requires_grad for v in (y0, y1, *ks)):
        return value

    h = step.t1 - step.t0
    xf = float(x)
    weights, u = interp_weights(float(np_t(step.dt)), xf, consts)
    g = torch.sum(torch.stack([y0, y1, *ks], -1) * torch.tensor(weights, dtype=dtype, device=device), dim=-1)
    if step.t0_shadow is not None or step.dt_shadow is not None:
        dp_dx = _interp_slope(step, xf)
        # x = (t - t0) / (t1 - t0): dx/d(t0 shift) = -1/h, dx/d(step size) = -x/h
        dx = 0.0
        if step.t0_shadow is not None:
            dx = step.t0_shadow * (-1.0 / h)
        if step.dt_shadow is not None:
            dx = step.dt_shadow * (-xf / h) + dx
            with torch.no_grad():
                dp_ddt = _stage_sum([k.detach() for k in ks], torch.tensor(u, dtype=dtype, device=device))
            g = g + dp_ddt * step.dt_shadow
        g = g + dp_dx * dx
    return value + (g - g.detach())


def _check_times(t: torch.Tensor) -> list[float]:
    if t.dim() != 1 or t.numel() < 2:
        raise ValueError(f"t must be a 1-D tensor of at least two output times, got shape {tuple(t.shape)}: "
                         f"pass e.g. torch.tensor([0.0, 1.0])")
    if t.requires_grad:
        raise ValueError("the 'anode' solver backend does not differentiate with respect to t: pass t.detach(), "
                         "or use SolverConfig(backend='torchdiffeq')")
    times = t.detach().to(torch.float64).tolist()
    if any(b <= a for a, b in itertools.pairwise(times)):
        raise ValueError(f"t must be strictly increasing for the 'anode' solver backend, got {times}: sort the "
                         f"output times, or use SolverConfig(backend='torchdiffeq') to integrate backwards in time")
    return times


class StepControl:
    """The per-solve constants of an adaptive method and the parts of a step that carry no gradient:
    the step guards, the stage times and the error ratio (shared by `_solve_adaptive` and the fused
    MLP solve, `solvers.fused`)."""

    def __init__(self, method: str, y0: torch.Tensor, rtol: float, atol: float, max_num_steps: int, phase: str,
                 norm: Callable[[torch.Tensor], torch.Tensor] = rms_norm) -> None:
        self.method = method
        self.np_t = numpy_type(y0.dtype)
        self.consts = adaptive_consts(method, self.np_t)
        self.order = ADAPTIVE_TABLEAUX[method].order
        self.n_stages = len(self.consts.alpha)
        self.rtol, self.atol = rtol, atol
        self.rtol_y, self.atol_y = float(self.np_t(rtol)), float(self.np_t(atol))
        self.max_num_steps, self.phase, self.norm = max_num_steps, phase, norm
        self.tensors = _tableau_tensors(method, y0.dtype, y0.device)
        self.host = _host_arrays(y0.device)

    def begin(self, t0: float, dt: float, n_steps: int, last_k: torch.Tensor | None, y: torch.Tensor
              ) -> tuple[float, np.floating, torch.Tensor]:
        """Check a step may start (step budget, step size) and return (t1, dt in the state's dtype,
        stage times): t0 + alpha * dt in the state's dtype as torchdiffeq computes them, and just
        before t1 (nextafter) for the stages at alpha = 1.

        Raises:
            MaxStepsExceeded, StepSizeUnderflow, NonFiniteState.
        """
        if n_steps >= self.max_num_steps:
            raise Failure.max_steps(n_steps, self.max_num_steps, self.phase)
        if not math.isfinite(dt):
            dt = 0.0
        t1 = t0 + dt
        if not t1 > t0:
            raise Failure.underflow(dt, last_k, y, self.phase)
        np_t = self.np_t
        dt_y, t0_y, t1_y = np_t(dt), np_t(t0), np_t(t1)
        t1_before = np.nextafter(t1_y, t1_y - np_t(1))
        if self.host:
            stage_np = t0_y + self.consts.alpha * dt_y
            stage_np[self.consts.one_idx] = t1_before
            ts = torch.from_numpy(stage_np)
        else:
            alpha_t, one_mask = self.tensors[0], self.tensors[-1]
            ts = torch.where(one_mask, float(t1_before), alpha_t * float(dt_y) + float(t0_y))
        return t1, dt_y, ts

    def stage_coefficients(self, i: int, dt_y: np.floating, dt_t: torch.Tensor | None = None) -> torch.Tensor:
        """Row i of the RK matrix times dt (differentiable in `dt_t` when given)."""
        return _coefficients(self.consts.beta[i], dt_y, self.host, self.tensors[3 + i], dt_t)

    def error_ratio(self, stages: torch.Tensor, dt_y: np.floating, abs_y: torch.Tensor, y1: torch.Tensor
                    ) -> tuple[float, torch.Tensor]:
        """(torchdiffeq's error ratio of the step, |y1|), without autograd: the one host sync of a step.
        `stages` are the step's stages stacked on the last dimension (`torch.stack(ks, -1)`)."""
        with torch.no_grad():
            coef = _coefficients(self.consts.c_error, dt_y, self.host, self.tensors[2])
            err = stage_dot(stages, coef)
            abs_y1 = y1.detach().abs()
            if abs_y.dim() == 0:  # torchdiffeq's 0-d float64 rtol, atol promote a 0-d state's ratio to float64
                tol = torch.maximum(abs_y, abs_y1).to(torch.float64).mul_(self.rtol).add_(self.atol)
                err = err.div(tol)
                ratio_t = err.pow_(2).mean().sqrt_() if self.norm is rms_norm else self.norm(err)
            else:
                tol = torch.maximum(abs_y, abs_y1).mul_(self.rtol_y).add_(self.atol_y)
                if self.norm is rms_norm:
                    ratio_t = err.div_(tol).pow_(2).mean().sqrt_()  # torchdiffeq's _rms_norm (see rms_norm), same bits
                else:
                    ratio_t = self.norm(err.div_(tol))
        return float(ratio_t), abs_y1


def _solve_adaptive(func: VectorField, y0: torch.Tensor, times: list[float], method: str, rtol: float, atol: float,
                    max_num_steps: int, counts: Counts, phase: str,
                    norm: Callable[[torch.Tensor], torch.Tensor] = rms_norm) -> torch.Tensor:
    dtype, device = y0.dtype, y0.device
    ctl = StepControl(method, y0, rtol, atol, max_num_steps, phase, norm)
    np_t, consts, tensors = ctl.np_t, ctl.consts, ctl.tensors
    alpha_t = tensors[0]

    # (A non-finite y0 is reported too: it makes dt non-finite, hence an underflow diagnosed as
    # non-finite, or reaches the output, which is checked.)
    t_start = torch.tensor(times[0], dtype=torch.float64, device=device)
    f0 = func(t_start.to(dtype), y0)
    counts.call()
    h = select_initial_step(func, t_start, y0, f0, ctl.order - 1, rtol, atol, counts, norm).h
    dt = h.item()
    # dt_shadow: a zero tensor carrying d(step)/d(h) = 1, only while the step size is h itself.
    dt_shadow = (h - h.detach()).to(dtype) if h.requires_grad else None
    t0_shadow: torch.Tensor | None = None  # d(current time)/d(h), after an accepted first step

    y, f, t0 = y0, f0, times[0]
    abs_y = y0.detach().abs()
    last_k: torch.Tensor | None = f0
    step: AcceptedStep | None = None
    outputs = [y0]
    # Without a graph (the adjoint's passes, inference), each stage is written once into its column of
    # one buffer laid out as torch.stack(ks, -1); a stage sum reads the leading columns. The same
    # operands in the same layout, so the same bits as stacking anew at every stage, which re-copies
    # every earlier stage (on an H100, a sixth of an adjoint training step of Table 1's ANODE).
    columns = y0.new_empty((*y0.shape, ctl.n_stages + 1)) if not torch.is_grad_enabled() else None
    for t_out in times[1:]:
        n_steps = 0
        while t_out > t0:
            t1, dt_y, ts = ctl.begin(t0, dt, n_steps, last_k, y)
            if t0_shadow is not None:
                ts = ts + t0_shadow
            if dt_shadow is not None:
                ts = ts + alpha_t * dt_shadow
            stage_times = ts.unbind()

            # the step size as a tensor only when it carries a gradient (the first step)
            dt_t = None if dt_shadow is None else dt_shadow + float(dt_y)
            ks = [f]
            if columns is not None:
                columns[..., 0].copy_(f)
            yi = y
            for i in range(ctl.n_stages):
                coef = ctl.stage_coefficients(i, dt_y, dt_t)
                if i == 0:  # a sum over one stage is that stage: the same bits with two ops fewer
                    # (coef has shape (1,): a 0-d state takes its one entry, not a broadcast to (1,))
                    yi = y + ks[0] * (coef if y.dim() else coef[0])
                elif columns is not None:
                    yi = y + stage_dot(columns[..., :i + 1], coef)
                else:
                    yi = y + _stage_sum(ks, coef)  # as torchdiffeq, same rounding
                k = func(stage_times[i], yi)
                counts.call()
                ks.append(k)
                if columns is not None:
                    if k.shape != y.shape:  # (copy_ would broadcast it; torch.stack refuses it)
                        raise ValueError(f"the vector field returned shape {tuple(k.shape)} for a state of shape "
                                         f"{tuple(y.shape)}: it must return dy/dt, shaped like y")
                    columns[..., i + 1].copy_(k)
            last_k = ks[-1]
            y1 = yi  # first same as last: the last stage is evaluated at (t1, y1)

            if columns is not None:
                stacked = columns
            else:
                with torch.no_grad():
                    stacked = torch.stack(ks, -1)
            ratio, abs_y1 = ctl.error_ratio(stacked, dt_y, abs_y, y1)
            counts.step(ratio <= 1)
            if ratio <= 1:
                step = AcceptedStep(y, y1, ks, t0, t1, dt, t0_shadow, dt_shadow, tensors)
                y, f, t0, abs_y = y1, ks[-1], t1, abs_y1
                t0_shadow = _plus(t0_shadow, dt_shadow)
            dt = next_step_size(dt, ratio, ctl.order)
            dt_shadow = None
            n_steps += 1
        if step is None:  # cannot happen: t_out > times[0] forces at least one accepted step
            raise RuntimeError(f"internal error: no accepted step before output time {t_out}")
        outputs.append(_interp_evaluate(step, t_out, np_t, dtype, device, consts))
    return torch.stack(outputs)


# --- per-sample step control ---------------------------------------------------------------------
# The same tableaux, error norm, initial step, next step and dense output as the batch loop above,
# in a vectorised form over the leading (sample) axis: step control in NumPy arrays on the host (one
# host synchronisation per step: the vector of error ratios), the state's arithmetic in torch.


def rms_norm_per_sample(x: torch.Tensor) -> torch.Tensor:
    """`rms_norm` of each sample (row of the leading dimension): shape (samples,)."""
    return x.pow(2).reshape(x.shape[0], -1).mean(1).sqrt()


def _rows(v: torch.Tensor, ndim: int) -> torch.Tensor:
    """A per-sample vector (n,) or matrix (n, m) shaped to broadcast against a state of `ndim` dims:
    (n, 1, ..., 1) or (n, 1, ..., 1, m)."""
    if v.dim() == 1:
        return v.view(v.shape[0], *([1] * (ndim - 1)))
    return v.view(v.shape[0], *([1] * (ndim - 1)), v.shape[1])


def select_initial_steps(func: VectorField, t0: torch.Tensor, y0: torch.Tensor, f0: torch.Tensor, order: int,
                         rtol: float, atol: float) -> torch.Tensor:
    """`select_initial_step` for every sample at once: Hairer's initial step with per-sample norms,
    the branches taken per sample (`torch.where`, with safe operands so that an unused branch never
    makes a NaN gradient). Returns the steps (samples,) in float64, differentiable like the batch one."""
    device, ndim = y0.device, y0.dim()
    rtol_t, atol_t = _tolerance_tensors(rtol, atol, device)
    scale = atol_t + torch.abs(y0) * rtol_t
    d0 = rms_norm_per_sample(y0 / scale)
    d1 = rms_norm_per_sample(f0 / scale)
    np_d = numpy_type(d1.dtype)
    small = (d0 < float(np_d(1e-5))) | (d1 < float(np_d(1e-5)))
    h0 = torch.where(small, torch.full_like(d0, 1e-6), 0.01 * d0 / torch.where(small, torch.ones_like(d1), d1))
    y1 = y0 + _rows(h0, ndim) * f0
    f1 = func(_rows((t0 + h0.to(torch.float64)).to(y1.dtype), ndim), y1)
    d2 = rms_norm_per_sample((f1 - f0) / scale) / h0
    power = ~((d1 <= float(np_d(1e-15))) & (d2 <= float(np_d(1e-15))))
    d_max = torch.where(d2 > d1, d2, d1)  # Python's max(d1, d2): d1 on a tie
    h1 = torch.where(power, (0.01 / torch.where(power, d_max, torch.ones_like(d_max))) ** (1.0 / float(order + 1)),
                     torch.maximum(torch.full_like(h0, 1e-6), h0 * 1e-3))
    return torch.minimum(100 * h0, h1).to(torch.float64)


def next_step_sizes(dt: np.ndarray, ratio: np.ndarray, order: int) -> np.ndarray:
    """`next_step_size` for arrays of step sizes and error ratios (float64, element by element).

    The power is Python's (the C library's `pow`, as `next_step_size`): NumPy's vectorised power
    (SIMD on x86) differs from it in the last bit for about one ratio in twenty."""
    exponent = 1.0 / order
    powers = np.array([r ** exponent if r > 0 else 1.0 for r in ratio.tolist()], dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        dfactor = np.where(ratio < 1, 1.0, _DFACTOR)
        factor = np.minimum(_IFACTOR, np.maximum(_SAFETY / powers, dfactor))
        out = np.where(ratio == 0, dt * _IFACTOR, dt * factor)
    return np.where(np.isnan(ratio), np.nan, out)


def _sample_error(err: Exception, index: int) -> Exception:
    """`err` (a `SolverError`) with the index of the sample that failed put in front of its message."""
    return type(err)(f"sample {index} of the batch (step_control='sample'): {err}")


def _dense_rows(y0: torch.Tensor, y1: torch.Tensor, stacked: torch.Tensor, dt: torch.Tensor, x: torch.Tensor,
                c_mid: torch.Tensor) -> torch.Tensor:
    """torchdiffeq's 4th-order dense output (`_interp_fit`, `_interp_evaluate`) of some samples' steps,
    by the same operations, differentiable: per-sample step sizes `dt` and abscissae `x` shaped to
    broadcast (rows, 1, ..., 1), stages stacked on the last dimension, `c_mid` (rows, ..., stages)."""
    y_mid = y0 + torch.sum(stacked * (c_mid * dt.unsqueeze(-1)), dim=-1)
    f0, f1 = stacked[..., 0], stacked[..., -1]
    a = 2 * dt * (f1 - f0) - 8 * (y1 + y0) + 16 * y_mid
    b = dt * (5 * f0 - 3 * f1) + 18 * y0 + 14 * y1 - 32 * y_mid
    c = dt * (f1 - 4 * f0) - 11 * y0 - 5 * y1 + 16 * y_mid
    d = dt * f0
    value = y0 + d * x
    x_power = x
    for coefficient in (c, b, a):
        x_power = x_power * x
        value = value + coefficient * x_power
    return value


def _solve_adaptive_per_sample(func: VectorField, y0: torch.Tensor, times: list[float], method: str, rtol: float,
                               atol: float, max_num_steps: int, counts: Counts, phase: str) -> torch.Tensor:
    """The adaptive loop with one controller per sample (the leading dimension of `y0`).

    Every still-integrating sample takes its own step (its own size, stage times, error ratio,
    accept/reject, next step and per-interval step budget); the field is called once per stage on
    the whole batch while some sample is still integrating (so that a field may hold per-sample data
    of its own), a sample past its last output time being frozen: a step of size 0 whose values are
    discarded and not counted. The gradient paths through time are those of the batch loop (the first step's size
    moves that step and, when accepted, every later time of the sample), here by autograd.
    """
    dtype, device, ndim = y0.dtype, y0.device, y0.dim()
    if ndim == 0:
        raise ValueError("step_control='sample' integrates a state whose leading dimension is the sample axis, "
                         "got a 0-d state: give y0 a batch dimension or use step_control='batch'")
    ctl = StepControl(method, y0, rtol, atol, max_num_steps, phase)
    np_t, consts, tensors = ctl.np_t, ctl.consts, ctl.tensors
    alpha_t, c_mid_t, c_error_t = tensors[0], tensors[1], tensors[2]
    n_samples, n_out = y0.shape[0], len(times)
    times_np = np.array(times, dtype=np.float64)
    per_nfe = np.zeros(n_samples, dtype=np.int64)
    per_acc, per_rej = np.zeros_like(per_nfe), np.zeros_like(per_nfe)

    t_start = torch.tensor(times[0], dtype=torch.float64, device=device)
    f0 = func(_rows(t_start.to(dtype).expand(n_samples), ndim), y0)
    h = select_initial_steps(func, t_start, y0, f0, ctl.order - 1, rtol, atol)
    counts.calls(2)
    per_nfe += 2
    dt = h.detach().cpu().numpy().astype(np.float64)
    dt_shadow = (h - h.detach()).to(dtype) if h.requires_grad else None  # d(step)/d(h) on the first step
    t0_shadow: torch.Tensor | None = None  # d(time)/d(h) of each sample after an accepted first step

    active = np.ones(n_samples, dtype=bool)  # the samples still integrating (the others are frozen)
    t0 = np.full(n_samples, times[0])
    n_steps = np.zeros(n_samples, dtype=np.int64)
    j_next = np.ones(n_samples, dtype=np.int64)  # each sample's next output time
    y, f = y0, f0
    abs_y = y0.detach().abs()
    pieces: list[tuple[np.ndarray, np.ndarray, torch.Tensor]] = [(np.arange(n_samples), np.zeros(n_samples, np.int64),
                                                                 y0)]
    while active.any():
        over = np.flatnonzero(active & (n_steps >= max_num_steps))
        if over.size:
            raise _sample_error(Failure.max_steps(int(n_steps[over[0]]), max_num_steps, phase), int(over[0]))
        dt = np.where(np.isfinite(dt), dt, 0.0)
        step_dt = np.where(active, dt, 0.0)
        t1 = t0 + step_dt
        stuck = np.flatnonzero(active & ~(t1 > t0))
        if stuck.size:
            row = int(stuck[0])
            raise _sample_error(Failure.underflow(float(dt[row]), f[row], y[row], phase), row)
        dt_y, t0_y, t1_y = step_dt.astype(np_t), t0.astype(np_t), t1.astype(np_t)
        stage_np = t0_y[:, None] + consts.alpha[None, :] * dt_y[:, None]
        stage_np[:, consts.one_idx] = np.nextafter(t1_y, t1_y - np_t(1))[:, None]
        ts = torch.from_numpy(stage_np).to(device)
        if t0_shadow is not None:
            ts = ts + t0_shadow[:, None]
        if dt_shadow is not None:
            ts = ts + alpha_t * dt_shadow[:, None]
        dt_rows = torch.from_numpy(dt_y).to(device)
        dt_t = dt_rows if dt_shadow is None else dt_shadow + dt_rows  # differentiable on the first step
        ks = [f]
        yi = y
        for i in range(ctl.n_stages):
            coef = _rows(tensors[3 + i] * dt_t[:, None], ndim)
            if i == 0:
                yi = y + ks[0] * coef[..., 0]
            else:
                yi = y + torch.sum(torch.stack(ks, -1) * coef, dim=-1)
            k = func(_rows(ts[:, i], ndim), yi)
            if k.shape != y.shape:
                raise ValueError(f"the vector field returned shape {tuple(k.shape)} for a state of shape "
                                 f"{tuple(y.shape)}: it must return dy/dt, shaped like y")
            ks.append(k)
        counts.calls(ctl.n_stages)
        per_nfe[active] += ctl.n_stages
        y1 = yi
        stacked = torch.stack(ks, -1)
        with torch.no_grad():
            err = torch.sum(stacked.detach() * _rows(c_error_t * dt_rows[:, None], ndim), dim=-1)
            abs_y1 = y1.detach().abs()
            tol = torch.maximum(abs_y, abs_y1).mul_(ctl.rtol_y).add_(ctl.atol_y)
            ratio = rms_norm_per_sample(err.div_(tol)).cpu().numpy().astype(np.float64)  # the step's one sync
        accept = (ratio <= 1) & active
        counts.step(bool(accept.any()))
        per_acc += accept
        per_rej += active & ~accept
        acc_t = _rows(torch.from_numpy(accept).to(device), ndim)
        # outputs inside the accepted steps: the dense output, as many as each step holds
        out_j = j_next.copy()
        while True:
            emit = accept & (out_j < n_out)
            emit &= times_np[np.minimum(out_j, n_out - 1)] <= t1
            rows_np = np.flatnonzero(emit)
            if not rows_np.size:
                break
            rows = torch.from_numpy(rows_np).to(device)
            x_np = (times_np[out_j[rows_np]] - t0[rows_np]) / (t1[rows_np] - t0[rows_np])
            x_y = x_np.astype(np_t)
            x = torch.from_numpy(x_y).to(device)
            if t0_shadow is not None or dt_shadow is not None:  # x = (t - t0) / (t1 - t0): its exact linearisation
                step = torch.from_numpy((t1[rows_np] - t0[rows_np]).astype(np_t)).to(device)
                dx = torch.zeros_like(x)
                if t0_shadow is not None:
                    dx = dx - t0_shadow[rows] / step
                if dt_shadow is not None:
                    dx = dx - dt_shadow[rows] * x / step
                x = x + dx
            value = _dense_rows(y[rows], y1[rows], stacked[rows], _rows(dt_t[rows], ndim), _rows(x, ndim),
                                _rows(c_mid_t.expand(len(rows_np), -1), ndim))
            pieces.append((rows_np, out_j[rows_np].copy(), value))
            out_j[rows_np] += 1
        n_steps = np.where(out_j > j_next, 0, n_steps + active)
        j_next = out_j
        y = torch.where(acc_t, y1, y)
        f = torch.where(acc_t, ks[-1], f)
        abs_y = torch.where(acc_t, abs_y1, abs_y)
        if dt_shadow is not None:
            t0_shadow = torch.where(torch.from_numpy(accept).to(device), dt_shadow, torch.zeros_like(dt_shadow))
        dt_shadow = None
        t0 = np.where(accept, t1, t0)
        dt = np.where(active, next_step_sizes(dt, ratio, ctl.order), dt)
        active = j_next < n_out

    nfe = counts.nfe
    nfe.per_sample = per_nfe.tolist()
    nfe.per_sample_accepted, nfe.per_sample_rejected = per_acc.tolist(), per_rej.tolist()
    flat_index = torch.from_numpy(np.concatenate([j * n_samples + i for i, j, _ in pieces])).to(device)
    values = torch.cat([v for _, _, v in pieces])
    flat = values.new_empty((n_out * n_samples, *y0.shape[1:])).index_copy(0, flat_index, values)
    out = flat.view(n_out, *y0.shape)
    finite = torch.isfinite(out[-1].detach()).reshape(n_samples, -1).all(1)
    if not bool(finite.all()):
        bad = int((~finite).nonzero()[0, 0])
        raise _sample_error(Failure.non_finite(phase), bad)
    return out


def _fixed_increment(method: str, call: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                     time: Callable[[np.floating, float], torch.Tensor], t0_t: torch.Tensor, t1_t: torch.Tensor,
                     t0: np.floating, dt: np.floating, y0: torch.Tensor) -> torch.Tensor:
    """One step's increment, op for op as torchdiffeq's fixed_grid.py / rk_common.py step functions
    (so the same rounding): `time(v, c)` makes the stage-time tensor t0 + dt * c, whose value in
    the state's dtype is `v`."""
    np_t = type(dt)
    h = float(dt)
    k1 = call(t0_t, y0)
    if method == "euler":
        return k1 * h
    if method == "midpoint":
        half = np_t(0.5) * dt
        return call(time(t0 + half, 0.5), y0 + k1 * float(half)) * h
    if method == "heun2":
        k2 = call(time(t0 + dt * np_t(1.0), 1.0), y0 + k1 * h * 1.0)
        return (k1 * 0.5 + k2 * 0.5) * h
    if method == "heun3":
        k2 = call(time(t0 + dt * np_t(1 / 3), 1 / 3), y0 + k1 * h * (1 / 3))
        k3 = call(time(t0 + dt * np_t(2 / 3), 2 / 3), y0 + (k1 * 0.0 + k2 * (2 / 3)) * h)
        return (k1 * 0.25 + k2 * 0.0 + k3 * 0.75) * h
    if method == "rk4":  # rk4_alt_step_func: the 3/8 rule
        k2 = call(time(t0 + dt * np_t(1 / 3), 1 / 3), y0 + k1 * h * (1 / 3))
        k3 = call(time(t0 + dt * np_t(2 / 3), 2 / 3), y0 + (k2 - k1 * (1 / 3)) * h)
        k4 = call(t1_t, y0 + (k1 - k2 + k3) * h)
        return (k1 + 3 * (k2 + k3) + k4) * h * 0.125
    raise ValueError(f"unknown fixed-step method {method!r}; valid choices: {list(FIXED_TABLEAUX)}")


def _solve_fixed(func: VectorField, y0: torch.Tensor, t: torch.Tensor, times: list[float], method: str,
                 step_size: float, counts: Counts) -> torch.Tensor:
    dtype, device = y0.dtype, y0.device
    np_t = numpy_type(dtype)
    # torchdiffeq's _grid_constructor_from_step_size, on t in the state's dtype.
    t = t.to(dtype)
    niters = torch.ceil((t[-1] - t[0]) / step_size + 1).item()
    grid = torch.arange(0, niters, dtype=t.dtype, device=device) * step_size + t[0]
    grid[-1] = t[-1]
    grid_host = [np_t(v) for v in grid.tolist()]
    grid_t = grid.unbind()
    t_out = [np_t(v) for v in times]

    def call(tt: torch.Tensor, yy: torch.Tensor) -> torch.Tensor:
        counts.call()
        return func(tt, yy)

    host = _host_arrays(device)
    step_t: list[torch.Tensor] = []  # [t0, t1 - t0] as device tensors, off the CPU

    def time(value: np.floating, fraction: float) -> torch.Tensor:
        """t0 + dt * fraction in the state's dtype (on the host, or as torchdiffeq's device ops)."""
        if host:
            return torch.tensor(float(value), dtype=dtype, device=device)
        return step_t[0] + step_t[1] * fraction

    outputs = [y0]
    j = 1
    y = y0
    for i in range(len(grid_host) - 1):
        t0, t1 = grid_host[i], grid_host[i + 1]
        if not host:
            step_t[:] = [grid_t[i], grid_t[i + 1] - grid_t[i]]
        y1 = y + _fixed_increment(method, call, time, grid_t[i], grid_t[i + 1], t0, t1 - t0, y)
        counts.step(True)
        while j < len(t_out) and t1 >= t_out[j]:  # torchdiffeq's linear interpolation
            if t_out[j] == t0:
                outputs.append(y)
            elif t_out[j] == t1:
                outputs.append(y1)
            else:
                slope = (t_out[j] - t0) / (t1 - t0)
                outputs.append(y + float(slope) * (y1 - y))
            j += 1
        y = y1
    return torch.stack(outputs)


def integrate(func: VectorField, y0: torch.Tensor, t: torch.Tensor, times: list[float], solver: SolverConfig,
               counts: Counts, *, phase: str = "forward solve", rtol: float | None = None, atol: float | None = None,
               norm: Callable[[torch.Tensor], torch.Tensor] = rms_norm, step_control: str | None = None
               ) -> torch.Tensor:
    """Solve with `solver`'s method (tolerances and step control overridable), counting into `counts`.

    With step control "sample" (forward counts only) a batch of one sample is solved by the batch
    loop, which is the same controller (bitwise, gradient paths included), and counted per sample."""
    control = solver.step_control if step_control is None else step_control
    if control == "sample" and not counts.backward and solver.method in ADAPTIVE_TABLEAUX:
        if y0.dim() == 0 or y0.shape[0] != 1:
            return _solve_adaptive_per_sample(func, y0, times, solver.method, solver.rtol if rtol is None else rtol,
                                              solver.atol if atol is None else atol, solver.max_num_steps, counts,
                                              phase)
        out = integrate(func, y0, t, times, solver, counts, phase=phase, rtol=rtol, atol=atol, norm=norm,
                        step_control="batch")
        nfe = counts.nfe
        nfe.per_sample, nfe.per_sample_accepted, nfe.per_sample_rejected = (
            [nfe.forward], [nfe.accepted_steps], [nfe.rejected_steps])
        return out
    if solver.method in FIXED_TABLEAUX:
        if solver.step_size is None:  # cannot happen: SolverConfig requires it for fixed-step methods
            raise ValueError(f"method {solver.method!r} needs step_size")
        out = _solve_fixed(func, y0, t, times, solver.method, solver.step_size, counts)
    else:
        out = _solve_adaptive(func, y0, times, solver.method, solver.rtol if rtol is None else rtol,
                              solver.atol if atol is None else atol, solver.max_num_steps, counts, phase, norm)
    if not all_finite(out[-1]):
        raise Failure.non_finite(phase)
    return out


def check_inputs(y0: torch.Tensor, t: torch.Tensor) -> list[float]:
    """The output times as float64 host values, after checking what the anode backend supports.

    Arguments:
        y0: initial state.
        t: output times.

    Returns:
        `t` as a list of Python floats.

    Raises:
        TypeError: a state dtype other than float32/float64.
        ValueError: `t` not 1-D strictly increasing with >= 2 entries, or requiring grad.
    """
    numpy_type(y0.dtype)
    return _check_times(t)


def solve(func: VectorField, y0: torch.Tensor, t: torch.Tensor, solver: SolverConfig, nfe: NFE) -> torch.Tensor:
    """Integrate with anode's Runge-Kutta solver, gradients by backpropagation through its operations
    (`solvers.adjoint.solve` does `solver.adjoint`; `anode.odesolve` validates and dispatches).

    Arguments:
        func: vector field `func(t, y)`.
        y0: initial state (float32 or float64).
        t: 1-D strictly increasing output times, on y0's device and dtype, not requiring grad.
        solver: method (one of `ANODE_BACKEND_METHODS`) and tolerances.
        nfe: counts to update (already reset by the caller): `forward` (calls), accepted and
            rejected steps (fixed-step methods count their steps as accepted).

    Returns:
        Tensor of shape `(len(t), *y0.shape)`.

    Raises:
        TypeError: a state dtype other than float32/float64.
        ValueError: `t` not 1-D strictly increasing with >= 2 entries, or requiring grad.
        MaxStepsExceeded, StepSizeUnderflow, NonFiniteState: the solve failed.
    """
    return integrate(func, y0, t, check_inputs(y0, t), solver, Counts(nfe))
