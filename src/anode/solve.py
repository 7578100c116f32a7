"""The single entry point for integrating an ODE: `odesolve`, in front of the solver backends.

It counts function evaluations (NFE) of the vector field, separately for the forward solve and
for the backward pass, and reports failures as typed `SolverError`s whose messages say what to
try. The backend is chosen by `SolverConfig.backend` (see `anode.solvers`): "torchdiffeq" (the
reference) or "anode" (own fused Runge-Kutta loop with the same steps and numbers).
"""

from __future__ import annotations

import torch
from torch import nn

from .config import SolverConfig
from .solvers import get_backend
from .solvers.base import (
    NFE,
    MaxStepsExceeded,
    NonFiniteState,
    SolverError,
    StepSizeUnderflow,
    VectorField,
    translate_solver_errors,
)
from .solvers.tableaux import ADAPTIVE_TABLEAUX  # the methods per-sample step control integrates

__all__ = [
    "NFE",
    "MaxStepsExceeded",
    "NonFiniteState",
    "SolverError",
    "StepSizeUnderflow",
    "odesolve",
    "translate_solver_errors",
]


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
        y0: initial state (any shape; float dtype; float32/float64 with backend "anode").
        t: 1-D increasing tensor of output times (at least two).
        solver: method, tolerances, gradient mode and backend.
        nfe: counts to update; they are reset at the start of the call, then `nfe.forward`
            counts this solve and `nfe.backward` the calls made later by `backward()`.

    Returns:
        Tensor of shape `(len(t), *y0.shape)`.

    Raises:
        TypeError: `func` is not an `nn.Module` while `solver.adjoint` is True; a state dtype
            the backend does not integrate.
        ValueError: (backend "anode") `t` not strictly increasing or requiring grad.
        SolverError: the solve failed (too many steps, step-size underflow, non-finite state).
            Under `step_control="batch"` (adaptive dopri5/bosh3, a state with several samples on its
            leading axis) the message adds that the samples share one step size, so the failure
            stops the batch, and that `step_control="sample"` lets the others go on. Under
            `step_control="sample"` a failed sample is skipped (`nfe.failed_samples`, NaN outputs)
            unless `solver.sample_failure` is "raise".
    """
    if solver.adjoint and not isinstance(func, nn.Module):
        raise TypeError(
            f"the adjoint method needs the vector field to be an nn.Module (to find its parameters), got {type(func).__name__}"
        )
    nfe = NFE() if nfe is None else nfe
    nfe.reset()
    t = t.to(device=y0.device, dtype=y0.dtype)
    try:
        return get_backend(solver.backend)(func, y0, t, solver, nfe)
    except SolverError as err:
        if (solver.step_control == "batch" and solver.method in ADAPTIVE_TABLEAUX and y0.dim() >= 2
                and y0.shape[0] > 1 and len(err.args) == 1 and isinstance(err.args[0], str)):
            err.args = (f"{err.args[0]} {_batch_note(y0.shape[0])}",)
        raise


def _batch_note(samples: int) -> str:
    """What a failure under batch control means for the batch, and the per-sample alternative."""
    return (f"Under step_control='batch' the {samples} samples share one step size, so a failure stops the batch; "
            "SolverConfig(backend='anode', step_control='sample') gives each sample its own and lets the others "
            "go on (sample_failure='skip').")
