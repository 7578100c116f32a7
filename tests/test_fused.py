"""The fused MLP solve (`anode.solvers.fused`) against `solvers.rk`, the path it replaces.

The fused solve's forward pass repeats rk's floating-point operations, so solutions, accepted and
rejected steps and NFE must be bitwise rk's; its hand-written backward must give rk's autograd
gradients up to the order of accumulation (float64: 1e-10 relative; float32: 1e-5), including
the paths through the initial step size h (stage coefficients, stage times, dense output) and
with respect to y0. `tests/test_backend_equality.py` checks both against torchdiffeq.
"""

from __future__ import annotations

import copy
import itertools
import threading
import types

import pytest
import torch
from torch import nn

import anode
from anode import NFE, ODEFunc, SolverConfig, odesolve
from anode.solvers import fused
from anode.solvers.base import MaxStepsExceeded

pytestmark = pytest.mark.usefixtures("single_thread")

F64 = torch.float64


class Spy:
    """Counts calls of `fused.solve` (to know the fused path ran) and can switch it off."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        self.monkeypatch = monkeypatch
        original = fused.solve

        def counted(*args, **kwargs):
            self.calls += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(fused, "solve", counted)

    def disable(self) -> None:
        self.monkeypatch.setattr(fused, "fusable", lambda *args: None)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max()) / max(float(b.abs().max()), 1e-30)


def random_problem(i: int, dtype: torch.dtype) -> tuple[ODEFunc, torch.Tensor, torch.Tensor, SolverConfig]:
    """Seeded random MLP field, state, output times and tolerances: every activation, with and
    without time, y0 with and without gradient, one or several output times, start times other
    than 0, and scales that force rejected steps."""
    gen = torch.Generator().manual_seed(100 + i)
    nl = ("relu", "tanh", "softplus")[i % 3]
    p = i % 4
    with anode.seeded(200 + i):
        f = ODEFunc(2, 16 + 8 * (i % 3), augment_dim=p, time_dependent=bool(i % 2), non_linearity=nl).to(dtype)
    gain = float(torch.empty(()).uniform_(1.0, 3.0, generator=gen))  # stiffer fields: more and rejected steps
    with torch.no_grad():
        for w in (f.fc1.weight, f.fc2.weight, f.fc3.weight):
            w.mul_(gain)
    scale = float(torch.empty(()).uniform_(0.5, 8.0, generator=gen))
    y0 = (scale * torch.randn(12, 2 + p, generator=gen, dtype=F64)).to(dtype).requires_grad_(i % 3 != 1)
    start = 0.0 if i % 5 else 0.5
    t = torch.tensor([start, start + 1.0] if i % 4 else [start, start + 0.2, start + 0.7, start + 1.3], dtype=dtype)
    tol = 10.0 ** -float(torch.empty(()).uniform_(2.0, 7.0, generator=gen))
    return f, y0, t, SolverConfig(backend="anode", method="bosh3" if i % 6 == 5 else "dopri5", rtol=tol, atol=tol)


def solve_and_grad(f: nn.Module, y0: torch.Tensor, t: torch.Tensor, solver: SolverConfig
                   ) -> tuple[torch.Tensor, NFE, list[torch.Tensor]]:
    nfe = NFE()
    out = odesolve(f, y0, t, solver, nfe=nfe)
    weight = torch.randn(out.shape, generator=torch.Generator().manual_seed(7), dtype=F64).to(out.dtype)
    inputs = ([y0] if y0.requires_grad else []) + list(f.parameters())
    return out.detach(), nfe, list(torch.autograd.grad((out * weight).sum(), inputs))


def steps(n: NFE) -> tuple[int, int, int]:
    return n.forward, n.accepted_steps, n.rejected_steps


@pytest.mark.parametrize(("dtype", "n_cases", "tolerance"), [(F64, 60, 1e-10), (torch.float32, 40, 1e-5)],
                         ids=["float64", "float32"])
def test_same_solution_steps_and_gradients_as_rk(monkeypatch: pytest.MonkeyPatch, dtype: torch.dtype,
                                                 n_cases: int, tolerance: float) -> None:
    spy = Spy(monkeypatch)
    results = []
    for i in range(n_cases):
        f, y0, t, solver = random_problem(i, dtype)
        results.append(solve_and_grad(f, y0, t, solver))
    assert spy.calls == n_cases
    spy.disable()
    worst, rejected, long = 0.0, 0, 0
    for i, (out, nfe, grads) in enumerate(results):
        f, y0, t, solver = random_problem(i, dtype)
        ref_out, ref_nfe, ref_grads = solve_and_grad(f, y0, t, solver)
        assert steps(nfe) == steps(ref_nfe), i
        assert nfe.backward == 0
        assert torch.equal(out, ref_out), i  # the same operations: the same bits
        for g, r in zip(grads, ref_grads, strict=True):
            worst = max(worst, rel(g, r))
            assert rel(g, r) <= tolerance, (i, rel(g, r))
        rejected += nfe.rejected_steps > 0
        long += nfe.accepted_steps > 8  # past the first block of stored rows: the tape grew
    assert spy.calls == n_cases  # the second round ran rk
    assert rejected >= 3 and long >= 3, (rejected, long)
    print(f"\n{dtype}: worst gradient difference {worst:.1e} over {n_cases} problems "
          f"({rejected} with rejected steps, {long} with more than 8 steps)")


def test_no_grad_solve_equals_recorded_solve() -> None:
    """Without a tape the solve reuses two blocks of rows in turn; same bits and counts."""
    for i in range(12):
        f, y0, t, solver = random_problem(i, F64)
        with_grad, nfe_grad, _ = solve_and_grad(f, y0, t, solver)
        nfe = NFE()
        with torch.no_grad():
            out = odesolve(f, y0, t, solver, nfe=nfe)
        assert torch.equal(out, with_grad) and steps(nfe) == steps(nfe_grad)


def test_device_arithmetic_path_equal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Off the CPU, stage coefficients and times are device tensor ops and the dense output stays in
    torch; forced here on the CPU, the fused solve must give the same bits and gradients."""
    from anode.solvers import rk

    results = [solve_and_grad(*random_problem(i, F64)) for i in range(8)]
    monkeypatch.setattr(rk, "_host_arrays", lambda device: False)
    for i, (out, nfe, grads) in enumerate(results):
        dev_out, dev_nfe, dev_grads = solve_and_grad(*random_problem(i, F64))
        assert torch.equal(dev_out, out) and steps(dev_nfe) == steps(nfe)
        assert all(rel(a, b) <= 1e-12 for a, b in zip(dev_grads, grads, strict=True))


