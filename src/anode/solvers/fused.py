"""The fused solve of MLP vector fields: the "anode" backend's adaptive loop with a hand-written backward.

For a vector field that is a plain MLP (anode's `ODEFunc`: linear layers with ReLU, tanh or
softplus between them, optionally with t as an extra first input), the "anode" backend runs
this module instead of `solvers.rk` when gradients are taken by backpropagation through an
adaptive solve (dopri5, bosh3). The forward pass is `solvers.rk`'s, operation for operation (the
same stage sums, the same `addmm` per layer as `nn.Linear`, the same error ratio, step control
and dense output), so the solution, the accepted and rejected steps and the NFE are bitwise those
of `solvers.rk`, hence of torchdiffeq. What changes is the backward pass:

* the forward pass runs without autograd and keeps only what the backward needs: each accepted
  evaluation's layer inputs and activations, the accepted steps' stages, and the intermediates of
  the initial step selection;
* the backward pass is the exact reverse of the discretised solve (discretise-then-optimise, the
  same Jacobian autograd would build through `solvers.rk`): per stage, three matrix products and
  two element-wise products back through the field, and one rank-1 update that hands the stage's
  input gradient to the earlier stages; the weight gradients of all stages are then one matrix
  product per layer over every evaluation at once;
* the paths through time are kept as in `solvers.rk`: the first step's size h (a function of y0
  and the weights, by Hairer's initial step selection) moves that step's stage coefficients and
  times, every later stage time and the dense output's abscissa; its gradient is taken back
  through the initial step selection, including the probe evaluation f(t0 + h0, y0 + h0 f0).

That replaces about a hundred autograd nodes per step (each with its Python and bookkeeping cost,
which dominates for toy-sized models) by a few tensor operations. Gradients equal `solvers.rk`'s
up to the order of floating-point accumulation (`tests/test_fused.py`: 1e-10 relative in float64
and 1e-5 in float32 on random problems, every activation, with and without time, several output
times, rejected steps).

Used when (see `fusable`): the field has a `fused_mlp()` method returning an `MLPField` (anode's
`ODEFunc` does, unless a subclass changed its forward or hooks are registered on it), the method
is adaptive, the adjoint is off, autocast is off, and the state is a float32/float64 matrix
[batch, features] on the weights' device and dtype. Everything else goes through `solvers.rk`. When the backward pass
is itself recorded (`create_graph=True`), the solve is differentiated again by autograd through
`solvers.rk` (the same forward bits; its evaluations count as backward NFE), so higher derivatives
exist; forward-mode AD and `torch.func` transforms are not supported by the fused solve.

What is shared and what is its own: the loop is `solvers.loop`'s one adaptive loop
(`loop.adaptive_loop`) with its one-controller step control (`loop.ScalarControl`: the step guards,
error ratio, accept/reject, dense outputs and next step size), over the shared tableaux
(`solvers.tableaux`), step control (`solvers.control`: Hairer's initial step `select_initial_step`,
`next_step_size`, the error norm) and dense output (`solvers.dense`). This module's controller
(`_Control`, a `ScalarControl`) adds only what is special to it: the row buffers (`_Rows`, `_Pool`)
that the field is evaluated into by layer (`_Field`; each stage's input is written straight into its
row, a rejected attempt's rows are overwritten), a step's stage coefficients in one NumPy product,
and the tape of what the backward needs (the accepted steps, whether the first one's size is h, the
outputs' abscissae); then the hand-written backward (`_Reverse`, including the derivative of the
initial step selection).

Where the time goes (CPU, one thread): the forward keeps every tensor operation of `solvers.rk`
(that is what makes it bitwise), runs it under `torch.inference_mode` and writes stage inputs and
activations straight into preallocated rows; the backward runs under inference mode too. The rows,
the stage matrix and the backward's buffers, with their per-row views, come from a pool (`_Pool`)
and go back to it when the solve's graph is freed, so that a training loop makes neither buffers nor
views after its first iterations; constants of a setting (`_control`, `_start_time`, `_time_moves`,
the evaluator of an `MLPField` while its weights keep their storage) are made once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ..config import SolverConfig
from .base import NFE, VectorField, all_finite
from .caches import bounded_cache, register_clear
from .control import Counts, Failure, InitialStep, StepControl, select_initial_step
from .dense import AcceptedStep, interp_value, interp_weights
from .loop import ScalarControl, adaptive_loop
from .rk import check_inputs, integrate
from .tableaux import ADAPTIVE_TABLEAUX, adaptive_consts, numpy_type, stage_sum

__all__ = ["ACTIVATIONS", "MLPField", "fusable", "solve"]

#: Activations the fused solve differentiates by hand (softplus with torch's defaults beta = 1, threshold = 20).
ACTIVATIONS = ("relu", "tanh", "softplus")

_ACTIVATION_FN: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": torch.relu,
    "tanh": torch.tanh,
    "softplus": torch.nn.functional.softplus,
}


@dataclass(frozen=True)
class MLPField:
    """An MLP vector field f(t, y) = W_n act(... act(W_1 x + b_1) ...) + b_n, x = [t, y] or y.

    Arguments:
        weights: each linear layer's weight, shape (out, in), first layer first.
        biases: each layer's bias, shape (out,).
        activation: one of `ACTIVATIONS`, applied between layers (not after the last).
        time_dependent: the first layer reads t as an extra first input column.

    Raises:
        ValueError: no layers, weights and biases of different counts or mismatched shapes, or an
            unknown activation (the message lists the valid ones).
    """

    weights: tuple[torch.Tensor, ...]
    biases: tuple[torch.Tensor, ...]
    activation: str
    time_dependent: bool

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r}; valid choices: {list(ACTIVATIONS)}")
        if not self.weights or len(self.weights) != len(self.biases):
            raise ValueError(f"an MLPField needs one bias per weight and at least one layer, got "
                             f"{len(self.weights)} weights and {len(self.biases)} biases")
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            if w.dim() != 2 or b.shape != (w.shape[0],):
                raise ValueError(f"layer {i}: weight {tuple(w.shape)} and bias {tuple(b.shape)} do not form a linear layer")
            if i and w.shape[1] != self.weights[i - 1].shape[0]:
                raise ValueError(f"layer {i} takes {w.shape[1]} inputs but layer {i - 1} gives {self.weights[i - 1].shape[0]}")

    @property
    def params(self) -> tuple[torch.Tensor, ...]:
        """(W_1, b_1, ..., W_n, b_n)."""
        return tuple(p for pair in zip(self.weights, self.biases) for p in pair)

    def _evaluator(self) -> _Field:
        """The fused solve's evaluator of this field, kept while it still views the weights' data:
        its transposed weights follow in-place updates, but not `param.data = ...` (as `module.to`
        does), which gives a parameter new storage."""
        cached = self.__dict__.get("_field")
        if cached is None or not cached.views(self.weights):
            # plain views (no autograd history, not inference tensors): a module holding this field
            # can still be deep-copied, and the views are usable in and out of inference mode
            with torch.inference_mode(False), torch.no_grad():
                cached = self.__dict__["_field"] = _Field(self)  # a frozen dataclass: its __dict__ directly
        return cached


def fusable(func: object, y0: torch.Tensor, solver: SolverConfig) -> MLPField | None:
    """The field's `MLPField` when the fused solve applies to this call, else None.

    A field of your own can opt in by defining `fused_mlp()` on its class: returning an `MLPField`
    promises that its forward pass computes exactly that MLP (`nn.Linear` layers, the activation
    between them, t as the first input column when time-dependent); return None whenever it would
    not (hooks, other layers), as `ODEFunc.fused_mlp` does.

    Arguments:
        func: the vector field (fused when it has `fused_mlp()` returning an `MLPField`).
        y0: the initial state.
        solver: the solver settings (adaptive method, no adjoint, step_control "batch").

    Returns:
        The field's description, or None (use `solvers.rk`).
    """
    # looked up on the class: a wrapper that forwards attributes (torch.compile's) is not fused
    per_sample = solver.step_control != "batch" and (y0.dim() == 0 or y0.shape[0] != 1)  # (one sample: the same)
    if (solver.adjoint or per_sample or solver.method not in ADAPTIVE_TABLEAUX
            or not callable(getattr(type(func), "fused_mlp", None))):
        return None
    if torch.is_autocast_enabled(y0.device.type):  # the field's layers would run in reduced precision
        return None
    spec = func.fused_mlp()
    if not isinstance(spec, MLPField) or y0.dim() != 2 or y0.dtype not in (torch.float32, torch.float64):
        return None
    first, dtype, device = spec.weights[0], y0.dtype, y0.device
    if any(p.dtype is not dtype or p.device != device for p in spec.params):
        return None
    if first.shape[1] != y0.shape[1] + int(spec.time_dependent) or spec.weights[-1].shape[0] != y0.shape[1]:
        return None
    return spec


# --- forward -------------------------------------------------------------------------------------


@bounded_cache(maxsize=16)
def _flat_rk_matrix(method: str, np_t: type) -> tuple[np.ndarray, list[int]]:
    """The rows of the RK matrix in the state's dtype, end to end, and their lengths: times dt in
    one NumPy product per step (the same products as row by row) and split into the stages' rows."""
    beta = adaptive_consts(method, np_t).beta
    return np.concatenate(beta), [len(row) for row in beta]


