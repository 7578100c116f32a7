"""`anode.optim.FlatAdam`: torch's Adam, bitwise, stepped over flat buffers.

Every test compares against `torch.optim.Adam` with its per-parameter loop (`foreach=False`, what
torch runs by default on a CPU and what the 2019 code stepped) with `torch.equal`: the flat update
must not change a single bit of any parameter or state entry.
"""

from __future__ import annotations

import copy
import importlib
import io

import pytest
import torch

import anode.optim
from anode.optim import FlatAdam

pytestmark = pytest.mark.usefixtures("single_thread")

#: Odd sizes on purpose: the flat buffer puts elements in other SIMD lanes than a tensor of their own.
SHAPES = [(32, 8), (32,), (33, 33), (7,), (1, 7), (1,), (5, 4, 3), (17,)]


def make_params(dtype: torch.dtype) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return [torch.randn(shape, generator=gen, dtype=dtype).requires_grad_() for shape in SHAPES]


def set_grads(groups: list[list[torch.Tensor]], step: int, dtype: torch.dtype) -> None:
    """The same gradients (of scales from 1e-8 to 1e3) into each list of parameters."""
    gen = torch.Generator().manual_seed(1000 + step)
    grads = [torch.randn(p.shape, generator=gen, dtype=dtype) * 10.0 ** float(torch.randint(-8, 4, (), generator=gen))
             for p in groups[0]]
    for params in groups:
        for p, g in zip(params, grads):
            p.grad = g.clone()


def assert_same(a: torch.optim.Optimizer, b: torch.optim.Optimizer, pa: list[torch.Tensor], pb: list[torch.Tensor]) -> None:
    for x, y in zip(pa, pb):
        assert torch.equal(x, y)
        sa, sb = a.state[x], b.state[y]
        assert sa.keys() == sb.keys()
        for key in sa:
            assert torch.equal(sa[key], sb[key]) and sa[key].dtype == sb[key].dtype, key


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("weight_decay", [0.0, 1e-2])
def test_updates_bitwise_as_torch_adam(dtype: torch.dtype, weight_decay: float) -> None:
    pa, pb = make_params(dtype), make_params(dtype)
    # two groups with their own learning rates, one changed mid-run (as a scheduler does)
    opt = FlatAdam([{"params": pa[:5]}, {"params": pa[5:], "lr": 3e-3}], lr=1e-3, weight_decay=weight_decay)
    ref = torch.optim.Adam([{"params": pb[:5]}, {"params": pb[5:], "lr": 3e-3}], lr=1e-3, weight_decay=weight_decay,
                           foreach=False)
    for step in range(60):
        set_grads([pa, pb], step, dtype)
        if step == 30:
            for o in (opt, ref):
                o.param_groups[0]["lr"] = 5e-4
        opt.step()
        ref.step()
        assert_same(opt, ref, pa, pb)
    assert 0 in opt._flat and 1 in opt._flat, "both groups took the flat path"


def test_missing_gradients_fall_back_to_torchs_step() -> None:
    """A parameter without a gradient is left alone by torch's Adam (its step count lags): that
    step is torch's own, and as the counts then differ the group stays on torch's step, bitwise."""
    pa, pb = make_params(torch.float32), make_params(torch.float32)
    opt, ref = FlatAdam(pa, lr=1e-2), torch.optim.Adam(pb, lr=1e-2, foreach=False)
    for step in range(12):
        set_grads([pa, pb], step, torch.float32)
        if step == 5:
            pa[2].grad = pb[2].grad = None
        opt.step()
        ref.step()
        assert_same(opt, ref, pa, pb)
        assert (0 in opt._flat) == (step < 5)  # flat until the missing gradient, torch's step after
    assert float(opt.state[pa[2]]["step"]) == 11 and float(opt.state[pa[0]]["step"]) == 12