def test_double_backward_equals_rk(monkeypatch: pytest.MonkeyPatch) -> None:
    """create_graph=True (a gradient penalty) differentiates the solve again through rk."""
    spy = Spy(monkeypatch)

    def penalty_grads() -> list[torch.Tensor]:
        f, y0, t, solver = random_problem(3, F64)
        y0 = y0.detach().requires_grad_(True)
        nfe = NFE()
        out = odesolve(f, y0, t, solver, nfe=nfe)
        (g,) = torch.autograd.grad(out.pow(2).sum(), y0, create_graph=True)
        return list(torch.autograd.grad(g.pow(2).sum(), list(f.parameters())))

    fused_grads = penalty_grads()
    assert spy.calls == 1
    spy.disable()
    for a, b in zip(fused_grads, penalty_grads(), strict=True):
        assert rel(a, b) <= 1e-10


def test_weights_changed_in_place_before_backward_raise() -> None:
    f, y0, t, solver = random_problem(0, F64)
    out = odesolve(f, y0, t, solver)
    with torch.no_grad():
        f.fc2.weight.add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.sum().backward()


def test_solver_failures_are_typed() -> None:
    f, y0, t, _ = random_problem(0, F64)
    with pytest.raises(MaxStepsExceeded, match="max_num_steps"):
        odesolve(f, y0, t, SolverConfig(backend="anode", rtol=1e-10, atol=1e-10, max_num_steps=2))


class _Shifted(ODEFunc):
    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return super().forward(t, x) + 1.0


@pytest.mark.parametrize("case", ["subclass", "hook", "adjoint", "fixed_step", "dtype", "softplus_beta", "linear_swapped",
                                  "autocast"])
