"""What a failing sample does under per-sample step control: `SolverConfig(sample_failure="skip" | "raise")`
("skip", the default, lets the others go on; training stops before the optimiser step, evaluation
leaves the sample out), and under batch control (a failure stops the batch whatever the policy)."""

from __future__ import annotations

import math

import pytest
import torch

import anode
from anode import NFE, SolverConfig, odesolve
from anode.data.loader import TensorLoader

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
    with pytest.raises(anode.StepSizeUnderflow, match=r"^sample 1 of the batch \(step_control='sample'\): "):
        _solve([-1.0, 1.0, -0.5], y0, sample_failure="raise")


def test_the_default_is_skip() -> None:
    """The default: the failing sample is recorded with its typed error and NaN outputs, the others
    are bitwise what they give solved alone."""
    assert SolverConfig().sample_failure == "skip" and SolverConfig(**SAMPLE).sample_failure == "skip"
    y0 = _y0(3)
    y0[1] = 1.0
    out, nfe = _solve([-1.0, 1.0, -0.5], y0)
    alone, _ = _solve([-1.0, -0.5], y0[[0, 2]])
    assert torch.equal(out[:, [0, 2]], alone)
    assert torch.isnan(out[-1, 1]).all() and torch.equal(out[0, 1], y0[1])
    assert [i for i, _ in nfe.failed_samples] == [1]
    assert nfe.failed_samples[0][1].startswith("StepSizeUnderflow: the solver's step size underflowed")


@pytest.mark.parametrize("max_num_steps", [1000, 25], ids=["underflow", "max_steps"])
def test_skip_returns_the_others_bitwise_and_records_the_failure(max_num_steps: int) -> None:
    y0 = _y0(4)
    y0[2] = 1.0
    rates = [-1.0, -0.3, 1.0, -2.0]
    out, nfe = _solve(rates, y0, max_num_steps=max_num_steps)  # the default: "skip"
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
    out, nfe = _solve([1.0, -1.0], y0)
    assert [i for i, _ in nfe.failed_samples] == [0]
    assert math.isclose(float(out[1, 0, 0]), 0.8 / (1 - 0.8 * 0.5), rel_tol=1e-5)
    assert torch.isnan(out[2, 0]).all() and torch.isfinite(out[:, 1]).all()


def test_skip_with_a_gradient_reaches_the_other_samples() -> None:
    y0 = _y0(3).requires_grad_()
    with torch.no_grad():
        y0[1] = 1.0
    out, _ = _solve([-1.0, 1.0, -0.5], y0)
    out[-1, [0, 2]].sum().backward()
    assert torch.isfinite(y0.grad).all() and y0.grad[[0, 2]].abs().sum() > 0


def test_skip_on_a_batch_of_one_and_with_an_mlp() -> None:
    out, nfe = _solve([1.0], torch.ones(1, 3, dtype=F64))
    assert [i for i, _ in nfe.failed_samples] == [0] and torch.isnan(out[-1]).all()
    assert torch.equal(out[0], torch.ones(1, 3, dtype=F64))
    with pytest.raises(anode.SolverError, match="sample 0 of the batch"):
        _solve([1.0], torch.ones(1, 3, dtype=F64), sample_failure="raise")
    # every sample succeeding: nothing recorded, the same numbers as under "raise"
    with anode.seeded(0):
        func = anode.ODEFunc(2, 8).double()
    x = torch.randn(5, 2, dtype=F64, generator=torch.Generator().manual_seed(1))
    nfe_skip, nfe_raise = NFE(), NFE()
    a = odesolve(func, x, T, SolverConfig(**SAMPLE), nfe=nfe_skip)
    b = odesolve(func, x, T, SolverConfig(sample_failure="raise", **SAMPLE), nfe=nfe_raise)
    assert torch.equal(a, b) and nfe_skip == nfe_raise and nfe_skip.failed_samples == []


def test_config_validation_and_fingerprint() -> None:
    with pytest.raises(ValueError, match=r"unknown sample_failure 'ignore'; valid choices: \['raise', 'skip'\]"):
        SolverConfig(sample_failure="ignore", **SAMPLE)
    # either policy under batch control (where a failure stops the batch whatever it says)
    for policy in ("raise", "skip"):
        config = SolverConfig(backend="anode", sample_failure=policy)
        assert SolverConfig(**config.to_dict()) == config
    assert SolverConfig(sample_failure="raise", **SAMPLE).to_dict()["sample_failure"] == "raise"
    from anode.lab.experiments.fingerprint import _solver_part

    # existing fingerprints unchanged: batch control never records the policy, per-sample control at the default
    assert "sample_failure" not in _solver_part(SolverConfig(**SAMPLE))
    assert "sample_failure" not in _solver_part(SolverConfig(sample_failure="raise"))
    assert "sample_failure" not in _solver_part(SolverConfig(sample_failure="skip"))
    assert _solver_part(SolverConfig(sample_failure="raise", **SAMPLE))["sample_failure"] == "raise"


