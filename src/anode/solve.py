"""The only module that calls the ODE backend (torchdiffeq).

It counts function evaluations (NFE) of the vector field, separately for the forward solve and
for the backward pass, and turns the backend's failures (bare `AssertionError`s) into typed
`SolverError`s whose messages say what to try.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torchdiffeq
from torch import nn

from .config import SolverConfig

__all__ = [
    "NFE",
    "MaxStepsExceeded",
    "NonFiniteState",
    "SolverError",
    "StepSizeUnderflow",
    "odesolve",
    "translate_solver_errors",
]

VectorField = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class SolverError(RuntimeError):
    """The ODE solver could not integrate the vector field (see the subclasses)."""


class MaxStepsExceeded(SolverError):
    """An adaptive solve needed more steps than `SolverConfig.max_num_steps`."""


class StepSizeUnderflow(SolverError):
    """The adaptive step size shrank below floating-point resolution (a stiff or exploding flow)."""


class NonFiniteState(SolverError):
    """The state became NaN or infinite during the solve."""


_ADVICE = (
    "Things to try: loosen rtol/atol, raise max_num_steps, add weight decay or lower the learning "
    "rate to keep the flow well-posed, or add augmented dimensions (augment_dim > 0), which let the "
    "flow avoid the ill-conditioned trajectories that a plain NODE needs."
)

# torchdiffeq's assertion messages (rk_common.py) -> our error types.
_BACKEND_MESSAGES: tuple[tuple[str, type[SolverError], str], ...] = (
    ("max_num_steps exceeded", MaxStepsExceeded, "the solver exceeded its maximum number of steps"),
    ("underflow in dt", StepSizeUnderflow, "the solver's step size underflowed"),
    ("non-finite values", NonFiniteState, "the ODE state became non-finite (NaN or inf)"),
)


@contextlib.contextmanager
def translate_solver_errors(phase: str = "forward solve") -> Iterator[None]:
    """Turn the backend's failure assertions raised inside the block into `SolverError`s.

    Used around the forward solve and, by the trainer, around `backward()` (where the adjoint
    solve runs).

    Arguments:
        phase: words naming where the failure happened, put in the message.

    Raises:
        SolverError: a subclass matching the backend's failure; other exceptions pass through.
    """
    try:
        yield
    except AssertionError as err:
        text = str(err)
        for needle, kind, what in _BACKEND_MESSAGES:
            if needle in text:
                raise kind(f"{what} during the {phase} ({text[:200]}). {_ADVICE}") from err
        raise


@dataclass
class NFE:
    """Numbers of vector-field evaluations (and steps) of the latest pass of an ODE block.

    `forward` counts calls made by the latest forward solve. `backward` counts calls made by
    backward passes since that forward call: 0 when backpropagating through the solver (autograd
    replays operations without calling the vector field), positive with the adjoint method.
    Adaptive methods report their accepted and rejected steps through the backend's callbacks;
    fixed-step methods report the steps of their grid in `accepted_steps` (never a rejection).
    """

    forward: int = 0
    backward: int = 0
    accepted_steps: int = 0
    rejected_steps: int = 0
    backward_accepted_steps: int = 0
    backward_rejected_steps: int = 0

    def reset(self) -> None:
        """Set every count to zero."""
        self.forward = self.backward = 0
        self.accepted_steps = self.rejected_steps = 0
        self.backward_accepted_steps = self.backward_rejected_steps = 0


class _Counted(nn.Module):
    """Wraps a vector field; each call increments the forward or backward count of `nfe`."""

    def __init__(self, func: VectorField, nfe: NFE) -> None:
        super().__init__()
        self.func = func
        self.nfe = nfe
        self.in_forward_solve = False
        self.last_output: torch.Tensor | None = None

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if not self.in_forward_solve:
            self.nfe.backward += 1
            return self.func(t, y)
        self.nfe.forward += 1
        out = self.func(t, y)
        self.last_output = out  # kept only during the forward solve, to diagnose failures
        return out


class _CountedAdaptive(_Counted):
    """Adds torchdiffeq's step callbacks (only adaptive solvers support them)."""

    def callback_accept_step(self, t0: torch.Tensor, y0: torch.Tensor, dt: torch.Tensor) -> None:
        self.nfe.accepted_steps += 1

    def callback_reject_step(self, t0: torch.Tensor, y0: torch.Tensor, dt: torch.Tensor) -> None:
        self.nfe.rejected_steps += 1

    def callback_accept_step_adjoint(self, t0: torch.Tensor, y0: torch.Tensor, dt: torch.Tensor) -> None:
        self.nfe.backward_accepted_steps += 1

    def callback_reject_step_adjoint(self, t0: torch.Tensor, y0: torch.Tensor, dt: torch.Tensor) -> None:
        self.nfe.backward_rejected_steps += 1


