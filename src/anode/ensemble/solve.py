"""One batched adaptive Runge-Kutta solve for R independent ODEs, each with its own step control.

The state has a leading member axis, `y [R, B, ...]`, and the vector field maps `(t [R], y)` to
`dy/dt` with member r's dynamics at its own time `t[r]`. Every member follows torchdiffeq's
dopri5/bosh3 control exactly as `anode.solvers.rk` does for one ODE (Hairer's initial step with
its autograd graph, the RMS error norm over the member's own state, accept when the ratio is <= 1,
the same step-size update, FSAL, the 4th-order dense output at the end time, `max_num_steps`):
only the arithmetic is shared. Times and step sizes are per-member NumPy arrays on the host, so a
step makes one host synchronisation (reading the R error ratios) whatever R is.

A member that has reached the end time stops: its state is frozen (`torch.where`), it adds no NFE
and no steps, and the batch keeps stepping for the others; the loop ends when every member is
done. A member whose solve fails (step-size underflow, too many steps, a non-finite state) is
reported in `failures` and stops; the others go on.

The values agree with solving each member alone to rounding (a batched matrix product may round
differently from a single one), so step counts agree unless a rounding difference flips an
accept/reject decision that sits on a tie; `tests/test_ensemble.py` measures both.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..config import SolverConfig
from ..solvers.base import (
    ADVICE,
    MaxStepsExceeded,
    NonFiniteState,
    SolverError,
    StepSizeUnderflow,
)
from ..solvers.rk import ADAPTIVE_TABLEAUX, adaptive_consts, next_step_size, numpy_type

__all__ = ["MemberFailure", "ensemble_odesolve"]

StackedField = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class MemberFailure:
    """A member's failed solve: the typed error it raises when solved alone."""

    error: SolverError


def _member_dims(y: torch.Tensor) -> tuple[int, ...]:
    return tuple(range(1, y.dim()))


def _rms(x: torch.Tensor) -> torch.Tensor:
    """Per-member RMS norm [R, ...] -> [R]."""
    return x.pow(2).mean(dim=_member_dims(x)).sqrt()


