"""The reference backend: torchdiffeq's `odeint` / `odeint_adjoint`, with counted calls and typed errors."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torchdiffeq
from torch import nn

from ..config import SolverConfig
from .base import (
    ADVICE,
    NFE,
    NonFiniteState,
    StepSizeUnderflow,
    VectorField,
    translate_solver_errors,
)

__all__ = ["solve"]


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


class _CountedFixed(_Counted):
    """Counts the steps of fixed-grid solvers (torchdiffeq calls `callback_step` once per step)."""

    def callback_step(self, t0: torch.Tensor, y0: torch.Tensor, dt: torch.Tensor) -> None:
        self.nfe.accepted_steps += 1

    def callback_step_adjoint(self, t0: torch.Tensor, y0: torch.Tensor, dt: torch.Tensor) -> None:
        self.nfe.backward_accepted_steps += 1


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
            raise NonFiniteState(f"the vector field returned NaN or inf during the forward solve. {ADVICE}") from err
        raise


def solve(func: VectorField, y0: torch.Tensor, t: torch.Tensor, solver: SolverConfig, nfe: NFE) -> torch.Tensor:
    """Integrate with torchdiffeq (see `anode.odesolve`, which validates the arguments first).

    Arguments:
        func: vector field `func(t, y)`; an `nn.Module` when `solver.adjoint` is True.
        y0: initial state.
        t: 1-D increasing output times, already on y0's device and dtype.
        solver: method, tolerances and gradient mode.
        nfe: counts to update (already reset by the caller).

    Returns:
        Tensor of shape `(len(t), *y0.shape)`.

    Raises:
        SolverError: the solve failed (too many steps, step-size underflow, non-finite state).
    """
    counted = (_CountedFixed if solver.is_fixed_step else _CountedAdaptive)(func, nfe)
    if solver.is_fixed_step:
        options: dict[str, object] = {"step_size": solver.step_size}
    else:
        options = {"max_num_steps": solver.max_num_steps}
    extra = {k: v for k, v in solver.options.items() if k != "adjoint_options"}
    options.update({k: (torch.tensor(v, dtype=torch.float64) if k in ("step_t", "jump_t") else v) for k, v in extra.items()})
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
    if solver.is_fixed_step and not bool(torch.isfinite(out[-1]).all()):
        raise NonFiniteState(f"the ODE state became non-finite (NaN or inf) during the forward solve. {ADVICE}")
    return out
