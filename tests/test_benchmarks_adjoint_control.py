"""benchmarks/adjoint_control.py: its seminorm is torchdiffeq's, and its comparison runs on a small batch."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from anode import NFE, SolverConfig

pytestmark = pytest.mark.usefixtures("single_thread")

F64 = torch.float64
PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "adjoint_control.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("adjoint_control_benchmark", PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # (dataclasses resolve the module's annotations through sys.modules)
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


class SharedMu(nn.Module):
    """Van der Pol with one mu for the whole batch: dL/dmu sums over the samples, so it is the largest
    block of the adjoint state and the default norm controls it (the seminorm does not)."""

    def __init__(self) -> None:
        super().__init__()
        self.mu = nn.Parameter(torch.tensor(1.5, dtype=F64))

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x, v = y[:, 0], y[:, 1]
        return torch.stack([v, self.mu * (1 - x * x) * v - x], 1)


def _problem(bench, n: int = 32):
    y0 = torch.stack([torch.linspace(0.5, 2.0, n, dtype=F64), torch.zeros(n, dtype=F64)], 1)
    return bench.Problem(SharedMu(), y0, torch.tensor([0.0, 2.0], dtype=F64), lambda y: y.pow(2).sum())


def test_seminorm_is_torchdiffeqs(bench) -> None:
    """The benchmark's seminorm variants: the anode backend's seminorm adjoint takes torchdiffeq's backward
    steps and gives its gradients, and differs from the default norm on this problem."""
    problem = _problem(bench)
    runs = {}
    for name, backend, options in (("anode", "anode", {}), ("anode_semi", "anode", bench.SEMINORM),
                                   ("torchdiffeq", "torchdiffeq", {}), ("torchdiffeq_semi", "torchdiffeq", bench.SEMINORM)):
        nfe = NFE()
        solver = SolverConfig(rtol=1e-6, atol=1e-6, adjoint=True, backend=backend, options=options)
        grads = bench.gradients(problem, solver, nfe=nfe)
        runs[name] = (nfe.backward, nfe.backward_accepted_steps, nfe.backward_rejected_steps, grads)
    assert runs["anode_semi"][0] < runs["anode"][0]  # the problem tells the norms apart
    for ours, theirs in (("anode", "torchdiffeq"), ("anode_semi", "torchdiffeq_semi")):
        assert runs[ours][:3] == runs[theirs][:3]
        for g, h in zip(runs[ours][3], runs[theirs][3], strict=True):
            torch.testing.assert_close(g, h, rtol=1e-12, atol=1e-12)


def test_compare_prints_every_line(bench, capsys) -> None:
    problem = _problem(bench, n=4)
    ref = bench.gradients(problem, SolverConfig(rtol=1e-10, atol=1e-10, backend="anode", step_control="sample"))
    bench.compare("t_", problem, ref, repeats=1)
    lines = dict(line.split(": ", 1) for line in capsys.readouterr().out.splitlines())
    fields = ["fwd_calls", "fwd_nfe_sample_mean", "fwd_nfe_sample_max", "fwd_calls_perturbed", "bwd_calls",
              "bwd_calls_perturbed", "bwd_accepted", "bwd_rejected", "ms", "grad_theta_error", "grad_y0_error",
              "grad_y0_worst_sample_error"]
    assert list(lines) == [f"t_{v}_{f}" for v in bench.VARIANTS for f in fields]
    assert lines["t_sample_backprop_bwd_calls"] == "0" and int(lines["t_sample_joint_bwd_calls"]) > 0
    for variant in bench.VARIANTS:  # a 4-sample solve at 1e-5: gradients close to the 1e-10 reference
        assert float(lines[f"t_{variant}_grad_theta_error"]) < 1e-2