class _Rows:
    """Each kept evaluation's layer input, activations (and softplus pre-activations), one row per
    evaluation: row 0 the probe of the initial step selection, row 1 f0, then the accepted steps'
    stages, step j's stage i + 1 in row 2 + j * s + i. A rejected attempt's rows are overwritten by
    the next attempt. Step j's stages k_0 .. k_s are thus rows 1 + j * s .. 1 + j * s + s (k_0 is
    the previous step's last stage, or f0). Grows by doubling.

    Also the step's stage matrix and, made on the first backward pass, the backward's buffers. The
    views of single rows are made once per buffer (a view costs about as much as a small kernel):
    a `_Rows` serves many solves of the same shapes (see `_Pool`)."""

    def __init__(self, spec: MLPField, y0: torch.Tensor, n_stages: int, capacity: int) -> None:
        """Arguments: the field, the initial state, the method's number of stages, the rows to make.
        Make it with inference mode off: its tensors are written in both modes."""
        self.time_dependent = spec.time_dependent
        batch = y0.shape[0]
        self.x = y0.new_empty(capacity, batch, spec.weights[0].shape[1])
        self.a = [y0.new_empty(capacity, batch, w.shape[0]) for w in spec.weights[:-1]]
        self.z = [torch.empty_like(a) for a in self.a] if spec.activation == "softplus" else []
        # the stages k_0 .. k_s side by side on the last dimension (refilled by every step)
        self.stages = y0.new_empty(*y0.shape, n_stages + 1)
        self.columns = self.stages.unbind(-1)  # k_j's place
        self.leading = [self.stages.narrow(-1, 0, n) for n in range(1, n_stages + 1)]  # k_0 .. k_i, stage input i
        self.backward: _BackwardBuffers | None = None
        # per method: the flat RK matrix times dt, written in place every step, and its rows' views
        self.coefficients: dict[str, tuple[np.ndarray, tuple[torch.Tensor, ...]]] = {}
        self._index()

    def _index(self) -> None:
        xs = self.x
        states = xs.narrow(2, 1, xs.shape[2] - 1) if self.time_dependent else xs
        acts = [a.unbind(0) for a in self.a]
        pres = [z.unbind(0) for z in self.z]
        self.rows = [_Row(x, y, [a[r] for a in acts], [z[r] for z in pres])
                     for r, (x, y) in enumerate(zip(xs.unbind(0), states.unbind(0)))]
        self.time_blocks: dict[tuple[int, int], torch.Tensor | np.ndarray] = {}
        self.backward = None  # sized to the old capacity

    @property
    def capacity(self) -> int:
        return self.x.shape[0]

    @property
    def nbytes(self) -> int:
        """Bytes of the buffers (rows, stage matrix and, once made, the backward's)."""
        tensors = [self.x, *self.a, *self.z, self.stages]
        if self.backward is not None:
            tensors += self.backward.tensors()
        return sum(t.nbytes for t in tensors)

    def ensure(self, rows: int) -> None:
        """Room for `rows` rows (earlier rows kept)."""
        have = self.x.shape[0]
        if rows <= have:
            return
        grow = max(rows, 2 * have) - have
        with torch.inference_mode(False):  # ordinary tensors (see __init__)
            self.x = torch.cat([self.x, self.x.new_empty(grow, *self.x.shape[1:])])
            self.a = [torch.cat([a, a.new_empty(grow, *a.shape[1:])]) for a in self.a]
            self.z = [torch.cat([z, z.new_empty(grow, *z.shape[1:])]) for z in self.z]
            self._index()

    def block(self, start: int, n: int) -> list[_Row]:
        """Rows start .. start + n - 1 (`ensure` first)."""
        return self.rows[start:start + n]

    def time_column(self, start: int, n: int) -> torch.Tensor | np.ndarray:
        """The time column of rows start .. start + n - 1 as [n, batch, 1] (`ensure` first): a NumPy
        view on the CPU (a step's stage times are written into it in one assignment), else a tensor."""
        view = self.time_blocks.get((start, n))
        if view is None:
            view = self.x.narrow(0, start, n).narrow(2, 0, 1)
            view = self.time_blocks[start, n] = view.numpy() if view.device.type == "cpu" else view
        return view

    def backward_buffers(self) -> _BackwardBuffers:
        """The backward pass's buffers for this capacity (made once)."""
        if self.backward is None:
            with torch.inference_mode(False):  # ordinary tensors (see __init__)
                self.backward = _BackwardBuffers(self)
        return self.backward


