"""A trainer that fits people's code: composed models' NFE, own optimizer/scheduler/loss,
regularisers in the loss, TensorBoard; solver options and fixed-step step counts; `anode.<subpackage>`."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_training import _model, _spheres
from torch import nn

import anode
from anode import (
    NFE,
    ODEBlock,
    ODEFunc,
    SolverConfig,
    TrainConfig,
    Trainer,
    evaluate,
    fit,
    odesolve,
)
from anode.data import TensorLoader

pytestmark = pytest.mark.usefixtures("single_thread")

ROOT = Path(__file__).resolve().parents[1]


def _config(**kwargs: object) -> TrainConfig:
    return TrainConfig(**{"epochs": 1, "lr": 1e-2, "progress": False, **kwargs})  # type: ignore[arg-type]


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    ds = _spheres()
    return ds.data[:16], ds.targets[:16]


# ---------------------------------------------------------------------------------------------
# NFE of composed models
# ---------------------------------------------------------------------------------------------


def test_nfe_of_a_sequential_with_one_block_is_the_blocks() -> None:
    with anode.seeded(0):
        model = nn.Sequential(ODEBlock(ODEFunc(2, 8, augment_dim=1)), nn.Linear(3, 1))
    history = fit(model, _spheres().loader(batch_size=48, seed=0), _config())
    block = model[0]
    assert history.iterations[-1]["nfe_forward"] == block.nfe.forward >= 14
    assert all(r["nfe_forward"] >= 14 and (r["nfe_forward"] - 2) % 6 == 0 for r in history.iterations)
    assert "nfe_forward_blocks" not in history.iterations[0]  # one block: its count is nfe_forward


def test_nfe_of_two_blocks_is_the_sum_of_the_blocks() -> None:
    with anode.seeded(0):
        first = ODEBlock(ODEFunc(2, 8, augment_dim=1))
        second = ODEBlock(nn.Sequential(), solver=SolverConfig(method="rk4", step_size=0.25))
        second.odefunc = _Tanh()
        model = nn.Sequential(first, second, nn.Linear(3, 1))
    history = fit(model, _spheres().loader(batch_size=48, seed=0), _config(), scheduler=None)
    for record in history.iterations:
        assert record["nfe_forward_blocks"][1] == 16  # rk4: 4 evaluations x 4 steps
        assert record["nfe_forward"] == sum(record["nfe_forward_blocks"])
        assert record["nfe_backward_blocks"] == [0, 0]
    assert history.iterations[-1]["nfe_forward_blocks"] == [first.nfe.forward, second.nfe.forward]
    assert evaluate(model, _spheres().loader(shuffle=False))["nfe_forward"] == first.nfe.forward + 16


class _Tanh(nn.Module):
    def forward(self, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return torch.tanh(h)


# ---------------------------------------------------------------------------------------------
# Optimizer, scheduler, loss
# ---------------------------------------------------------------------------------------------


def test_optimizer_factory_makes_the_updates() -> None:
    model = _model()
    reference = copy.deepcopy(model)
    x, y = _batch()
    trainer = Trainer(model, _config(), optimizer=lambda params: torch.optim.SGD(params, lr=0.1))
    assert isinstance(trainer.optimizer, torch.optim.SGD)
    trainer.step(x, y)
    nn.functional.huber_loss(reference(x), y).backward()
    for p, q in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(p, q - 0.1 * q.grad)


def test_optimizer_instance_and_errors() -> None:
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    assert Trainer(model, _config(), optimizer=opt).optimizer is opt
    with pytest.raises(ValueError, match="parameter\\(s\\) that are not the model's"):
        Trainer(model, _config(), optimizer=torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1))
    with pytest.raises(TypeError, match="optimizer factory must return a torch.optim.Optimizer, got int"):
        Trainer(model, _config(), optimizer=lambda params: 3)  # type: ignore[arg-type, return-value]
    with pytest.raises(TypeError, match="optimizer must be a torch.optim.Optimizer or a callable"):
        Trainer(model, _config(), optimizer="sgd")  # type: ignore[arg-type]


@pytest.mark.parametrize(("interval", "steps"), [("epoch", 3), ("iteration", 6)])
def test_scheduler_steps_per_epoch_or_iteration(interval: str, steps: int) -> None:
    trainer = Trainer(_model(), _config(epochs=3, lr=0.1),
                      scheduler=lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5),
                      scheduler_interval=interval)
    trainer.fit(_spheres().loader(batch_size=48, seed=0))  # 2 iterations per epoch
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5**steps)


def test_scheduler_errors() -> None:
    model = _model()
    other = torch.optim.SGD(_model().parameters(), lr=0.1)
    with pytest.raises(ValueError, match="the scheduler drives another optimizer"):
        Trainer(model, _config(), scheduler=torch.optim.lr_scheduler.StepLR(other, 1))
    with pytest.raises(ValueError, match="ReduceLROnPlateau is stepped with the epoch's mean loss"):
        Trainer(model, _config(), scheduler=torch.optim.lr_scheduler.ReduceLROnPlateau, scheduler_interval="iteration")
    with pytest.raises(ValueError, match=r"unknown scheduler_interval 'batch'; valid choices: \['epoch', 'iteration'\]"):
        Trainer(model, _config(), scheduler_interval="batch")
    with pytest.raises(TypeError, match="scheduler must be an LR scheduler"):
        Trainer(model, _config(), scheduler=5)


def test_reduce_on_plateau_gets_the_epoch_loss() -> None:
    trainer = Trainer(_model(), _config(epochs=2, lr=0.1), scheduler=lambda opt: torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, patience=0, threshold=10.0, threshold_mode="abs", factor=0.5))  # no epoch improves by 10: halve after the first
    trainer.fit(_spheres().loader(batch_size=48, seed=0))
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.05)


def test_own_loss_function_is_minimised_and_recorded() -> None:
    model = _model()
    x, y = _batch()
    trainer = Trainer(model, _config(), loss_fn=nn.L1Loss(), optimizer=lambda ps: torch.optim.SGD(ps, lr=0.0))
    with torch.no_grad():
        expected = float(nn.functional.l1_loss(model(x), y))
    record = trainer.step(x, y)
    assert record["loss"] == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match=r"loss_fn must return a scalar tensor .*got \(16, 1\)"):
        Trainer(model, _config(), loss_fn=nn.L1Loss(reduction="none")).step(x, y)
    with pytest.raises(TypeError, match="loss_fn must be a callable"):
        Trainer(model, _config(), loss_fn="l1")  # type: ignore[arg-type]


def test_train_config_stays_plain_data() -> None:
    cfg = TrainConfig(kinetic_energy=0.1, jacobian_norm=0.2, regulariser_seed=3, jacobian_noise="rademacher")
    assert TrainConfig(**cfg.to_dict()) == cfg and cfg.regularisers == {"kinetic_energy": 0.1, "jacobian_norm": 0.2}
    with pytest.raises(ValueError, match="kinetic_energy must be a finite weight >= 0, got -1.0"):
        TrainConfig(kinetic_energy=-1.0)
    with pytest.raises(ValueError, match=r"unknown jacobian_noise 'x'; valid choices: \['gaussian', 'rademacher'\]"):
        TrainConfig(jacobian_noise="x")
    with pytest.raises(ValueError, match="regulariser_seed must be an integer >= 0"):
        TrainConfig(regulariser_seed=-1)


# ---------------------------------------------------------------------------------------------
# Regularisers in the trainer
# ---------------------------------------------------------------------------------------------


def test_regulariser_is_added_to_the_loss_and_recorded() -> None:
    model = _model(time_dependent=True)
    reference = copy.deepcopy(model)
    x, y = _batch()
    trainer = Trainer(model, _config(kinetic_energy=0.5), optimizer=lambda ps: torch.optim.SGD(ps, lr=0.1))
    record = trainer.step(x, y)
    with reference.odeblock.regularised(kinetic_energy=True) as reg:
        pred = reference(x)
    data_loss = nn.functional.huber_loss(pred, y)
    (data_loss + 0.5 * reg["kinetic_energy"]).backward()
    assert record["loss"] == pytest.approx(float(data_loss.detach()), rel=1e-6)
    assert record["kinetic_energy"] == pytest.approx(float(reg["kinetic_energy"].detach()), rel=1e-6)
    assert record["regularisation"] == pytest.approx(0.5 * record["kinetic_energy"], rel=1e-6)
    for p, q in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(p, q - 0.1 * q.grad)
    assert model.odeblock._regularise is None  # switched off after the step


def test_jacobian_regularised_training_is_reproducible_and_sums_blocks() -> None:
    def run() -> list[dict]:
        with anode.seeded(0):
            model = nn.Sequential(ODEBlock(ODEFunc(2, 8, augment_dim=1, non_linearity="tanh")),
                                  ODEBlock(ODEFunc(3, 8, non_linearity="tanh")), nn.Linear(3, 1))
        cfg = _config(epochs=2, jacobian_norm=0.01, kinetic_energy=0.01)
        return fit(model, _spheres().loader(batch_size=48, seed=0), cfg).iterations

    first, second = run(), run()
    assert first == [{**r, "time": f["time"]} for r, f in zip(second, first)]
    for record in first:
        assert record["jacobian_norm"] > 0 and record["kinetic_energy"] > 0
        assert record["regularisation"] == pytest.approx(0.01 * (record["jacobian_norm"] + record["kinetic_energy"]))


def test_regularised_adjoint_training_runs() -> None:
    model = _model(solver=SolverConfig(adjoint=True))
    history = fit(model, _spheres().loader(batch_size=48, seed=0), _config(kinetic_energy=0.1, jacobian_norm=0.1))
    assert all(r["nfe_backward"] > 0 and r["regularisation"] > 0 for r in history.iterations)
    assert "kinetic_energy" in history.epochs[0] and "regularisation" in history.epochs[0]


def test_regulariser_needs_an_ode_block() -> None:
    with pytest.raises(ValueError, match="need ODE blocks, but the model has no anode.ODEBlock"):
        Trainer(nn.Linear(2, 1), _config(kinetic_energy=0.1))


# ---------------------------------------------------------------------------------------------
# TensorBoard
# ---------------------------------------------------------------------------------------------


def test_tensorboard_missing_is_one_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(ImportError, match=r"pip install \"anode\[tensorboard\]\""):
        Trainer(_model(), _config(), tensorboard_dir=tmp_path / "tb")


def test_tensorboard_logs_beside_the_jsonl(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    history = fit(_model(), _spheres().loader(batch_size=48, seed=0), _config(), out_dir=tmp_path / "run",
                  tensorboard_dir=tmp_path / "run" / "tensorboard")
    assert (tmp_path / "run" / "history.jsonl").exists() and len(history.iterations) == 2
    events = list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0


# ---------------------------------------------------------------------------------------------
# Solver options and fixed-step steps
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "per_step"), [("euler", 1), ("midpoint", 2), ("rk4", 4)])
@pytest.mark.parametrize(("span", "steps"), [((0.0, 1.0), 10), ((0.5, 1.0), 5)])
def test_fixed_step_methods_report_their_steps(method: str, per_step: int, span: tuple, steps: int) -> None:
    nfe = NFE()
    odesolve(lambda t, y: -y, torch.ones(2), torch.tensor(span), SolverConfig(method=method, step_size=0.1), nfe=nfe)
    assert nfe.accepted_steps == steps and nfe.rejected_steps == 0
    assert nfe.forward == per_step * steps


def test_first_step_option_reaches_the_solver() -> None:
    nfe = NFE()
    y = odesolve(lambda t, y: -y, torch.ones(2, dtype=torch.float64), torch.tensor([0.0, 1.0]),
                 SolverConfig(options={"first_step": 0.5}), nfe=nfe)
    # no initial step selection: 1 evaluation at t0 + 6 per attempted step
    assert nfe.forward == 1 + 6 * (nfe.accepted_steps + nfe.rejected_steps)
    torch.testing.assert_close(y[-1], torch.full((2,), torch.exp(torch.tensor(-1.0)).item(), dtype=torch.float64),
                               atol=1e-3, rtol=0)


def test_jump_t_option_runs() -> None:
    nfe = NFE()
    y = odesolve(lambda t, y: -y, torch.ones(2, dtype=torch.float64), torch.tensor([0.0, 1.0]),
                 SolverConfig(rtol=1e-8, atol=1e-8, options={"jump_t": [0.5], "safety": 0.8}), nfe=nfe)
    torch.testing.assert_close(y[-1], torch.full((2,), 0.36787944117144233, dtype=torch.float64), rtol=1e-6, atol=0)


def test_solver_options_are_validated_and_serialised() -> None:
    cfg = SolverConfig(adjoint=True, options={"first_step": 0.1, "adjoint_options": {"norm": "seminorm"}})
    assert cfg.to_dict()["options"] == {"first_step": 0.1, "adjoint_options": {"norm": "seminorm"}}
    assert SolverConfig(**cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match=r"unknown solver option 'foo' for the adaptive method 'dopri5'; valid choices: \['first_step'"):
        SolverConfig(options={"foo": 1})
    with pytest.raises(ValueError,
                       match=r"unknown solver option 'first_step' for the fixed-step method 'rk4'; valid choices: \['interp', 'perturb'\]"):
        SolverConfig(method="rk4", step_size=0.1, options={"first_step": 0.1})
    with pytest.raises(ValueError, match=r"options\['first_step'\] must be a finite positive number"):
        SolverConfig(options={"first_step": 0.0})
    with pytest.raises(ValueError, match="configures the adjoint solve: set adjoint=True"):
        SolverConfig(options={"adjoint_options": {"norm": "seminorm"}})
    with pytest.raises(ValueError, match=r"unknown adjoint norm 'l2'; valid choices: \['seminorm'\]"):
        SolverConfig(adjoint=True, options={"adjoint_options": {"norm": "l2"}})
    with pytest.raises(ValueError, match=r"options\['max_num_steps'\]: max_num_steps is a SolverConfig field"):
        SolverConfig(options={"max_num_steps": 10})


def test_adjoint_seminorm_gradients_match_backprop() -> None:
    x = torch.randn(4, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    grads = []
    for solver in (SolverConfig(rtol=1e-10, atol=1e-10),
                   SolverConfig(rtol=1e-10, atol=1e-10, adjoint=True, options={"adjoint_options": {"norm": "seminorm"}})):
        model = _model(solver=solver, non_linearity="tanh").double()
        model(x).pow(2).sum().backward()
        grads.append([p.grad for p in model.parameters()])
    assert model.nfe.backward > 0
    for a, b in zip(*grads):
        torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-8)


# ---------------------------------------------------------------------------------------------
# import anode
# ---------------------------------------------------------------------------------------------


def test_subpackages_reachable_after_import_anode_and_lazy() -> None:
    code = ("import sys, anode; assert 'matplotlib' not in sys.modules and 'anode.data' not in sys.modules; "
            "d = anode.data.ConcentricSpheres(2, num_points_inner=4, num_points_outer=4, seed=0); "
            "assert anode.models.ODENet and anode.lab.experiments.load_config and anode.plotting.plot_trajectories; "
            "print(len(d.data))")
    env = {"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "8"
    with pytest.raises(AttributeError, match="module 'anode' has no attribute 'nope'"):
        anode.nope  # noqa: B018


def test_tensor_loader_is_reexported() -> None:
    assert anode.data.TensorLoader is TensorLoader


def test_resume_with_scheduler_and_jacobian_noise_matches_uninterrupted_run(tmp_path: Path) -> None:
    def run(epochs: int, out: Path, seed: int = 0) -> tuple[Trainer, list[dict]]:
        trainer = Trainer(_model(seed=seed), _config(epochs=epochs, jacobian_norm=0.01), out_dir=out,
                          optimizer=lambda ps: torch.optim.SGD(ps, lr=0.05),
                          scheduler=lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5))
        history = trainer.fit(_spheres().loader(batch_size=48, seed=3))
        return trainer, [{k: v for k, v in r.items() if k != "time"} for r in history.iterations]

    full_trainer, full = run(3, tmp_path / "full")
    run(1, tmp_path / "split")
    resumed_trainer, resumed = run(3, tmp_path / "split", seed=123)  # the checkpoint wins over the new weights
    assert resumed == full
    assert resumed_trainer.optimizer.param_groups[0]["lr"] == full_trainer.optimizer.param_groups[0]["lr"] == 0.05 / 8