def test_fields_and_settings_it_does_not_take(monkeypatch: pytest.MonkeyPatch, case: str) -> None:
    """Whatever the fused solve would compute differently goes through rk (same numbers as ever)."""
    spy = Spy(monkeypatch)
    f, y0, t, solver = random_problem(2, F64)
    if case == "subclass":
        f = _Shifted(2, 16, augment_dim=2).double()
    elif case == "hook":
        f.fc2.register_forward_hook(lambda module, args, out: out * 2)
    elif case == "adjoint":
        solver = SolverConfig(backend="anode", adjoint=True)
    elif case == "fixed_step":
        solver = SolverConfig(backend="anode", method="rk4", step_size=0.1)
    elif case == "dtype":
        f = f.float()
    elif case == "softplus_beta":
        f.non_linearity = nn.Softplus(beta=2.0)
    else:
        f.fc3 = nn.Sequential(nn.Linear(f.fc3.in_features, f.fc3.out_features)).double()
    if case == "dtype":
        with pytest.raises(RuntimeError):  # rk: float64 state through a float32 field
            odesolve(f, y0, t, solver)
    elif case == "autocast":  # the layers run in bfloat16 under autocast: rk, as the module computes
        f, y0 = f.float(), y0.detach().float()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            odesolve(f, y0, t.float(), solver)
    else:
        odesolve(f, y0.detach(), t, solver)
    assert spy.calls == 0
    assert f.fused_mlp() is None or case in ("adjoint", "fixed_step", "dtype", "autocast")


class _OwnMLP(nn.Module):
    """A field of the user's own that opts into the fused solve through `fused_mlp()`."""

    def __init__(self, widths: list[int], activation: str) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(widths))
        self.activation = activation

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        act = {"relu": torch.relu, "tanh": torch.tanh}[self.activation]
        for i, layer in enumerate(self.layers):
            y = layer(y) if i == len(self.layers) - 1 else act(layer(y))
        return y

    def fused_mlp(self) -> fused.MLPField:
        return fused.MLPField(tuple(m.weight for m in self.layers), tuple(m.bias for m in self.layers),
                              self.activation, False)


@pytest.mark.parametrize("widths", [[3, 3], [3, 16, 3], [3, 8, 8, 8, 3]], ids=["1-layer", "2-layers", "4-layers"])
def test_other_depths_through_the_protocol(monkeypatch: pytest.MonkeyPatch, widths: list[int]) -> None:
    def run() -> tuple[torch.Tensor, NFE, list[torch.Tensor]]:
        with anode.seeded(5):
            f = _OwnMLP(widths, "tanh" if len(widths) % 2 else "relu").double()
        y0 = torch.randn(10, 3, generator=torch.Generator().manual_seed(1), dtype=F64).requires_grad_(True)
        return solve_and_grad(f, y0, torch.tensor([0.0, 0.5, 1.0], dtype=F64),
                              SolverConfig(backend="anode", rtol=1e-6, atol=1e-6))

    spy = Spy(monkeypatch)
    out, nfe, grads = run()
    assert spy.calls == 1
    spy.disable()
    ref_out, ref_nfe, ref_grads = run()
    assert torch.equal(out, ref_out) and steps(nfe) == steps(ref_nfe)
    assert all(rel(a, b) <= 1e-10 for a, b in zip(grads, ref_grads, strict=True))


def test_field_description_follows_the_module() -> None:
    f = ODEFunc(2, 8, augment_dim=1, time_dependent=True, non_linearity="tanh")
    spec = f.fused_mlp()
    assert spec is f.fused_mlp()  # built once
    assert spec.activation == "tanh" and spec.time_dependent
    assert spec.params == tuple(f.parameters())
    f.fc1.weight = nn.Parameter(torch.zeros_like(f.fc1.weight))
    assert f.fused_mlp().weights[0] is f.fc1.weight  # a replaced parameter is picked up
    f.non_linearity = nn.ReLU()
    assert f.fused_mlp().activation == "relu"


