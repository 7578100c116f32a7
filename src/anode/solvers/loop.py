"""The loops of the "anode" backend: ONE adaptive loop over a control axis, and the fixed-grid loop.

The adaptive loop (`adaptive_loop`) writes what a step does with the state once: the stages (the
first-stage shortcut, the stage sums as torchdiffeq stacks them, the column buffer of a solve
without a graph), FSAL, counting the calls and the shape check. What depends on the control axis
is a small controller object's (torchode's design): the start (f0 and Hairer's initial step), the
step guards and the failures, the stage times and coefficients, the error ratio, accept/reject, the
outputs the step holds (the dense output) and the next step size. Two controllers:

* `ScalarControl` (`solve_adaptive`): one controller for the whole state, torchdiffeq's steps bit for bit
  (the default `step_control="batch"`, the adjoint's passes): time and step size in Python floats,
  one host synchronisation a step, the dense output fitted only where an output time falls,
  valued without autograd and differentiated through its linearisation; any state shape (0-d
  included) and a custom norm (the adjoint's seminorm); failures raise.
* `_PerRow` (`solve_rows`): one controller per row of the leading axis, per sample
  (`step_control="sample"`) or per ensemble member (`anode.ensemble.ensemble_odesolve`): several
  output times per row or a single end time, times and step sizes in NumPy arrays (still one host
  synchronisation a step), finished rows frozen (a step of size 0 whose values are discarded and
  not counted), the dense output of the rows an output time falls in (differentiated by autograd
  when the solve has a graph), and a failure policy
  (`FAILURE_POLICIES`: "raise", naming the row, or "skip": record the row's typed error, freeze it,
  let the others go on). Each row's arithmetic is the one controller's on that row (the same IEEE
  operations in the same order), so a row's values do not depend on its batch and on a batch of one
  row the two controllers give the same bits (`tests/test_per_sample.py`). On the CPU without a
  graph a small state's step runs in NumPy but for the field and the square root (the stage sums
  and row means in torch's order, `tableaux.sum_terms`, where this machine's torch is measured to
  add in that order, `tableaux.host_sum_lanes`); otherwise the torch stage sums of the loop, with
  the tableau times the step sizes made in one product a step.

The pieces the controllers use are written once in their own modules: the tableaux
(`solvers.tableaux`), the step control (`solvers.control`: error norm, Hairer's initial step,
accept/reject, next step, typed failures) and the dense output (`solvers.dense`: one polynomial for
both controllers). `solve_fixed` is the fixed-grid loop (euler, midpoint, heun2, heun3, rk4 on
torchdiffeq's grid). `solvers.rk` dispatches to these loops; the fused MLP solve (`solvers.fused`)
runs `adaptive_loop` too, with a `ScalarControl` subclass that evaluates the field into its own
buffers and records a tape for its hand-written backward.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
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
    next_step_sizes_of,
    rms_norm,
    row_error,
    select_initial_step,
)
from .dense import AcceptedStep, dense_rows, interp_evaluate, polynomial, polynomial_value
from .tableaux import (
    FIXED_TABLEAUX,
    host_arrays,
    host_mean_lanes,
    host_sum_lanes,
    numpy_type,
    product_sum,
    stage_dot,
    stage_sum,
    sum_terms,
)

__all__ = ["FAILURE_POLICIES", "RowsResult", "ScalarControl", "adaptive_loop", "fixed_increment", "solve_adaptive",
           "solve_fixed", "solve_rows"]


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
    control = ScalarControl(y0, times, ctl, counts)
    adaptive_loop(func, y0, ctl, counts, control, sum_stages)
    return torch.stack(control.outputs)


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
               live: np.ndarray | None = None, fill: str = "nan",
               sum_stages: Callable[[list[torch.Tensor], torch.Tensor], torch.Tensor] = product_sum) -> RowsResult:
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
        sum_stages: the stage sum of a solve with a graph (`tableaux.product_sum`: the ensemble's and
            per-sample solves' gradients as recorded).

    Returns:
        A `RowsResult`.

    Raises:
        ValueError: a 0-d state, an unknown policy or fill, or a field returning another shape.
        MaxStepsExceeded, StepSizeUnderflow, NonFiniteState: a row failed under the "raise" policy.
    """
    if y0.dim() == 0:
        raise ValueError(f"one controller per row integrates a state whose leading dimension is the {axis} axis, "
                         "got a 0-d state: give y0 a batch dimension or use step_control='batch'")
    if failure not in FAILURE_POLICIES:
        raise ValueError(f"unknown failure policy {failure!r}; valid choices: {list(FAILURE_POLICIES)}")
    if fill not in ("nan", "initial"):
        raise ValueError(f"unknown fill {fill!r}; valid choices: ['nan', 'initial']")
    control = _PerRow(y0, times, ctl, counts, failure, axis, time_rows, live)
    adaptive_loop(func, y0, ctl, counts, control, sum_stages)
    return control.result(fill)


