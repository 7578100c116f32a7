"""anode's own explicit Runge-Kutta solver: torchdiffeq's numbers with less Python work per step.

This module dispatches (`integrate`, `solve`, `check_inputs`); the numerics live in small modules,
each written once: `solvers.tableaux` (Butcher tableaux, dense-output weights, their forms per
dtype), `solvers.control` (error norm, Hairer's initial step, accept/reject, next step, typed
failures, over a control axis), `solvers.dense` (the 4th-order dense output) and `solvers.loop`
(one adaptive loop with one controller for the whole state or one per row of the leading axis, and
the fixed-grid loop). Their public names are re-exported here.

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
  4th-order dense output (`solvers.dense`) at every output time. The
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
linearisation (see `dense.interp_evaluate`); the vector field is called directly (no wrapper modules: counting
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
from collections.abc import Callable

import torch

from ..config import SolverConfig
from .base import NFE, SolverError, VectorField, all_finite
from .control import (
    Counts,
    Failure,
    InitialStep,
    StepControl,
    next_step_size,
    next_step_sizes,
    rms_norm,
    row_error,
    select_initial_step,
)
from .dense import AcceptedStep, interp_value, interp_weights
from .loop import solve_adaptive, solve_fixed, solve_rows
from .tableaux import (
    ADAPTIVE_TABLEAUX,
    FIXED_TABLEAUX,
    AdaptiveConsts,
    AdaptiveTableau,
    FixedTableau,
    adaptive_consts,
    host_arrays,
    numpy_type,
    stage_dot,
    stage_sum,
)

# The building blocks are re-exported from `solvers.tableaux`, `solvers.control`, `solvers.dense`
# (their home) for the code that imported them from here.
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
    "one_sample",
    "rms_norm",
    "rms_norm_per_sample",
    "select_initial_step",
    "solve",
    "stage_dot",
]



def rms_norm_per_sample(x: torch.Tensor) -> torch.Tensor:
    """The former name of `control.rms_norm(x, rows=True)`."""
    return rms_norm(x, rows=True)

# Looked up at every call (not bound once), so that a test can force the device arithmetic path on
# the CPU (`_host_arrays`) or count the stage sums of a graphed solve (`_stage_sum`).
_host_arrays = host_arrays
_stage_sum = stage_sum


def _check_times(t: torch.Tensor) -> list[float]:
    if t.dim() != 1 or t.numel() < 2:
        raise ValueError(f"t must be a 1-D tensor of at least two output times, got shape {tuple(t.shape)}: "
                         f"pass e.g. torch.tensor([0.0, 1.0])")
    if t.requires_grad:
        raise ValueError("the 'anode' solver backend does not differentiate with respect to t: pass t.detach(), "
                         "or use SolverConfig(backend='torchdiffeq')")
    # (floating-point times widen exactly to Python floats)
    times = (t.detach() if t.is_floating_point() else t.detach().to(torch.float64)).tolist()
    if any(b <= a for a, b in itertools.pairwise(times)):
        raise ValueError(f"t must be strictly increasing for the 'anode' solver backend, got {times}: sort the "
                         f"output times, or use SolverConfig(backend='torchdiffeq') to integrate backwards in time")
    return times


def _solve_adaptive_per_sample(func: VectorField, y0: torch.Tensor, times: list[float], method: str, rtol: float,
                               atol: float, max_num_steps: int, counts: Counts, phase: str,
                               failure: str = "raise") -> torch.Tensor:
    """`loop.solve_rows` with one controller per sample, its counts written into `counts.nfe`'s
    per-sample fields (`NFE.per_sample*`, `NFE.failed_samples`)."""
    ctl = StepControl(method, y0, rtol, atol, max_num_steps, phase, host=_host_arrays(y0.device))
    result = solve_rows(func, y0, times, ctl, counts, failure=failure, axis="sample")
    nfe = counts.nfe
    nfe.per_sample = result.nfe.tolist()
    nfe.per_sample_accepted, nfe.per_sample_rejected = result.accepted.tolist(), result.rejected.tolist()
    nfe.failed_samples = [(row, f"{type(err).__name__}: {err}") for row, err in result.failures]
    return result.out


def one_sample(solve_batch: Callable[[], torch.Tensor], y0: torch.Tensor, n_out: int, solver: SolverConfig,
               nfe: NFE) -> torch.Tensor:
    """Per-sample control of a batch of one sample: its one controller is the batch loop's (the same
    bits, gradient paths included), run by `solve_batch`; counted per sample, failures handled by
    `solver.sample_failure` as the per-sample loop handles them (raised naming sample 0, or recorded
    in `nfe.failed_samples` with NaN outputs after the start).

    Arguments:
        solve_batch: runs the solve with batch control (counting into `nfe`).
        y0: the initial state (one sample on the leading axis).
        n_out: the number of output times.
        solver: its `sample_failure` is the policy.
        nfe: the forward counts the solve writes; its per-sample fields are set here.

    Returns:
        The states at the output times, shape `(n_out, *y0.shape)`.

    Raises:
        MaxStepsExceeded, StepSizeUnderflow, NonFiniteState: the solve failed under the "raise" policy.
    """
    try:
        out = solve_batch()
    except SolverError as err:
        if solver.sample_failure == "raise":
            raise row_error(err, 0) from err
        out = torch.full((n_out, *y0.shape), float("nan"), dtype=y0.dtype, device=y0.device)
        out[0] = y0
        nfe.failed_samples = [(0, f"{type(err).__name__}: {err}")]
    nfe.per_sample, nfe.per_sample_accepted, nfe.per_sample_rejected = (
        [nfe.forward], [nfe.accepted_steps], [nfe.rejected_steps])
    return out


def integrate(func: VectorField, y0: torch.Tensor, t: torch.Tensor, times: list[float], solver: SolverConfig,
              counts: Counts, *, phase: str = "forward solve", rtol: float | None = None, atol: float | None = None,
              norm: Callable[[torch.Tensor], torch.Tensor] = rms_norm, step_control: str | None = None
              ) -> torch.Tensor:
    """Solve with `solver`'s method (tolerances and step control overridable), counting into `counts`.

    With step control "sample" (forward counts only) every sample has its own controller
    (`loop.solve_rows`, failures handled by `solver.sample_failure`); a batch of one sample is solved
    by the one-controller loop, which is the same controller (bitwise, gradient paths included), and
    counted per sample.

    Arguments:
        func: the vector field.
        y0: the initial state.
        t: the output times as a tensor; `times` the same as host floats (`check_inputs`).
        solver: method, tolerances, step budget, step control and failure policy.
        counts: where the calls and steps are counted.
        phase: words naming the solve in failure messages.
        rtol, atol: tolerances instead of `solver`'s.
        norm: the error norm of one controller (the adjoint passes its seminorm).
        step_control: instead of `solver.step_control`.

    Returns:
        The states at `t`, shape `(len(t), *y0.shape)`.

    Raises:
        MaxStepsExceeded, StepSizeUnderflow, NonFiniteState: the solve failed.
        ValueError: the field returned a state of another shape; per-sample control of a 0-d state.
    """
    control = solver.step_control if step_control is None else step_control
    rtol = solver.rtol if rtol is None else rtol
    atol = solver.atol if atol is None else atol
    if control == "sample" and not counts.backward and solver.method in ADAPTIVE_TABLEAUX:
        if y0.dim() == 0 or y0.shape[0] != 1:
            return _solve_adaptive_per_sample(func, y0, times, solver.method, rtol, atol, solver.max_num_steps,
                                              counts, phase, solver.sample_failure)
        return one_sample(lambda: integrate(func, y0, t, times, solver, counts, phase=phase, rtol=rtol, atol=atol,
                                            norm=norm, step_control="batch"), y0, len(times), solver, counts.nfe)
    if solver.method in FIXED_TABLEAUX:
        if solver.step_size is None:  # cannot happen: SolverConfig requires it for fixed-step methods
            raise ValueError(f"method {solver.method!r} needs step_size")
        out = solve_fixed(func, y0, t, times, solver.method, solver.step_size, counts, host=_host_arrays(y0.device))
    else:
        ctl = StepControl(solver.method, y0, rtol, atol, solver.max_num_steps, phase, norm,
                          host=_host_arrays(y0.device))
        out = solve_adaptive(func, y0, times, ctl, counts, sum_stages=_stage_sum)
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