@pytest.mark.parametrize("policy", ["skip", "raise"])
def test_batch_control_stops_the_batch_whatever_the_policy(policy: str) -> None:
    """One controller for the batch: a sample's failure is every sample's, and the message says so."""
    y0 = _y0(3)
    y0[1] = 1.0
    solver = SolverConfig(rtol=1e-6, atol=1e-6, backend="anode", sample_failure=policy)
    with pytest.raises(anode.StepSizeUnderflow, match=r"Under step_control='batch' the 3 samples share one step size, "
                                                      r"so a failure stops the batch; .*step_control='sample'"):
        odesolve(Growth([-1.0, 1.0, -0.5]), y0, T, solver)
    with pytest.raises(anode.StepSizeUnderflow) as single:  # one sample: nothing to add
        odesolve(Growth([1.0]), y0[1:2], T, solver)
    assert "step_control='batch'" not in str(single.value)


def test_experiment_json_writes_the_policy_only_when_not_the_default() -> None:
    import dataclasses

    from anode.lab.experiments import parse_config
    from anode.lab.experiments.config import ExperimentConfig

    base = parse_config(_experiment_data())
    assert isinstance(base, ExperimentConfig) and base.solver.sample_failure == "skip"
    assert "sample_failure" not in base.to_dict()["solver"]
    for solver in (SolverConfig(sample_failure="raise"), SolverConfig(sample_failure="raise", **SAMPLE)):
        config = dataclasses.replace(base, solver=solver)
        data = config.to_dict()
        assert data["solver"]["sample_failure"] == "raise"
        assert parse_config(data).solver == solver
    # an experiment.json without the key (made before, under batch control) reads as the default
    old = base.to_dict()
    assert "sample_failure" not in old["solver"] and parse_config(old).solver == SolverConfig(**old["solver"])


def _experiment_data() -> dict:
    return {"name": "tiny",
            "datasets": [{"kind": "spheres", "name": "s", "dim": 2, "num_points_inner": 8, "num_points_outer": 8}],
            "models": [{"name": "NODE", "kind": "odenet", "hidden_dim": 4}]}


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


# ----------------------------------------------------------------------------- training and evaluation


