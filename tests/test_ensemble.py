"""Tests of anode.ensemble: R models trained together as one stacked model equal each trained alone."""

from __future__ import annotations

import copy

import pytest
import torch
from test_runner import TINY, run

import anode
from anode.data.loader import TensorLoader
from anode.data.toy import ConcentricSpheres
from anode.ensemble import (
    EnsembleTrainer,
    StackedODENet,
    ensemble_support,
    stack_models,
    trainer_support,
)
from anode.history import read_json
from anode.lab.experiments import FingerprintMismatch, parse_config
from anode.lab.experiments.fingerprint import diff_fingerprints
from anode.lab.experiments.grouping import mark_stacked, plan_groups
from anode.lab.experiments.runner import finished_runs
from anode.lab.experiments.units import RunGroup, RunUnit
from anode.training import TrainConfig, Trainer

pytestmark = pytest.mark.usefixtures("single_thread")

CASES = [  # (model class, augment_dim, augmentation)
    (anode.ODENet, 0, "zeros"),
    (anode.ODENet, 1, "zeros"),
    (anode.ODENet, 2, "learned"),
    (anode.ODENet, 2, "second_order"),
    (anode.ODEFlow, 1, "zeros"),
]


def _member(seed: int, cls=anode.ODENet, p: int = 1, augmentation: str = "zeros", *, backend: str = "anode",
            dtype: torch.dtype = torch.float32, **solver) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = cls(2, 16, augment_dim=p, augmentation=augmentation, time_dependent=True,
                solver=anode.SolverConfig(backend=backend, **solver))
    return model.to(dtype)


