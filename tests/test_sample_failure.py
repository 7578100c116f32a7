"""What a failing sample does under per-sample step control: `SolverConfig(sample_failure="raise" | "skip")`."""

from __future__ import annotations

import math

import pytest
import torch

import anode
from anode import NFE, SolverConfig, odesolve

pytestmark = pytest.mark.usefixtures("single_thread")

F64 = torch.float64
SAMPLE = {"backend": "anode", "step_control": "sample"}
T = torch.tensor([0.0, 0.5, 2.0], dtype=F64)


class Growth:
    """dy/dt = rate_i * y^2 per sample: a sample with rate 1 and y(0) = 1 blows up at t = 1 (its step
    size underflows); a negative rate decays. Per-sample coefficients, so any subset is a batch."""

    def __init__(self, rates: list[float]) -> None:
        self.rates = torch.tensor(rates, dtype=F64)

    def __call__(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.rates.view(-1, *([1] * (y.dim() - 1))) * y * y


def _solve(rates: list[float], y0: torch.Tensor, **kwargs) -> tuple[torch.Tensor, NFE]:
    nfe = NFE()
    out = odesolve(Growth(rates), y0, T, SolverConfig(rtol=1e-6, atol=1e-6, **{**SAMPLE, **kwargs}), nfe=nfe)
    return out, nfe


def _y0(n: int) -> torch.Tensor:
    return torch.linspace(0.5, 1.0, n * 3, dtype=F64).view(n, 3).contiguous()


def test_raise_names_the_failing_sample() -> None:
    y0 = _y0(3)
    y0[1] = 1.0
    with pytest.raises(anode.SolverError, match="sample 1 of the batch"):
        _solve([-1.0, 1.0, -0.5], y0)
    with pytest.raises(anode.SolverError, match="sample 1 of the batch"):
        _solve([-1.0, 1.0, -0.5], y0, sample_failure="raise")


@pytest.mark.parametrize("max_num_steps", [1000, 25], ids=["underflow", "max_steps"])
def test_skip_returns_the_others_bitwise_and_records_the_failure(max_num_steps: int) -> None:
    y0 = _y0(4)
    y0[2] = 1.0
    rates = [-1.0, -0.3, 1.0, -2.0]
    out, nfe = _solve(rates, y0, sample_failure="skip", max_num_steps=max_num_steps)
    keep = [0, 1, 3]
    alone, nfe_alone = _solve([rates[i] for i in keep], y0[keep], max_num_steps=max_num_steps)
    assert torch.equal(out[:, keep], alone)
    assert [nfe.per_sample[i] for i in keep] == nfe_alone.per_sample
    assert [nfe.per_sample_accepted[i] for i in keep] == nfe_alone.per_sample_accepted
    assert len(nfe.failed_samples) == 1
    index, text = nfe.failed_samples[0]
    kind = "MaxStepsExceeded" if max_num_steps == 25 else "StepSizeUnderflow"
    assert index == 2 and text.startswith(f"{kind}: ")
    # the failed sample: its start kept, the outputs it did not reach NaN
    assert torch.equal(out[0, 2], y0[2]) and torch.isnan(out[-1, 2]).all()
    assert nfe.per_sample[2] > 0
    nfe.reset()
    assert nfe.failed_samples == []


def test_skip_keeps_the_outputs_a_sample_reached_before_failing() -> None:
    """Rate 1 from y(0) = 0.8 blows up at t = 1.25: it reaches t = 0.5, not t = 2."""
    y0 = torch.tensor([[0.8], [1.0]], dtype=F64)
    out, nfe = _solve([1.0, -1.0], y0, sample_failure="skip")
    assert [i for i, _ in nfe.failed_samples] == [0]
    assert math.isclose(float(out[1, 0, 0]), 0.8 / (1 - 0.8 * 0.5), rel_tol=1e-5)
    assert torch.isnan(out[2, 0]).all() and torch.isfinite(out[:, 1]).all()


def test_skip_with_a_gradient_reaches_the_other_samples() -> None:
    y0 = _y0(3).requires_grad_()
    with torch.no_grad():
        y0[1] = 1.0
    out, _ = _solve([-1.0, 1.0, -0.5], y0, sample_failure="skip")
    out[-1, [0, 2]].sum().backward()
    assert torch.isfinite(y0.grad).all() and y0.grad[[0, 2]].abs().sum() > 0


def test_skip_on_a_batch_of_one_and_with_an_mlp() -> None:
    out, nfe = _solve([1.0], torch.ones(1, 3, dtype=F64), sample_failure="skip")
    assert [i for i, _ in nfe.failed_samples] == [0] and torch.isnan(out[-1]).all()
    assert torch.equal(out[0], torch.ones(1, 3, dtype=F64))
    with pytest.raises(anode.SolverError, match="sample 0 of the batch"):
        _solve([1.0], torch.ones(1, 3, dtype=F64))
    # every sample succeeding: nothing recorded, the same numbers as under "raise"
    with anode.seeded(0):
        func = anode.ODEFunc(2, 8).double()
    x = torch.randn(5, 2, dtype=F64, generator=torch.Generator().manual_seed(1))
    nfe_skip, nfe_raise = NFE(), NFE()
    a = odesolve(func, x, T, SolverConfig(sample_failure="skip", **SAMPLE), nfe=nfe_skip)
    b = odesolve(func, x, T, SolverConfig(**SAMPLE), nfe=nfe_raise)
    assert torch.equal(a, b) and nfe_skip == nfe_raise and nfe_skip.failed_samples == []


def test_config_validation_and_fingerprint() -> None:
    with pytest.raises(ValueError, match=r"unknown sample_failure 'ignore'; valid choices: \['raise', 'skip'\]"):
        SolverConfig(sample_failure="ignore", **SAMPLE)
    with pytest.raises(ValueError, match=r"sample_failure='skip' needs step_control='sample'"):
        SolverConfig(backend="anode", sample_failure="skip")
    assert SolverConfig(sample_failure="skip", **SAMPLE).to_dict()["sample_failure"] == "skip"
    from anode.lab.experiments.fingerprint import _solver_part

    assert "sample_failure" not in _solver_part(SolverConfig(**SAMPLE))  # existing fingerprints unchanged
    assert _solver_part(SolverConfig(sample_failure="skip", **SAMPLE))["sample_failure"] == "skip"


def test_ensemble_solve_is_the_row_loop_with_the_skip_policy() -> None:
    """`ensemble_odesolve` on the member axis: a failing member is recorded, its state returned as its
    initial state, the others equal to the per-sample loop's end states."""
    from anode.ensemble import ensemble_odesolve

    y0 = _y0(3)
    y0[0] = 1.0
    rates = torch.tensor([1.0, -1.0, -0.5], dtype=F64)

    def field(t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        assert t.shape == (3,)
        return rates.view(-1, 1) * y * y

    solver = SolverConfig(backend="anode", rtol=1e-6, atol=1e-6)
    end, counts, failures = ensemble_odesolve(field, y0, solver, t_span=(0.0, 2.0))
    assert isinstance(failures[0].error, anode.StepSizeUnderflow) and failures[1:] == [None, None]
    assert torch.equal(end[0], y0[0])
    t = torch.tensor([0.0, 2.0], dtype=F64)
    nfe = NFE()
    alone = odesolve(Growth([-1.0, -0.5]), y0[1:], t, SolverConfig(rtol=1e-6, atol=1e-6, **SAMPLE), nfe=nfe)
    assert torch.equal(end[1:], alone[-1])
    assert [c["forward"] for c in counts[1:]] == nfe.per_sample