def _expand(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.view(-1, *([1] * (like.dim() - 1)))


def _initial_step(field: StackedField, t0: float, y0: torch.Tensor, f0: torch.Tensor, order: int, rtol: float,
                  atol: float) -> torch.Tensor:
    """torchdiffeq's `_select_initial_step` per member (with its autograd graph); [R] float64."""
    dtype, device = y0.dtype, y0.device
    rtol_t = torch.as_tensor(rtol, dtype=torch.float64, device=device)
    atol_t = torch.as_tensor(atol, dtype=torch.float64, device=device)
    scale = atol_t + torch.abs(y0) * rtol_t
    d0, d1 = _rms(y0 / scale), _rms(f0 / scale)
    small = (d0 < 1e-5) | (d1 < 1e-5)
    h0 = torch.where(small, torch.full_like(d0, 1e-6), 0.01 * d0 / torch.where(small, torch.ones_like(d1), d1))
    y1 = y0 + _expand(h0, y0) * f0
    t_start = torch.full_like(h0, t0, dtype=torch.float64)
    f1 = field((t_start + h0).to(dtype), y1)
    d2 = _rms((f1 - f0) / scale) / h0
    tiny = (d1 <= 1e-15) & (d2 <= 1e-15)
    big = torch.maximum(d1, d2)
    h1 = torch.where(tiny, torch.maximum(torch.full_like(h0, 1e-6), h0 * 1e-3),
                     (0.01 / torch.where(tiny, torch.ones_like(big), big)) ** (1.0 / float(order + 1)))
    return torch.minimum(100 * h0, h1).to(torch.float64)


def _next_steps(dt: np.ndarray, ratio: np.ndarray, active: np.ndarray, order: int) -> np.ndarray:
    """torchdiffeq's `_optimal_step_size` for each active member (the others keep their step).

    Computed member by member with `anode.solvers.rk.next_step_size` (Python float arithmetic): NumPy's
    vectorised power rounds differently from C's `pow` in about 5% of cases, which would move the
    step sizes off those of a member solved alone.
    """
    out = dt.copy()
    for r in np.flatnonzero(active):
        out[r] = next_step_size(float(dt[r]), float(ratio[r]), order)
    return out


def _weighted(ks: list[torch.Tensor], coef: torch.Tensor) -> torch.Tensor:
    """sum_j coef[:, j] * ks[j] (coef [R, J]), stacked as torchdiffeq stacks its stages."""
    stacked = torch.stack(ks, -1)
    return torch.sum(stacked * coef.view(coef.shape[0], *([1] * (stacked.dim() - 2)), coef.shape[1]), dim=-1)


def _dense_output(y0: torch.Tensor, y1: torch.Tensor, ks: list[torch.Tensor], c_mid: torch.Tensor, dt: torch.Tensor,
                  x: torch.Tensor) -> torch.Tensor:
    """torchdiffeq's `_interp_fit` + `_interp_evaluate` at fraction x [R] of each member's step."""
    dt_e, x_e = _expand(dt, y0), _expand(x, y0)
    y_mid = y0 + _weighted(ks, c_mid * dt.view(-1, 1))
    f0, f1 = ks[0], ks[-1]
    a = 2 * dt_e * (f1 - f0) - 8 * (y1 + y0) + 16 * y_mid
    b = dt_e * (5 * f0 - 3 * f1) + 18 * y0 + 14 * y1 - 32 * y_mid
    c = dt_e * (f1 - 4 * f0) - 11 * y0 - 5 * y1 + 16 * y_mid
    d = dt_e * f0
    total = y0 + x_e * d
    power = x_e
    for coefficient in (c, b, a):
        power = power * x_e
        total = total + power * coefficient
    return total


def _failure(kind: str, dt: float, finite: bool, phase: str, n_steps: int = 0, max_steps: int = 0) -> MemberFailure:
    if kind == "max_steps":
        return MemberFailure(MaxStepsExceeded(
            f"the solver exceeded its maximum number of steps during the {phase} "
            f"(max_num_steps exceeded ({n_steps}>={max_steps})). {ADVICE}"))
    if not finite:
        return MemberFailure(NonFiniteState(f"the vector field returned NaN or inf during the {phase}. {ADVICE}"))
    if kind == "non_finite":
        return MemberFailure(NonFiniteState(f"the ODE state became non-finite (NaN or inf) during the {phase}. {ADVICE}"))
    return MemberFailure(StepSizeUnderflow(
        f"the solver's step size underflowed during the {phase} (underflow in dt {dt}). {ADVICE}"))


def ensemble_odesolve(
    field: StackedField,
    y0: torch.Tensor,
    solver: SolverConfig,
    *,
    t_span: tuple[float, float] = (0.0, 1.0),
    alive: Sequence[bool] | None = None,
) -> tuple[torch.Tensor, list[dict[str, int]], list[MemberFailure | None]]:
    """Integrate R stacked ODEs from `y0 [R, ...]` over `t_span`, each member with its own steps.

    Arguments:
        field: `field(t [R], y [R, ...]) -> [R, ...]`, member r's vector field at `(t[r], y[r])`.
        y0: initial states, float32 or float64, member axis first.
        solver: method ("dopri5" or "bosh3"), rtol, atol, max_num_steps (backend and gradient
            mode are not used: the solve backpropagates through its operations).
        t_span: (start, end), end > start.
        alive: members to integrate (default all); the others are returned at y0 with no counts.

    Returns:
        `(y_end [R, ...], counts, failures)`: per member its counts (`forward` NFE,
        `accepted_steps`, `rejected_steps`) and None or its `MemberFailure`.

    Raises:
        ValueError: a method other than dopri5/bosh3, the adjoint, step_control 'sample', or a bad `t_span`/`alive`.
        TypeError: a state dtype other than float32/float64.
    """
    if solver.method not in ADAPTIVE_TABLEAUX:
        raise ValueError(f"a stacked solve integrates {list(ADAPTIVE_TABLEAUX)}, got method {solver.method!r}")
    if solver.adjoint:
        raise ValueError("a stacked solve backpropagates through the solver: use SolverConfig(adjoint=False)")
    if solver.step_control != "batch":
        raise ValueError(f"a stacked solve controls the step per member, not per sample: got step_control="
                         f"{solver.step_control!r}; use SolverConfig(step_control='batch')")
    start, end = (float(v) for v in t_span)
    if not end > start:
        raise ValueError(f"t_span must be (start, end) with end > start, got {t_span!r}")
    size = y0.shape[0]
    live = np.ones(size, dtype=bool) if alive is None else np.array(list(alive), dtype=bool)
    if live.shape != (size,):
        raise ValueError(f"alive must give one flag per member ({size}), got {len(live)}")
    dtype, device = y0.dtype, y0.device
    np_t = numpy_type(dtype)
    consts = adaptive_consts(solver.method, np_t)
    order = ADAPTIVE_TABLEAUX[solver.method].order
    n_stages = len(consts.alpha)
    rtol_y, atol_y = float(np_t(solver.rtol)), float(np_t(solver.atol))

    def tensor(array: np.ndarray) -> torch.Tensor:  # host values (coefficients, times, masks) as device tensors
        return torch.from_numpy(np.ascontiguousarray(array)).to(device)

    alpha_t = tensor(consts.alpha)
    beta_t = [tensor(row) for row in consts.beta]
    c_mid_t = tensor(consts.c_mid)
    phase = "forward solve"

    counts = [{"forward": 0, "accepted_steps": 0, "rejected_steps": 0} for _ in range(size)]
    failures: list[MemberFailure | None] = [None] * size
    f0 = field(torch.full((size,), start, dtype=torch.float64).to(dtype).to(device), y0)
    h = _initial_step(field, start, y0, f0, order - 1, solver.rtol, solver.atol)
    nfe = np.where(live, 2, 0)
    dt = h.detach().cpu().numpy().astype(np.float64)
    dt_shadow: torch.Tensor | None = (h - h.detach()).to(dtype) if h.requires_grad else None
    t0_shadow: torch.Tensor | None = None
    t0 = np.full(size, start, dtype=np.float64)
    accepted = np.zeros(size, dtype=np.int64)
    rejected = np.zeros(size, dtype=np.int64)
    n_steps = np.zeros(size, dtype=np.int64)
    y, f, last_k = y0, f0, f0
    abs_y = y0.detach().abs()
    out = y0
    np_one = np_t(1)
    active = live & (t0 < end)
    while active.any():
        for r in np.flatnonzero(active & (n_steps >= solver.max_num_steps)):
            failures[r] = _failure("max_steps", 0.0, True, phase, int(n_steps[r]), solver.max_num_steps)
            live[r] = active[r] = False
        dt = np.where(np.isfinite(dt), dt, 0.0)
        t1 = t0 + dt
        for r in np.flatnonzero(active & ~(t1 > t0)):
            finite = bool(torch.isfinite(last_k[r]).all()) and bool(torch.isfinite(y[r]).all())
            failures[r] = _failure("underflow", float(dt[r]), finite, phase)
            live[r] = active[r] = False
        if not active.any():
            break
        dt_y, t0_y, t1_y = dt.astype(np_t), t0.astype(np_t), t1.astype(np_t)
        stage_np = t0_y[:, None] + consts.alpha[None, :] * dt_y[:, None]
        stage_np[:, consts.one_idx] = np.nextafter(t1_y, t1_y - np_one)[:, None]
        ts = tensor(stage_np)
        if t0_shadow is not None:
            ts = ts + t0_shadow[:, None]
        if dt_shadow is not None:
            ts = ts + alpha_t[None, :] * dt_shadow[:, None]
        dt_host = tensor(dt_y)
        dt_t = dt_host if dt_shadow is None else dt_host + dt_shadow
        ks = [f]
        yi = y
        for i in range(n_stages):
            coef = beta_t[i][None, :] * dt_t[:, None] if dt_shadow is not None else tensor(consts.beta[i][None, :] * dt_y[:, None])
            yi = y + _weighted(ks, coef)
            ks.append(field(ts[:, i], yi))
        y1, last_k = yi, ks[-1]
        with torch.no_grad():
            err = _weighted(ks, tensor(consts.c_error[None, :] * dt_y[:, None]))
            abs_y1 = y1.detach().abs()
            tol = torch.maximum(abs_y, abs_y1).mul_(rtol_y).add_(atol_y)
            ratio = _rms(err.div_(tol)).cpu().numpy().astype(np.float64)  # the one host sync of the step
        ok = active & (ratio <= 1)
        nfe += np.where(active, n_stages, 0)
        accepted += ok
        rejected += active & ~ok
        done = ok & (t1 >= end)
        if done.any():
            with np.errstate(divide="ignore", invalid="ignore"):
                x_np = np.where(done, (end - t0) / np.where(done, t1 - t0, 1.0), 0.0).astype(np_t)
            x_t = tensor(x_np)
            if t0_shadow is not None or dt_shadow is not None:
                span = np.where(done, t1 - t0, 1.0)
                shift = torch.zeros_like(x_t)
                if t0_shadow is not None:
                    shift = shift + t0_shadow * tensor((-1.0 / span).astype(np_t))
                if dt_shadow is not None:
                    shift = shift + dt_shadow * tensor((-x_np.astype(np.float64) / span).astype(np_t))
                x_t = x_t + shift
            dense = _dense_output(y, y1, ks, c_mid_t.view(1, -1), dt_t, x_t)
            out = torch.where(_expand(tensor(done), y), dense, out)
        if ok.all():  # every member accepts: the same values as the masked update below, in no operation
            y, f, abs_y, t0 = y1, ks[-1], abs_y1, t1
            if dt_shadow is not None:
                t0_shadow = dt_shadow if t0_shadow is None else t0_shadow + dt_shadow
        elif ok.any():
            keep = _expand(tensor(ok), y)
            y = torch.where(keep, y1, y)
            f = torch.where(keep, ks[-1], f)
            abs_y = torch.where(keep, abs_y1, abs_y)
            t0 = np.where(ok, t1, t0)
            if dt_shadow is not None:
                moved = torch.where(tensor(ok), dt_shadow, torch.zeros_like(dt_shadow))
                t0_shadow = moved if t0_shadow is None else t0_shadow + moved
        dt = _next_steps(dt, ratio, active, order)
        dt_shadow = None
        n_steps += active
        active = live & (t0 < end)
    finite = torch.isfinite(out.detach()).flatten(1).all(1).cpu().numpy()
    for r in np.flatnonzero(live & ~finite):
        failures[r] = _failure("non_finite", 0.0, True, phase)
    for r in range(size):
        if live[r] or failures[r] is not None:
            counts[r] = {"forward": int(nfe[r]), "accepted_steps": int(accepted[r]), "rejected_steps": int(rejected[r])}
    return out, counts, failures
