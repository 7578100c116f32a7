"""Module-level state of the solvers: bounded caches, the fused solve's buffer pool, and
`anode.solvers.clear_caches`, after which solves give the same bits as before."""

from __future__ import annotations

import ast
import pathlib

import pytest
import torch

import anode
from anode import SolverConfig, odesolve
from anode.models import ODEFunc
from anode.solvers import cache_info, clear_caches, fused
from anode.solvers.caches import bounded_cache

pytestmark = pytest.mark.usefixtures("single_thread")

#: The caches that hold tensors (on the state's device) between solves.
TENSOR_CACHES = (
    "anode.solvers.tableaux.tableau_tensors",
    "anode.solvers.control.tolerance_tensors",
    "anode.solvers.fused._rk_matrix",
    "anode.solvers.fused._control",
    "anode.models.block._default_times",
)


def _solves() -> list[torch.Tensor]:
    """Outputs and gradients of solves on both dtypes: a plain field (solvers.rk), an MLP field
    (the fused solve, with a backward), the adjoint, and an ODENet (its default output times)."""
    results = []
    for dtype in (torch.float32, torch.float64):
        for method in ("dopri5", "bosh3"):
            gen = torch.Generator().manual_seed(0)
            w = torch.randn(3, 3, generator=gen, dtype=dtype).requires_grad_()
            y0 = torch.randn(4, 3, generator=gen, dtype=dtype)
            t = torch.tensor([0.0, 0.5, 1.0], dtype=dtype)
            out = odesolve(lambda s, y, w=w: torch.tanh(y @ w) * (1 + s), y0, t,
                           SolverConfig(backend="anode", method=method, rtol=1e-5))
            results += [out.detach(), *torch.autograd.grad(out.square().sum(), [w])]
            for adjoint in (False, True):
                with anode.seeded(1):
                    f = ODEFunc(2, 8, augment_dim=1, time_dependent=True).to(dtype)
                y1 = torch.randn(5, 3, generator=gen, dtype=dtype).requires_grad_()
                out = odesolve(f, y1, t, SolverConfig(backend="anode", method=method, adjoint=adjoint))
                results += [out.detach(), *torch.autograd.grad(out.square().sum(), [y1, *f.parameters()])]
        with anode.seeded(2):
            model = anode.ODENet(2, 8, augment_dim=1, solver=SolverConfig(backend="anode")).to(dtype)
        pred = model(torch.randn(6, 2, generator=gen, dtype=dtype))
        results += [pred.detach(), *torch.autograd.grad(pred.square().sum(), list(model.parameters()))]
    return results


def test_caches_are_bounded_and_cleared_and_solves_are_bitwise_the_same_after() -> None:
    clear_caches()
    before = _solves()
    info = cache_info()
    for name in TENSOR_CACHES:
        assert info[name].currsize > 0, f"{name} was used"
    for name, entry in info.items():
        assert entry.maxsize is not None and 0 < entry.maxsize <= 256, name
        assert entry.currsize <= entry.maxsize, name
    assert fused._POOL.free and fused._POOL.held > 0

    clear_caches()
    assert all(entry.currsize == 0 for entry in cache_info().values())
    assert not fused._POOL.free and fused._POOL.held == 0

    after = _solves()
    assert len(after) == len(before)
    for a, b in zip(before, after):
        assert a.dtype == b.dtype and torch.equal(a, b)


def test_a_cache_keeps_at_most_its_maxsize() -> None:
    """Solves with more distinct tolerances than the tolerance cache holds: it stays at its bound."""
    clear_caches()
    y0, t = torch.ones(2, 2, dtype=torch.float64), torch.tensor([0.0, 1.0], dtype=torch.float64)
    maxsize = cache_info()["anode.solvers.control.tolerance_tensors"].maxsize
    for i in range(maxsize + 5):
        odesolve(lambda s, y: -y, y0, t, SolverConfig(backend="anode", rtol=1e-4 * (1 + i / 100), atol=1e-6))
    assert cache_info()["anode.solvers.control.tolerance_tensors"].currsize == maxsize
    clear_caches()


def test_bounded_cache_refuses_an_unbounded_size() -> None:
    for bad in (None, 0, -1, True):
        with pytest.raises(ValueError, match="maxsize"):
            bounded_cache(bad)  # type: ignore[arg-type]


def test_solvers_do_not_import_models() -> None:
    """`clear_caches` reaches models' cache by registration: the solvers never import models."""
    root = pathlib.Path(anode.solvers.__file__).parent
    for path in root.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                module = ("." * node.level) + (node.module or "")
                assert "models" not in module and "training" not in module, (path.name, module)
            elif isinstance(node, ast.Import):
                assert not any("anode.models" in a.name for a in node.names), path.name