@pytest.mark.parametrize("direction", ["flat-to-torch", "torch-to-flat", "flat-to-flat"])
def test_state_dict_is_torchs_and_round_trips_through_a_checkpoint(direction: str) -> None:
    """A state saved by either optimiser (as a checkpoint, loaded with weights_only=True) resumes in
    either with the updates of an uninterrupted torch Adam."""
    kinds = {"flat-to-torch": (FlatAdam, torch.optim.Adam), "torch-to-flat": (torch.optim.Adam, FlatAdam),
             "flat-to-flat": (FlatAdam, FlatAdam)}[direction]
    build = [lambda ps: FlatAdam(ps, lr=1e-2), lambda ps: torch.optim.Adam(ps, lr=1e-2, foreach=False)]
    first, then = (build[0] if k is FlatAdam else build[1] for k in kinds)
    pa, pb = make_params(torch.float32), make_params(torch.float32)
    opt, ref = first(pa), torch.optim.Adam(pb, lr=1e-2, foreach=False)
    for step in range(20):
        set_grads([pa, pb], step, torch.float32)
        if step == 10:
            buffer = io.BytesIO()
            torch.save(opt.state_dict(), buffer)
            buffer.seek(0)
            opt = then(pa)
            opt.load_state_dict(torch.load(buffer, weights_only=True))
        opt.step()
        ref.step()
    assert_same(opt, ref, pa, pb)
    assert opt.state_dict()["state"].keys() == ref.state_dict()["state"].keys()


def test_options_it_does_not_flatten_are_torchs_step() -> None:
    """A group added with amsgrad (which the flat update does not implement) steps by torch's code;
    the closure's loss is returned."""
    pa, pb = make_params(torch.float64), make_params(torch.float64)
    opt = FlatAdam(pa[:4], lr=1e-2)
    opt.add_param_group({"params": pa[4:], "amsgrad": True})
    ref = torch.optim.Adam(pb[:4], lr=1e-2, foreach=False)
    ref.add_param_group({"params": pb[4:], "amsgrad": True})
    for step in range(8):
        set_grads([pa, pb], step, torch.float64)
        assert opt.step(lambda step=step: torch.tensor(float(step))) == step
        ref.step()
        assert_same(opt, ref, pa, pb)
    assert list(opt._flat) == [0]


def test_parameters_moved_to_another_dtype_rebuild_the_buffers() -> None:
    """`module.to(dtype)` swaps a parameter's data in place: the flat buffers follow (torch's Adam
    keeps its old-dtype state, which the flat path casts like torch's `load_state_dict`)."""
    model = torch.nn.Linear(3, 2)
    opt = FlatAdam(model.parameters(), lr=1e-2)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    model.double()
    opt.zero_grad()
    model(torch.randn(4, 3, dtype=torch.float64)).sum().backward()
    opt.step()
    assert opt._flat[0].exp_avg.dtype == torch.float64
    assert all(opt.state[p]["exp_avg"].dtype == torch.float64 for p in model.parameters())


def test_bad_options_raise_torchs_errors() -> None:
    with pytest.raises(ValueError, match="Invalid learning rate"):
        FlatAdam(make_params(torch.float32), lr=-1.0)
    with pytest.raises(ValueError, match="Invalid beta parameter"):
        FlatAdam(make_params(torch.float32), lr=1e-3, betas=(1.5, 0.999))


def test_the_flat_path_is_available_with_this_torch() -> None:
    assert anode.optim.missing_private_apis() == [] and anode.optim.flat_path_available()
    assert FlatAdam(make_params(torch.float32)).flat_path


#: torch internals the flat path uses that torch's own Adam step does not need by these names: hiding
#: one leaves torch's Adam working, so the fallback can be stepped.
HIDEABLE = [("optimizer", "_get_scalar_dtype"), ("torch", "_foreach_copy_"), ("torch", "_foreach_addcdiv_")]


def _owner(kind: str) -> object:
    return importlib.import_module("torch.optim.optimizer") if kind == "optimizer" else torch


@pytest.mark.parametrize(("kind", "name"), HIDEABLE)
def test_without_a_private_api_it_is_torchs_adam(monkeypatch: pytest.MonkeyPatch, kind: str, name: str) -> None:
    """With a torch internal missing (hidden here), FlatAdam says so and steps as `torch.optim.Adam`,
    state_dict round trip included; with it back, a new FlatAdam takes the flat path again."""
    monkeypatch.delattr(_owner(kind), name)
    missing = anode.optim.missing_private_apis()
    assert any(label.endswith("." + name) for label in missing) and not anode.optim.flat_path_available()
    pa, pb = make_params(torch.float32), make_params(torch.float32)
    opt = FlatAdam([{"params": pa[:5]}, {"params": pa[5:], "lr": 3e-3}], lr=1e-3, weight_decay=1e-2)
    ref = torch.optim.Adam([{"params": pb[:5]}, {"params": pb[5:], "lr": 3e-3}], lr=1e-3, weight_decay=1e-2)
    assert not opt.flat_path
    for step in range(20):
        set_grads([pa, pb], step, torch.float32)
        if step == 10:
            saved = opt.state_dict()
            opt = FlatAdam([{"params": pa[:5]}, {"params": pa[5:]}], lr=1e-3)
            opt.load_state_dict(saved)
            assert not opt.flat_path and all(g["foreach"] is None for g in opt.param_groups)
        assert opt.step(lambda step=step: torch.tensor(float(step))) == step
        ref.step()
        for x, y in zip(pa, pb):
            torch.testing.assert_close(x, y)
            for key in ("exp_avg", "exp_avg_sq"):
                torch.testing.assert_close(opt.state[x][key], ref.state[y][key])
    assert not opt._flat
    monkeypatch.undo()
    assert FlatAdam(make_params(torch.float32)).flat_path


