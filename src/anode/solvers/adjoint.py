"""The adjoint method for the "anode" backend: anode's forward solve without a graph, then the
adjoint ODE solved backwards in time by the same Runge-Kutta code, with the semantics of
torchdiffeq's `OdeintAdjointMethod` (so backward NFE, steps and gradients are those of
`torchdiffeq.odeint_adjoint` with the same tolerances).
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import SolverConfig
from .base import NFE, VectorField
from .control import Counts, rms_norm
from .rk import check_inputs, integrate

__all__ = ["solve"]


class _AdjointState:
    """The adjoint pass's augmented state, flattened as torchdiffeq's tuple state is:
    [dL/dt (1), y (n), a = dL/dy (n), dL/dtheta (one block per parameter)]."""

    def __init__(self, y_shape: torch.Size, params: tuple[torch.Tensor, ...]) -> None:
        self.shapes = [torch.Size(()), y_shape, y_shape, *(p.shape for p in params)]
        bounds = [0]
        for shape in self.shapes:
            bounds.append(bounds[-1] + shape.numel())
        self.bounds = bounds

    def split(self, z: torch.Tensor) -> list[torch.Tensor]:
        """Views of the blocks of `z` (torchdiffeq's `_flat_to_shape`)."""
        b = self.bounds
        return [z[b[i]:b[i + 1]].view(shape) for i, shape in enumerate(self.shapes)]

    def split_state(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Views of y and a = dL/dy in `z`."""
        b = self.bounds
        return z[b[1]:b[2]].view(self.shapes[1]), z[b[2]:b[3]].view(self.shapes[2])

    def norm(self, z: torch.Tensor) -> torch.Tensor:
        """torchdiffeq's default adjoint norm: max(|dL/dt|, rms(y), rms(a), max_i rms(dL/dtheta_i)).

        The same value as torchdiffeq's Python `max` over those tensors (a maximum is exact), taken on the
        device: no host synchronisation per block (one per parameter before). A NaN in any block makes
        the norm NaN (torchdiffeq's `max` can skip it), so the step is rejected and the solve fails."""
        vjp_t, y, adj_y, *adj_params = self.split(z)
        return torch.stack([vjp_t.abs(), rms_norm(y), rms_norm(adj_y), *(rms_norm(p) for p in adj_params)]).max()

    def seminorm(self, z: torch.Tensor) -> torch.Tensor:
        """torchdiffeq's adjoint seminorm (Kidger et al. 2021, `adjoint_options={"norm": "seminorm"}`):
        max(|dL/dt|, rms(y), rms(a)), the parameter adjoints left out of the step control."""
        vjp_t, y, adj_y = self.split(z)[:3]
        return torch.stack([vjp_t.abs(), rms_norm(y), rms_norm(adj_y)]).max()


class _AdjointSolve(torch.autograd.Function):
    """Forward: anode's solver without a graph. Backward: the adjoint ODE solved backwards in time
    by anode's solver, with torchdiffeq's `OdeintAdjointMethod` semantics.

    The backward pass builds the same augmented dynamics (-[dL/dt, f, a^T df/dy, a^T df/dtheta]
    at reversed time, with t requiring grad so that dL/dt is integrated too), the same flattened
    state, the same adjoint norm (the default, or the seminorm when `solver.adjoint_norm` says so) and
    the same per-interval restarts (y reset to the forward
    solution, a incremented by the output gradient), so backward NFE, steps and gradients are
    those of `torchdiffeq.odeint_adjoint` with the same tolerances.
    """

    @staticmethod
    def forward(ctx, func: nn.Module, t: torch.Tensor, times: list[float], solver: SolverConfig, nfe: NFE,
                y0: torch.Tensor, *params: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            out = integrate(func, y0, t, times, solver, Counts(nfe))
        ctx.func, ctx.solver, ctx.nfe, ctx.times = func, solver, nfe, times
        ctx.save_for_backward(t, out, *params)
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        func, solver, nfe, times = ctx.func, ctx.solver, ctx.nfe, ctx.times
        t, y, *params_list = ctx.saved_tensors
        params = tuple(params_list)
        state = _AdjointState(y.shape[1:], params)
        counts = Counts(nfe, backward=True)
        norm = state.seminorm if solver.adjoint_norm == "seminorm" else state.norm
        rtol = solver.adjoint_rtol if solver.adjoint_rtol is not None else solver.rtol
        atol = solver.adjoint_atol if solver.adjoint_atol is not None else solver.atol

        def dynamics(s: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
            # torchdiffeq: _ReverseFunc(mul=-1) of _TupleFunc of `augmented_dynamics`, at time -s. (The
            # vector -a is a fresh tensor, as there: the views of z are not 16-byte aligned, and on a GPU
            # cuDNN may choose another algorithm, hence other bits, for an unaligned gradient.)
            y_now, adj_y = state.split_state(z)
            with torch.enable_grad():
                tt = (-s).detach().requires_grad_(True)
                y_now = y_now.detach().requires_grad_(True)
                func_eval = func(tt.to(y_now.dtype), y_now)
                vjp_t, vjp_y, *vjp_params = torch.autograd.grad(func_eval, (tt, y_now, *params), -adj_y,
                                                                allow_unused=True)
            vjp_t = torch.zeros_like(tt) if vjp_t is None else vjp_t
            vjp_y = torch.zeros_like(y_now) if vjp_y is None else vjp_y
            vjp_params = [torch.zeros_like(p) if g is None else g for p, g in zip(params, vjp_params)]
            parts = (vjp_t, func_eval, vjp_y, *vjp_params)
            return torch.cat([part.reshape(-1) for part in parts]).mul_(-1.0)

        with torch.no_grad():
            z = torch.cat([torch.zeros(1, dtype=y.dtype, device=y.device), y[-1].reshape(-1),
                           grad_out[-1].reshape(-1), *(torch.zeros_like(p).reshape(-1) for p in params)])
            for i in range(len(t) - 1, 0, -1):
                s_span = -t[i - 1:i + 1].flip(0)  # integrate from t[i] down to t[i - 1] in s = -t
                # (its float64 values are -times[i], -times[i - 1]: negation is exact, no host copy needed)
                z = integrate(dynamics, z, s_span, [-times[i], -times[i - 1]], solver, counts,
                               phase="backward pass (adjoint solve)", rtol=rtol, atol=atol, norm=norm)[-1]
                blocks = state.split(z)
                z = torch.cat([blocks[0].reshape(-1), y[i - 1].reshape(-1), (blocks[2] + grad_out[i - 1]).reshape(-1),
                               *(block.reshape(-1) for block in blocks[3:])])
            blocks = state.split(z)
        return (None, None, None, None, None, blocks[2], *blocks[3:])


def solve(func: VectorField, y0: torch.Tensor, t: torch.Tensor, solver: SolverConfig, nfe: NFE) -> torch.Tensor:
    """Integrate with anode's Runge-Kutta solver; gradients by the adjoint method.

    Arguments:
        func: vector field `func(t, y)`, an `nn.Module` (its parameters that require grad get
            gradients).
        y0: initial state (float32 or float64).
        t: 1-D strictly increasing output times, on y0's device and dtype, not requiring grad.
        solver: method (one of `ANODE_BACKEND_METHODS`), tolerances and adjoint tolerances.
        nfe: counts to update (already reset by the caller): `forward`, accepted and rejected
            steps now; `backward` and the `backward_*` step counts when `backward()` runs.

    Returns:
        Tensor of shape `(len(t), *y0.shape)`.

    Raises:
        TypeError: `func` is not an `nn.Module`; a state dtype other than float32/float64.
        ValueError: `t` not 1-D strictly increasing with >= 2 entries, or requiring grad.
        MaxStepsExceeded, StepSizeUnderflow, NonFiniteState: the forward solve failed (the
            backward pass raises them from `backward()`).
    """
    if not isinstance(func, nn.Module):
        raise TypeError(f"the adjoint method needs the vector field to be an nn.Module, got {type(func).__name__}")
    times = check_inputs(y0, t)
    params = tuple(p for p in func.parameters() if p.requires_grad)
    return _AdjointSolve.apply(func, t, times, solver, nfe, y0, *params)
