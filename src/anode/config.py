"""Solver configuration: which ODE method, tolerances, and how gradients are computed."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["ADAPTIVE_METHODS", "ADAPTIVE_OPTIONS", "ADJOINT_OPTIONS", "ANODE_BACKEND_METHODS", "BACKENDS",
           "FIXED_STEP_METHODS", "FIXED_STEP_OPTIONS", "METHODS", "SAMPLE_FAILURES", "STEP_CONTROLS", "SolverConfig"]

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

#: Extra `SolverConfig.options` the torchdiffeq backend accepts for adaptive methods.
ADAPTIVE_OPTIONS: tuple[str, ...] = ("first_step", "safety", "ifactor", "dfactor", "min_step", "max_step", "step_t", "jump_t")
#: Extra `SolverConfig.options` for fixed-step methods.
FIXED_STEP_OPTIONS: tuple[str, ...] = ("interp", "perturb")
#: Options of the adjoint (backward) solve, allowed with `adjoint=True` only.
ADJOINT_OPTIONS: tuple[str, ...] = ("adjoint_options",)
#: Norms the adjoint solve accepts in `options["adjoint_options"]["norm"]`.
ADJOINT_NORMS: tuple[str, ...] = ("seminorm",)
#: The only options the "anode" backend takes: the adjoint's seminorm (Kidger et al. 2021).
_ANODE_OPTIONS: dict[str, Any] = {"adjoint_options": {"norm": "seminorm"}}
#: Solver backends behind `anode.odesolve` (see `anode.solvers`): "torchdiffeq" calls torchdiffeq's
#: `odeint`/`odeint_adjoint`; "anode" is anode's own fused explicit Runge-Kutta solver, which
#: reproduces torchdiffeq's step control, step counts and dense output for the methods below.
BACKENDS: tuple[str, ...] = ("torchdiffeq", "anode")
#: Methods of the "anode" backend.
ANODE_BACKEND_METHODS: tuple[str, ...] = ("dopri5", "bosh3", "euler", "midpoint", "heun2", "heun3", "rk4")
#: Step-size control of adaptive methods (`SolverConfig.step_control`): "batch", one step size for the
#: whole state (torchdiffeq's); "sample", one per sample along the state's leading dimension ("anode" backend).
STEP_CONTROLS: tuple[str, ...] = ("batch", "sample")

#: What a sample's failed solve does under per-sample step control (`SolverConfig.sample_failure`):
#: "skip" the sample and let the others go on (the default), or "raise" the typed error naming the
#: sample. Under batch control a failure stops the batch whichever is set.
SAMPLE_FAILURES: tuple[str, ...] = ("raise", "skip")


def _check_positive(name: str, value: Any, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite positive number, got {value!r}")


def _check_option(method_kind: str, name: str, value: Any, where: str) -> None:
    """Validate one backend option (`where` names it in messages, e.g. "options['first_step']")."""
    if name in ("first_step", "max_step"):
        _check_positive(where, value)
    elif name == "min_step":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(f"{where} must be a finite number >= 0, got {value!r}")
    elif name in ("safety", "dfactor"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
            raise ValueError(f"{where} must be a number in (0, 1], got {value!r}")
    elif name == "ifactor":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 1:
            raise ValueError(f"{where} must be a finite number >= 1, got {value!r}")
    elif name in ("step_t", "jump_t"):
        if not isinstance(value, (list, tuple)) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value
        ):
            raise ValueError(f"{where} must be a list of finite times, got {value!r}")
    elif name == "interp":
        if value not in ("linear", "cubic"):
            raise ValueError(f"{where}: unknown interpolation {value!r}; valid choices: ['linear', 'cubic']")
    elif name == "perturb":
        if not isinstance(value, bool):
            raise TypeError(f"{where} must be True or False, got {value!r}")


def _check_options(options: Any, *, method: str, fixed: bool, adjoint: bool) -> None:
    if not isinstance(options, dict):
        raise TypeError(f"options must be a dict of solver options, got {type(options).__name__}")
    kind = "fixed-step" if fixed else "adaptive"
    own = FIXED_STEP_OPTIONS if fixed else ADAPTIVE_OPTIONS
    for name, value in options.items():
        if name in ("max_num_steps", "step_size", "method", "rtol", "atol"):
            raise ValueError(f"options[{name!r}]: {name} is a SolverConfig field; pass it as SolverConfig({name}=...)")
        if name in ADJOINT_OPTIONS:
            if not adjoint:
                raise ValueError(f"options[{name!r}] configures the adjoint solve: set adjoint=True or remove it")
            if not isinstance(value, dict):
                raise TypeError(f"options[{name!r}] must be a dict, got {type(value).__name__}")
            for sub, sub_value in value.items():
                where = f"options[{name!r}][{sub!r}]"
                if sub == "norm":
                    if sub_value not in ADJOINT_NORMS:
                        raise ValueError(f"{where}: unknown adjoint norm {sub_value!r}; valid choices: {list(ADJOINT_NORMS)}")
                elif sub in own:
                    _check_option(kind, sub, sub_value, where)
                else:
                    raise ValueError(
                        f"{where}: unknown adjoint option for the {kind} method {method!r}; "
                        f"valid choices: {['norm', *own]}"
                    )
            continue
        if name not in own:
            valid = list(own) + (list(ADJOINT_OPTIONS) if adjoint else [])
            raise ValueError(f"unknown solver option {name!r} for the {kind} method {method!r}; valid choices: {valid}")
        _check_option(kind, name, value, f"options[{name!r}]")


@dataclass(frozen=True)
class SolverConfig:
    """How an `ODEBlock` integrates its vector field over its time span (default [0, 1]).

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
        options: further backend options, validated against what the method accepts:
            adaptive methods `ADAPTIVE_OPTIONS` (e.g. `{"first_step": 0.05}`), fixed-step methods
            `FIXED_STEP_OPTIONS` (`interp`, `perturb`); with `adjoint=True` also
            `{"adjoint_options": {...}}` for the backward solve (`{"norm": "seminorm"}` and the
            method's own options). Forward options are inherited by the adjoint solve. The "anode"
            backend takes only `{"adjoint_options": {"norm": "seminorm"}}` (with `adjoint=True`):
            the backward solve's error norm leaves out the parameter adjoints, max(|dL/dt|,
            rms(y), rms(dL/dy)), as torchdiffeq's seminorm.
        backend: which solver implementation runs the method, one of `BACKENDS`:
            "torchdiffeq" (the reference) or "anode" (own fused Runge-Kutta loop with the same
            steps and numbers, less Python work per step; methods `ANODE_BACKEND_METHODS`; for
            an `ODEFunc` under dopri5/bosh3 without the adjoint, a backward written by hand).
        step_control: one of `STEP_CONTROLS`. "batch" (default): one step size, one accept/reject
            decision for the whole state (torchdiffeq's control). "sample" (backend "anode",
            adaptive methods): the state's leading dimension is the sample axis and every sample
            keeps its own step size, accepted and rejected steps and NFE (RMS error norm, initial
            step and next step per sample); a finished sample is frozen (its steps have size 0,
            their values are discarded and not counted); the field is called on the whole batch
            and gets `t` as a tensor of shape (rows, 1, ..., 1), one time per row, broadcastable
            against y. `NFE.per_sample`
            holds the counts. With `adjoint=True` the forward solve is per sample and the backward
            (adjoint) solve is controlled jointly, with batch control (the parameter gradients
            couple the samples).
        sample_failure: one of `SAMPLE_FAILURES`, what a sample whose solve fails does under
            `step_control="sample"`. "skip" (default): the sample is frozen where it failed, its
            outputs from then on are NaN (those it reached before are kept), the other samples go on
            unchanged (bitwise what they give without it), and the failure is recorded in
            `NFE.failed_samples` as (index, "ErrorType: message"); a training step whose forward
            pass skipped a sample raises before the optimiser step (`anode.Trainer.step`), and
            evaluation leaves the sample out and counts it (`anode.training.evaluate`). "raise":
            the solve stops at the first failure with the sample's typed error
            (`MaxStepsExceeded`, `StepSizeUnderflow`, `NonFiniteState`), its index in front of the
            message. Under `step_control="batch"` the samples share one controller, so a failure is
            every sample's: the solve raises its typed error whichever policy is set.

    Raises:
        ValueError: unknown method (the message lists the valid ones), non-positive or
            non-finite tolerance/step, fixed-step method without `step_size`, `step_size`
            given for an adaptive method, adjoint tolerances without `adjoint=True`, an unknown
            or invalid option, an unknown backend (the messages list the valid ones), a method
            the backend does not provide, options other than the adjoint seminorm given to the
            "anode" backend, an unknown
            `step_control` or "sample" with another backend or a fixed-step method, an unknown
            `sample_failure`.
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
    options: dict[str, Any] = field(default_factory=dict)
    backend: str = "torchdiffeq"
    step_control: str = "batch"
    sample_failure: str = "skip"

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
        _check_options(self.options, method=self.method, fixed=self.is_fixed_step, adjoint=self.adjoint)
        object.__setattr__(self, "options", dict(self.options))  # a private copy: the config stays as validated
        if not isinstance(self.backend, str) or self.backend not in BACKENDS:
            raise ValueError(f"unknown solver backend {self.backend!r}; valid choices: {list(BACKENDS)}")
        if self.backend == "anode" and self.method not in ANODE_BACKEND_METHODS:
            raise ValueError(
                f"method {self.method!r} is not provided by the 'anode' backend (it has {list(ANODE_BACKEND_METHODS)}); "
                f"pick one of those or use backend='torchdiffeq'"
            )
        if self.backend == "anode" and self.options and self.options != _ANODE_OPTIONS:
            raise ValueError(f"options {self.options!r} are passed to torchdiffeq only; the 'anode' backend takes "
                             f"only {_ANODE_OPTIONS!r} (with adjoint=True): remove the others or use "
                             "backend='torchdiffeq'")
        if not isinstance(self.step_control, str) or self.step_control not in STEP_CONTROLS:
            raise ValueError(f"unknown step_control {self.step_control!r}; valid choices: {list(STEP_CONTROLS)}")
        if self.step_control == "sample" and (self.backend != "anode" or self.is_fixed_step):
            raise ValueError(
                f"step_control='sample' needs backend='anode' and an adaptive method (dopri5, bosh3), got "
                f"backend={self.backend!r}, method={self.method!r}: set those, or step_control='batch' "
                f"(valid choices: {list(STEP_CONTROLS)})"
            )
        if not isinstance(self.sample_failure, str) or self.sample_failure not in SAMPLE_FAILURES:
            raise ValueError(f"unknown sample_failure {self.sample_failure!r}; valid choices: {list(SAMPLE_FAILURES)}")

    @property
    def adjoint_norm(self) -> str:
        """The adjoint solve's error norm: "seminorm" when `options` asks for it, else "default"."""
        return self.options.get("adjoint_options", {}).get("norm", "default")

    @property
    def is_fixed_step(self) -> bool:
        """True for fixed-step methods (euler, rk4, ...)."""
        return self.method in FIXED_STEP_METHODS

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (JSON/TOML friendly); `SolverConfig(**d)` inverts it."""
        return asdict(self)