class _BackwardBuffers:
    """Per row of `_Rows`: dL/d(field output), dL/d(pre-activations) and the activations' slopes;
    per stage of a step: dL/d(stage input); each with its rows' views made once."""

    def __init__(self, rows: _Rows) -> None:
        self.grad_k = rows.stages.new_empty(rows.capacity, *rows.stages.shape[:-1])
        self.grad_z = [torch.empty_like(a) for a in rows.a]
        self.slopes = [torch.empty_like(a) for a in rows.a]
        self.k_rows = self.grad_k.unbind(0)
        self.z_rows = [g.unbind(0) for g in self.grad_z]
        self.slope_rows = [d.unbind(0) for d in self.slopes]
        s = len(rows.leading)
        self.grad_stage = rows.stages.new_empty(s, *rows.stages.shape[:-1])
        self.flat_stage = self.grad_stage.view(s, -1)
        self.stage_rows, self.flat_stage_rows = self.grad_stage.unbind(0), self.flat_stage.unbind(0)
        self.step_grads: dict[int, torch.Tensor] = {}  # per first row: a step's k rows of grad_k, flat
        self.prefixes: dict[int, tuple] = {}  # per row count: `first_rows`
        # per method: the RK matrix (zero-padded to s + 1 columns) times dt, written in place every
        # step on the host, and its rows' views
        self.coefficients: dict[str, tuple[np.ndarray, tuple[torch.Tensor, ...]]] = {}

    def first_rows(self, n: int, rows: _Rows) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor],
                                                       torch.Tensor, list[torch.Tensor]]:
        """The first n rows of `rows`' layer inputs and activations and of the slopes, dL/dk and dL/dz
        buffers (the views made once per n)."""
        views = self.prefixes.get(n)
        if views is None:
            views = self.prefixes[n] = (rows.x[:n], [a[:n] for a in rows.a], [d[:n] for d in self.slopes],
                                        self.grad_k[:n], [g[:n] for g in self.grad_z])
        return views

    def step_grad(self, first: int, n: int) -> torch.Tensor:
        """Rows first .. first + n - 1 of grad_k as an [n, batch * features] matrix (made once)."""
        view = self.step_grads.get(first)
        if view is None:
            view = self.step_grads[first] = self.grad_k.narrow(0, first, n).view(n, -1)
        return view

    def coefficient_rows(self, method: str, padded: np.ndarray) -> tuple[np.ndarray, tuple[torch.Tensor, ...]]:
        """The host buffer for `padded` times dt and its rows' views (made once per method)."""
        cached = self.coefficients.get(method)
        if cached is None:
            buffer = np.empty_like(padded)
            cached = self.coefficients[method] = (buffer, torch.from_numpy(buffer).unbind(0))
        return cached

    def tensors(self) -> list[torch.Tensor]:
        """The buffers (not their views)."""
        return [self.grad_k, *self.grad_z, *self.slopes, self.grad_stage]


class _Pool:
    """`_Rows` kept for the next solve of the same shapes: a training loop's solves then make no
    buffers and no views. A solve with a tape takes one and gives it back when the tape is freed
    (with the autograd graph); one without gives it back on return. At most `per_key` are kept for
    each shape, `keys` shapes and `max_bytes` bytes of buffers in all (the oldest shape is dropped
    first; a `_Rows` larger than `max_bytes` is not kept). `clear` empties it
    (`anode.solvers.clear_caches` calls it)."""

    def __init__(self, keys: int = 8, per_key: int = 2, max_bytes: int = 2**30) -> None:
        self.keys, self.per_key, self.max_bytes = keys, per_key, max_bytes
        self.free: dict[tuple[object, ...], list[_Rows]] = {}
        self.held = 0  # bytes of the kept rows' buffers
        # reentrant: a tape freed by the garbage collector while this thread is inside `give` gives
        # its rows back from within (a plain lock would deadlock; at worst a pooled entry is dropped)
        self.lock = threading.RLock()

    @staticmethod
    def key(spec: MLPField, y0: torch.Tensor, n_stages: int) -> tuple[object, ...]:
        return (tuple(w.shape for w in spec.weights), spec.activation, spec.time_dependent, y0.shape, y0.dtype,
                y0.device, n_stages)

    def take(self, spec: MLPField, y0: torch.Tensor, n_stages: int, capacity: int) -> tuple[tuple[object, ...], _Rows]:
        key = self.key(spec, y0, n_stages)
        with self.lock:
            kept = self.free.get(key)
            if kept:
                rows = kept.pop()
                self.held -= rows.nbytes
                return key, rows
        with torch.inference_mode(False):
            return key, _Rows(spec, y0, n_stages, capacity)

    def give(self, key: tuple[object, ...], rows: _Rows) -> None:
        size = rows.nbytes  # (a kept `_Rows` does not change size until it is taken again)
        with self.lock:
            kept = self.free.pop(key, [])  # re-inserted last: the most recently used shape
            if len(kept) < self.per_key and size <= self.max_bytes:
                kept.append(rows)
                self.held += size
            self.free[key] = kept
            while self.free and (len(self.free) > self.keys or self.held > self.max_bytes):
                for dropped in self.free.pop(next(iter(self.free))):
                    self.held -= dropped.nbytes

    def clear(self) -> None:
        """Drop every kept `_Rows` (buffers still used by a live graph are given back later, as usual)."""
        with self.lock:
            self.free.clear()
            self.held = 0