def adaptive_loop(func: VectorField, y0: torch.Tensor, ctl: StepControl, counts: Counts, control: ScalarControl | _PerRow,
                   sum_stages: Callable[[list[torch.Tensor], torch.Tensor], torch.Tensor]) -> None:
    """THE adaptive loop, over either control axis: what a step does with the state (the stages, FSAL,
    counting the calls) is written here once; what depends on the controller (the start, the step
    guards and failures, stage times and coefficients, the error ratio, accept/reject, the outputs,
    the next step) is `control`'s (`ScalarControl`: one controller; `_PerRow`: one per row).

    Without a graph (the adjoint's passes, inference, or grad mode on but nothing requiring grad),
    each stage is written once into its column of one buffer laid out as torch.stack(ks, -1); a stage
    sum reads the leading columns. The same operands in the same layout, so the same bits as stacking
    anew at every stage, which re-copies every earlier stage (on an H100, a sixth of an adjoint
    training step of Table 1's ANODE). Should a stage come back requiring grad while nothing else did
    (a field whose parameters enter later), the loop goes over to stacking before that stage is
    written: nothing written so far had a graph, and both forms give the same bits.
    """
    y, f = y0, control.start(func)
    buffered = not torch.is_grad_enabled() or not (y0.requires_grad or f.requires_grad
                                                   or control.dt_shadow is not None)
    columns = None
    if buffered:  # the buffer and its views, made once: k_j's column and the leading columns k_0 .. k_i
        columns, column, leading = control.columns(y0, ctl.n_stages + 1)
    while control.running():
        stage_times = control.begin(y)
        if stage_times is None:  # every row still running failed its guards (policy "skip")
            break
        ks = [f]
        if columns is not None:
            column[0].copy_(f)
        yi = y
        for i in range(ctl.n_stages):
            if columns is not None and control.host_stages:  # NumPy on the CPU, torch's bits (see _PerRow)
                yi = control.stage_state(i, y, f)
            elif i == 0 and (columns is not None or control.first_stage_shortcut):  # a sum over one stage is
                # that stage: the same values with two ops fewer (with a graph, the per-row loop sums it as the
                # other stages, so that the gradients accumulate as in the ensemble solves recorded before)
                yi = y + f * control.coefficients(i)[..., 0]
            elif columns is not None:
                yi = y + stage_dot(leading[i], control.coefficients(i))
            else:
                yi = y + sum_stages(ks, control.coefficients(i))  # as torchdiffeq, same rounding
            k = func(stage_times[i], yi)
            counts.call()
            if k.shape != y.shape:  # (copy_ would broadcast it, torch.where too)
                raise ValueError(f"the vector field returned shape {tuple(k.shape)} for a state of shape "
                                 f"{tuple(y.shape)}: it must return dy/dt, shaped like y")
            ks.append(k)
            if columns is not None:
                if k.requires_grad:  # a graph after all: stack from here on (see above)
                    columns = None
                    control.drop_columns()
                else:
                    column[i + 1].copy_(k)
        # first same as last: the last stage is evaluated at (t1, y1)
        y, f = control.end(y, yi, ks, columns)


#: The largest state (numbers, all rows) whose per-row steps run in NumPy on the CPU (`_PerRow`): above
#: it torch's kernels cost less than their dispatch and the per-element coefficients would grow.
HOST_STEP_NUMEL = 4096


def stage_columns(y0: torch.Tensor, n: int) -> tuple[torch.Tensor, tuple[torch.Tensor, ...], list[torch.Tensor]]:
    """The loop's stage buffer laid out as torch.stack(ks, -1) for `n` stages, with the views made
    once: each stage's column and the leading columns k_0 .. k_i of every stage sum."""
    columns = y0.new_empty((*y0.shape, n))
    return columns, columns.unbind(-1), [columns.narrow(-1, 0, m) for m in range(1, n)]


