"""Every state shape torchdiffeq accepts (0-d, 1-d, N-d; float32 and float64) on every method of the
"anode" backend, forward, backprop and adjoint, against torchdiffeq.

Forward solutions and NFE are bitwise torchdiffeq's (the anode backend repeats its floating-point
operations, as `test_backend_equality.py` asserts on random problems); gradients equal torchdiffeq's
to a few ulp of their largest entry (autograd accumulates in another order).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from anode import NFE, SolverConfig, odesolve
from anode.config import ANODE_BACKEND_METHODS

pytestmark = pytest.mark.usefixtures("single_thread")

SHAPES = [(), (1,), (5,), (3, 4), (2, 3, 2)]


class Field(nn.Module):
    """A non-linear, time-dependent field that works on any state shape (elementwise with parameters)."""

    def __init__(self, dtype: torch.dtype) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.tensor(0.7, dtype=dtype))
        self.b = nn.Parameter(torch.tensor(0.3, dtype=dtype))

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return -self.a * y + self.b * torch.sin(y + t)


def _solver(method: str, backend: str, adjoint: bool) -> SolverConfig:
    kwargs = {"rtol": 1e-5, "atol": 1e-6} if method in ("dopri5", "bosh3") else {"step_size": 0.1}
    return SolverConfig(method=method, backend=backend, adjoint=adjoint, **kwargs)


def _run(method: str, shape: tuple[int, ...], dtype: torch.dtype, backend: str, adjoint: bool
         ) -> tuple[torch.Tensor, list[torch.Tensor], NFE]:
    gen = torch.Generator().manual_seed(sum(shape) + len(shape))
    y0 = (1.0 + torch.rand(shape, generator=gen, dtype=torch.float64)).to(dtype).requires_grad_(True)
    func = Field(dtype)
    nfe = NFE()
    t = torch.tensor([0.0, 0.4, 1.3], dtype=dtype)
    out = odesolve(func, y0, t, _solver(method, backend, adjoint), nfe=nfe)
    (out * out).sum().backward()
    return out.detach(), [y0.grad, func.a.grad, func.b.grad], nfe


@pytest.mark.parametrize("adjoint", [False, True], ids=["backprop", "adjoint"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)) or "0d")
@pytest.mark.parametrize("method", ANODE_BACKEND_METHODS)
def test_every_state_shape_matches_torchdiffeq(method: str, shape: tuple[int, ...], dtype: torch.dtype,
                                               adjoint: bool) -> None:
    out_r, grads_r, nfe_r = _run(method, shape, dtype, "torchdiffeq", adjoint)
    out_a, grads_a, nfe_a = _run(method, shape, dtype, "anode", adjoint)
    assert out_a.shape == (3, *shape) and out_a.dtype == dtype
    assert torch.equal(out_a, out_r)  # the same operations: bitwise
    assert nfe_a == nfe_r
    eps = torch.finfo(dtype).eps
    for g_a, g_r in zip(grads_a, grads_r, strict=True):
        assert g_a.shape == g_r.shape
        scale = float(g_r.abs().max())
        torch.testing.assert_close(g_a, g_r, rtol=64 * eps, atol=64 * eps * scale)


def test_scalar_decay_of_the_issue() -> None:
    """The issue's example: y' = -y from y(0) = 1 on a 0-d state, dopri5 and bosh3."""
    for method in ("dopri5", "bosh3"):
        y0 = torch.tensor(1.0)
        out = odesolve(lambda t, y: -y, y0, torch.tensor([0.0, 1.0]), SolverConfig(method=method, backend="anode"))
        ref = odesolve(lambda t, y: -y, y0, torch.tensor([0.0, 1.0]), SolverConfig(method=method))
        assert out.shape == (2,)
        assert torch.equal(out, ref)
        assert abs(float(out[-1]) - 0.36787944) < 2e-2  # rtol = atol = 1e-3 per step


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("shape", SHAPES[1:], ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("method", ["dopri5", "bosh3"])
def test_per_sample_control_on_every_state_shape(method: str, shape: tuple[int, ...], dtype: torch.dtype) -> None:
    """One controller per row of the leading axis, on 1-d and N-d states: every row's solution and
    counts are bitwise those of solving it alone (batch control), and gradients flow back."""
    gen = torch.Generator().manual_seed(len(shape))
    y0 = (1.0 + 3 * torch.rand(shape, generator=gen, dtype=torch.float64)).to(dtype).requires_grad_(True)
    t = torch.tensor([0.0, 0.4, 1.3], dtype=dtype)
    func = Field(dtype)
    nfe = NFE()
    out = odesolve(func, y0, t, SolverConfig(method=method, backend="anode", rtol=1e-5, atol=1e-6,
                                             step_control="sample"), nfe=nfe)
    assert out.shape == (3, *shape) and len(nfe.per_sample) == shape[0]
    (out * out).sum().backward()
    assert torch.isfinite(y0.grad).all() and torch.isfinite(func.a.grad)
    for i in range(shape[0]):
        alone_nfe = NFE()
        alone = odesolve(func, y0.detach()[i:i + 1], t, SolverConfig(method=method, backend="anode", rtol=1e-5,
                                                                    atol=1e-6), nfe=alone_nfe)
        assert torch.equal(out.detach()[:, i:i + 1], alone)
        assert nfe.per_sample[i] == alone_nfe.forward
