"""What every solver backend shares: NFE counts, typed solver errors and the advice they carry.

`anode.solve` re-exports these names; backends import them from here (never from `solve`), which
keeps the imports one-way: `solve` -> `solvers` -> `config`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch

__all__ = [
    "ADVICE",
    "NFE",
    "MaxStepsExceeded",
    "NonFiniteState",
    "SolverError",
    "StepSizeUnderflow",
    "VectorField",
    "all_finite",
    "failed_samples_error",
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


def all_finite(x: torch.Tensor) -> bool:
    """Whether every entry of `x` is finite: in the common case one reduction and one host read,
    cheaper than `torch.isfinite(x).all()`. The sum is finite when every entry is, and NaN or inf
    when one is not (or when finite entries overflow it): then the largest magnitude decides (NaN
    propagates through max, inf stays inf)."""
    if x.requires_grad:
        x = x.detach()
    if x.numel() == 0 or (not x.is_complex() and math.isfinite(float(x.sum()))):
        return True
    return math.isfinite(float(x.abs().amax()))


ADVICE = (
    "Things to try: loosen rtol/atol, raise max_num_steps, add weight decay or lower the learning "
    "rate to keep the flow well-posed, or add augmented dimensions (augment_dim > 0), which let the "
    "flow avoid the ill-conditioned trajectories that a plain NODE needs."
)

#: The typed errors by name, as `NFE.failed_samples` writes them ("ErrorType: message").
_ERROR_TYPES: dict[str, type[SolverError]] = {
    kind.__name__: kind for kind in (SolverError, MaxStepsExceeded, StepSizeUnderflow, NonFiniteState)}


def failed_samples_error(failures: Sequence[tuple[int, str]], *, where: str,
                         consequence: str = "so the step stopped before the optimiser step and no weight was changed",
                         ) -> SolverError:
    """The error of a training step whose forward solve skipped failed samples (`NFE.failed_samples`
    under `SolverConfig(sample_failure="skip")`): their NaN outputs would make the loss, and then
    every gradient and weight, NaN, so the step stops before the optimiser step.

    Arguments:
        failures: (sample index, "ErrorType: message") pairs, as `NFE.failed_samples` holds them
            (at least one).
        where: words naming the step in the message (e.g. "training iteration 12").
        consequence: what the failure did, after the samples are named (default: a training step's).

    Returns:
        An error of the first failure's type (the one `sample_failure="raise"` would have raised),
        naming every failed sample, the first failure's message and what to do.

    Raises:
        ValueError: `failures` is empty.
    """
    if not failures:
        raise ValueError("failed_samples_error needs at least one (index, message) failure")
    index, text = failures[0]
    name, _, message = text.partition(": ")
    kind = _ERROR_TYPES.get(name, SolverError)
    indices = sorted({int(i) for i, _ in failures})
    detail = message if name in _ERROR_TYPES else text
    return kind(
        f"{where}: the forward solve failed for sample(s) {indices} of the batch (step_control='sample', "
        f"sample_failure='skip': their outputs are NaN), {consequence}. Sample {index}: {detail} To go on: make "
        "every sample's solve succeed (loosen rtol/atol, raise max_num_steps), or set "
        "SolverConfig(sample_failure='raise') to stop at the first failure without finishing the batch."
    )


# torchdiffeq's assertion messages (rk_common.py) -> our error types.
_BACKEND_MESSAGES: tuple[tuple[str, type[SolverError], str], ...] = (
    ("max_num_steps exceeded", MaxStepsExceeded, "the solver exceeded its maximum number of steps"),
    ("underflow in dt", StepSizeUnderflow, "the solver's step size underflowed"),
    ("non-finite values", NonFiniteState, "the ODE state became non-finite (NaN or inf)"),
)


@contextlib.contextmanager
def translate_solver_errors(phase: str = "forward solve") -> Iterator[None]:
    """Turn torchdiffeq's failure assertions raised inside the block into `SolverError`s.

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
                raise kind(f"{what} during the {phase} ({text[:200]}). {ADVICE}") from err
        raise


@dataclass
class NFE:
    """Numbers of vector-field evaluations (and steps) of the latest pass of an ODE block.

    `forward` counts calls made by the latest forward solve. `backward` counts calls made by
    backward passes since that forward call: 0 when backpropagating through the solver (autograd
    replays operations without calling the vector field), positive with the adjoint method.
    Adaptive methods count their accepted and rejected steps; fixed-step methods count their
    steps in `accepted_steps` (both backends).

    With `SolverConfig(step_control="sample")` the forward solve also counts per sample (the
    leading dimension of the state): `per_sample[i]` field evaluations of sample i (each batched
    call counts once for every sample it integrates), `per_sample_accepted[i]` and
    `per_sample_rejected[i]` its steps; `forward` stays the number of batched calls and
    `accepted_steps`/`rejected_steps` the number of batched steps. The lists are empty otherwise.
    Under per-sample control with `SolverConfig(sample_failure="skip")` (the default),
    `failed_samples` lists the samples whose solve failed and was skipped, as (index,
    "ErrorType: message") pairs (empty when none did).
    """

    forward: int = 0
    backward: int = 0
    accepted_steps: int = 0
    rejected_steps: int = 0
    backward_accepted_steps: int = 0
    backward_rejected_steps: int = 0
    per_sample: list[int] = field(default_factory=list)
    per_sample_accepted: list[int] = field(default_factory=list)
    per_sample_rejected: list[int] = field(default_factory=list)
    failed_samples: list[tuple[int, str]] = field(default_factory=list)

    def reset(self) -> None:
        """Set every count to zero (and empty the per-sample lists and `failed_samples`)."""
        self.forward = self.backward = 0
        self.accepted_steps = self.rejected_steps = 0
        self.backward_accepted_steps = self.backward_rejected_steps = 0
        self.per_sample, self.per_sample_accepted, self.per_sample_rejected = [], [], []
        self.failed_samples = []

    @property
    def per_sample_mean(self) -> float:
        """Mean of `per_sample` (0.0 when it is empty)."""
        return sum(self.per_sample) / len(self.per_sample) if self.per_sample else 0.0

    @property
    def per_sample_max(self) -> int:
        """Largest entry of `per_sample` (0 when it is empty)."""
        return max(self.per_sample, default=0)