@contextlib.contextmanager
def _diagnose_non_finite(counted: _Counted) -> Iterator[None]:
    """A NaN velocity makes every adaptive step fail until dt underflows: report it as non-finite."""
    try:
        yield
    except StepSizeUnderflow as err:
        last = counted.last_output
        if last is not None and not bool(torch.isfinite(last).all()):
            raise NonFiniteState(f"the vector field returned NaN or inf during the forward solve. {_ADVICE}") from err
        raise


def odesolve(
    func: VectorField,
    y0: torch.Tensor,
    t: torch.Tensor,
    solver: SolverConfig = SolverConfig(),
    *,
    nfe: NFE | None = None,
) -> torch.Tensor:
    """Integrate dy/dt = func(t, y) from y(t[0]) = y0 and return y at every time in `t`.

    Arguments:
        func: vector field `func(t, y)`; an `nn.Module` when `solver.adjoint` is True.
        y0: initial state (any shape; float dtype).
        t: 1-D increasing tensor of output times (at least two).
        solver: method, tolerances and gradient mode.
        nfe: counts to update; they are reset at the start of the call, then `nfe.forward`
            counts this solve and `nfe.backward` the calls made later by `backward()`.

    Returns:
        Tensor of shape `(len(t), *y0.shape)`.

    Raises:
        TypeError: `func` is not an `nn.Module` while `solver.adjoint` is True.
        SolverError: the solve failed (too many steps, step-size underflow, non-finite state).
    """
    if solver.adjoint and not isinstance(func, nn.Module):
        raise TypeError(
            f"the adjoint method needs the vector field to be an nn.Module (to find its parameters), got {type(func).__name__}"
        )
    nfe = NFE() if nfe is None else nfe
    nfe.reset()
    counted = (_Counted if solver.is_fixed_step else _CountedAdaptive)(func, nfe)
    if solver.is_fixed_step:
        options: dict[str, object] = {"step_size": solver.step_size}
    else:
        options = {"max_num_steps": solver.max_num_steps}
    extra = {k: v for k, v in solver.options.items() if k != "adjoint_options"}
    options.update({k: (torch.tensor(v, dtype=torch.float64) if k in ("step_t", "jump_t") else v) for k, v in extra.items()})
    t = t.to(device=y0.device, dtype=y0.dtype)
    counted.in_forward_solve = True
    try:
        with _diagnose_non_finite(counted), translate_solver_errors("forward solve"):
            if solver.adjoint:
                out = torchdiffeq.odeint_adjoint(
                    counted,
                    y0,
                    t,
                    rtol=solver.rtol,
                    atol=solver.atol,
                    method=solver.method,
                    options=options,
                    adjoint_rtol=solver.adjoint_rtol if solver.adjoint_rtol is not None else solver.rtol,
                    adjoint_atol=solver.adjoint_atol if solver.adjoint_atol is not None else solver.atol,
                    adjoint_params=tuple(counted.parameters()),
                    adjoint_options={**options, **solver.options.get("adjoint_options", {})},
                )
            else:
                out = torchdiffeq.odeint(
                    counted, y0, t, rtol=solver.rtol, atol=solver.atol, method=solver.method, options=options
                )
    finally:
        counted.in_forward_solve = False
        counted.last_output = None
    if solver.is_fixed_step:
        nfe.accepted_steps = _fixed_grid_steps(t, solver.step_size)
        if not bool(torch.isfinite(out[-1]).all()):
            raise NonFiniteState(f"the ODE state became non-finite (NaN or inf) during the forward solve. {_ADVICE}")
    return out


def _fixed_grid_steps(t: torch.Tensor, step_size: float | None) -> int:
    """Steps of torchdiffeq's fixed grid from t[0] to t[-1] (its `_grid_constructor_from_step_size`)."""
    if step_size is None:  # pragma: no cover - SolverConfig requires step_size for fixed-step methods
        return 0
    return int(torch.ceil((t[-1] - t[0]) / step_size + 1).item()) - 1
