"""The 4th-order dense output of the adaptive methods (torchdiffeq's `_interp_fit`/`_interp_evaluate`).

The polynomial through y0, the step's midpoint and y1 with the end slopes (`polynomial`, valued by
`polynomial_value`) is written once and serves both control axes:

* one controller for the whole state (`AcceptedStep`, `interp_value`, `interp_evaluate`): fitted
  only for the steps that hold an output time, valued without autograd by torchdiffeq's own
  operations (on the CPU in NumPy: the same IEEE operations, a third of the dispatch cost), and
  differentiated through its exact linearisation (`interp_weights`); the fused MLP solve's hand-written
  backward (`solvers.fused`) uses the same weights;
* one controller per row of the leading axis (`dense_rows`): the same operations on tensors with a
  step size and abscissa per row, differentiated by autograd.
"""

from __future__ import annotations

import numpy as np
import torch

from .control import as_rows
from .tableaux import AdaptiveConsts, coefficients, host_arrays, product_sum, stage_dot, stage_sum

#: The dense output's operands: tensors, or NumPy arrays on the host (the same IEEE operations).
Array = torch.Tensor | np.ndarray

__all__ = ["AcceptedStep", "dense_rows", "interp_evaluate", "interp_value", "interp_weights", "polynomial",
           "polynomial_value"]


def polynomial(y0: Array, y1: Array, y_mid: Array, f0: Array, f1: Array, dt: float | torch.Tensor
               ) -> tuple[Array, Array, Array, Array]:
    """The coefficients (d, c, b, a) of x, x^2, x^3, x^4 of torchdiffeq's dense output, op for op.

    Arguments:
        y0, y1, y_mid: the state at the step's start, end and midpoint (tensors, or NumPy arrays).
        f0, f1: the slopes at the start and the end.
        dt: the step size (a Python float, or a tensor broadcasting against the state).

    Returns:
        `(d, c, b, a)`: the value at fraction x of the step is `y0 + d x + c x^2 + b x^3 + a x^4`.
    """
    a = 2 * dt * (f1 - f0) - 8 * (y1 + y0) + 16 * y_mid
    b = dt * (5 * f0 - 3 * f1) + 18 * y0 + 14 * y1 - 32 * y_mid
    c = dt * (f1 - 4 * f0) - 11 * y0 - 5 * y1 + 16 * y_mid
    d = dt * f0
    return d, c, b, a


def polynomial_value(y0: Array, coeffs: tuple[Array, Array, Array, Array], x: np.floating | torch.Tensor) -> Array:
    """torchdiffeq's `_interp_evaluate`: y0 + d x + c x^2 + b x^3 + a x^4 by its own operations.

    Arguments:
        y0: the state at the step's start.
        coeffs: `polynomial`'s (d, c, b, a).
        x: the fraction of the step: a NumPy scalar in the state's dtype (its powers rounded in that
            dtype, as torchdiffeq's 0-dim tensors) or a tensor broadcasting against the state.

    Returns:
        The value, like y0.
    """
    d, c, b, a = coeffs
    scalar = isinstance(x, np.floating)
    value = y0 + d * (float(x) if scalar else x)
    x_power = x
    for coefficient in (c, b, a):
        x_power = x_power * x
        value = value + coefficient * (float(x_power) if scalar else x_power)
    return value


class AcceptedStep:
    """The latest accepted adaptive step, with its dense output fitted on first use. `stages` is the
    loop's stage buffer (the step's stages laid out as torch.stack(ks, -1)) while it holds this
    step's stages, i.e. while the loop hands out the step's outputs; None otherwise."""

    __slots__ = ("coeffs", "dt", "dt_shadow", "ks", "stages", "t0", "t0_shadow", "t1", "tensors", "y0", "y1")

    def __init__(self, y0: torch.Tensor, y1: torch.Tensor, ks: list[torch.Tensor], t0: float, t1: float, dt: float,
                 t0_shadow: torch.Tensor | None, dt_shadow: torch.Tensor | None,
                 tensors: tuple[torch.Tensor, ...]) -> None:
        self.y0, self.y1, self.ks = y0, y1, ks
        self.t0, self.t1, self.dt = t0, t1, dt
        self.t0_shadow, self.dt_shadow = t0_shadow, dt_shadow
        self.tensors = tensors
        self.coeffs: list[torch.Tensor] | None = None
        self.stages: torch.Tensor | None = None


