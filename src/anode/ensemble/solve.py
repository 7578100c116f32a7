"""One batched adaptive Runge-Kutta solve for R independent ODEs, each with its own step control.

The state has a leading member axis, `y [R, B, ...]`, and the vector field maps `(t [R], y)` to
`dy/dt` with member r's dynamics at its own time `t[r]`. This is the solvers' adaptive loop with one
controller per row of the leading axis (`anode.solvers.loop.solve_rows`, the same loop as per-sample
step control) on the member axis, with a single end time and the "skip" failure policy: every
member follows torchdiffeq's dopri5/bosh3 control exactly as `anode.solvers.rk` does for one ODE
(Hairer's initial step with its autograd graph, the RMS error norm over the member's own state,
accept when the ratio is <= 1, the same step-size update, FSAL, the 4th-order dense output at the
end time, `max_num_steps`). Times and step sizes are per-member NumPy arrays on the host, so a
step makes one host synchronisation (reading the R error ratios) whatever R is.

A member that has reached the end time stops: its state is frozen, it adds no NFE and no steps, and
the batch keeps stepping for the others; the loop ends when every member is done. A member whose
solve fails (step-size underflow, too many steps, a non-finite state) is reported in `failures` and
stops, its returned state being its initial state (a non-finite end state is returned as it is);
the others go on.

With `SolverConfig(step_control="sample")` the controllers are one per (member, sample): the rows
of the loop are the R x B pairs of a state `[R, B, ...]`, and the field gets one time per pair,
`t [R, B]`. Each member's samples then take exactly the steps they take in the member's own
per-sample solve; a member fails when one of its samples fails (its first failed sample's typed
error, and `MemberFailure.samples` lists every failed sample), whatever `sample_failure` says: a
run of its own stops its training step on a failed sample under either policy (`Trainer.step`).

The values agree with solving each member alone to rounding (a batched matrix product may round
differently from a single one), so step counts agree unless a rounding difference flips an
accept/reject decision that sits on a tie; `tests/test_ensemble.py` measures both.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..config import SolverConfig
from ..solvers.base import NFE, SolverError
from ..solvers.control import Counts, StepControl
from ..solvers.loop import solve_rows
from ..solvers.tableaux import ADAPTIVE_TABLEAUX

__all__ = ["MemberFailure", "ensemble_odesolve"]

StackedField = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class MemberFailure:
    """A member's failed solve: the typed error it raises when solved alone.

    Arguments:
        error: the typed error (with step control "sample": its first failed sample's).
        samples: with step control "sample", every failed sample of the member as (index in the
            member's batch, "ErrorType: message"), as `NFE.failed_samples` holds them; else empty.
    """

    error: SolverError
    samples: tuple[tuple[int, str], ...] = ()


def ensemble_odesolve(
    field: StackedField,
    y0: torch.Tensor,
    solver: SolverConfig,
    *,
    t_span: tuple[float, float] = (0.0, 1.0),
    alive: Sequence[bool] | None = None,
) -> tuple[torch.Tensor, list[dict[str, int]], list[MemberFailure | None]]:
    """Integrate R stacked ODEs from `y0 [R, ...]` over `t_span`, each member (with step control
    "sample": each sample of each member) with its own steps.

    Arguments:
        field: `field(t [R], y [R, ...]) -> [R, ...]`, member r's vector field at `(t[r], y[r])`;
            with step control "sample", `t [R, B]`: sample b of member r at `t[r, b]`.
        y0: initial states, float32 or float64, member axis first.
        solver: method ("dopri5" or "bosh3"), rtol, atol, max_num_steps (backend and gradient
            mode are not used: the solve backpropagates through its operations).
        t_span: (start, end), end > start.
        alive: members to integrate (default all); the others are returned at y0 with no counts.

    Returns:
        `(y_end [R, ...], counts, failures)`: per member its counts (`forward` NFE,
        `accepted_steps`, `rejected_steps`; with step control "sample" the member's batched calls,
        i.e. its busiest sample's NFE, that sample's steps, and `per_sample`, the NFE of each of its
        samples) and None or its `MemberFailure`.

    Raises:
        ValueError: a method other than dopri5/bosh3, the adjoint, a state without a sample axis under
            step control "sample", or a bad `t_span`/`alive`.
        TypeError: a state dtype other than float32/float64.
    """
    if solver.method not in ADAPTIVE_TABLEAUX:
        raise ValueError(f"a stacked solve integrates {list(ADAPTIVE_TABLEAUX)}, got method {solver.method!r}")
    if solver.adjoint:
        raise ValueError("a stacked solve backpropagates through the solver: use SolverConfig(adjoint=False)")
    start, end = (float(v) for v in t_span)
    if not end > start:
        raise ValueError(f"t_span must be (start, end) with end > start, got {t_span!r}")
    size = y0.shape[0]
    live = np.ones(size, dtype=bool) if alive is None else np.array(list(alive), dtype=bool)
    if live.shape != (size,):
        raise ValueError(f"alive must give one flag per member ({size}), got {len(live)}")
    ctl = StepControl(solver.method, y0, solver.rtol, solver.atol, solver.max_num_steps, "forward solve")
    if solver.step_control == "sample":
        return _solve_member_samples(field, y0, ctl, start, end, live)
    result = solve_rows(field, y0, [start, end], ctl, Counts(NFE()), failure="skip", axis="member", time_rows=False,
                        live=live, fill="initial")
    failures: list[MemberFailure | None] = [None] * size
    for row, error in result.failures:
        failures[row] = MemberFailure(error)
    counts = [{"forward": int(result.nfe[r]), "accepted_steps": int(result.accepted[r]),
               "rejected_steps": int(result.rejected[r])} for r in range(size)]
    return result.out[-1], counts, failures


def _solve_member_samples(field: StackedField, y0: torch.Tensor, ctl: StepControl, start: float, end: float,
                          live: np.ndarray) -> tuple[torch.Tensor, list[dict[str, Any]], list[MemberFailure | None]]:
    """`ensemble_odesolve` with one controller per (member, sample): rows are the R x B pairs."""
    if y0.dim() < 3:
        raise ValueError(f"step_control='sample' in a stacked solve needs a state [R, B, ...] (members, samples, "
                         f"features), got shape {tuple(y0.shape)}: give each member a batch, or use step_control='batch'")
    size, batch, rest = y0.shape[0], y0.shape[1], y0.shape[2:]

    def pairs(t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return field(t.view(size, batch), y.view(y0.shape)).reshape(size * batch, *rest)

    result = solve_rows(pairs, y0.reshape(size * batch, *rest), [start, end], ctl, Counts(NFE()), failure="skip",
                        axis="sample", time_rows=False, live=np.repeat(live, batch), fill="initial")
    failed: dict[int, list[tuple[int, SolverError]]] = {}
    for row, error in result.failures:  # by row: a member's first failed sample first
        failed.setdefault(row // batch, []).append((row % batch, error))
    failures: list[MemberFailure | None] = [None] * size
    for member, errors in failed.items():
        failures[member] = MemberFailure(errors[0][1], tuple((i, f"{type(e).__name__}: {e}") for i, e in errors))
    nfe, accepted, rejected = (a.reshape(size, batch) for a in (result.nfe, result.accepted, result.rejected))
    counts: list[dict[str, Any]] = []
    for r in range(size):
        busiest = int(nfe[r].argmax())
        counts.append({"forward": int(nfe[r, busiest]), "accepted_steps": int(accepted[r, busiest]),
                       "rejected_steps": int(rejected[r, busiest]), "per_sample": nfe[r].tolist()})
    return result.out[-1].view(y0.shape), counts, failures
