"""Step control of the adaptive methods, over a control axis: one controller for the whole state
(torchdiffeq's, bit for bit) or one per row of the state's leading axis (a sample, an ensemble member).

What it holds, written once and used by every loop (`solvers.loop`, the fused MLP solve
`solvers.fused`, the adjoint `solvers.adjoint`, the stacked ensembles `anode.ensemble`):

* the error norm: `rms_norm` (of the whole state, or of each row);
* Hairer's initial step selection: `select_initial_step` (one controller, with torchdiffeq's
  branches and autograd graph, or one per row, the same branches taken per row; `InitialStep` keeps
  the intermediates the fused backward needs);
* accept/reject and the next step: `StepControl` (the per-solve constants, the step guards, the
  stage times, the error ratio), `next_step_size` / `next_step_sizes` (torchdiffeq's
  `_optimal_step_size`, per controller);
* counting (`Counts`) and failures as typed errors (`Failure`, `row_error`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from .base import (
    ADVICE,
    NFE,
    MaxStepsExceeded,
    NonFiniteState,
    StepSizeUnderflow,
    VectorField,
)
from .caches import bounded_cache
from .tableaux import ADAPTIVE_TABLEAUX, adaptive_consts, coefficients, host_arrays, numpy_type, stage_dot, tableau_tensors

__all__ = [
    "Counts",
    "Failure",
    "InitialStep",
    "StepControl",
    "as_rows",
    "next_step_size",
    "next_step_sizes",
    "next_step_sizes_of",
    "rms_norm",
    "row_error",
    "select_initial_step",
    "tolerance_tensors",
]

# torchdiffeq's step-size controller constants (RKAdaptiveStepsizeODESolver defaults).
_SAFETY, _IFACTOR, _DFACTOR = 0.9, 10.0, 0.2
_TINY = float(np.finfo(np.float64).tiny)  # (a power below it gives the factor _IFACTOR all the same)


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


def rms_norm(x: torch.Tensor, *, rows: bool = False) -> torch.Tensor:
    """torchdiffeq's default error norm, sqrt(mean(x ** 2)), with the same bits and gradients: of the
    whole tensor (one controller), or with `rows` of each row of the leading axis (a sample, a
    member; shape (rows,)). The per-row NumPy step of `solvers.loop` computes the same per-row norm
    on the host, its sum in torch's order (`tableaux.sum_terms`)."""
    # torchdiffeq's _rms_norm is x.abs().pow(2).mean().sqrt(); for real x, pow(x, 2) == pow(|x|, 2)
    # bit for bit, and so are the gradients (2|x| * sign(x) == 2x exactly), so the abs is dropped.
    if rows:
        return x.pow(2).reshape(x.shape[0], -1).mean(1).sqrt()
    return x.pow(2).mean().sqrt()