def test_a_missing_or_changed_init_group_is_detected(monkeypatch: pytest.MonkeyPatch) -> None:
    """`Adam._init_group` (which torch's own step needs too, so it is only checked, not stepped)."""
    monkeypatch.setattr(torch.optim.Adam, "_init_group", lambda self, group: False)  # another signature
    assert anode.optim.missing_private_apis() == ["torch.optim.Adam._init_group"]
    monkeypatch.delattr(torch.optim.Adam, "_init_group")
    assert anode.optim.missing_private_apis() == ["torch.optim.Adam._init_group"]
    assert not FlatAdam(make_params(torch.float32)).flat_path


def test_fast_path_training_matches_torch_adam_as_before() -> None:
    """A few training steps of a small model: the flat path is taken and matches torch's Adam bitwise."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    twin = copy.deepcopy(model)
    opt, ref = FlatAdam(model.parameters(), lr=1e-2), torch.optim.Adam(twin.parameters(), lr=1e-2, foreach=False)
    x = torch.randn(16, 4)
    for _ in range(10):
        for m, o in ((model, opt), (twin, ref)):
            o.zero_grad()
            m(x).square().mean().backward()
            o.step()
    assert opt.flat_path and 0 in opt._flat
    for a, b in zip(model.parameters(), twin.parameters()):
        assert torch.equal(a, b)


def _hook_log(opt: torch.optim.Optimizer, log: list[str]) -> list[object]:
    """Step hooks of every kind on `opt` (and global ones) that append to `log`; their handles."""
    optimizer = _owner("optimizer")  # (torch.optim deletes its submodules' names)
    return [
        optimizer.register_optimizer_step_pre_hook(lambda o, a, k: log.append("global pre")),
        opt.register_step_pre_hook(lambda o, a, k: log.append("pre")),
        opt.register_step_post_hook(lambda o, a, k: log.append("post")),
        optimizer.register_optimizer_step_post_hook(lambda o, a, k: log.append("global post")),
    ]


@pytest.mark.parametrize("cls", ["FlatAdam", "subclass", "torch"])
def test_step_hooks_run_once_in_torchs_order(cls: str) -> None:
    """The step hooks run as around torch's Adam: once per step (also from a subclass's own step,
    which torch wraps), global pre, pre, the step, post, global post; a pre hook may replace the
    arguments."""

    class Sub(FlatAdam):
        def step(self, closure=None):  # a subclass's own step, wrapped by torch
            return super().step(closure)

    make = {"FlatAdam": FlatAdam, "subclass": Sub, "torch": torch.optim.Adam}[cls]
    params = make_params(torch.float32)
    opt = make(params, lr=1e-3)
    log: list[str] = []
    handles = _hook_log(opt, log)
    try:
        set_grads([params], 0, torch.float32)
        opt.step()
        assert log == ["global pre", "pre", "post", "global post"]
        swap = opt.register_step_pre_hook(lambda o, a, k: ((a[0],), {"closure": lambda: torch.tensor(7.0)}))
        assert float(opt.step()) == 7.0  # the closure the pre hook put in
        swap.remove()
    finally:
        for handle in handles:
            handle.remove()


def test_zero_grad_sets_none_or_zeroes_as_torch() -> None:
    params = make_params(torch.float32)
    opt = FlatAdam(params, lr=1e-3)
    set_grads([params], 0, torch.float32)
    opt.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad.any() for p in params)
    opt.zero_grad()
    assert all(p.grad is None for p in params)


def test_under_a_profiler_step_and_zero_grad_carry_torchs_labels() -> None:
    """Without a profiler the labels are skipped (their cost); under one they are torch's."""
    params = make_params(torch.float32)
    opt = FlatAdam(params, lr=1e-3)
    set_grads([params], 0, torch.float32)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        opt.step()
        opt.zero_grad()
    names = {event.name for event in prof.events()}
    assert {"Optimizer.step#FlatAdam.step", "Optimizer.zero_grad#FlatAdam.zero_grad"} <= names