class ScalarControl:
    """One controller for the whole state, torchdiffeq's: time and step size in Python floats, one
    host synchronisation a step (the error ratio), the dense output fitted only for the steps that
    hold an output time, valued without autograd and differentiated through its linearisation
    (`dense.interp_evaluate`). The gradient paths through time are torchdiffeq's: when the first step
    is accepted, its size h (a function of y0 and the parameters) moves every later grid time; the
    `*_shadow` tensors carry those derivatives (zero values, gradient 1 with respect to h).

    What `adaptive_loop` asks of a controller: `start(func)` (f0 and the first step size),
    `running()`, `begin(y)` (the guards; the stage times, one per stage, passed to the field),
    `coefficients(i)` (row i of the RK matrix times dt), `end(y, y1, ks, columns)` (error ratio,
    accept/reject, outputs, next step; returns the next y and f), `columns(y0, n)` and
    `drop_columns()` (the stage buffer of a solve without a graph), and, with `host_stages` true,
    `stage_state(i, y, f)` (stage i's input, computed by the controller). A subclass may also hook
    `accepted(step)` and `output(step, t)` (the fused MLP solve's `solvers.fused._Control` does).

    Arguments:
        y0: the initial state, any shape.
        times: the output times, strictly increasing host floats.
        ctl: the method's step control.
        counts: where the calls and steps are counted.
    """

    host_stages = False  # (the stage states are the loop's)
    first_stage_shortcut = True  # y + f * (dt a_00): torchdiffeq's bits, two ops fewer

    def columns(self, y0: torch.Tensor, n: int) -> tuple[torch.Tensor, tuple[torch.Tensor, ...], list[torch.Tensor]]:
        """The loop's stage buffer (`stage_columns`)."""
        return stage_columns(y0, n)

    def drop_columns(self) -> None:
        """The loop went over to stacking the stages: nothing to do here."""

    def __init__(self, y0: torch.Tensor, times: list[float], ctl: StepControl, counts: Counts) -> None:
        self.y0, self.times, self.ctl, self.counts = y0, times, ctl, counts
        self.outputs = [y0]
        self.j = 1  # the next output time
        self.n_steps = 0  # attempts since the last output (torchdiffeq's per-interval budget)
        self.step: AcceptedStep | None = None
        self.t0 = times[0]
        self.t0_shadow: torch.Tensor | None = None  # d(current time)/d(h), after an accepted first step
        self.abs_y: torch.Tensor | None = None  # |y0| (set by `start`)

    def start(self, func: VectorField) -> torch.Tensor:
        """f0 and Hairer's initial step (two calls)."""
        y0, ctl = self.y0, self.ctl
        # (A non-finite y0 is reported too: it makes dt non-finite, hence an underflow diagnosed as
        # non-finite, or reaches the output, which is checked.)
        t_start = torch.tensor(self.times[0], dtype=torch.float64, device=y0.device)
        f0 = func(t_start.to(y0.dtype), y0)
        self.counts.call()
        init = select_initial_step(func, t_start, y0, f0, ctl.order - 1, ctl.rtol, ctl.atol, self.counts, ctl.norm)
        h, self.abs_y = init.h, init.abs_y0.detach()
        self.dt = h.item()
        # dt_shadow: a zero tensor carrying d(step)/d(h) = 1, only while the step size is h itself
        # (h is a NumPy scalar where it was computed without a graph).
        self.dt_shadow = (h - h.detach()).to(y0.dtype) if isinstance(h, torch.Tensor) and h.requires_grad else None
        self.last_k = f0
        return f0

    def running(self) -> bool:
        return self.j < len(self.times)

    def begin(self, y: torch.Tensor) -> Sequence[torch.Tensor | None]:
        """The step guards (raising) and the stage times, one per stage, as the field gets them."""
        return self.stage_times(y).unbind()

    def stage_times(self, y: torch.Tensor) -> torch.Tensor:
        """The step guards (raising) and the stage times as one tensor (with the grid-time and step-size
        shadows added when the solve has a graph); sets t1, dt_y and dt_t."""
        self.t1, self.dt_y, ts = self.ctl.begin(self.t0, self.dt, self.n_steps, self.last_k, y)
        if self.t0_shadow is not None:
            ts = ts + self.t0_shadow
        if self.dt_shadow is not None:
            ts = ts + self.ctl.tensors[0] * self.dt_shadow
        # the step size as a tensor only when it carries a gradient (the first step)
        self.dt_t = None if self.dt_shadow is None else self.dt_shadow + float(self.dt_y)
        return ts

    def coefficients(self, i: int) -> torch.Tensor:
        return self.ctl.stage_coefficients(i, self.dt_y, self.dt_t)

    def end(self, y: torch.Tensor, y1: torch.Tensor, ks: list[torch.Tensor], columns: torch.Tensor | None
            ) -> tuple[torch.Tensor, torch.Tensor]:
        """Error ratio, accept/reject, the outputs the accepted step holds, the next step size."""
        ctl = self.ctl
        self.last_k = ks[-1]
        if columns is not None:
            stacked = columns
        else:
            with torch.no_grad():
                stacked = torch.stack(ks, -1)
        ratio, abs_y1 = ctl.error_ratio(stacked, self.dt_y, self.abs_y, y1)
        self.counts.step(ratio <= 1)
        self.n_steps += 1
        f = ks[0]
        if ratio <= 1:
            step = AcceptedStep(y, y1, ks, self.t0, self.t1, self.dt, self.t0_shadow, self.dt_shadow, ctl.tensors)
            self.accepted(step)
            y, f, self.t0, self.abs_y = y1, ks[-1], self.t1, abs_y1
            self.t0_shadow = _plus(self.t0_shadow, self.dt_shadow)
            times = self.times
            step.stages = columns  # (the buffer holds this step's stages until the next step)
            while self.j < len(times) and times[self.j] <= self.t0:
                self.outputs.append(self.output(step, times[self.j]))
                self.j += 1
                self.n_steps = 0
            step.stages = None
        self.dt = next_step_size(self.dt, ratio, ctl.order)
        self.dt_shadow = None
        return y, f

    def accepted(self, step: AcceptedStep) -> None:
        """Called with every accepted step before its outputs (a subclass records what it needs)."""

    def output(self, step: AcceptedStep, t: float) -> torch.Tensor:
        """The state at output time `t` within the accepted `step`: the dense output, differentiable
        when the solve has a graph (`dense.interp_evaluate`)."""
        return interp_evaluate(step, t, self.ctl.np_t, self.y0.dtype, self.y0.device, self.ctl.consts)