@bounded_cache(maxsize=64)
def tolerance_tensors(rtol: float, atol: float, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """rtol and atol as float64 0-dim tensors (as torchdiffeq makes them), built once per value."""
    with torch.inference_mode(False):
        return (torch.as_tensor(rtol, dtype=torch.float64, device=device),
                torch.as_tensor(atol, dtype=torch.float64, device=device))


@dataclass(frozen=True)
class InitialStep:
    """`select_initial_step`'s result `h` and the intermediates its derivative needs (`solvers.fused`).

    `h0_varies`: h0 = 0.01 d0 / d1 (else the constant 1e-6); `h1_power`: h1 = (0.01 / max(d1, d2))
    ** (1 / (order + 1)) (else max(1e-6, h0 / 1000)): Python booleans for one controller, boolean
    tensors (one per row) with `rows`. The scalars are NumPy scalars where `select_initial_step`
    computed them on the host (one controller without a graph)."""

    h: torch.Tensor | np.floating
    scale: torch.Tensor
    d0: torch.Tensor | np.floating
    d1: torch.Tensor | np.floating
    d2: torch.Tensor | np.floating
    h0: torch.Tensor | np.floating
    h1: torch.Tensor | np.floating
    f1: torch.Tensor
    abs_y0: torch.Tensor
    h0_varies: bool | torch.Tensor
    h1_power: bool | torch.Tensor


def _constant(value: float, dtype: torch.dtype, host: bool, device: torch.device) -> np.floating | torch.Tensor:
    """A constant of `select_initial_step` in the state's dtype: a NumPy scalar on the host, else a
    0-dim tensor (as torchdiffeq makes it)."""
    return numpy_type(dtype)(value) if host else torch.tensor(value, dtype=dtype, device=device)


def _reciprocal(x: np.floating | torch.Tensor) -> np.floating | torch.Tensor:
    """1 / x, the first rounding of torch's `c / x` for a tensor x (its reciprocal times c)."""
    return x.reciprocal() if isinstance(x, torch.Tensor) else np.reciprocal(x)


def _power(x: np.floating | torch.Tensor, exponent: float) -> np.floating | torch.Tensor:
    """x ** exponent with torch's bits: on a host scalar, the power in float64 rounded to x's type
    (torch's kernel for a Python exponent), or the square root for exponent 0.5 (as torch takes it)."""
    if isinstance(x, torch.Tensor):
        return x ** exponent
    return np.sqrt(x) if exponent == 0.5 else type(x)(float(x) ** exponent)


def _minimum(a: np.floating | torch.Tensor, b: np.floating | torch.Tensor) -> np.floating | torch.Tensor:
    """The smaller one, NaN propagating (torch.min of two tensors)."""
    return torch.min(a, b) if isinstance(a, torch.Tensor) else np.minimum(a, b)


def _maximum(a: np.floating | torch.Tensor, b: np.floating | torch.Tensor) -> np.floating | torch.Tensor:
    """The larger one, NaN propagating (torch.max of two tensors)."""
    return torch.max(a, b) if isinstance(a, torch.Tensor) else np.maximum(a, b)


def select_initial_step(
    func: VectorField, t0: torch.Tensor, y0: torch.Tensor, f0: torch.Tensor, order: int, rtol: float, atol: float,
    counts: Counts, norm: Callable[[torch.Tensor], torch.Tensor] = rms_norm, *, rows: bool = False,
    time_rows: bool = True,
) -> InitialStep:
    """torchdiffeq's `_select_initial_step` (Hairer et al. II.4), op for op (keeps its autograd graph),
    for one controller or, with `rows`, for every row of the leading axis at once.

    One controller: the branches are Python's, decided on host copies of d0, d1, d2 (two
    synchronisations) as torchdiffeq decides them. Per row: the same arithmetic on per-row norms,
    each branch taken per row by `torch.where` with safe operands (so that an unused branch never
    makes a NaN gradient); on a row, the same values as the one controller on that row alone.
    torchdiffeq also takes `.abs()` of d0, d1, d2, h0 and h1, which are non-negative by construction:
    dropping them changes neither values nor gradients (sign(x) = 1 for x > 0, and for x = 0 those
    quantities do not feed a gradient path).

    Arguments:
        func: the vector field, called once (the probe, counted in `counts`).
        t0: the start time, a float64 0-dim tensor.
        y0: the initial state (rows on the leading axis with `rows`).
        f0: `func(t0, y0)`.
        order: the method's order minus one.
        rtol, atol: the tolerances.
        counts: where the probe call is counted.
        norm: the error norm of one controller (`rms_norm`, or the adjoint's seminorm); with `rows`,
            `rms_norm` per row.
        rows: one step size per row of the leading axis.
        time_rows: with `rows`, pass the probe times shaped (rows, 1, ..., 1) (else as a vector (rows,)).

    Returns:
        The step size `h` (a float64 0-dim tensor, or (rows,) with `rows`) and its intermediates. One
        controller without a graph (grad mode off, or nothing requiring grad) on a state of at least
        one dimension: `h` and the scalar intermediates are NumPy scalars (the state's type; `h`
        np.float64), computed on the host by the same IEEE operations, hence the same values.

    Raises:
        ValueError: `rows` with a norm other than `rms_norm`.
    """
    if rows and norm is not rms_norm:
        raise ValueError("per-row initial steps use the RMS norm per row: pass norm=rms_norm with rows=True")
    dtype, device, ndim = y0.dtype, y0.device, y0.dim()
    rtol_t, atol_t = tolerance_tensors(rtol, atol, device)
    abs_y0 = torch.abs(y0)
    scale = atol_t + abs_y0 * rtol_t
    d0 = rms_norm(y0 / scale, rows=True) if rows else norm(y0 / scale)
    d1 = rms_norm(f0 / scale, rows=True) if rows else norm(f0 / scale)
    np_d = numpy_type(d1.dtype)
    # One controller without a graph, on a state of at least one dimension (whose scalars keep its dtype):
    # the scalar arithmetic on the host, in NumPy scalars of the state's dtype (the same IEEE operations).
    host = not rows and ndim > 0 and not (torch.is_grad_enabled() and (y0.requires_grad or f0.requires_grad))
    if rows:
        small = (d0 < float(np_d(1e-5))) | (d1 < float(np_d(1e-5)))
        h0_varies = ~small
        h0 = torch.where(small, torch.full_like(d0, 1e-6), 0.01 * d0 / torch.where(small, torch.ones_like(d1), d1))
        y1 = y0 + as_rows(h0, ndim) * f0
        t_probe = (t0 + h0.to(torch.float64)).to(y1.dtype)
        f1 = func(as_rows(t_probe, ndim) if time_rows else t_probe, y1)
    else:
        # torchdiffeq compares each tensor with a Python threshold (rounded to the tensor's dtype) and takes
        # Python's max(d1, d2): the same decisions from host copies, read in two synchronisations instead of five.
        d0_v, d1_v = torch.stack([d0.detach(), d1.detach()]).tolist()
        h0_varies = not (d0_v < np_d(1e-5) or d1_v < np_d(1e-5))
        if host:
            d0, d1 = np_d(d0_v), np_d(d1_v)
        h0 = 0.01 * d0 / d1 if h0_varies else _constant(1e-6, dtype, host, device)
        y1 = y0 + (float(h0) if host else h0) * f0
        # torchdiffeq's probe time is t0 + h0 in y1's dtype: the state's, except for a 0-d state, whose
        # 0-d arithmetic with the float64 tolerances (scale, h0, y1) promotes to float64.
        f1 = func(torch.scalar_tensor(float(np_d(float(t0) + float(h0))), dtype=dtype, device=device) if host
                  else (t0 + h0).to(y1.dtype), y1)
    counts.call()
    if rows:
        d2 = rms_norm((f1 - f0) / scale, rows=True) / h0
        h1_power = ~((d1 <= float(np_d(1e-15))) & (d2 <= float(np_d(1e-15))))
        d_max = torch.where(d2 > d1, d2, d1)  # Python's max(d1, d2): d1 on a tie
        h1 = torch.where(h1_power, (0.01 / torch.where(h1_power, d_max, torch.ones_like(d_max))) ** (1.0 / float(order + 1)),
                         torch.maximum(torch.full_like(h0, 1e-6), h0 * 1e-3))
        h = torch.minimum(100 * h0, h1).to(torch.float64)
    else:
        d2 = norm((f1 - f0) / scale)
        d2 = (np_d(d2.item()) if host else d2) / h0
        d2_v = float(d2) if host else d2.item()
        h1_power = not (d1_v <= np_d(1e-15) and d2_v <= np_d(1e-15))
        if h1_power:  # (0.01 / max(d1, d2)) ** (1 / (order + 1)), Python's max: d1 on a tie
            h1 = _power(_reciprocal(d2 if d2_v > d1_v else d1) * 0.01, 1.0 / float(order + 1))
        else:
            h1 = _maximum(_constant(1e-6, dtype, host, device), h0 * 1e-3)
        h = _minimum(100 * h0, h1)
        h = np.float64(h) if host else h.to(t0.dtype)
    return InitialStep(h, scale, d0, d1, d2, h0, h1, f1, abs_y0, h0_varies, h1_power)


def next_step_size(dt: float, ratio: float, order: int) -> float:
    """torchdiffeq's `_optimal_step_size` (float64 arithmetic, NaN propagating like torch.min/max)."""
    if ratio == 0:
        return dt * _IFACTOR
    if math.isnan(ratio):
        return math.nan
    dfactor = 1.0 if ratio < 1 else _DFACTOR
    factor = min(_IFACTOR, max(_SAFETY / ratio ** (1.0 / order), dfactor))
    return dt * factor


def as_rows(v: torch.Tensor, ndim: int) -> torch.Tensor:
    """A per-row vector (n,) or matrix (n, m) shaped to broadcast against a state of `ndim` dims:
    (n, 1, ..., 1) or (n, 1, ..., 1, m)."""
    if v.dim() == 1:
        return v.view(v.shape[0], *([1] * (ndim - 1)))
    return v.view(v.shape[0], *([1] * (ndim - 1)), v.shape[1])


@bounded_cache(maxsize=16)
def _float_power_is_pow(exponent: float) -> bool:
    """Whether NumPy's `float_power` (a loop over the C library's `pow`, where this machine's NumPy
    does not vectorise it) gives Python's `pow(x, exponent)` on 65536 ratios over 20 decades (its
    vectorised `power` differs in the last bit for about one in twenty): measured once."""
    ratio = 10.0 ** np.random.default_rng(2024).uniform(-12.0, 8.0, 65536)
    ref = np.fromiter(map(pow, ratio.tolist(), itertools.repeat(exponent)), np.float64, len(ratio))
    return np.float_power(ratio, exponent).tobytes() == ref.tobytes()


def _powers(ratio: np.ndarray, exponent: float) -> np.ndarray:
    """`pow(r, exponent)` of every ratio, with the C library's bits (see `_float_power_is_pow`)."""
    if _float_power_is_pow(exponent):
        return np.float_power(ratio, exponent)
    return np.fromiter(map(pow, ratio.tolist(), itertools.repeat(exponent)), np.float64, len(ratio))


def next_step_sizes(dt: np.ndarray, ratio: np.ndarray, order: int) -> np.ndarray:
    """`next_step_size` for arrays of step sizes and error ratios (float64, element by element).

    The power is the C library's `pow` (as `next_step_size`'s): NumPy's vectorised power (SIMD on
    x86) differs from it in the last bit for about one ratio in twenty, so `float_power` is used
    where it is measured to be `pow` (`_float_power_is_pow`), else Python's `pow` element by element.
    The branches of `next_step_size` are taken without a branch: a ratio of 0 has power 0 (raised to
    the smallest normal number, no division by zero), hence a factor clipped to _IFACTOR, dt * _IFACTOR;
    a NaN ratio propagates through the maximum and the minimum (NaN)."""
    factor = np.divide(_SAFETY, np.maximum(_powers(ratio, 1.0 / order), _TINY))
    np.maximum(factor, np.where(ratio < 1, 1.0, _DFACTOR), out=factor)
    np.minimum(factor, _IFACTOR, out=factor)
    factor *= dt
    return factor


def next_step_sizes_of(dt: np.ndarray, ratio: np.ndarray, order: int, rows: np.ndarray) -> np.ndarray:
    """`next_step_sizes` of the rows `rows` (a boolean mask); the other rows keep their step `dt`.

    Arguments:
        dt: the step sizes (float64).
        ratio: the error ratios (float64).
        order: the method's order.
        rows: which rows take a new step size.

    Returns:
        The step sizes (a new array).
    """
    new = next_step_sizes(dt, ratio, order)
    return new if rows.all() else np.where(rows, new, dt)


def row_error(err: Exception, index: int, axis: str = "sample") -> Exception:
    """`err` (a `SolverError`) of the same type, with the row that failed put in front of its message.

    Arguments:
        err: the typed error of the row's solve (`Failure`'s).
        index: the row's index on the leading axis.
        axis: what a row is ("sample": the words of `SolverConfig(step_control='sample')`; else the name).

    Returns:
        A new error of `err`'s type.
    """
    where = f"sample {index} of the batch (step_control='sample')" if axis == "sample" else f"{axis} {index}"
    return type(err)(f"{where}: {err}")


class StepControl:
    """The per-solve constants of an adaptive method and the parts of a step that carry no gradient:
    the step guards, the stage times and the error ratio (shared by the loops of `solvers.loop` and
    the fused MLP solve, `solvers.fused`).

    Arguments:
        method: an adaptive method (a key of `ADAPTIVE_TABLEAUX`).
        y0: the initial state (its dtype and device).
        rtol, atol: the tolerances.
        max_num_steps: the most steps per output interval.
        phase: words naming the solve, put in failure messages.
        norm: the error norm of one controller (`rms_norm`, or the adjoint's seminorm).
        host: compute coefficients and stage times with NumPy on the host (default: on the CPU,
            `tableaux.host_arrays`) or as tensor operations on the device (the same bits).
    """

    def __init__(self, method: str, y0: torch.Tensor, rtol: float, atol: float, max_num_steps: int, phase: str,
                 norm: Callable[[torch.Tensor], torch.Tensor] = rms_norm, host: bool | None = None) -> None:
        self.method = method
        self.np_t = numpy_type(y0.dtype)
        self.consts = adaptive_consts(method, self.np_t)
        self.order = ADAPTIVE_TABLEAUX[method].order
        self.n_stages = len(self.consts.alpha)
        self.rtol, self.atol = rtol, atol
        self.rtol_y, self.atol_y = float(self.np_t(rtol)), float(self.np_t(atol))
        self.max_num_steps, self.phase, self.norm = max_num_steps, phase, norm
        self.tensors = tableau_tensors(method, y0.dtype, y0.device)
        self.host = host_arrays(y0.device) if host is None else host

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
        return coefficients(self.consts.beta[i], dt_y, self.host, self.tensors[3 + i], dt_t)

    def error_ratio(self, stages: torch.Tensor, dt_y: np.floating, abs_y: torch.Tensor, y1: torch.Tensor
                    ) -> tuple[float, torch.Tensor]:
        """(torchdiffeq's error ratio of the step, |y1|), without autograd: the one host sync of a step.
        `stages` are the step's stages stacked on the last dimension (`torch.stack(ks, -1)`)."""
        with torch.no_grad():
            coef = coefficients(self.consts.c_error, dt_y, self.host, self.tensors[2])
            err = stage_dot(stages, coef)
            abs_y1 = y1.detach().abs()
            if abs_y.dim() == 0:  # torchdiffeq's 0-d float64 rtol, atol promote a 0-d state's ratio to float64
                tol = torch.maximum(abs_y, abs_y1).to(torch.float64).mul_(self.rtol).add_(self.atol)
                err = err.div(tol)
                ratio_t = self.norm(err)
            else:
                tol = torch.maximum(abs_y, abs_y1).mul_(self.rtol_y).add_(self.atol_y)
                ratio_t = self.norm(err.div_(tol))
        return float(ratio_t), abs_y1