class Square(torch.nn.Module):
    """dy/dt = w y^2 (w = 1): from y(0) = x > 0 the solve blows up at t = 1 / x, so over [0, 1] a
    sample with x > 1 fails (its step size underflows) and the others do not."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones((), dtype=F64))

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.w * y * y


def _model(**solver) -> torch.nn.Module:
    with anode.seeded(0):
        block = anode.ODEBlock(Square(), solver=SolverConfig(rtol=1e-6, atol=1e-6, **{**SAMPLE, **solver}))
        return torch.nn.Sequential(block, torch.nn.Linear(1, 1).double())


X = torch.tensor([[-0.5], [2.0], [0.3], [0.6]], dtype=F64)  # sample 1 fails
Y = torch.tensor([[-1.0], [1.0], [1.0], [-1.0]], dtype=F64)
KEEP = [0, 2, 3]


def _trainer(model: torch.nn.Module) -> anode.Trainer:
    return anode.Trainer(model, anode.TrainConfig(loss="mse", lr=0.1, epochs=1, progress=False))


def test_a_training_step_with_a_failed_sample_raises_before_the_optimiser_step() -> None:
    model = _model()
    trainer = _trainer(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(anode.StepSizeUnderflow, match=r"^training iteration 0: the forward solve failed for sample\(s\) "
                                                      r"\[1\] of the batch .*no weight was changed.*"
                                                      r"sample_failure='raise'"):
        trainer.step(X, Y)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not trainer.optimizer.state and all(p.grad is None for p in model.parameters())
    assert trainer.iteration == 0 and trainer.history.iterations == []
    # the same through fit; and a batch of samples that all succeed trains
    with pytest.raises(anode.StepSizeUnderflow, match=r"sample\(s\) \[1\]"):
        _trainer(_model()).fit(TensorLoader(X, Y, batch_size=4, shuffle=False))
    record = trainer.step(X[KEEP], Y[KEEP])
    assert math.isfinite(record["loss"]) and all(bool(torch.isfinite(p).all()) for p in model.parameters())


def test_a_training_step_under_raise_stops_in_the_solve() -> None:
    with pytest.raises(anode.StepSizeUnderflow, match=r"^sample 1 of the batch \(step_control='sample'\)"):
        _trainer(_model(sample_failure="raise")).step(X, Y)


def test_evaluation_leaves_failed_samples_out_and_counts_them() -> None:
    model = _model()
    metrics = anode.evaluate(model, [(X, Y)], loss="mse")
    clean = anode.evaluate(model, [(X[KEEP], Y[KEEP])], loss="mse")
    assert metrics["failed_samples"] == 1 and "failed_samples" not in clean
    assert metrics["loss"] == pytest.approx(clean["loss"], rel=1e-12) and metrics["accuracy"] == clean["accuracy"]
    assert math.isfinite(metrics["loss"])
    # over two batches, the count adds up; every sample failing leaves nothing to evaluate
    assert anode.evaluate(model, [(X, Y), (X[1:2], Y[1:2])], loss="mse")["failed_samples"] == 2
    with pytest.raises(anode.StepSizeUnderflow, match=r"^evaluation: .*sample\(s\) \[0\].*every sample evaluated \(1 in all\)"):
        anode.evaluate(model, [(X[1:2], Y[1:2])], loss="mse")
    with pytest.raises(anode.StepSizeUnderflow, match="sample 1 of the batch"):
        anode.evaluate(_model(sample_failure="raise"), [(X, Y)], loss="mse")


def test_a_trainer_records_the_failed_samples_of_its_evaluation() -> None:
    trainer = _trainer(_model())
    trainer.fit(TensorLoader(X[KEEP], Y[KEEP], batch_size=3, shuffle=False),
                eval_loader=TensorLoader(X, Y, batch_size=4, shuffle=False))
    (epoch,) = trainer.history.epochs
    assert epoch["eval_failed_samples"] == 1 and math.isfinite(epoch["eval_loss"])


def test_an_ensemble_member_with_a_failed_sample_stops_with_its_error_alone() -> None:
    """Stacked training, per-sample control: a member one of whose samples fails stops before its
    optimiser step with the error its own Trainer raises; the other member trains on."""
    from anode.ensemble import EnsembleTrainer

    x = torch.randn(8, 2, generator=torch.Generator().manual_seed(7)) * 3
    y = torch.sign(x[:, :1])

    def trainer(scale: float) -> anode.Trainer:
        with anode.seeded(0):
            model = anode.ODENet(2, 16, augment_dim=1, time_dependent=True,
                                 solver=SolverConfig(max_num_steps=3, **SAMPLE))
        with torch.no_grad():
            model.odeblock.odefunc.fc3.weight.mul_(scale)  # x 5: sample 3 needs more than 3 steps
        return anode.Trainer(model, anode.TrainConfig(epochs=1, progress=False))

    alone = trainer(5.0)
    with pytest.raises(anode.MaxStepsExceeded, match=r"^training iteration 0: .*sample\(s\) \[3\]") as raised:
        alone.step(x, y)
    members = [trainer(1.0), trainer(5.0)]
    outcome = EnsembleTrainer(members).fit([TensorLoader(x, y, batch_size=8, shuffle=False) for _ in members])
    assert isinstance(outcome[0], anode.History) and len(outcome[0].iterations) == 1
    assert type(outcome[1]) is anode.MaxStepsExceeded and str(outcome[1]) == str(raised.value)
    assert members[1].history.iterations == []


def test_fit_density_stops_before_the_optimiser_step_on_a_failed_point() -> None:
    from anode.training import fit_density

    model = anode.CNF(Square(), dim=1, solver=SolverConfig(rtol=1e-6, atol=1e-6, **SAMPLE))
    with pytest.raises(anode.StepSizeUnderflow, match=r"^training iteration 0: .*sample\(s\) \[\d\] of the batch"):
        fit_density(model, X, iterations=1, batch_size=4, lr=0.1, seed=0)
    assert float(model.odefunc.w.detach()) == 1.0 and model.odefunc.w.grad is None
    records = fit_density(model, X[KEEP], iterations=1, batch_size=3, lr=0.1, seed=0)
    assert math.isfinite(records[0]["loss"]) and float(model.odefunc.w.detach()) != 1.0
