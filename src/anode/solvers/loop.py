"""The loops of the "anode" backend: the adaptive loop over a control axis, and the fixed-grid loop.

* `solve_adaptive`: one controller for the whole state, torchdiffeq's steps bit for bit (the
  default `step_control="batch"`, the adjoint's passes, the stacked ensembles' members alone);
* `solve_rows`: one controller per row of the leading axis: per sample (`step_control="sample"`)
  or per ensemble member (`anode.ensemble.ensemble_odesolve`), several output times per row or a
  single end time, finished rows frozen, and a failure policy ("raise" or "skip");
* `solve_fixed`: euler, midpoint, heun2, heun3, rk4 on torchdiffeq's grid.

Both adaptive loops are built from the same pieces, written once: the tableaux (`solvers.tableaux`),
the step control (`solvers.control`: error norm, Hairer's initial step, accept/reject, next step,
typed failures) and the dense output (`solvers.dense`: one polynomial for both). They stay two
loops because the arithmetic of one controller is scalar and the other's is vectorised over rows:
the one-controller loop keeps time and step sizes in Python floats, makes one host synchronisation
per step, writes the stages of a solve without a graph into one column buffer, fits the dense
output only where an output time falls and differentiates it through its linearisation (which is
what makes it as fast as it is and bitwise torchdiffeq's, 0-d states and custom norms included); the
per-row loop keeps them in NumPy arrays, masks finished rows with `torch.where`, and lets autograd
differentiate the per-row dense output. On a batch of one row the two give the same bits
(`tests/test_per_sample.py`).

`solvers.rk` dispatches to these loops; `solvers.fused` runs its own copy of `solve_adaptive`'s
step sequence without autograd (see its docstring) from the same control and dense-output pieces.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from .base import SolverError, VectorField
from .control import (
    Counts,
    Failure,
    StepControl,
    as_rows,
    next_step_size,
    next_step_sizes,
    rms_norm_rows,
    row_error,
    select_initial_step,
    select_initial_steps,
)
from .dense import AcceptedStep, dense_rows, interp_evaluate
from .tableaux import FIXED_TABLEAUX, host_arrays, numpy_type, stage_dot, stage_sum

__all__ = ["FAILURE_POLICIES", "RowsResult", "fixed_increment", "solve_adaptive", "solve_fixed", "solve_rows"]


def _plus(a: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor | None:
    if a is None:
        return b
    if b is None:
        return a
    return a + b


def solve_adaptive(func: VectorField, y0: torch.Tensor, times: list[float], ctl: StepControl, counts: Counts, *,
                   sum_stages: Callable[[list[torch.Tensor], torch.Tensor], torch.Tensor] = stage_sum) -> torch.Tensor:
    """The adaptive loop with one controller for the whole state: torchdiffeq's steps, bit for bit.

    Arguments:
        func: the vector field `func(t, y)` (t a 0-dim tensor in the state's dtype).
        y0: the initial state, any shape (0-d included), float32/float64.
        times: the output times, strictly increasing host floats (`times[0]` the start).
        ctl: the method's step control (tolerances, norm, step budget, failure phase).
        counts: where the field calls and the steps are counted.
        sum_stages: the stage sum of a solve with a graph (`tableaux.stage_sum`; `solvers.rk` passes
            its own name of it, which its tests instrument).

    Returns:
        The states at `times`, shape `(len(times), *y0.shape)`.

    Raises:
        MaxStepsExceeded, StepSizeUnderflow, NonFiniteState: from the step guards (`StepControl.begin`).
        ValueError: the field returned a state of another shape.
    """
    dtype, device = y0.dtype, y0.device
    rtol, atol, norm = ctl.rtol, ctl.atol, ctl.norm
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
                    yi = y + sum_stages(ks, coef)  # as torchdiffeq, same rounding
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
        outputs.append(interp_evaluate(step, t_out, np_t, dtype, device, consts))
    return torch.stack(outputs)


#: What a row's failed solve does to the others (`solve_rows`, `SolverConfig.sample_failure`).
FAILURE_POLICIES: tuple[str, ...] = ("raise", "skip")


@dataclass
class RowsResult:
    """What `solve_rows` returns.

    Arguments:
        out: the states at the output times, `(len(times), *y0.shape)`. A row that failed under the
            "skip" policy keeps the outputs it reached; its later ones are NaN (`fill="nan"`) or its
            initial state (`fill="initial"`); a row not integrated (`live`) holds its initial state.
        nfe: field evaluations per row (each batched call counts once for every row it integrates).
        accepted: accepted steps per row.
        rejected: rejected steps per row.
        failures: (row, typed error) of every row that failed under the "skip" policy, by row.
    """

    out: torch.Tensor
    nfe: np.ndarray
    accepted: np.ndarray
    rejected: np.ndarray
    failures: list[tuple[int, SolverError]]


def solve_rows(func: VectorField, y0: torch.Tensor, times: list[float], ctl: StepControl, counts: Counts, *,
               failure: str = "raise", axis: str = "sample", time_rows: bool = True,
               live: np.ndarray | None = None, fill: str = "nan") -> RowsResult:
    """The adaptive loop with one controller per row of the leading axis (a sample, an ensemble member).

    Every row still integrating takes its own step: its own size, stage times, error ratio (the RMS
    norm over the row), accept/reject, next step and per-interval step budget, and its own outputs
    (as many output times as it likes per step, by the dense output). The field is called once per
    stage on the whole state while some row is still integrating (so that a field may hold per-row
    data of its own); a finished or failed row is frozen: a step of size 0 whose values are discarded
    and not counted. The gradient paths through time are those of the one-controller loop (the first
    step's size moves that step and, when accepted, every later time of the row), here by autograd.
    The step control runs on the host in NumPy arrays: one host synchronisation per step (the vector
    of error ratios).

    Arguments:
        func: the vector field, `func(t, y)` with one time per row.
        y0: the initial state, rows on the leading axis (at least 1-d), float32/float64.
        times: the output times, strictly increasing host floats (`times[0]` the start; the ensembles
            pass `[start, end]`).
        ctl: the method's step control (its norm is not used: the RMS norm of each row is).
        counts: the batched counts (a call per batched call, a step per batched step with any row
            accepting it).
        failure: one of `FAILURE_POLICIES`. "raise": a row's failure raises its typed error with the
            row index in front of the message (`control.row_error`). "skip": the row's typed error is
            recorded in `failures`, the row is frozen (see `RowsResult.out`) and the others go on.
        axis: what a row is, for the messages ("sample" or e.g. "member").
        time_rows: pass `t` shaped (rows, 1, ..., 1) (else as a vector (rows,)).
        live: the rows to integrate (default all); the others keep their initial state, no counts.
        fill: what a skipped row's unreached outputs hold: "nan" or "initial" (its initial state).

    Returns:
        A `RowsResult`.

    Raises:
        ValueError: a 0-d state, an unknown policy or fill, or a field returning another shape.
        MaxStepsExceeded, StepSizeUnderflow, NonFiniteState: a row failed under the "raise" policy.
    """
    dtype, device, ndim = y0.dtype, y0.device, y0.dim()
    if ndim == 0:
        raise ValueError(f"one controller per row integrates a state whose leading dimension is the {axis} axis, "
                         "got a 0-d state: give y0 a batch dimension or use step_control='batch'")
    if failure not in FAILURE_POLICIES:
        raise ValueError(f"unknown failure policy {failure!r}; valid choices: {list(FAILURE_POLICIES)}")
    if fill not in ("nan", "initial"):
        raise ValueError(f"unknown fill {fill!r}; valid choices: ['nan', 'initial']")
    np_t, consts, tensors = ctl.np_t, ctl.consts, ctl.tensors
    alpha_t, c_mid_t, c_error_t = tensors[0], tensors[1], tensors[2]
    betas = tensors[3:3 + ctl.n_stages]
    n_rows, n_out = y0.shape[0], len(times)
    live = np.ones(n_rows, dtype=bool) if live is None else np.array(live, dtype=bool)
    times_np = np.array(times, dtype=np.float64)
    per_nfe = np.zeros(n_rows, dtype=np.int64)
    per_acc, per_rej = np.zeros_like(per_nfe), np.zeros_like(per_nfe)
    failures: list[tuple[int, SolverError]] = []

    def at(t: torch.Tensor) -> torch.Tensor:
        return as_rows(t, ndim) if time_rows else t

    def fail(err: SolverError, row: int) -> None:
        if failure == "raise":
            raise row_error(err, row, axis)
        failures.append((row, err))
        live[row] = False

    t_start = torch.tensor(times[0], dtype=torch.float64, device=device)
    f0 = func(at(t_start.to(dtype).expand(n_rows)), y0)
    h = select_initial_steps(func, t_start, y0, f0, ctl.order - 1, ctl.rtol, ctl.atol, time_rows=time_rows)
    counts.calls(2)
    per_nfe += 2 * live
    dt = h.detach().cpu().numpy().astype(np.float64)
    dt_shadow = (h - h.detach()).to(dtype) if h.requires_grad else None  # d(step)/d(h) on the first step
    t0_shadow: torch.Tensor | None = None  # d(time)/d(h) of each row after an accepted first step

    t0 = np.full(n_rows, times[0])
    n_steps = np.zeros(n_rows, dtype=np.int64)
    j_next = np.ones(n_rows, dtype=np.int64)  # each row's next output time
    y, f, last_k = y0, f0, f0
    abs_y = y0.detach().abs()
    pieces: list[tuple[np.ndarray, np.ndarray, torch.Tensor]] = [(np.arange(n_rows), np.zeros(n_rows, np.int64), y0)]
    active = live & (j_next < n_out)  # the rows still integrating (the others are frozen)
    while active.any():
        for row in np.flatnonzero(active & (n_steps >= ctl.max_num_steps)).tolist():
            fail(Failure.max_steps(int(n_steps[row]), ctl.max_num_steps, ctl.phase), row)
        dt = np.where(np.isfinite(dt), dt, 0.0)
        t1 = t0 + np.where(active, dt, 0.0)
        for row in np.flatnonzero(active & live & ~(t1 > t0)).tolist():
            fail(Failure.underflow(float(dt[row]), last_k[row], y[row], ctl.phase), row)
        active &= live
        if not active.any():
            break
        step_dt = np.where(active, dt, 0.0)
        t1 = t0 + step_dt
        dt_y, t0_y, t1_y = step_dt.astype(np_t), t0.astype(np_t), t1.astype(np_t)
        stage_np = t0_y[:, None] + consts.alpha[None, :] * dt_y[:, None]
        stage_np[:, consts.one_idx] = np.nextafter(t1_y, t1_y - np_t(1))[:, None]
        ts = torch.from_numpy(stage_np).to(device)
        if t0_shadow is not None:
            ts = ts + t0_shadow[:, None]
        if dt_shadow is not None:
            ts = ts + alpha_t * dt_shadow[:, None]
        stage_times = ts.unbind(1)
        dt_rows = torch.from_numpy(dt_y).to(device)
        dt_t = dt_rows if dt_shadow is None else dt_shadow + dt_rows  # differentiable on the first step
        dt_col = dt_t[:, None]
        ks = [f]
        yi = y
        for i in range(ctl.n_stages):
            coef = as_rows(betas[i] * dt_col, ndim)
            if i == 0:
                yi = y + ks[0] * coef[..., 0]
            else:
                yi = y + torch.sum(torch.stack(ks, -1) * coef, dim=-1)
            k = func(at(stage_times[i]), yi)
            if k.shape != y.shape:
                raise ValueError(f"the vector field returned shape {tuple(k.shape)} for a state of shape "
                                 f"{tuple(y.shape)}: it must return dy/dt, shaped like y")
            ks.append(k)
        counts.calls(ctl.n_stages)
        per_nfe[active] += ctl.n_stages
        y1, last_k = yi, ks[-1]
        stacked = torch.stack(ks, -1)
        with torch.no_grad():
            err = torch.sum(stacked.detach() * as_rows(c_error_t * dt_rows[:, None], ndim), dim=-1)
            abs_y1 = y1.detach().abs()
            tol = torch.maximum(abs_y, abs_y1).mul_(ctl.rtol_y).add_(ctl.atol_y)
            ratio = rms_norm_rows(err.div_(tol)).cpu().numpy().astype(np.float64)  # the step's one sync
        accept = (ratio <= 1) & active
        counts.step(bool(accept.any()))
        per_acc += accept
        per_rej += active & ~accept
        # outputs inside the accepted steps: the dense output, as many as each step holds
        out_j = j_next.copy()
        while True:
            emit = accept & (out_j < n_out)
            emit &= times_np[np.minimum(out_j, n_out - 1)] <= t1
            rows_np = np.flatnonzero(emit)
            if not rows_np.size:
                break
            rows = torch.from_numpy(rows_np).to(device)
            span = t1[rows_np] - t0[rows_np]
            x_np = (times_np[out_j[rows_np]] - t0[rows_np]) / span
            x = torch.from_numpy(x_np.astype(np_t)).to(device)
            if t0_shadow is not None or dt_shadow is not None:  # x = (t - t0) / (t1 - t0): its exact linearisation
                step = torch.from_numpy(span.astype(np_t)).to(device)
                dx = torch.zeros_like(x)
                if t0_shadow is not None:
                    dx = dx - t0_shadow[rows] / step
                if dt_shadow is not None:
                    dx = dx - dt_shadow[rows] * x / step
                x = x + dx
            value = dense_rows(y[rows], y1[rows], stacked[rows], as_rows(dt_t[rows], ndim), as_rows(x, ndim),
                               as_rows(c_mid_t.expand(len(rows_np), -1), ndim))
            pieces.append((rows_np, out_j[rows_np].copy(), value))
            out_j[rows_np] += 1
        n_steps = np.where(out_j > j_next, 0, n_steps + active)
        j_next = out_j
        if accept.all():  # every row accepts: the values of the masked update below, in no operation
            y, f, abs_y = y1, last_k, abs_y1
        elif accept.any():
            acc_t = as_rows(torch.from_numpy(accept).to(device), ndim)
            y = torch.where(acc_t, y1, y)
            f = torch.where(acc_t, last_k, f)
            abs_y = torch.where(acc_t, abs_y1, abs_y)
        if dt_shadow is not None:
            t0_shadow = torch.where(torch.from_numpy(accept).to(device), dt_shadow, torch.zeros_like(dt_shadow))
        dt_shadow = None
        t0 = np.where(accept, t1, t0)
        dt = np.where(active, next_step_sizes(dt, ratio, ctl.order), dt)
        active = live & (j_next < n_out)

    flat_index = torch.from_numpy(np.concatenate([j * n_rows + i for i, j, _ in pieces])).to(device)
    values = torch.cat([v for _, _, v in pieces])
    shape = (n_out * n_rows, *y0.shape[1:])
    if flat_index.numel() == shape[0]:  # every output reached
        base = values.new_empty(shape)
    elif fill == "nan":
        base = values.new_full(shape, math.nan)
    else:
        base = y0.unsqueeze(0).expand(n_out, *y0.shape).reshape(shape)
    out = base.index_copy(0, flat_index, values).view(n_out, *y0.shape)
    finite = torch.isfinite(out[-1].detach()).reshape(n_rows, -1).all(1).cpu().numpy()
    for row in np.flatnonzero(live & ~finite).tolist():
        fail(Failure.non_finite(ctl.phase), row)
    failures.sort(key=lambda pair: pair[0])
    return RowsResult(out, per_nfe, per_acc, per_rej, failures)


def fixed_increment(method: str, call: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
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


def solve_fixed(func: VectorField, y0: torch.Tensor, t: torch.Tensor, times: list[float], method: str,
                step_size: float, counts: Counts, *, host: bool | None = None) -> torch.Tensor:
    """The fixed-grid loop: torchdiffeq's grid (`_grid_constructor_from_step_size`), its step
    functions op for op (`fixed_increment`) and its linear interpolation to the output times.

    Arguments:
        func: the vector field.
        y0: the initial state (float32/float64, any shape).
        t: the output times as a tensor; `times` the same as host floats.
        method: a key of `FIXED_TABLEAUX`.
        step_size: the grid's step.
        counts: where the calls and steps are counted (every step counts as accepted).
        host: stage times from host values (default on the CPU) or device tensor operations.

    Returns:
        The states at `t`, shape `(len(t), *y0.shape)`.
    """
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

    host = host_arrays(device) if host is None else host
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
        y1 = y + fixed_increment(method, call, time, grid_t[i], grid_t[i + 1], t0, t1 - t0, y)
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
