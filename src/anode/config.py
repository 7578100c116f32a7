"""Solver configuration: which ODE method, tolerances, and how gradients are computed."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["ADAPTIVE_METHODS", "ANODE_BACKEND_METHODS", "BACKENDS", "FIXED_STEP_METHODS", "METHODS", "SolverConfig"]

#: Adaptive-step methods of the torchdiffeq backend (error-controlled by rtol/atol).
ADAPTIVE_METHODS: tuple[str, ...] = ("dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun")
#: Fixed-step methods of the torchdiffeq backend (need `step_size`).
FIXED_STEP_METHODS: tuple[str, ...] = (
    "euler",
    "midpoint",
    "heun2",
    "heun3",
    "rk4",
    "explicit_adams",
    "implicit_adams",
)
METHODS: tuple[str, ...] = ADAPTIVE_METHODS + FIXED_STEP_METHODS

#: Solver backends behind `anode.odesolve` (see `anode.solvers`): "torchdiffeq" calls torchdiffeq's
#: `odeint`/`odeint_adjoint`; "anode" is anode's own fused explicit Runge-Kutta solver, which
#: reproduces torchdiffeq's step control, step counts and dense output for the methods below.
BACKENDS: tuple[str, ...] = ("torchdiffeq", "anode")
#: Methods of the "anode" backend.
ANODE_BACKEND_METHODS: tuple[str, ...] = ("dopri5", "bosh3", "euler", "midpoint", "heun2", "heun3", "rk4")


def _check_positive(name: str, value: Any, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite positive number, got {value!r}")


@dataclass(frozen=True)
class SolverConfig:
    """How an `ODEBlock` integrates its vector field over [0, 1].

    Arguments:
        method: one of `METHODS` (torchdiffeq names). Adaptive: dopri5, dopri8, bosh3,
            fehlberg2, adaptive_heun. Fixed-step: euler, midpoint, heun2, heun3, rk4,
            explicit_adams, implicit_adams.
        rtol: relative tolerance of adaptive methods (the paper's code uses 1e-3).
        atol: absolute tolerance of adaptive methods.
        adjoint: compute gradients with the adjoint method (O(1) memory, extra NFEs in the
            backward pass) instead of backpropagating through the solver's operations.
        max_num_steps: most steps an adaptive solve may take per output interval before it
            fails with `MaxStepsExceeded`.
        step_size: step of fixed-step methods (required for them, rejected for adaptive ones).
        adjoint_rtol: tolerance of the adjoint (backward) solve; None means `rtol`.
        adjoint_atol: likewise for `atol`.
        backend: which solver implementation runs the method, one of `BACKENDS`:
            "torchdiffeq" (the reference) or "anode" (own fused Runge-Kutta loop with the same
            steps and numbers, less Python work per step; methods `ANODE_BACKEND_METHODS`).

    Raises:
        ValueError: unknown method (the message lists the valid ones), non-positive or
            non-finite tolerance/step, fixed-step method without `step_size`, `step_size`
            given for an adaptive method, adjoint tolerances without `adjoint=True`, unknown
            backend (the message lists the valid ones), a method the backend does not provide.
        TypeError: a field of the wrong type.
    """

    method: str = "dopri5"
    rtol: float = 1e-3
    atol: float = 1e-3
    adjoint: bool = False
    max_num_steps: int = 1000
    step_size: float | None = None
    adjoint_rtol: float | None = None
    adjoint_atol: float | None = None
    backend: str = "torchdiffeq"

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(
                f"unknown ODE method {self.method!r}; valid choices: adaptive {list(ADAPTIVE_METHODS)}, "
                f"fixed-step {list(FIXED_STEP_METHODS)}"
            )
        _check_positive("rtol", self.rtol)
        _check_positive("atol", self.atol)
        _check_positive("adjoint_rtol", self.adjoint_rtol, allow_none=True)
        _check_positive("adjoint_atol", self.adjoint_atol, allow_none=True)
        _check_positive("step_size", self.step_size, allow_none=True)
        if not isinstance(self.adjoint, bool):
            raise TypeError(f"adjoint must be True or False, got {self.adjoint!r}")
        if isinstance(self.max_num_steps, bool) or not isinstance(self.max_num_steps, int) or self.max_num_steps < 1:
            raise ValueError(f"max_num_steps must be a positive integer, got {self.max_num_steps!r}")
        if self.is_fixed_step and self.step_size is None:
            raise ValueError(
                f"method {self.method!r} is fixed-step and needs step_size (e.g. step_size=0.1); "
                f"or pick an adaptive method from {list(ADAPTIVE_METHODS)}"
            )
        if not self.is_fixed_step and self.step_size is not None:
            raise ValueError(
                f"step_size={self.step_size!r} is only used by fixed-step methods {list(FIXED_STEP_METHODS)}; "
                f"method {self.method!r} chooses its own steps from rtol/atol: remove step_size"
            )
        if not self.adjoint and (self.adjoint_rtol is not None or self.adjoint_atol is not None):
            raise ValueError("adjoint_rtol/adjoint_atol are only used with adjoint=True: set adjoint=True or remove them")
        if not isinstance(self.backend, str) or self.backend not in BACKENDS:
            raise ValueError(f"unknown solver backend {self.backend!r}; valid choices: {list(BACKENDS)}")
        if self.backend == "anode" and self.method not in ANODE_BACKEND_METHODS:
            raise ValueError(
                f"method {self.method!r} is not provided by the 'anode' backend (it has {list(ANODE_BACKEND_METHODS)}); "
                f"pick one of those or use backend='torchdiffeq'"
            )

    @property
    def is_fixed_step(self) -> bool:
        """True for fixed-step methods (euler, rk4, ...)."""
        return self.method in FIXED_STEP_METHODS

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (JSON/TOML friendly); `SolverConfig(**d)` inverts it."""
        return asdict(self)