_POOL = _Pool()
register_clear(f"{__name__}._POOL", _POOL.clear)


@dataclass(frozen=True)
class _Row:
    """One row of `_Rows`: the layer input `x`, its state part `y` (all but the time column), the
    hidden activations and (softplus) pre-activations."""

    x: torch.Tensor
    y: torch.Tensor
    acts: list[torch.Tensor]
    pres: list[torch.Tensor]


class _Field:
    """Evaluates the MLP without autograd, by the same `addmm`s as `nn.Linear`, into `_Rows`."""

    def __init__(self, spec: MLPField) -> None:
        self.weights_t = [w.t() for w in spec.weights]
        self.hidden = list(zip(self.weights_t[:-1], spec.biases[:-1]))
        self.last = (spec.biases[-1], self.weights_t[-1])
        self.activation = spec.activation

    def views(self, weights: tuple[torch.Tensor, ...]) -> bool:
        """Whether the transposed weights still view these weights' data."""
        return all(t.data_ptr() == w.data_ptr() and t.shape == w.shape[::-1] for t, w in zip(self.weights_t, weights))

    def __call__(self, row: _Row, t: torch.Tensor | None = None) -> torch.Tensor:
        """f(t, y) with y already in `row.y`; `t` is written into the time column when given (else
        it is there already, or the field has none)."""
        a = row.x
        if t is not None:
            a.select(1, 0).fill_(t)  # the same values as torch.cat([ones * t, y], 1)
        if self.activation == "relu":
            for (w_t, b), act in zip(self.hidden, row.acts):
                a = torch.addmm(b, a, w_t, out=act).relu_()
        elif self.activation == "tanh":
            for (w_t, b), act in zip(self.hidden, row.acts):
                a = torch.addmm(b, a, w_t, out=act).tanh_()
        else:
            for (w_t, b), act, pre in zip(self.hidden, row.acts, row.pres):
                a = act.copy_(torch.nn.functional.softplus(torch.addmm(b, a, w_t, out=pre)))
        b, w_t = self.last
        return torch.addmm(b, a, w_t)  # (a strided out= would round differently)


@dataclass
class _Tape:
    """What the backward pass needs, recorded by the forward pass (rows: see `_Rows`); its rows go
    back to the pool when the tape is freed."""

    rows: _Rows
    pool_key: tuple[object, ...]
    steps: list[AcceptedStep] = field(default_factory=list)
    first_carries_h: bool = False  # the first accepted step is the first attempt: its size is h (with a gradient)
    outputs: list[tuple[int, float]] = field(default_factory=list)  # per output time after t[0]: (step, x)
    init: InitialStep | None = None
    f0: torch.Tensor | None = None
    control: StepControl | None = None

    def __del__(self) -> None:
        pool = _POOL  # None while the interpreter shuts down
        if pool is not None:
            pool.give(self.pool_key, self.rows)


@bounded_cache(maxsize=64)
def _control(method: str, dtype: torch.dtype, device: torch.device, rtol: float, atol: float,
             max_num_steps: int) -> StepControl:
    """The forward solve's `StepControl` (immutable: made once per setting)."""
    with torch.inference_mode(False):
        return StepControl(method, torch.empty(0, dtype=dtype, device=device), rtol, atol, max_num_steps, "forward solve")