def test_mlp_field_validation() -> None:
    w, b = torch.zeros(4, 3), torch.zeros(4)
    with pytest.raises(ValueError, match="unknown activation 'gelu'.*relu"):
        fused.MLPField((w,), (b,), "gelu", False)
    with pytest.raises(ValueError, match="one bias per weight"):
        fused.MLPField((w, w), (b,), "relu", False)
    with pytest.raises(ValueError, match="layer 1 takes 3 inputs but layer 0 gives 4"):
        fused.MLPField((w, w), (b, b), "relu", False)
    with pytest.raises(ValueError, match="do not form a linear layer"):
        fused.MLPField((w,), (torch.zeros(3),), "relu", False)


def test_training_follows_rk(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fifteen Adam steps of a float64 ANODE: the same NFE every step, losses within 1e-9."""

    def train() -> tuple[list[float], list[int]]:
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(32, 2, generator=gen, dtype=F64)
        y = torch.where(x.norm(dim=1, keepdim=True) < 1.0, -1.0, 1.0)
        with anode.seeded(0):
            model = anode.ODENet(2, 16, augment_dim=3, time_dependent=True,
                                 solver=SolverConfig(backend="anode", rtol=1e-4, atol=1e-4)).double()
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        losses, nfes = [], []
        for _ in range(15):
            opt.zero_grad()
            loss = nn.functional.smooth_l1_loss(model(x), y)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            nfes.append(model.nfe.forward)
        return losses, nfes

    spy = Spy(monkeypatch)
    losses, nfes = train()
    assert spy.calls == 15
    spy.disable()
    ref_losses, ref_nfes = train()
    assert nfes == ref_nfes
    assert max(abs(a - b) for a, b in zip(losses, ref_losses)) <= 1e-9
    assert losses[-1] < losses[0]


def test_deepcopied_field_is_fused_with_its_own_weights() -> None:
    f, y0, t, solver = random_problem(4, F64)
    g = copy.deepcopy(f)
    with torch.no_grad():
        g.fc3.bias.add_(0.5)
    assert g.fused_mlp().biases[-1] is g.fc3.bias
    assert not torch.equal(odesolve(f, y0.detach(), t, solver), odesolve(g, y0.detach(), t, solver))


def _grads_alone(f: ODEFunc, y0: torch.Tensor, t: torch.Tensor, solver: SolverConfig) -> list[torch.Tensor]:
    """The gradients of one solve with a pool that holds nothing (fresh buffers)."""
    fused._POOL.clear()
    return solve_and_grad(f, y0, t, solver)[2]


def test_pooled_buffers_serve_overlapping_solves_exactly() -> None:
    """Buffers are reused between solves (`fused._Pool`), never while a graph still needs them:
    two solves recorded before either backward, a graph backpropagated twice with another solve
    in between, and a no-grad solve under inference mode in between all give the gradients of each
    solve alone, bitwise."""
    problems = [random_problem(i, F64) for i in (0, 3)]
    alone = [_grads_alone(*p) for p in problems]
    fused._POOL.clear()
    outs = [odesolve(f, y0, t, solver) for f, y0, t, solver in problems]  # both graphs alive
    for k, ((f, y0, _, _), out, expected) in enumerate(zip(problems, outs, alone)):
        weight = torch.randn(out.shape, generator=torch.Generator().manual_seed(7), dtype=F64)
        loss = (out * weight).sum()
        inputs = ([y0] if y0.requires_grad else []) + list(f.parameters())
        first = torch.autograd.grad(loss, inputs, retain_graph=True)
        with torch.inference_mode():  # takes pooled buffers meanwhile, writes them in inference mode
            for g, y, s, solver in problems:
                odesolve(g, y.detach(), s, solver)
        odesolve(*problems[1 - k])  # another graph, dropped at once
        second = torch.autograd.grad(loss, inputs)
        for a, b, c in zip(first, second, expected):
            assert torch.equal(a, c) and torch.equal(b, c)
    assert fused._POOL.free, "the solves gave their buffers back"


def test_pool_is_bounded() -> None:
    fused._POOL.clear()
    f = ODEFunc(2, 8)
    for batch in range(1, 3 * fused._POOL.keys):
        for _ in range(3):
            odesolve(f, torch.randn(batch, 2), torch.tensor([0.0, 1.0]), SolverConfig(backend="anode"))
    assert len(fused._POOL.free) == fused._POOL.keys
    assert all(len(kept) <= fused._POOL.per_key for kept in fused._POOL.free.values())
    assert all(key[3] == (batch, 2) for key, batch in zip(reversed(fused._POOL.free), range(3 * fused._POOL.keys - 1, 0, -1)))
    kept = [rows for entries in fused._POOL.free.values() for rows in entries]
    assert fused._POOL.held == sum(rows.nbytes for rows in kept) <= fused._POOL.max_bytes
    fused._POOL.clear()
    assert not fused._POOL.free and fused._POOL.held == 0


def test_pool_is_bounded_in_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pool keeps at most `max_bytes` of buffers (dropping the oldest shapes first) and never a
    `_Rows` larger than that; solves with a small pool give the same bits as with the default one."""
    f, y0, t, solver = random_problem(0, F64)
    with torch.no_grad():
        fused._POOL.clear()
        expected = odesolve(f, y0, t, solver)
        (rows,) = fused._POOL.free[next(iter(fused._POOL.free))]
        size = rows.nbytes
        assert fused._POOL.held == size > 0
        monkeypatch.setattr(fused._POOL, "max_bytes", size - 1)  # too small to keep one
        fused._POOL.clear()
        assert torch.equal(odesolve(f, y0, t, solver), expected)
        assert fused._POOL.held == 0 and not any(fused._POOL.free.values())
        monkeypatch.setattr(fused._POOL, "max_bytes", 2 * size)  # room for two of these buffers
        fused._POOL.clear()
        for batch in (10, 11, 12):  # (buffers proportional to the batch: 10 + 11 + 12 > 2 * 12)
            odesolve(f, torch.randn(batch, y0.shape[1], dtype=F64), t, solver)
            assert fused._POOL.held <= 2 * size
        assert [key[3][0] for key, kept in fused._POOL.free.items() if kept] == [11, 12], "the oldest dropped first"
        assert torch.equal(odesolve(f, y0, t, solver), expected)
    fused._POOL.clear()


def test_weights_given_new_storage_are_followed(monkeypatch: pytest.MonkeyPatch) -> None:
    """`param.data = ...` (what `module.to` and `vector_to_parameters` do) gives a weight new storage
    behind the same Parameter: the fused solve uses the new values, as rk does."""
    f, y0, t, solver = random_problem(2, F64)
    spy = Spy(monkeypatch)
    with torch.no_grad():
        odesolve(f, y0, t, solver)  # the evaluator is made and kept
        for p in f.parameters():
            p.data = p.data * 0.5  # new storage
        fused_out = odesolve(f, y0, t, solver)
        spy.disable()
        rk_out = odesolve(f, y0, t, solver)
    assert spy.calls == 2 and torch.equal(fused_out, rk_out)


def test_a_field_that_has_solved_can_be_deep_copied() -> None:
    """The solve's caches on the field (its description and evaluator) do not stop `copy.deepcopy`
    of a trained model, and the copy solves with its own weights."""
    f, y0, t, solver = random_problem(1, F64)
    odesolve(f, y0, t, solver).sum().backward()
    twin = copy.deepcopy(f)
    with torch.no_grad():
        for p in twin.parameters():
            p.mul_(0.5)
        assert not torch.equal(odesolve(twin, y0, t, solver), odesolve(f, y0, t, solver))
        reference = copy.deepcopy(twin)
        reference.__dict__.pop("_fused", None)
        assert torch.equal(odesolve(twin, y0, t, solver), odesolve(reference, y0, t, solver))


def test_pool_gives_back_from_within_its_own_lock() -> None:
    """The garbage collector can free a tape (which gives its rows back) while this thread is inside
    the pool's lock: the lock is reentrant, so that does not deadlock."""
    pool = fused._Pool()
    rows = types.SimpleNamespace(nbytes=0)
    done = threading.Event()

    def nested() -> None:
        with pool.lock:
            pool.give(("key",), rows)  # type: ignore[arg-type]
        done.set()

    thread = threading.Thread(target=nested, daemon=True)
    thread.start()
    thread.join(10)
    assert done.is_set() and pool.free[("key",)] == [rows]
