"""`ODEBlock(compile_field=True)`: the vector field through torch.compile, NFE counted outside it."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch

import anode
from anode import ODEBlock, ODEFunc, SolverConfig

pytestmark = pytest.mark.usefixtures("single_thread")


def test_compile_field_must_be_bool() -> None:
    with pytest.raises(TypeError, match="compile_field must be True or False, got 'yes'"):
        ODEBlock(ODEFunc(2, 8), compile_field="yes")  # type: ignore[arg-type]


def test_compile_field_without_torch_compile_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(torch, "compile")
    with pytest.raises(RuntimeError, match="compile_field=True needs torch.compile"):
        ODEBlock(ODEFunc(2, 8), compile_field=True)


def test_compiled_wrapper_is_not_state() -> None:
    block = ODEBlock(ODEFunc(2, 8), compile_field=True)
    assert list(block.state_dict()) == list(ODEBlock(ODEFunc(2, 8)).state_dict())
    assert block.field() is block.field()  # built once
    block.odefunc = ODEFunc(2, 8)
    assert block.field()._orig_mod is block.odefunc  # rebuilt for a new field
    copy.deepcopy(block)
    assert pickle.loads(pickle.dumps(block))._compiled == {}


@pytest.mark.slow
@pytest.mark.skipif(not callable(getattr(torch, "compile", None)), reason="this torch has no torch.compile")
@pytest.mark.parametrize("backend", ["anode", "torchdiffeq"])
def test_compiled_field_same_nfe_and_values(backend: str) -> None:
    """Compiling takes tens of seconds on CPU (inductor), hence `slow`."""
    solver = SolverConfig(rtol=1e-3, atol=1e-3, backend=backend)
    with anode.seeded(0):
        eager = anode.ODENet(2, 16, augment_dim=3, time_dependent=True, solver=solver)
    compiled = copy.deepcopy(eager)
    compiled.odeblock.compile_field = True
    x = torch.randn(32, 2, generator=torch.Generator().manual_seed(1))
    results = []
    for model in (eager, compiled):
        out = model(x)
        out.pow(2).sum().backward()
        results.append((out.detach(), copy.copy(model.nfe), [p.grad for p in model.parameters()]))
    (out1, nfe1, g1), (out2, nfe2, g2) = results
    assert nfe1 == nfe2 and nfe1.forward > 0
    torch.testing.assert_close(out2, out1, rtol=1e-5, atol=1e-6)
    for a, b in zip(g2, g1):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