@bounded_cache(maxsize=64)
def _start_time(t0: float, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """t0 as `solvers.rk` makes it (a float64 0-dim tensor) and in the state's dtype (made once)."""
    with torch.inference_mode(False):
        t = torch.tensor(t0, dtype=torch.float64, device=device)
        return t, t.to(dtype)


class _Control(ScalarControl):
    """The one-controller adaptive loop's controller (`loop.ScalarControl`: the step guards, error
    ratio, accept/reject, outputs and next step as there) in `_Rows`: f0, the probe and every stage
    are evaluated into rows (`stage_state` writes a stage's input into its row, `evaluate` is the
    loop's field), a step's stage times go into its rows' time column at once, its coefficients are
    one NumPy product, and the accepted steps and output abscissae are recorded on `tape` (without
    one, two blocks of rows serve the steps in turn)."""

    host_stages = True  # the stage inputs are written into the rows (`stage_state`)

    def __init__(self, spec: MLPField, y0: torch.Tensor, times: list[float], ctl: StepControl, counts: Counts,
                 rows: _Rows, tape: _Tape | None) -> None:
        super().__init__(y0, times, ctl, counts)
        self.spec, self.rows, self.tape = spec, rows, tape
        self.field = spec._evaluator()
        self.flat, self.row_sizes = _flat_rk_matrix(ctl.method, ctl.np_t)
        self.no_times = (None,) * ctl.n_stages  # (the stage times are in the rows' time column)
        self.block: list[_Row] | None = None
        self.row: _Row | None = None
        self.n_accepted = 0
        self.attempts = 0

    def columns(self, y0: torch.Tensor, n: int) -> tuple[torch.Tensor, tuple[torch.Tensor, ...], list[torch.Tensor]]:
        """The rows' stage matrix and its views."""
        rows = self.rows
        self.leading = rows.leading
        return rows.stages, rows.columns, rows.leading

    def drop_columns(self) -> None:
        """Never: the field is evaluated without a graph (`solve` runs it under inference mode, or with
        nothing requiring grad), and the stage inputs must stay in the rows."""
        raise RuntimeError("internal error: the fused solve's field returned a tensor that requires grad")

    def start(self, func: VectorField) -> torch.Tensor:
        """f0 and Hairer's initial step (`control.select_initial_step`), in rows 1 and 0."""
        y0, ctl, f, counts = self.y0, self.ctl, self.field, self.counts
        time_col = self.spec.time_dependent
        probe_row, f0_row = self.rows.block(0, 2)
        t_start, t_start_y = _start_time(self.times[0], y0.dtype, y0.device)
        f0_row.y.copy_(y0)
        f0 = f(f0_row, t_start_y if time_col else None)
        counts.call()

        def probe(t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            probe_row.y.copy_(y)
            return f(probe_row, t if time_col else None)

        self.init = select_initial_step(probe, t_start, y0, f0, ctl.order - 1, ctl.rtol, ctl.atol, counts)
        self.abs_y = self.init.abs_y0
        self.f0 = self.last_k = f0
        self.dt, self.dt_shadow = self.init.h.item(), None
        return f0

    def begin(self, y: torch.Tensor) -> Sequence[torch.Tensor | None]:
        """The step guards, the step's rows and their time column, the stage coefficients."""
        ts = self.stage_times(y)
        self.attempts += 1
        rows, s, tape = self.rows, self.ctl.n_stages, self.tape
        if self.block is None:  # fresh rows after an accepted step (a rejected step's are overwritten)
            # without a tape, two blocks in turn (the step's start is the last row of the other)
            base = 2 + s * (len(tape.steps) if tape is not None else self.n_accepted % 2)
            rows.ensure(base + s)
            self.block = rows.block(base, s)
            if self.spec.time_dependent:
                self.time_block = rows.time_column(base, s)
        if self.spec.time_dependent:  # every stage's time column at once
            if isinstance(self.time_block, np.ndarray):
                self.time_block[...] = ts.numpy().reshape(-1, 1, 1)
            else:
                self.time_block.copy_(ts.view(-1, 1, 1))
        # beta_i * dt as rk computes them: on the host in one NumPy product (into the rows' buffer, whose
        # views the stages read), else on the device
        ctl, dt_y = self.ctl, self.dt_y
        if ctl.host:
            buffer, self.coefs = self._coefficient_buffer()
            np.multiply(self.flat, dt_y, out=buffer)
        else:
            self.coefs = [ctl.stage_coefficients(i, dt_y) for i in range(s)]
        return self.no_times

    def _coefficient_buffer(self) -> tuple[np.ndarray, tuple[torch.Tensor, ...]]:
        """The rows' coefficient buffer of this method and its per-stage views (made once per `_Rows`)."""
        cached = self.rows.coefficients.get(self.ctl.method)
        if cached is None:
            buffer = np.empty(len(self.flat), dtype=self.ctl.np_t)
            with torch.inference_mode(False):  # an ordinary tensor: the rows serve solves in and out of inference mode
                views = torch.from_numpy(buffer).split(self.row_sizes)
            cached = self.rows.coefficients[self.ctl.method] = (buffer, views)
        return cached

    def stage_state(self, i: int, y: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        """Stage i's input y + sum_j (dt a_ij) k_j, written into its row (`evaluate` reads it there)."""
        row = self.row = self.block[i]
        if i == 0:
            return torch.add(y, f * self.coefs[0], out=row.y)
        return torch.add(y, torch.linalg.vecdot(self.leading[i], self.coefs[i], dim=-1), out=row.y)

    def evaluate(self, t: torch.Tensor | None, y: torch.Tensor) -> torch.Tensor:
        """The loop's field: f at the stage whose input `stage_state` just wrote (its time is in the row)."""
        return self.field(self.row)

    def accepted(self, step: AcceptedStep) -> None:
        self.n_accepted += 1
        self.block = None
        tape = self.tape
        if tape is not None:
            if not tape.steps:
                tape.first_carries_h = self.attempts == 1
            tape.steps.append(step)

    def output(self, step: AcceptedStep, t: float) -> torch.Tensor:
        """The dense output without autograd (`dense.interp_value`); its abscissa goes on the tape."""
        value, x = interp_value(step, t, self.ctl.np_t, self.ctl.consts)
        if self.tape is not None:
            self.tape.outputs.append((len(self.tape.steps) - 1, float(x)))
        return value


def _forward(spec: MLPField, y0: torch.Tensor, times: list[float], solver: SolverConfig, counts: Counts,
             rows: _Rows, tape: _Tape | None) -> torch.Tensor:
    """`solvers.loop.solve_adaptive`'s step sequence (the same loop, `loop.adaptive_loop`, the same
    operations, hence the same bits) without autograd in `rows`, recording `tape`."""
    ctl = _control(solver.method, y0.dtype, y0.device, solver.rtol, solver.atol, solver.max_num_steps)
    control = _Control(spec, y0, times, ctl, counts, rows, tape)
    adaptive_loop(control.evaluate, y0, ctl, counts, control, stage_sum)
    if tape is not None:
        tape.init, tape.f0, tape.control = control.init, control.f0, ctl
    return torch.stack(control.outputs)


# --- backward ------------------------------------------------------------------------------------


@bounded_cache(maxsize=64)
def _rk_matrix(method: str, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The RK matrix of an adaptive method as a square tensor (rows: stage inputs y_0 .. y_(s-1),
    columns: stages k_0 .. k_(s-1)), from the tableau rounded to the state's dtype; and the same
    with a zero column for k_s appended."""
    consts = adaptive_consts(method, numpy_type(dtype))
    s = len(consts.beta)
    with torch.inference_mode(False):  # cached: an ordinary tensor even when first built in inference mode
        beta = torch.zeros(s, s, dtype=dtype, device=device)
        for i, row in enumerate(consts.beta):
            beta[i, :i + 1] = torch.from_numpy(row).to(beta)
        return beta, torch.nn.functional.pad(beta, (0, 1))


@bounded_cache(maxsize=256)
def _time_moves(method: str, n_steps: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """d(stage time)/dh of every stage of `n_steps` accepted steps when the first step's size is h:
    the first step's stages sit at t0 + alpha h, every later one moves with t0 + h."""
    consts = adaptive_consts(method, numpy_type(dtype))
    alphas = [float(a) for a in consts.alpha]
    with torch.inference_mode(False):
        return torch.tensor(alphas + [1.0] * (len(alphas) * (n_steps - 1)), dtype=dtype, device=device)


class _Reverse:
    """The backward pass of one fused solve (see the module docstring)."""

    def __init__(self, spec: MLPField, tape: _Tape, y0: torch.Tensor) -> None:
        self.spec, self.tape, self.y0 = spec, tape, y0
        self.ctl = tape.control
        n = 2 + len(tape.steps) * self.ctl.n_stages
        rows = tape.rows
        self.buffers = buffers = rows.backward_buffers()
        self.n_rows, self.batch = n, y0.shape[0]
        self.x, self.acts, slopes, self.grad_k, self.grad_z = buffers.first_rows(n, rows)
        for i, out in enumerate(slopes):  # act'(z) per row, read through buffers.slope_rows
            self._slope(i, out)
        self.grad_k.zero_()  # dL/d(field output) per row, accumulated
        # dL/d(pre-activation) per row: written by each row's vjp; row 0 (the probe) has none when
        # the initial step size carries no gradient
        for g in self.grad_z:
            g[0].zero_()
        self.k_rows, self.z_rows = buffers.k_rows, buffers.z_rows
        first = spec.weights[0]
        self.w_y = first[:, 1:].contiguous() if spec.time_dependent else first
        self.later = list(zip(spec.weights[1:], buffers.slope_rows, self.z_rows))[::-1]

    def _slope(self, i: int, out: torch.Tensor) -> None:
        """act'(z) of hidden layer i in every row, into `out`."""
        a = self.acts[i]
        if self.spec.activation == "relu":
            torch.sign(a, out=out)  # a = relu(z) >= 0: 1 where z > 0, else 0
            return
        if self.spec.activation == "tanh":
            torch.mul(a, a, out=out).neg_().add_(1)  # 1 - a * a, the same rounding
            return
        z = self.tape.rows.z[i][:self.n_rows]  # softplus, torch's threshold 20
        torch.where(z > 20, torch.ones_like(z), torch.sigmoid(z), out=out)

    def vjp(self, row: int, out: torch.Tensor | None = None) -> torch.Tensor:
        """dL/dy of evaluation `row` given dL/d(its output) in `grad_k` (into `out` when given);
        stores the layers' dL/dz for the weight gradients."""
        g = self.k_rows[row]
        for weight, slopes, grad_z in self.later:
            g = torch.mm(g, weight, out=grad_z[row]).mul_(slopes[row])  # (a contiguous row: the same bits)
        return torch.mm(g, self.w_y) if out is None else torch.mm(g, self.w_y, out=out)

    def time_grads(self, rows: slice) -> torch.Tensor:
        """dL/dt of the evaluations in `rows` (t enters the first layer as input column 0)."""
        z = self.grad_z[0][rows] if self.grad_z else self.grad_k[rows]
        per_sample = torch.mv(z.reshape(-1, z.shape[-1]), self.spec.weights[0][:, 0])
        return per_sample.view(-1, self.batch).sum(1)

    def run(self, grad_out: torch.Tensor) -> torch.Tensor:
        """dL/dy0 given dL/d(outputs); then `weight_grads` gives dL/d(W_1, b_1, ..., W_n, b_n)."""
        tape, ctl = self.tape, self.ctl
        s = ctl.n_stages
        outputs_of: dict[int, list[tuple[int, float]]] = {}
        for m, (j, x) in enumerate(tape.outputs, start=1):
            outputs_of.setdefault(j, []).append((m, x))
        grad_h = 0.0  # dL/dh, the initial step size
        grad_y: torch.Tensor | None = None  # dL/d(end of the current step)
        buffers = self.buffers
        grad_stage, flat_stage = buffers.grad_stage, buffers.flat_stage  # dL/d(stage input y_i) of one step
        stage_rows, flat_stage_rows = buffers.stage_rows, buffers.flat_stage_rows
        beta, padded = _rk_matrix(ctl.method, self.y0.dtype, self.y0.device)
        if ctl.host:  # row i: beta_i * dt, zero-padded to all s + 1 stages (adding 0 * g changes nothing)
            padded_np = padded.numpy()
            buffer, coefficients = buffers.coefficient_rows(ctl.method, padded_np)
        for j in range(len(tape.steps) - 1, -1, -1):
            step = tape.steps[j]
            carries_h = j == 0 and tape.first_carries_h
            shifted = j > 0 and tape.first_carries_h
            flat_k = buffers.step_grad(1 + j * s, s + 1)
            grad_end, grad_start = grad_y, None
            stacked = torch.stack(step.ks).view(s + 1, -1) if carries_h else None  # k_0 .. k_s
            for m, x in outputs_of.get(j, ()):
                o = grad_out[m]
                w0, w1, dh = self._output(step, x, o, flat_k, stacked, shifted)
                grad_h += dh
                grad_end = o * w1 if grad_end is None else grad_end + o * w1
                grad_start = o * w0 if grad_start is None else grad_start + o * w0
            if ctl.host:  # (the same products as on the device)
                np.multiply(padded_np, ctl.np_t(step.dt), out=buffer)
            else:
                coefficients = (padded * float(ctl.np_t(step.dt))).unbind(0)
            for i in range(s - 1, -1, -1):
                g = self.vjp(2 + j * s + i, out=stage_rows[i])
                if i == s - 1 and grad_end is not None:
                    g += grad_end
                flat_k.addr_(coefficients[i], flat_stage_rows[i])
            total = grad_stage.sum(0)
            grad_y = total if grad_start is None else total + grad_start
            if stacked is not None:  # the stage coefficients beta_ij * h: sum_ij beta_ij <k_j, dL/dy_i>
                products = torch.mm(flat_stage, stacked.narrow(0, 0, s).t())
                grad_h += float((products * beta).sum())
        if tape.first_carries_h and self.spec.time_dependent:  # stage times: t0 + alpha h, then + h
            n = len(tape.steps) * s
            moves = _time_moves(ctl.method, len(tape.steps), self.y0.dtype, self.y0.device)
            grad_h += float(torch.dot(self.time_grads(slice(2, 2 + n)), moves))
        grad_y0 = grad_out[0] + grad_y
        if grad_h != 0.0:
            grad_y0 = grad_y0 + self._initial_step(grad_h)
        return grad_y0 + self.vjp(1)

    def _output(self, step: AcceptedStep, x: float, o: torch.Tensor, flat_k: torch.Tensor, stacked: torch.Tensor | None,
                shifted: bool) -> tuple[float, float, float]:
        """Back through the dense output at x of `step` given its gradient `o`: adds to the stages'
        gradients; returns the weights of the step's y0 and y1 and the part of dL/dh (the dense output
        moves with the grid when the first step's size is h: `stacked` holds that step's stages, or
        `shifted` says the step comes after it)."""
        ctl = self.ctl
        weights, u = interp_weights(float(ctl.np_t(step.dt)), x, ctl.consts)
        flat_o = o.reshape(-1)
        stage_weights = (torch.from_numpy(np.array(weights[2:], dtype=ctl.np_t)) if ctl.host
                         else o.new_tensor(weights[2:]))  # the same rounding to the state's dtype
        flat_k.addr_(stage_weights, flat_o)
        grad_h = 0.0
        if stacked is not None or shifted:
            # x = (t - t0) / (t1 - t0): dx/dh = -x / (t1 - t0) for the first step, -1 / (t1 - t0) after it
            width = step.t1 - step.t0
            _, d, c, b, a = step.coeffs
            od, oc, ob, oa = torch.mv(torch.stack((d, c, b, a)).view(4, -1), flat_o).tolist()
            slope = od + 2 * x * oc + 3 * x * x * ob + 4 * x**3 * oa  # <o, dP/dx>
            grad_h = slope * (-x / width if stacked is not None else -1.0 / width)
            if stacked is not None:  # the dense output's own dependence on the step size: <o, dP/d(dt)>
                grad_h += sum(w * v for w, v in zip(u, torch.mv(stacked, flat_o).tolist()))
        return weights[0], weights[1], grad_h

    def _initial_step(self, grad_h: float) -> torch.Tensor:
        """Back through Hairer's initial step selection (`rk.select_initial_step`) given dL/dh: adds
        to dL/d(f0) and runs the probe's backward; returns the direct part of dL/dy0."""
        init, y0, f0 = self.tape.init, self.y0, self.tape.f0
        rtol = self.ctl.rtol
        h0, h1, d0, d1, d2 = (float(v) for v in (init.h0, init.h1, init.d0, init.d1, init.d2))
        scale = init.scale
        grad_h0, grad_h1 = 0.0, 0.0
        if 100 * h0 < h1:  # torch.min: the smaller one, ties split
            grad_h0 = 100 * grad_h
        elif 100 * h0 > h1:
            grad_h1 = grad_h
        else:
            grad_h0, grad_h1 = 50 * grad_h, grad_h / 2
        grad_d1, grad_d2 = 0.0, 0.0
        if grad_h1 and init.h1_power:  # h1 = (0.01 / max(d1, d2)) ** (1 / q)
            q = self.ctl.order  # select_initial_step's order + 1
            largest = max(d1, d2)  # Python's max: d1 on a tie, as in rk
            g = grad_h1 * (-1.0 / q) * h1 / largest
            if d2 > d1:
                grad_d2 = g
            else:
                grad_d1 = g
        elif grad_h1 and h0 * 1e-3 >= 1e-6:  # h1 = max(1e-6, h0 / 1000)
            grad_h0 += grad_h1 * 1e-3 * (0.5 if h0 * 1e-3 == 1e-6 else 1.0)
        grad_f0 = torch.zeros_like(scale)
        grad_scale = torch.zeros_like(scale)
        grad_y0 = torch.zeros_like(y0)

        def rms_back(u: torch.Tensor, r: float, grad_r: float) -> torch.Tensor:
            return u * (grad_r / (u.numel() * r)) if grad_r and r > 0 else torch.zeros_like(u)

        if grad_d2:  # d2 = rms((f1 - f0) / scale) / h0
            u2 = (init.f1 - f0) / scale
            grad_u2 = rms_back(u2, d2 * h0, grad_d2 / h0)
            grad_h0 -= grad_d2 * d2 / h0
            grad_f1 = grad_u2 / scale
            grad_f0 -= grad_f1
            grad_scale -= grad_u2 * u2 / scale
            # the probe f1 = f(t0 + h0, y0 + h0 f0)
            self.grad_k[0] = grad_f1.to(y0.dtype)  # row 0: the probe
            g = self.vjp(0)
            grad_y0 += g
            grad_f0 += h0 * g
            grad_h0 += float(torch.dot(g.view(-1), f0.view(-1)))
            if self.spec.time_dependent:
                grad_h0 += float(self.time_grads(slice(0, 1))[0])
        if init.h0_varies and grad_h0:  # h0 = 0.01 d0 / d1
            grad_d1 -= grad_h0 * h0 / d1
            grad_d0 = 0.01 * grad_h0 / d1
            u0 = y0 / scale
            grad_u0 = rms_back(u0, d0, grad_d0)
            grad_y0 += grad_u0 / scale
            grad_scale -= grad_u0 * u0 / scale
        if grad_d1:  # d1 = rms(f0 / scale)
            u1 = f0 / scale
            grad_u1 = rms_back(u1, d1, grad_d1)
            grad_f0 += grad_u1 / scale
            grad_scale -= grad_u1 * u1 / scale
        self.grad_k[1] += grad_f0.to(y0.dtype)  # row 1: f0
        grad_y0 += (grad_scale * rtol * torch.sign(y0)).to(y0.dtype)  # scale = atol + |y0| rtol
        return grad_y0

    def weight_grads(self) -> tuple[torch.Tensor, ...]:
        """dL/dW_i = sum over evaluations of dL/dz_i^T a_(i-1), as one matrix product per layer."""
        grads = []
        outs = [*self.grad_z, self.grad_k]
        ins = [self.x, *self.acts]
        for g, a in zip(outs, ins):
            flat = g.view(-1, g.shape[-1])
            grads += [torch.mm(flat.t(), a.reshape(-1, a.shape[-1])), flat.sum(0)]
        return tuple(grads)


def _as_function(spec: MLPField) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The MLP as a plain function f(t, y) of torch operations (anode's `ODEFunc.forward`, op for op)."""
    act = _ACTIVATION_FN[spec.activation]
    last = len(spec.weights) - 1

    def f(t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        a = torch.cat([torch.ones_like(y[:, :1]) * t.to(y.dtype), y], 1) if spec.time_dependent else y
        for i, (w, b) in enumerate(zip(spec.weights, spec.biases)):
            a = torch.nn.functional.linear(a, w, b)
            if i < last:
                a = act(a)
        return a

    return f


class _FusedSolve(torch.autograd.Function):
    """Forward: `_forward` recording a tape. Backward: `_Reverse`; or, when the backward itself is
    recorded (`create_graph=True`, e.g. a gradient penalty), the solve differentiated again by
    autograd through `solvers.rk` (the same forward bits), so that higher derivatives exist."""

    @staticmethod
    def forward(ctx, spec: MLPField, times: list[float], solver: SolverConfig, nfe: NFE, y0: torch.Tensor,
                *params: torch.Tensor) -> torch.Tensor:
        n_stages = len(ADAPTIVE_TABLEAUX[solver.method].alpha)
        key, rows = _POOL.take(spec, y0, n_stages, 2 + 8 * n_stages)
        tape = _Tape(rows, key)  # gives the rows back to the pool when freed
        with torch.inference_mode():
            out = _forward(spec, y0, times, solver, Counts(nfe), rows, tape)
        out = out.clone()
        ctx.spec, ctx.tape, ctx.times, ctx.solver, ctx.nfe = spec, tape, times, solver, nfe
        ctx.save_for_backward(y0, *params)  # autograd's version check: no in-place change before backward
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        y0, *params = ctx.saved_tensors
        if torch.is_grad_enabled():
            return (None, None, None, None, *_recorded_backward(ctx, y0, params, grad_out))
        with torch.inference_mode():
            reverse = _Reverse(ctx.spec, ctx.tape, y0)
            grad_y0 = reverse.run(grad_out.contiguous())
        # autograd stores the gradients as .grad, which later code updates in place: ordinary tensors
        # (the weight gradients are made outside inference mode, from the ordinary buffers of `_Rows`)
        grad_y0 = grad_y0.clone() if ctx.needs_input_grad[4] else None
        return (None, None, None, None, grad_y0, *reverse.weight_grads())


def _recorded_backward(ctx, y0: torch.Tensor, params: list[torch.Tensor], grad_out: torch.Tensor
                       ) -> tuple[torch.Tensor | None, ...]:
    """The backward pass as a differentiable graph: the solve recomputed by `solvers.rk` (its
    evaluations counted as backward NFE) and differentiated by autograd with `create_graph`."""
    spec = ctx.spec
    spec = MLPField(tuple(params[::2]), tuple(params[1::2]), spec.activation, spec.time_dependent)
    t = torch.tensor(ctx.times, dtype=y0.dtype, device=y0.device)
    out = integrate(_as_function(spec), y0, t, ctx.times, ctx.solver, Counts(ctx.nfe, backward=True))
    wanted = [v for v, need in zip((y0, *params), ctx.needs_input_grad[4:]) if need]
    grads = iter(torch.autograd.grad(out, wanted, grad_out, create_graph=True, allow_unused=True))
    return tuple(next(grads) if need else None for need in ctx.needs_input_grad[4:])


def solve(spec: MLPField, y0: torch.Tensor, t: torch.Tensor, solver: SolverConfig, nfe: NFE) -> torch.Tensor:
    """Integrate an MLP field with the fused solve (see the module docstring; `fusable` says when).

    Arguments:
        spec: the field's layers (from its `fused_mlp()`).
        y0: initial state [batch, features], float32/float64.
        t: 1-D strictly increasing output times, not requiring grad.
        solver: an adaptive method with tolerances, adjoint off.
        nfe: counts to update (already reset by the caller): forward calls, accepted and rejected steps.

    Returns:
        Tensor of shape `(len(t), *y0.shape)`, bitwise `solvers.rk.solve`'s.

    Raises:
        ValueError: `t` not 1-D strictly increasing with >= 2 entries, or requiring grad.
        MaxStepsExceeded, StepSizeUnderflow, NonFiniteState: the solve failed.
    """
    times = check_inputs(y0, t)
    params = spec.params
    if torch.is_grad_enabled() and (y0.requires_grad or any(p.requires_grad for p in params)):
        out = _FusedSolve.apply(spec, times, solver, nfe, y0, *params)
    else:
        n_stages = len(ADAPTIVE_TABLEAUX[solver.method].alpha)
        key, rows = _POOL.take(spec, y0, n_stages, 2 + 2 * n_stages)
        out = _forward(spec, y0, times, solver, Counts(nfe), rows, None)
        _POOL.give(key, rows)  # only after a solve that returned (an error's traceback may hold its views)
    if not all_finite(out[-1]):
        raise Failure.non_finite("forward solve")
    return out
