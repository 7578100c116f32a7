"""Solver backends behind `anode.odesolve`, chosen by `SolverConfig.backend`.

* "torchdiffeq" (`solvers.torchdiffeq`): the reference, torchdiffeq's `odeint`/`odeint_adjoint`.
* "anode": anode's own explicit Runge-Kutta solver (dopri5, bosh3 and the fixed-grid methods)
  with torchdiffeq's numbers: `solvers.rk` dispatches to the loops of `solvers.loop` (one adaptive
  loop with one controller for the whole state or one per sample, and the fixed-grid loop), built
  from `solvers.tableaux` (the Butcher tableaux), `solvers.control` (error norm, initial step,
  accept/reject, next step, typed failures) and `solvers.dense` (the dense output); its adjoint
  method (`solvers.adjoint`); and for MLP fields (`ODEFunc`) under dopri5/bosh3 the fused solve
  with a hand-written backward (`solvers.fused`): the same forward bits, a faster backward.

Every backend is a function `solve(func, y0, t, solver, nfe) -> Tensor`; this package never
imports models or training (the arrows point down: `solve` -> `solvers` -> `config`).

The constants a solve makes once per setting are kept in bounded caches (`solvers.caches`);
`clear_caches()` empties them all, with the fused solve's buffer pool and the caches that
`anode.models` registers there, and `cache_info()` reports them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..config import BACKENDS, SolverConfig
from . import adjoint, fused, rk, torchdiffeq
from .base import NFE, VectorField
from .caches import cache_info, clear_caches

__all__ = ["BACKEND_SOLVERS", "Backend", "cache_info", "clear_caches", "get_backend"]

Backend = Callable[[VectorField, torch.Tensor, torch.Tensor, SolverConfig, NFE], torch.Tensor]


def _anode_solve(func: VectorField, y0: torch.Tensor, t: torch.Tensor, solver: SolverConfig, nfe: NFE) -> torch.Tensor:
    """The "anode" backend: `solvers.adjoint.solve` with `solver.adjoint`; else the fused solve
    (`solvers.fused`) for an MLP field under an adaptive method; else `solvers.rk.solve`."""
    if solver.adjoint:
        return adjoint.solve(func, y0, t, solver, nfe)
    spec = fused.fusable(func, y0, solver)
    if spec is not None:
        if solver.step_control == "sample":  # a batch of one sample (see `fused.fusable`)
            return rk.one_sample(lambda: fused.solve(spec, y0, t, solver, nfe), y0, len(t), solver, nfe)
        return fused.solve(spec, y0, t, solver, nfe)
    return rk.solve(func, y0, t, solver, nfe)


#: name -> solve function; the names are `anode.config.BACKENDS`.
BACKEND_SOLVERS: dict[str, Backend] = {"torchdiffeq": torchdiffeq.solve, "anode": _anode_solve}


def get_backend(name: str) -> Backend:
    """The solve function of backend `name`.

    Arguments:
        name: one of `anode.config.BACKENDS`.

    Returns:
        `solve(func, y0, t, solver, nfe)`.

    Raises:
        ValueError: unknown name (the message lists the valid ones).
    """
    try:
        return BACKEND_SOLVERS[name]
    except KeyError:
        raise ValueError(f"unknown solver backend {name!r}; valid choices: {list(BACKENDS)}") from None