def _fit(step: AcceptedStep, consts: AdaptiveConsts, np_t: type) -> list[torch.Tensor]:
    """torchdiffeq's `_interp_fit` (4th-order polynomial through y0, y_mid, y1 with end slopes),
    op for op, without autograd (the gradient is attached by `_interp_evaluate`). On the CPU the
    element-wise arithmetic runs in NumPy (the same IEEE operations, hence the same bits, for a
    third of the dispatch cost); the stage sum stays in torch (its reduction order), over the loop's
    stage buffer while it holds the step's stages (`AcceptedStep.stages`), else over them stacked."""
    y0, y1, f0, f1 = step.y0.detach(), step.y1.detach(), step.ks[0].detach(), step.ks[-1].detach()
    dt_y = np_t(step.dt)  # dt.type_as(y0)
    dt = float(dt_y)
    host = host_arrays(y0.device)
    stages = step.stages if step.stages is not None else torch.stack([k.detach() for k in step.ks], -1)
    mid = stage_dot(stages, coefficients(consts.c_mid, dt_y, host, step.tensors[1]))
    host = host and all(v.dtype == y0.dtype for v in (y1, mid, f0, f1))  # else (e.g. autocast) torch's promotions
    if host:
        y0, y1, mid, f0, f1 = (v.numpy() for v in (y0, y1, mid, f0, f1))
    coeffs = polynomial(y0, y1, y0 + mid, f0, f1, dt)
    # (np.asarray: the arithmetic of 0-d arrays, a 0-d state's, gives NumPy scalars)
    return [step.y0.detach(), *(torch.from_numpy(np.asarray(v)) for v in coeffs)] if host else [y0, *coeffs]


def interp_value(step: AcceptedStep, t: float, np_t: type, consts: AdaptiveConsts) -> tuple[torch.Tensor, np.floating]:
    """torchdiffeq's `_interp_evaluate` value at output time `t` in [t0, t1] of the step, by its own
    operations (the same bits), without autograd; also x = (t - t0) / (t1 - t0) in the state's dtype."""
    with torch.no_grad():
        if step.coeffs is None:
            step.coeffs = _fit(step, consts, np_t)
        host = host_arrays(step.y0.device) and all(v.dtype == step.y0.dtype for v in step.coeffs)
        e, d, c, b, a = (v.numpy() for v in step.coeffs) if host else step.coeffs
        x = np_t((t - step.t0) / (step.t1 - step.t0))
        value = polynomial_value(e, (d, c, b, a), x)
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


def _interp_slope(step: AcceptedStep, x: float) -> torch.Tensor:
    """dP/dx of the fitted dense output at x (no autograd; `interp_value` fitted it)."""
    _, d, c, b, a = step.coeffs
    x2, x3 = x * x, x**3
    return d + 2 * x * c + 3 * x2 * b + 4 * x3 * a


def interp_evaluate(step: AcceptedStep, t: float, np_t: type, dtype: torch.dtype, device: torch.device,
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
                dp_ddt = stage_sum([k.detach() for k in ks], torch.tensor(u, dtype=dtype, device=device))
            g = g + dp_ddt * step.dt_shadow
        g = g + dp_dx * dx
    return value + (g - g.detach())


def dense_rows(y0: torch.Tensor, y1: torch.Tensor, ks: list[torch.Tensor], dt: torch.Tensor, x: torch.Tensor,
               c_mid: torch.Tensor) -> torch.Tensor:
    """torchdiffeq's 4th-order dense output (`_interp_fit`, `_interp_evaluate`) of every row's step,
    by the same operations, differentiable (each per-row vector viewed where it is used, as the
    stacked ensembles' solves recorded before, so that the gradients add up as theirs did).

    Arguments:
        y0, y1: the rows' states at the step's start and end, rows on the leading axis.
        ks: the step's stages (the first and last are the slopes at the start and the end).
        dt: the rows' step sizes, (rows,).
        x: the fractions of the rows' steps, (rows,).
        c_mid: the midpoint weights of the method, (stages,).

    Returns:
        The values, like `y0`.
    """
    ndim = y0.dim()
    y_mid = y0 + product_sum(ks, as_rows(c_mid * dt.view(-1, 1), ndim))
    return polynomial_value(y0, polynomial(y0, y1, y_mid, ks[0], ks[-1], as_rows(dt, ndim)), as_rows(x, ndim))