class _PerRow:
    """One controller per row of the leading axis (see `solve_rows`): times, step sizes, step counts
    and (on the CPU) the step's arithmetic in NumPy arrays, one host synchronisation a step (the
    vector of error ratios), finished and failed rows frozen (a step of size 0, values discarded,
    not counted), the failure policy, and the dense output of the rows an output time falls in
    (in NumPy without a graph on the CPU, else differentiated by autograd).

    Every row's arithmetic is the one controller's (`ScalarControl`, torchdiffeq's) on that row: the same
    IEEE products, sums and reductions in the same order, so a row's values do not depend on the
    other rows of its batch and a batch of one row has the one controller's bits. Only where the
    numbers live differs:

    * the tableau times each row's step size (the RK rows, the error weights, the midpoint weights)
      is one product a step;
    * on the CPU without a graph, for a state of at most `HOST_STEP_NUMEL` numbers whose sums
      NumPy reproduces (`tableaux.host_sum_lanes`), the step runs in NumPy but for the field and
      the error ratio's square root: the stages in a stage-major buffer, the products written out
      per element, the sums over the stages and each row's mean in torch's order
      (`tableaux.sum_terms`), the tolerance, the masked update of the rejected rows and the dense
      output element-wise (the same IEEE operations at a fraction of torch's dispatch cost);
    * otherwise the loop's torch stage sums, with the coefficients in one buffer whose per-stage views
      are made once (no graph), and the error ratio's element-wise parts in NumPy on the CPU.

    torch's square root is kept (NumPy's rounds otherwise in the last bit for some inputs)."""

    first_stage_shortcut = False  # with a graph, stage 0 goes through the stage sum too (`adaptive_loop`)

    def __init__(self, y0: torch.Tensor, times: list[float], ctl: StepControl, counts: Counts, failure: str,
                 axis: str, time_rows: bool, live: np.ndarray | None) -> None:
        self.y0, self.times, self.ctl, self.counts = y0, times, ctl, counts
        self.failure, self.axis, self.time_rows = failure, axis, time_rows
        self.ndim, n_rows = y0.dim(), y0.shape[0]
        self.n_rows, self.n_out = n_rows, len(times)
        self.live = np.ones(n_rows, dtype=bool) if live is None else np.array(live, dtype=bool)
        self.times_np = np.array(times, dtype=np.float64)
        self.nfe = np.zeros(n_rows, dtype=np.int64)
        self.accepted, self.attempts = np.zeros_like(self.nfe), np.zeros_like(self.nfe)  # steps per row
        self.failures: list[tuple[int, SolverError]] = []
        self.t0 = np.full(n_rows, times[0])
        # each row's steps in its output interval (attempts - mark), their maximum's upper bound
        self.mark, self.budget_bound = np.zeros_like(self.nfe), 0
        self.j_next = np.ones(n_rows, dtype=np.int64)  # each row's next output time
        self.next_time = np.where(self.j_next < self.n_out, self.times_np[np.minimum(1, self.n_out - 1)], np.inf)
        self.t0_shadow: torch.Tensor | None = None  # d(time)/d(h) of each row after an accepted first step
        self.host = ctl.host and y0.device.type == "cpu"
        self.abs_y = np.abs(y0.detach().numpy()) if self.host else y0.detach().abs()
        self.pieces: list[tuple[np.ndarray, np.ndarray, torch.Tensor]] = [
            (np.arange(n_rows), np.zeros(n_rows, np.int64), y0)]
        self.active = self.live & (self.j_next < self.n_out)  # the rows still integrating (the others frozen)
        self.deferred: list[tuple[np.ndarray, ...]] = []  # dense outputs of NumPy steps, valued in `result`
        tensors, consts, n_stages = ctl.tensors, ctl.consts, ctl.n_stages
        self.alpha_t = tensors[0]
        self.betas = tensors[3:3 + n_stages]
        self.alpha_col = consts.alpha[:, None]
        ends = consts.one_idx.tolist()  # the stages at t1 (a slice where they are consecutive)
        self.at_end = slice(ends[0], ends[-1] + 1) if ends == list(range(ends[0], ends[-1] + 1)) else consts.one_idx
        # the tableau a step multiplies by each row's step size: RK rows 0..s-1 (zero-padded), error, midpoint
        table = np.zeros((n_stages + 2, n_stages + 1), dtype=ctl.np_t)
        for i, row in enumerate(consts.beta):
            table[i, :len(row)] = row
        table[n_stages], table[n_stages + 1] = consts.c_error, consts.c_mid
        self.table = table
        self.row_shape = (n_rows, *([1] * (self.ndim - 1)))
        self.own: tuple[np.ndarray, list[torch.Tensor]] | None = None  # the in-place coefficients, their views
        self.coef: list[torch.Tensor] | None = None
        self.buffered = self.host_stages = False
        self.row_numel = y0[0].numel() if n_rows else 0

    def _numpy_step(self) -> bool:
        """Whether this solve's steps without a graph can run in NumPy: a small CPU state whose sums
        over the stages and row means NumPy reproduces in torch's order (measured once per dtype and
        length, `tableaux.host_sum_lanes`); then the lanes and the compact tableau are set up."""
        ctl, y0, n_stages = self.ctl, self.y0, self.ctl.n_stages
        if not (self.host and 0 < y0.numel() <= HOST_STEP_NUMEL):
            return False
        lanes = [host_sum_lanes(y0.dtype, n) for n in range(1, n_stages + 2)]
        self.mean_lanes = host_mean_lanes(y0.dtype, self.row_numel)
        if None in lanes or self.mean_lanes is None:
            return False
        self.lanes = [0, *lanes]  # lanes[n]: a sum of n stages
        # the compact tableau a step multiplies (RK row i: its i + 1 entries; the error weights), one
        # row of coefficients each; the midpoint weights (for the dense output) at the end
        table = self.table
        rows = [table[i, :i + 1] for i in range(n_stages)] + [table[n_stages], table[n_stages + 1]]
        self.offsets = np.cumsum([0] + [len(r) for r in rows]).tolist()
        self.table_flat = np.concatenate(rows)[:, None]
        self.n_step_coefficients = self.offsets[-2]
        self.row_size = ctl.np_t(self.row_numel)
        return True

    def _views(self, coef_t: torch.Tensor) -> list[torch.Tensor]:
        """The per-stage coefficients (stage i: its first i + 1 columns), the error's and the midpoint's,
        each shaped (rows, 1, ..., 1, m) to broadcast against the stages."""
        s = self.ctl.n_stages
        return [as_rows(coef_t[:, i, :i + 1], self.ndim) for i in range(s)] + [
            as_rows(coef_t[:, s], self.ndim), as_rows(coef_t[:, s + 1], self.ndim)]

    def at(self, t: torch.Tensor) -> torch.Tensor:
        """Per-row times as the field takes them."""
        return as_rows(t, self.ndim) if self.time_rows else t

    def fail(self, err: SolverError, row: int) -> None:
        if self.failure == "raise":
            raise row_error(err, row, self.axis)
        self.failures.append((row, err))
        self.live[row] = self.active[row] = False

    def start(self, func: VectorField) -> torch.Tensor:
        y0, ctl = self.y0, self.ctl
        t_start = torch.tensor(self.times[0], dtype=torch.float64, device=y0.device)
        f0 = func(self.at(t_start.to(y0.dtype).expand(self.n_rows)), y0)
        self.counts.call()
        h = select_initial_step(func, t_start, y0, f0, ctl.order - 1, ctl.rtol, ctl.atol, self.counts, rows=True,
                                time_rows=self.time_rows).h
        self.nfe += 2 * self.live  # (the stages' calls are added in `result`: n_stages a step attempted)
        self.dt = h.detach().cpu().numpy().astype(np.float64)
        self.dt_shadow = (h - h.detach()).to(y0.dtype) if h.requires_grad else None  # d(step)/d(h), first step
        self.last_k = f0
        return f0

    def columns(self, y0: torch.Tensor, n: int) -> tuple[torch.Tensor, tuple[torch.Tensor, ...], list[torch.Tensor] | None]:
        """The loop's stage buffer when the solve has no graph: stage-major for the NumPy step (the
        stage sums are then this controller's, `stage_state`), else the loop's own (`stage_columns`)."""
        self.buffered = True
        if not self._numpy_step():
            return stage_columns(y0, n)
        self.host_stages = True
        buffer = y0.new_empty((n, *y0.shape))
        self.stages_np = buffer.numpy()
        self.coef_flat = np.empty((self.n_step_coefficients, y0.numel()), dtype=self.ctl.np_t)
        self.coef_np = self.coef_flat.reshape(self.n_step_coefficients, *y0.shape)
        return buffer, buffer.unbind(0), None

    def drop_columns(self) -> None:
        """The loop went over to stacking the stages (one came back with a graph)."""
        self.buffered = self.host_stages = False

    def running(self) -> bool:
        return bool(self.active.any())

    def begin(self, y: torch.Tensor) -> list[torch.Tensor] | tuple[torch.Tensor, ...] | None:
        """The step guards of every running row (raising, or freezing the row), then the stage times
        and the step's coefficients."""
        ctl, active = self.ctl, self.active
        if self.budget_bound >= ctl.max_num_steps:  # some row may have used its steps: look
            n_steps = self.attempts - self.mark
            for row in np.flatnonzero(active & (n_steps >= ctl.max_num_steps)).tolist():
                self.fail(Failure.max_steps(int(n_steps[row]), ctl.max_num_steps, ctl.phase), row)
            self.budget_bound = int(n_steps[active].max(initial=0))
        dt = self.dt
        if not np.isfinite(dt).all():
            dt = self.dt = np.where(np.isfinite(dt), dt, 0.0)
        t0 = self.t0
        stuck = active & ~(t0 + dt > t0)
        if stuck.any():
            for row in np.flatnonzero(stuck).tolist():
                self.fail(Failure.underflow(float(dt[row]), self.last_k[row], y[row], ctl.phase), row)
        if not active.any():
            return None
        step_dt = np.where(active, dt, 0.0)
        np_t = ctl.np_t
        self.t1 = t1 = t0 + step_dt
        self.dt_y = dt_y = step_dt.astype(np_t)
        t1_y = t1.astype(np_t, copy=False)
        stage_np = t0.astype(np_t, copy=False) + self.alpha_col * dt_y  # (stages, rows)
        stage_np[self.at_end] = np.nextafter(t1_y, t1_y - np_t(1))
        device = y.device
        # the coefficients: the tableau times each row's step size, in one product
        self.coef = None
        if self.host_stages:  # per element of the state (so that the products below run contiguously)
            np.multiply(self.table_flat[:self.n_step_coefficients], np.repeat(dt_y, self.row_numel), out=self.coef_flat)
            self.y_np = y.detach().numpy()  # (y0 may require grad in a solve without a graph)
        elif self.host and self.buffered:  # in place, its views made once (no graph holds them)
            if self.own is None:
                coef_np = np.empty((self.n_rows, *self.table.shape), dtype=np_t)
                self.own = (coef_np, self._views(torch.from_numpy(coef_np)))
            self.coef_np, self.coef = self.own
            np.multiply(self.table, dt_y[:, None, None], out=self.coef_np)
        if self.t0_shadow is None and self.dt_shadow is None:
            ts = torch.from_numpy(stage_np)
            if not self.host:
                ts = ts.to(device)
            if self.time_rows:
                return ts.view(len(stage_np), *self.row_shape).unbind(0)
            return ts.unbind(0)
        # times carrying the gradient paths through the step sizes: the graph of the one controller's
        # loop, op for op (so that the gradients accumulate in the same order)
        ts = torch.from_numpy(np.ascontiguousarray(stage_np.T)).to(device)
        if self.t0_shadow is not None:
            ts = ts + self.t0_shadow[:, None]
        if self.dt_shadow is not None:
            ts = ts + self.alpha_t * self.dt_shadow[:, None]
            self.dt_t = self.dt_shadow + torch.from_numpy(dt_y).to(device)  # differentiable on the first step
        return [self.at(t) for t in ts.unbind(1)]

    def _coefficients(self) -> list[torch.Tensor]:
        """The step's coefficients as tensors without a graph (made on first use)."""
        if self.coef is None:
            self.coef_rows = self.table * self.dt_y[:, None, None]
            self.coef = self._views(torch.from_numpy(self.coef_rows).to(self.y0.device))
        return self.coef

    def coefficients(self, i: int) -> torch.Tensor:
        if self.dt_shadow is not None:  # differentiable in the first step's size, made where it is used
            # (a view of dt_t per stage, as the ensembles' solves recorded before: the gradients add up as theirs)
            return as_rows(self.betas[i] * self.dt_t[:, None], self.ndim)
        return self._coefficients()[i]

    def stage_state(self, i: int, y: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        """Stage i's state y + sum_j (dt a_ij) k_j in NumPy (from this controller's own copies of y and
        the stages, not the loop's tensors `y` and `f`), the sum in torch's order: the loop's
        `stage_dot` bit for bit (k_0 = f is the buffer's first stage)."""
        stages, lo = self.stages_np, self.offsets[i]
        if i == 0:
            state = self.y_np + stages[0] * self.coef_np[lo]
        else:
            state = self.y_np + sum_terms(stages[:i + 1] * self.coef_np[lo:lo + i + 1], self.lanes[i + 1], scratch=True)
        self.state_np = state
        return torch.from_numpy(state)

    def end(self, y: torch.Tensor, y1: torch.Tensor, ks: list[torch.Tensor], columns: torch.Tensor | None
            ) -> tuple[torch.Tensor, torch.Tensor]:
        ctl, ndim, active, n_rows, n_stages = self.ctl, self.ndim, self.active, self.n_rows, self.ctl.n_stages
        device = y.device
        self.last_k = last_k = ks[-1]
        stacked = columns if columns is not None else torch.stack(ks, -1)
        host = self.host
        numpy_step = columns is not None and self.host_stages
        if host:  # the element-wise arithmetic in NumPy (the same IEEE operations)
            if numpy_step:
                lo = self.offsets[n_stages]
                e = sum_terms(self.stages_np * self.coef_np[lo:lo + n_stages + 1], self.lanes[n_stages + 1], scratch=True)
            else:
                e = stage_dot(stacked.detach(), self._coefficients()[-2].detach()).numpy()
            abs_y1 = np.abs(self.state_np if numpy_step else y1.detach().numpy())
            with np.errstate(all="ignore"):
                tol = np.maximum(self.abs_y, abs_y1)
                tol *= ctl.rtol_y
                tol += ctl.atol_y
                np.divide(e, tol, out=e)
                np.multiply(e, e, out=e)
                if numpy_step:  # the row mean in torch's order
                    mean = sum_terms(e.reshape(n_rows, -1).T, self.mean_lanes, scratch=True)
                    mean /= self.row_size
                    mean = torch.from_numpy(mean)
                else:
                    mean = torch.from_numpy(e).view(n_rows, -1).mean(1)
            ratio = mean.sqrt_().numpy().astype(np.float64, copy=False)  # torch's square root (its bits); the step's one sync
        else:
            with torch.no_grad():
                err = stage_dot(stacked.detach(), self._coefficients()[-2].detach())
                abs_y1 = y1.detach().abs()
                tol = torch.maximum(self.abs_y, abs_y1).mul_(ctl.rtol_y).add_(ctl.atol_y)
                ratio = rms_norm(err.div_(tol), rows=True).cpu().numpy().astype(np.float64)  # the step's one sync
        accept = (ratio <= 1) & active
        any_accept = bool(accept.any())
        self.counts.step(any_accept)
        self.accepted += accept
        self.attempts += active
        self.budget_bound += 1
        plain = host and columns is not None  # the stages buffered: no graph
        if any_accept:  # outputs inside the accepted steps: the dense output, as many as each step holds
            t0, t1, times_np, n_out = self.t0, self.t1, self.times_np, self.n_out
            emit = accept & (self.next_time <= t1)
            if emit.any():
                j_next = self.j_next
                out_j = j_next.copy()
                while True:
                    rows_np = np.flatnonzero(emit)
                    if not rows_np.size:
                        break
                    span = t1[rows_np] - t0[rows_np]
                    x_np = ((times_np[out_j[rows_np]] - t0[rows_np]) / span).astype(ctl.np_t)
                    if numpy_step:  # valued at the end, all at once (`_dense_deferred`)
                        self._defer(rows_np, out_j[rows_np].copy(), y, y1, x_np)
                    else:
                        if plain:
                            value = self._dense_host(rows_np, y, y1, stacked, x_np)
                        else:
                            value = self._dense_graph(rows_np, y, y1, ks, x_np, span)
                        self.pieces.append((rows_np, out_j[rows_np].copy(), value))
                    out_j[rows_np] += 1
                    emit &= out_j < n_out
                    emit &= times_np[np.minimum(out_j, n_out - 1)] <= t1
                moved = out_j > j_next
                self.mark[moved] = self.attempts[moved]  # a new output interval: its step budget anew
                self.j_next = out_j
                self.next_time = np.where(out_j < n_out, times_np[np.minimum(out_j, n_out - 1)], np.inf)
                self.active = self.live & (out_j < n_out)
        f = ks[0]
        if accept.all():  # every row accepts: the values of the masked update below, in no operation
            y, f, self.abs_y = y1, last_k, abs_y1
        elif any_accept:
            if numpy_step:  # y1 the last stage's state, y the step's start; f and the last stage in the buffer
                acc_np = accept.reshape(self.row_shape)
                y = torch.from_numpy(np.where(acc_np, self.state_np, self.y_np))
                f = torch.from_numpy(np.where(acc_np, self.stages_np[-1], self.stages_np[0]))
            elif plain:
                acc_np = accept.reshape(self.row_shape)
                y = torch.from_numpy(np.where(acc_np, y1.detach().numpy(), y.detach().numpy()))
                f = torch.from_numpy(np.where(acc_np, last_k.detach().numpy(), f.detach().numpy()))
            else:
                acc_t = as_rows(torch.from_numpy(accept).to(device), ndim)
                y = torch.where(acc_t, y1, y)
                f = torch.where(acc_t, last_k, f)
            if host:
                self.abs_y = np.where(accept.reshape(self.row_shape), abs_y1, self.abs_y)
            else:
                self.abs_y = torch.where(as_rows(torch.from_numpy(accept).to(device), ndim), abs_y1, self.abs_y)
        if self.dt_shadow is not None:  # the rows that moved carry d(time)/d(h) from now on (the ensembles' ops)
            if accept.all():
                self.t0_shadow = _plus(self.t0_shadow, self.dt_shadow)
            elif any_accept:
                moved = torch.where(torch.from_numpy(accept).to(device), self.dt_shadow, torch.zeros_like(self.dt_shadow))
                self.t0_shadow = _plus(self.t0_shadow, moved)
        self.dt_shadow = None
        if any_accept:
            self.t0 = np.where(accept, self.t1, self.t0)
        self.dt = next_step_sizes_of(self.dt, ratio, ctl.order, active)
        return y, f

    def _defer(self, rows_np: np.ndarray, outputs: np.ndarray, y: torch.Tensor, y1: torch.Tensor,
               x_np: np.ndarray) -> None:
        """Keep what the dense output of some rows of a NumPy step needs (their y0, y1, stages, step
        size and abscissa): `_dense_deferred` values all of them at once, element for element the
        same operations (so the same bits) in one pass instead of one pass a step."""
        self.deferred.append((rows_np, outputs, y.detach().numpy()[rows_np], y1.detach().numpy()[rows_np],
                              self.stages_np[:, rows_np], self.dt_y[rows_np], x_np))

    def _dense_deferred(self) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
        """The deferred dense outputs (`_defer`): `dense.dense_rows` in NumPy, the midpoint's stage sum
        in torch's order (`sum_terms`), its coefficients c_mid * dt the products of the step's."""
        rows, outputs, y0, y1, stages, dt, x = (np.concatenate(v, axis=1 if k == 4 else 0)
                                                for k, v in enumerate(zip(*self.deferred)))
        shape = (len(rows), *([1] * (self.ndim - 1)))
        lo = self.offsets[-2]
        c_mid = (self.table_flat[lo:] * np.repeat(dt, self.row_numel)).reshape(stages.shape)
        y_mid = y0 + sum_terms(stages * c_mid, self.lanes[-1], scratch=True)
        coeffs = polynomial(y0, y1, y_mid, stages[0], stages[-1], dt.reshape(shape))
        return rows, outputs, torch.from_numpy(np.asarray(polynomial_value(y0, coeffs, x.reshape(shape))))

    def _dense_host(self, rows_np: np.ndarray, y: torch.Tensor, y1: torch.Tensor, stacked: torch.Tensor,
                    x_np: np.ndarray) -> torch.Tensor:
        """`dense.dense_rows` of some rows without a graph on the CPU (stages laid out as the loop's):
        the element-wise arithmetic in NumPy, the midpoint's stage sum by torch."""
        shape = (len(rows_np), *([1] * (self.ndim - 1)))
        y0_r = y.detach().numpy()[rows_np]
        stages = stacked.numpy()[rows_np]
        c_mid = self.coef_np[rows_np, -1].reshape(*shape, -1)
        y_mid = y0_r + torch.sum(torch.from_numpy(stages) * torch.from_numpy(c_mid), dim=-1).numpy()
        dt = self.dt_y[rows_np].reshape(shape)
        coeffs = polynomial(y0_r, y1.detach().numpy()[rows_np], y_mid, stages[..., 0], stages[..., -1], dt)
        return torch.from_numpy(np.asarray(polynomial_value(y0_r, coeffs, x_np.reshape(shape))))

    def _dense_graph(self, rows_np: np.ndarray, y: torch.Tensor, y1: torch.Tensor, ks: list[torch.Tensor],
                     x_np: np.ndarray, span: np.ndarray) -> torch.Tensor:
        """`dense.dense_rows` differentiated by autograd, valued on every row (x = 0 on the rows that hold
        no output) and read at `rows_np`: the operations, and so the gradients' rounding, of the stacked
        ensembles' solves recorded before. The first step's size and the grid-time shadows enter through
        x = (t - t0) / (t1 - t0), linearised: dx/dt0 = -1 / span and dx/d(span) = -x / span, taken in
        float64 and rounded once to the state's dtype."""
        ctl, device, n_rows = self.ctl, y.device, self.n_rows
        x_all = np.zeros(n_rows, dtype=ctl.np_t)
        x_all[rows_np] = x_np
        x = torch.from_numpy(x_all).to(device)
        if self.t0_shadow is not None or self.dt_shadow is not None:
            span_all = np.ones(n_rows)
            span_all[rows_np] = span
            dx = torch.zeros_like(x)
            if self.t0_shadow is not None:
                dx = dx + self.t0_shadow * torch.from_numpy((-1.0 / span_all).astype(ctl.np_t)).to(device)
            if self.dt_shadow is not None:
                slope = -x_all.astype(np.float64) / span_all
                dx = dx + self.dt_shadow * torch.from_numpy(slope.astype(ctl.np_t)).to(device)
            x = x + dx
        dt_t = torch.from_numpy(self.dt_y).to(device) if self.dt_shadow is None else self.dt_t
        value = dense_rows(y, y1, ks, dt_t, x, ctl.tensors[1])
        return value[torch.from_numpy(rows_np).to(device)]

    def result(self, fill: str) -> RowsResult:
        """The outputs (unreached ones of skipped rows filled), the per-row counts and failures."""
        y0, n_rows, n_out = self.y0, self.n_rows, self.n_out
        device = y0.device
        if self.deferred:
            self.pieces.append(self._dense_deferred())
            self.deferred = []
        flat_index = torch.from_numpy(np.concatenate([j * n_rows + i for i, j, _ in self.pieces])).to(device)
        values = torch.cat([v for _, _, v in self.pieces])
        shape = (n_out * n_rows, *y0.shape[1:])
        if flat_index.numel() == shape[0]:  # every output reached
            base = values.new_empty(shape)
        elif fill == "nan":
            base = values.new_full(shape, math.nan)
        else:
            base = y0.unsqueeze(0).expand(n_out, *y0.shape).reshape(shape)
        out = base.index_copy(0, flat_index, values).view(n_out, *y0.shape)
        finite = torch.isfinite(out[-1].detach()).reshape(n_rows, -1).all(1).cpu().numpy()
        for row in np.flatnonzero(self.live & ~finite).tolist():
            self.fail(Failure.non_finite(self.ctl.phase), row)
        self.failures.sort(key=lambda pair: pair[0])
        nfe = self.nfe + self.ctl.n_stages * self.attempts
        return RowsResult(out, nfe, self.accepted, self.attempts - self.accepted, self.failures)


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