def _batches(size: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(size, 24, 2, generator=torch.Generator().manual_seed(7), dtype=dtype)


# ----------------------------------------------------------------------------- one solve


@pytest.mark.parametrize("backend", ["anode", "torchdiffeq"])
@pytest.mark.parametrize(("cls", "p", "augmentation"), CASES)
def test_stacked_forward_is_bitwise_each_model_alone(cls, p, augmentation, backend):
    models = [_member(s, cls, p, augmentation, backend=backend) for s in range(4)]
    x = _batches(4)
    out = StackedODENet(models)(x)
    pred, counts, failures = out.pred, out.counts, out.failures
    assert failures == [None] * 4 and out.kinetic_energy is None
    for r, model in enumerate(models):
        alone = model(x[r])
        assert torch.equal(pred[r], alone)  # same bits: same steps, same arithmetic
        assert counts[r] == {"forward": model.nfe.forward, "accepted_steps": model.nfe.accepted_steps,
                             "rejected_steps": model.nfe.rejected_steps}


@pytest.mark.parametrize(("cls", "p", "augmentation"), CASES)
def test_stacked_gradients_equal_each_model_alone(cls, p, augmentation):
    models = [_member(s, cls, p, augmentation) for s in range(3)]
    stack = StackedODENet(models)
    x = _batches(3)
    stack(x).pred.pow(2).sum().backward()
    for r, model in enumerate(models):
        model(x[r]).pow(2).sum().backward()
        for name, param in model.named_parameters():
            scale = param.grad.abs().max().item()
            assert (stack.param(name).grad[r] - param.grad).abs().max().item() <= 1e-5 * max(scale, 1e-3), name


def test_stacked_gradients_in_float64_agree_to_rounding_and_the_field_passes_gradcheck():
    models = [_member(s, dtype=torch.float64) for s in range(2)]
    stack = StackedODENet(models)
    x = _batches(2, torch.float64)[:, :5]
    stack(x).pred.sum().backward()
    for r, model in enumerate(models):
        model(x[r]).sum().backward()
        for name, param in model.named_parameters():
            torch.testing.assert_close(stack.param(name).grad[r], param.grad, rtol=1e-10, atol=1e-12)
    # The batched field itself: gradients wrt state and time (the first step's stage times carry one).
    h = stack.augment(x).detach().requires_grad_(True)
    t = torch.tensor([0.3, 0.7], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(stack.field, (t, h))


def test_stacked_resnets_are_each_resnet_alone():
    models = []
    for seed in range(3):
        torch.manual_seed(seed)
        models.append(anode.ResNet(2, 16, num_layers=3))
    x = _batches(3)
    stack = stack_models(models)
    out = stack(x)
    out.pred.sum().backward()
    for r, model in enumerate(models):
        alone = model(x[r])
        torch.testing.assert_close(out.pred[r], alone, rtol=1e-6, atol=1e-7)
        assert out.counts[r]["forward"] == model.nfe.forward == 3
        alone.sum().backward()
        for name, param in model.named_parameters():
            torch.testing.assert_close(stack.param(name).grad[r], param.grad, rtol=1e-5, atol=1e-6)


def test_every_member_keeps_its_own_steps():
    """Members with very different dynamics take different numbers of steps in one batched solve."""
    models = [_member(s) for s in range(3)]
    with torch.no_grad():
        models[2].odeblock.odefunc.fc3.weight.mul_(40.0)  # a stiff member: many more steps
    out = StackedODENet(models)(_batches(3))
    pred, counts = out.pred, out.counts
    assert counts[2]["forward"] > counts[0]["forward"] + 6  # at least one more step
    for r, model in enumerate(models):
        assert torch.equal(pred[r], model(_batches(3)[r]))
        assert counts[r]["forward"] == model.nfe.forward


def test_a_failing_member_fails_alone_and_the_others_are_untouched():
    models = [_member(s) for s in range(3)]
    with torch.no_grad():
        models[1].odeblock.odefunc.fc3.bias.fill_(float("nan"))
    x = _batches(3)
    out = StackedODENet(models)(x)
    pred, counts, failures = out.pred, out.counts, out.failures
    assert failures[0] is None and failures[2] is None
    assert isinstance(failures[1].error, anode.SolverError)
    with pytest.raises(anode.SolverError):
        models[1](x[1])
    for r in (0, 2):
        assert torch.equal(pred[r], models[r](x[r])) and counts[r]["forward"] == models[r].nfe.forward


def test_max_steps_are_counted_per_member():
    models = [_member(s, max_num_steps=3) for s in range(2)]
    with torch.no_grad():
        models[1].odeblock.odefunc.fc3.weight.mul_(60.0)
    failures = StackedODENet(models)(_batches(2)).failures
    assert failures[0] is None
    assert isinstance(failures[1].error, anode.MaxStepsExceeded)
    assert "max_num_steps" in str(failures[1].error)


def test_what_cannot_stack_is_named():
    assert ensemble_support(_member(0)) is None and ensemble_support(anode.ResNet(2, 8, num_layers=2)) is None
    assert "ConvODENet" in ensemble_support(anode.ConvODENet((1, 4, 4), 4))
    assert "adjoint" in ensemble_support(anode.ODENet(2, 8, solver=anode.SolverConfig(adjoint=True)))
    assert "rk4" in ensemble_support(anode.ODENet(2, 8, solver=anode.SolverConfig(method="rk4", step_size=0.1)))
    with pytest.raises(ValueError, match="another architecture"):
        StackedODENet([_member(0, p=1), _member(1, p=2)])
    with pytest.raises(ValueError, match="cannot be trained in a stacked ensemble: ConvODENet"):
        stack_models([anode.ConvODENet((1, 4, 4), 4)])
    with pytest.raises(ValueError, match="use StackedResNet"):
        StackedODENet([anode.ResNet(2, 8, num_layers=2)])
    with pytest.raises(ValueError, match=r"shape \[2, batch, 2\]"):
        StackedODENet([_member(0), _member(1)])(torch.zeros(3, 4, 2))


# ----------------------------------------------------------------------------- training


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    data = ConcentricSpheres(2, num_points_inner=40, num_points_outer=80, seed=0)
    return data.data, data.targets


def _trainer(seed: int, cfg: TrainConfig, **kwargs) -> Trainer:
    return Trainer(_member(seed, backend="torchdiffeq"), cfg, **kwargs)


def _loaders(seeds, x, y):
    return [TensorLoader(x, y, batch_size=32, seed=s) for s in seeds]


def test_members_trained_together_follow_their_runs_alone():
    """Losses to 1e-5 and identical NFE at every iteration over 6 epochs, and the same evaluations."""
    x, y = _data()
    cfg = TrainConfig(epochs=6, progress=False)
    seeds = [0, 1, 2]
    alone = []
    for s, loader, ev in zip(seeds, _loaders(seeds, x, y), _loaders(seeds, x, y)):
        trainer = _trainer(s, cfg)
        trainer.fit(loader, eval_loader=ev)
        alone.append(trainer.history)
    together = EnsembleTrainer([_trainer(s, cfg) for s in seeds]).fit(_loaders(seeds, x, y),
                                                                      eval_loaders=_loaders(seeds, x, y))
    for a, b in zip(alone, together):
        assert len(a.iterations) == len(b.iterations) == 6 * 4
        for ra, rb in zip(a.iterations, b.iterations):
            assert rb["nfe_forward"] == ra["nfe_forward"] and rb["iteration"] == ra["iteration"]
            assert rb["loss"] == pytest.approx(ra["loss"], rel=1e-5)
            assert rb["accuracy"] == ra["accuracy"]
        for ea, eb in zip(a.epochs, b.epochs):
            assert eb["eval_loss"] == pytest.approx(ea["eval_loss"], rel=1e-5)
            assert eb["eval_nfe_forward"] == ea["eval_nfe_forward"]


def test_a_member_whose_solve_fails_stops_and_the_others_go_on():
    x, y = _data()
    cfg = TrainConfig(epochs=2, progress=False)
    trainers = [_trainer(s, cfg) for s in range(3)]
    with torch.no_grad():
        trainers[1].model.odeblock.odefunc.fc3.bias.fill_(float("nan"))
    outcome = EnsembleTrainer(trainers).fit(_loaders(range(3), x, y))
    assert isinstance(outcome[1], anode.SolverError) and trainers[1].history.iterations == []
    alone = _trainer(0, cfg)
    alone.fit(_loaders([0], x, y)[0])
    assert [r["loss"] for r in outcome[0].iterations] == pytest.approx([r["loss"] for r in alone.history.iterations], rel=1e-5)
    assert len(outcome[2].iterations) == 8


def test_the_kinetic_energy_regulariser_trains_together_as_alone():
    x, y = _data()
    cfg = TrainConfig(epochs=3, kinetic_energy=0.01, progress=False)
    alone = []
    for s in range(2):
        trainer = _trainer(s, cfg)
        trainer.fit(_loaders([s], x, y)[0])
        alone.append(trainer.history)
    together = EnsembleTrainer([_trainer(s, cfg) for s in range(2)]).fit(_loaders(range(2), x, y))
    for a, b in zip(alone, together):
        for ra, rb in zip(a.iterations, b.iterations):
            assert rb["nfe_forward"] == ra["nfe_forward"]
            for key in ("loss", "kinetic_energy", "regularisation"):
                assert rb[key] == pytest.approx(ra[key], rel=1e-5), key


def test_members_with_their_own_weight_decay_train_as_in_groups_of_one_decay():
    """Weight decay may differ between members: each member's weights, Adam state and losses are
    bitwise those it gets in an ensemble whose members all share its decay (where the stacked Adam
    applies the decay itself, as the member's own Adam does)."""
    x, y = _data()
    decays = [0.0, 1e-2, 0.0, 1e-2, 3e-3]
    cfgs = [TrainConfig(epochs=3, weight_decay=w, progress=False) for w in decays]
    mixed = [_trainer(s, c) for s, c in enumerate(cfgs)]
    EnsembleTrainer(mixed).fit(_loaders(range(5), x, y))
    for members in ([0, 2], [1, 3], [4]):
        alike = [_trainer(r, cfgs[r]) for r in members]
        EnsembleTrainer(alike).fit(_loaders(members, x, y))
        for r, trainer in zip(members, alike):
            assert [e["loss"] for e in mixed[r].history.iterations] == [e["loss"] for e in trainer.history.iterations]
            for a, b in zip(mixed[r].model.state_dict().values(), trainer.model.state_dict().values()):
                assert torch.equal(a, b)
            for p, q in zip(mixed[r].model.parameters(), trainer.model.parameters()):
                assert torch.equal(mixed[r].optimizer.state[p]["exp_avg_sq"], trainer.optimizer.state[q]["exp_avg_sq"])
    # The decay is applied: member 1 without it ends elsewhere.
    plain = _trainer(1, TrainConfig(epochs=3, progress=False))
    EnsembleTrainer([plain]).fit(_loaders([1], x, y))
    assert plain.history.iterations[-1]["loss"] != mixed[1].history.iterations[-1]["loss"]


def test_an_ensemble_checkpoint_resumes_together_or_alone(tmp_path):
    x, y = _data()
    short, full = TrainConfig(epochs=2, progress=False), TrainConfig(epochs=4, progress=False)
    dirs = [tmp_path / f"m{s}" for s in range(2)]
    EnsembleTrainer([_trainer(s, short, out_dir=d) for s, d in zip(range(2), dirs)]).fit(_loaders(range(2), x, y))
    uninterrupted = EnsembleTrainer([_trainer(s, full) for s in range(2)]).fit(_loaders(range(2), x, y))
    resumed = EnsembleTrainer([_trainer(s, full, out_dir=d) for s, d in zip(range(2), dirs)]).fit(_loaders(range(2), x, y))
    for a, b in zip(uninterrupted, resumed):
        assert [r["loss"] for r in a.iterations] == [r["loss"] for r in b.iterations]  # exactly: same weights and Adam state
    # The same checkpoint resumed by a Trainer alone continues the member's run.
    for d in dirs:
        (d / "checkpoint.pt").unlink()
    EnsembleTrainer([_trainer(s, short, out_dir=d) for s, d in zip(range(2), dirs)]).fit(_loaders(range(2), x, y))
    alone = _trainer(1, full, out_dir=dirs[1])
    alone.fit(_loaders([1], x, y)[0])
    assert [r["loss"] for r in alone.history.iterations] == pytest.approx(
        [r["loss"] for r in uninterrupted[1].iterations], rel=1e-5)


def test_members_that_cannot_train_together_are_refused():
    x, y = _data()
    cfg = TrainConfig(epochs=1, progress=False)
    with pytest.raises(ValueError, match="at least one trainer"):
        EnsembleTrainer([])
    with pytest.raises(ValueError, match=r"other training settings than trainer 0 \(lr\)"):
        EnsembleTrainer([_trainer(0, cfg), _trainer(1, TrainConfig(epochs=1, lr=0.1, progress=False))])
    sgd = Trainer(_member(0), cfg, optimizer=lambda ps: torch.optim.SGD(ps, lr=0.1))
    assert "SGD" in trainer_support(sgd)
    with pytest.raises(ValueError, match="trainer 0 cannot train in an ensemble: optimizer SGD"):
        EnsembleTrainer([sgd])
    assert "kinetic energy only" in trainer_support(_trainer(0, TrainConfig(jacobian_norm=0.1)))
    assert trainer_support(_trainer(0, TrainConfig(kinetic_energy=0.1))) is None
    assert "custom loss" in trainer_support(_trainer(0, cfg, loss_fn=torch.nn.L1Loss()))
    ensemble = EnsembleTrainer([_trainer(0, cfg), _trainer(1, cfg)])
    short = TensorLoader(x[:40], y[:40], batch_size=32, seed=1)
    with pytest.raises(ValueError, match="different numbers of batches"):
        ensemble.fit([_loaders([0], x, y)[0], short])


def test_members_at_different_iterations_are_refused(tmp_path):
    x, y = _data()
    Trainer(_member(0), TrainConfig(epochs=1, progress=False), out_dir=tmp_path / "a").fit(_loaders([0], x, y)[0])
    cfg = TrainConfig(epochs=2, progress=False)
    ensemble = EnsembleTrainer([_trainer(0, cfg, out_dir=tmp_path / "a"), _trainer(1, cfg, out_dir=tmp_path / "b")])
    with pytest.raises(ValueError, match=r"different \(epoch, iteration\) positions \[\(0, 0\), \(1, 4\)\]"):
        ensemble.fit(_loaders([0, 1], x, y))


# ----------------------------------------------------------------------------- the experiment runner


def _config(repeats: int = 3, *extra_models: dict):
    data = copy.deepcopy(TINY)
    data.update(repeats=repeats, train={"epochs": 3, "batch_size": 32})
    data["datasets"].append({"kind": "sines", "name": "sines 2d", "num_points_upper": 45, "num_points_lower": 45})
    data["models"] += [{"name": "ResNet", "kind": "resnet", "hidden_dim": 8, "num_layers": 2}, *extra_models]
    return parse_config(data)


def test_an_experiment_trained_together_equals_it_trained_alone(tmp_path):
    cfg = _config()
    run(cfg, tmp_path / "alone", together=1)
    run(cfg, tmp_path / "together", together=8)
    results = sorted((tmp_path / "alone").glob("runs/*/*/seed-*/result.json"))
    assert len(results) == 2 * 3 * 3
    sizes = set()
    for path in results:
        a, b = read_json(path), read_json(tmp_path / "together" / path.relative_to(tmp_path / "alone"))
        assert a["status"] == b["status"] == "completed"
        changed = diff_fingerprints(a["fingerprint"], b["fingerprint"])
        assert changed == ["execution.stacked: false -> true"]
        assert b["final_loss"] == pytest.approx(a["final_loss"], rel=1e-5)
        assert b["final_nfe_forward"] == a["final_nfe_forward"] and b["iterations"] == a["iterations"]
        sizes.add((path.parts[-3], b["trained_together"]))
        for name in ("history.jsonl", "epochs.json", "checkpoint.pt", "fingerprint.json"):
            assert (tmp_path / "together" / path.parent.relative_to(tmp_path / "alone") / name).is_file()
    # Each model trains as one group over both datasets (6 runs).
    assert sizes == {("node", 6), ("anode-p-1", 6), ("resnet", 6)}
    artifacts = read_json(tmp_path / "together" / "runs" / "spheres-2d" / "node" / "seed-0" / "artifacts.json")
    assert len(artifacts["feature_snapshots"]) == 2
    # Alone and stacked runs never mix: the alone folder is refused to a stacked rerun, and back.
    with pytest.raises(FingerprintMismatch, match=r"execution.stacked: false -> true"):
        run(cfg, tmp_path / "alone", together=8)
    with pytest.raises(FingerprintMismatch, match=r"execution.stacked: true -> false"):
        run(cfg, tmp_path / "together", together=1)


def test_plan_groups_splits_evenly_and_keeps_what_cannot_stack_alone(tmp_path):
    cfg = _config(5, {"name": "NODE + Jacobian", "kind": "odenet", "hidden_dim": 8, "jacobian_norm": 0.01},
                  {"name": "NODE + weight decay", "kind": "odenet", "hidden_dim": 8, "weight_decay": 1e-3})
    units = [RunUnit(cfg, m.name, d.name, str(tmp_path / f"{d.name}-{m.name}-{r}"), r, r)
             for r in range(5) for d in cfg.datasets for m in cfg.models]
    plan = plan_groups(mark_stacked(units, together=4), together=4)
    groups = [item for item in plan if isinstance(item, RunGroup)]
    alone = [item for item in plan if isinstance(item, RunUnit)]
    # 10 runs per model -> 4 + 3 + 3; NODE with and without weight decay stack as one model: 20 -> 5 x 4
    assert sorted(len(g.units) for g in groups) == [3, 3, 3, 3, 4, 4, 4, 4, 4, 4, 4]
    assert any({u.model for u in g.units} == {"NODE", "NODE + weight decay"} for g in groups)
    assert {u.model for u in alone} == {"NODE + Jacobian"} and len(alone) == 10
    assert sum(len(g.units) for g in groups) + len(alone) == len(units)
    assert plan_groups(units, together=4) == units  # nothing marked stacked: every run alone
    assert mark_stacked(units, together=1) == units
    with pytest.raises(ValueError, match="together must be a positive integer"):
        plan_groups(units, together=0)
    with pytest.raises(ValueError, match="together must be a positive integer"):
        run(cfg, tmp_path / "x", together=0)


def test_one_batched_field_call_serves_every_member():
    """The batched solve evaluates the field once per stage for all members, as many times as the slowest needs."""
    calls = []
    models = [_member(s) for s in range(4)]
    stack = StackedODENet(models)
    field = stack.field
    stack.field = lambda t, h: calls.append(1) or field(t, h)  # type: ignore[method-assign]
    counts = stack(_batches(4)).counts
    assert len(calls) == max(c["forward"] for c in counts) < sum(c["forward"] for c in counts)


# ----------------------------------------------------------------------------- runs shared by experiments


def test_a_run_equal_to_a_finished_one_is_copied_not_trained(tmp_path):
    """The toy suite trains spheres-2d NODE/ANODE in three experiments: the second and third copy them."""
    first = _config(2)
    second_data = copy.deepcopy(TINY)
    second_data.update(name="second", repeats=2, train={"epochs": 3, "batch_size": 32},
                       models=[TINY["models"][0], {"name": "NODE wide", "kind": "odenet", "hidden_dim": 12}])
    second = parse_config(second_data)
    run(first, tmp_path / "first", together=8)
    lines: list[str] = []
    run(second, tmp_path / "second", together=8, reuse=finished_runs(tmp_path / "first"), log=lines.append)
    reused = [line for line in lines if line.startswith("[reused]")]
    assert len(reused) == 1  # seed 1's NODE; seed 0 saves artifacts, so it trains; "NODE wide" is new
    copy_dir = tmp_path / "second" / "runs" / "spheres-2d" / "node" / "seed-1"
    source = tmp_path / "first" / "runs" / "spheres-2d" / "node" / "seed-1"
    result, original = read_json(copy_dir / "result.json"), read_json(source / "result.json")
    assert result["reused_from"] == str(source) and result["experiment"] == "second"
    assert result["fingerprint_sha256"] == original["fingerprint_sha256"]
    assert result["final_loss"] == original["final_loss"]
    assert (copy_dir / "history.jsonl").read_text() == (source / "history.jsonl").read_text()
    trained = read_json(tmp_path / "second" / "runs" / "spheres-2d" / "node" / "seed-0" / "result.json")
    assert "reused_from" not in trained
    assert trained["final_loss"] == read_json(source.parent / "seed-0" / "result.json")["final_loss"]  # deterministic
