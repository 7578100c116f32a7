"""Training: Prop. 1 in miniature, per-iteration history, evaluation, files, determinism,
exact resume from checkpoints, and solver failures during training."""

from __future__ import annotations

import json
import pickle
import threading
import time
from pathlib import Path

import pytest
import torch
from torch import nn

import anode
from anode import ODEBlock, ODEFunc, ODENet, SolverConfig, TrainConfig, Trainer, evaluate, load_checkpoint
from anode.data import ConcentricSpheres, Data1D
from anode.history import ITERATION_FIELDS
from anode.optim import FlatAdam
from anode.training import RESUME_FREE_KEYS, resume_conflicts

pytestmark = pytest.mark.usefixtures("single_thread")

REQUIRED_FIELDS = {"iteration", "epoch", "loss", "nfe_forward", "nfe_backward", "time"}


def _spheres() -> ConcentricSpheres:
    return ConcentricSpheres(2, num_points_inner=32, num_points_outer=64, seed=1)


def _model(seed: int = 0, **kwargs: object) -> ODENet:
    with anode.seeded(seed):
        return ODENet(2, 16, augment_dim=1, **kwargs)  # type: ignore[arg-type]


def _config(**kwargs: object) -> TrainConfig:
    return TrainConfig(**{"epochs": 2, "lr": 1e-2, "progress": False, **kwargs})  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Proposition 1 in miniature: a 1-D flow cannot represent x -> -x; one augmented dimension can
# ---------------------------------------------------------------------------------------------


def _train_flow_only(p: int, seed: int, iterations: int = 80) -> float:
    data = Data1D(64, target_flip=True, seed=0)
    x, y = data.data, data.targets
    with anode.seeded(seed):
        block = ODEBlock(ODEFunc(1, 16, augment_dim=p))  # no linear layer: prediction = h(1)[:, 0]
    opt = torch.optim.Adam(block.parameters(), lr=1e-2)
    for _ in range(iterations):
        opt.zero_grad()
        nn.functional.mse_loss(block(x)[:, :1], y).backward()
        opt.step()
    with torch.no_grad():
        return float(nn.functional.mse_loss(block(x)[:, :1], y))


@pytest.mark.parametrize("seed", [0, 1])
def test_prop1_node_cannot_flip(seed: int) -> None:
    assert _train_flow_only(p=0, seed=seed) >= 0.9


@pytest.mark.parametrize("seed", [0, 1])
def test_prop1_anode_can_flip(seed: int) -> None:
    assert _train_flow_only(p=1, seed=seed) < 0.05


# ---------------------------------------------------------------------------------------------
# History
# ---------------------------------------------------------------------------------------------


def test_history_records_every_iteration() -> None:
    ds = _spheres()
    loader = ds.loader(batch_size=32, seed=0)  # 3 batches per epoch
    seen = []
    trainer = Trainer(_model(), _config(epochs=2), callback=lambda tr, rec: seen.append(rec))
    history = trainer.fit(loader)
    assert len(history.iterations) == 6 == trainer.iteration == len(seen)
    assert seen == history.iterations
    fields = set(ITERATION_FIELDS)
    assert fields >= REQUIRED_FIELDS
    for i, rec in enumerate(history.iterations):
        assert set(rec) == fields
        assert rec["iteration"] == i and rec["epoch"] == i // 3
        assert rec["loss"] > 0 and rec["time"] > 0
        assert rec["nfe_forward"] >= 14 and (rec["nfe_forward"] - 2) % 6 == 0  # dopri5: 2 + 6 k
        assert rec["nfe_backward"] == 0
        if "accuracy" in rec:  # batch accuracy, where recorded
            assert 0.0 <= rec["accuracy"] <= 1.0
    assert len(history.epochs) == 2 == trainer.epoch
    for e, summary in enumerate(history.epochs):
        records = history.iterations[3 * e: 3 * e + 3]
        assert summary["epoch"] == e and summary["iterations"] == 3
        for key in fields - {"iteration", "epoch"}:
            assert summary[key] == pytest.approx(sum(r[key] for r in records) / 3)
    assert list(history.array("loss")) == [r["loss"] for r in history.iterations]
    with pytest.raises(KeyError, match="recorded fields"):
        history.array("eval_loss")


def test_loss_decreases_and_model_is_updated() -> None:
    ds = _spheres()
    model = _model()
    before = [p.detach().clone() for p in model.parameters()]
    history = Trainer(model, _config(epochs=6)).fit(ds.loader(batch_size=32, seed=0), eval_loader=ds.loader(shuffle=False))
    assert all(not torch.equal(b, p) for b, p in zip(before, model.parameters()))
    losses = history.epoch_array("loss")
    assert losses[-1] < losses[0]
    assert "eval_loss" in history.epochs[-1] and "eval_accuracy" in history.epochs[-1]


def test_adjoint_training_records_backward_nfe() -> None:
    ds = _spheres()
    history = Trainer(_model(solver=SolverConfig(adjoint=True)), _config(epochs=1)).fit(ds.loader(batch_size=48))
    backward = history.array("nfe_backward")
    assert len(backward) == 2 and (backward > 0).all()
    assert ((backward - 2) % 6 == 0).all()


def test_max_iterations_stops_early() -> None:
    history = Trainer(_model(), _config(epochs=5, max_iterations=4)).fit(_spheres().loader(batch_size=32))
    assert len(history.iterations) == 4
    assert [e["iterations"] for e in history.epochs] == [3, 1]


# ---------------------------------------------------------------------------------------------
# evaluate
# ---------------------------------------------------------------------------------------------


class _Spy(nn.Module):
    """Records the mode and grad state it was called in."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.calls: list[tuple[bool, bool]] = []

    @property
    def nfe(self) -> anode.NFE:
        return self.inner.nfe

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append((self.training, torch.is_grad_enabled()))
        return self.inner(x)


@pytest.mark.parametrize("start_training", [True, False])
def test_evaluate(start_training: bool) -> None:
    ds = _spheres()
    spy = _Spy(_model())
    spy.train(start_training)
    metrics = evaluate(spy, ds.loader(batch_size=40, shuffle=False), loss="mse")
    assert spy.calls == [(False, False)] * 3  # eval mode, no grad, every batch
    assert spy.training is start_training  # mode restored
    assert spy.inner.training is start_training
    with torch.no_grad():
        pred = spy.inner(ds.data)
    assert metrics["loss"] == pytest.approx(float(nn.functional.mse_loss(pred, ds.targets)), rel=1e-5)
    expected_acc = float((torch.sign(pred) == ds.targets).float().mean())
    assert metrics["accuracy"] == pytest.approx(expected_acc)
    assert metrics["nfe_forward"] >= 14


def test_evaluate_cross_entropy_accuracy() -> None:
    class Fixed(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    x = torch.tensor([[2.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 1.0], [5.0, 0.0, 0.0]])
    y = torch.tensor([0, 1, 0, 2])
    metrics = evaluate(Fixed(), [(x, y)], loss="cross_entropy")
    assert metrics["accuracy"] == 0.5
    assert metrics["loss"] == pytest.approx(float(nn.functional.cross_entropy(x, y)))
    assert metrics["nfe_forward"] == 0


def test_evaluate_errors() -> None:
    with pytest.raises(ValueError, match="unknown loss 'l1'"):
        evaluate(_model(), [], loss="l1")
    with pytest.raises(ValueError, match="empty loader"):
        evaluate(_model(), [])


# ---------------------------------------------------------------------------------------------
# TrainConfig
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kwargs", "match"), [
    (dict(loss="l1"), r"unknown loss 'l1'; valid choices: \['huber', 'mse', 'cross_entropy'\]"),
    (dict(epochs=0), "epochs must be a positive integer"),
    (dict(lr=0.0), "lr must be a finite positive number"),
    (dict(lr=float("nan")), "lr must be a finite positive number"),
    (dict(weight_decay=-1.0), "weight_decay must be a finite number >= 0"),
    (dict(max_iterations=0), "max_iterations must be a positive integer or None"),
])
def test_train_config_validation(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kwargs)


def test_trainer_needs_train_config() -> None:
    with pytest.raises(TypeError, match="config must be an anode.TrainConfig"):
        Trainer(_model(), {"epochs": 1})  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Files, determinism and resume
# ---------------------------------------------------------------------------------------------


def test_output_files(tmp_path: Path) -> None:
    out = tmp_path / "run"
    trainer = Trainer(_model(), _config(epochs=2), out_dir=out, extra_state={"name": "spheres"})
    history = trainer.fit(_spheres().loader(batch_size=32), eval_loader=_spheres().loader(shuffle=False))
    lines = (out / "history.jsonl").read_text().splitlines()
    assert len(lines) == len(history.iterations) == 6
    assert [json.loads(line) for line in lines] == history.iterations
    assert json.loads((out / "epochs.json").read_text()) == history.epochs
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs"] == 2 and summary["iterations"] == 6
    assert summary["final_loss"] == pytest.approx(history.epochs[-1]["loss"])
    assert summary["num_parameters"] == anode.count_parameters(trainer.model)
    assert summary["name"] == "spheres"
    assert set(summary["eval"]) >= {"loss", "accuracy"}
    loaded = anode.History.load(out)
    assert loaded.iterations == history.iterations and loaded.epochs == history.epochs
    assert (out / "checkpoint.pt").exists()
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]  # atomic writes left no debris


def _run(seed: int, epochs: int, out_dir: Path | None = None, resume: bool = True) -> anode.History:
    trainer = Trainer(_model(seed), _config(epochs=epochs), out_dir=out_dir)
    return trainer.fit(_spheres().loader(batch_size=32, seed=5), resume=resume)


def _key(history: anode.History) -> list[tuple[float, int, int]]:
    return [(r["loss"], r["nfe_forward"], r["nfe_backward"]) for r in history.iterations]


def test_same_seed_same_history() -> None:
    a, b, c = _run(0, 2), _run(0, 2), _run(1, 2)
    assert _key(a) == _key(b)
    assert _key(a) != _key(c)


@pytest.mark.parametrize("weight_decay", [0.0, 1e-3])
def test_default_optimizer_updates_bitwise_as_torchs_default_adam(weight_decay: float) -> None:
    """The Trainer's Adam (`anode.optim.FlatAdam`) gives exactly the updates of torch's per-parameter
    Adam (the numbers of earlier anode versions and of the 2019 code's optimiser): only faster."""
    runs = []
    for optimizer in (None, lambda ps: torch.optim.Adam(ps, lr=1e-2, weight_decay=weight_decay, foreach=False)):
        model = _model(0)
        trainer = Trainer(model, _config(epochs=3, weight_decay=weight_decay), optimizer=optimizer)
        runs.append((trainer.fit(_spheres().loader(batch_size=32, seed=5)), model, trainer.optimizer))
    (history, model, opt), (ref_history, ref_model, ref_opt) = runs
    assert isinstance(opt, FlatAdam) and opt._flat and ref_opt.param_groups[0]["foreach"] is False
    assert [r["loss"] for r in history.iterations] == [r["loss"] for r in ref_history.iterations]
    for a, b in zip(model.parameters(), ref_model.parameters()):
        assert torch.equal(a, b)
        assert torch.equal(opt.state[a]["exp_avg_sq"], ref_opt.state[b]["exp_avg_sq"])


def test_resume_matches_uninterrupted_run(tmp_path: Path) -> None:
    full = _run(0, 4, tmp_path / "full")
    _run(0, 2, tmp_path / "split")
    state = load_checkpoint(tmp_path / "split" / "checkpoint.pt")
    assert state["epoch"] == 2 and state["iteration"] == 6
    # The resumed trainer starts from a differently initialised model: the checkpoint must win.
    resumed_trainer = Trainer(_model(seed=123), _config(epochs=4), out_dir=tmp_path / "split")
    resumed = resumed_trainer.fit(_spheres().loader(batch_size=32, seed=5))
    assert len(resumed.iterations) == 12 and resumed_trainer.epoch == 4
    assert _key(resumed) == _key(full)
    assert [r["iteration"] for r in resumed.iterations] == list(range(12))
    lines = (tmp_path / "split" / "history.jsonl").read_text().splitlines()
    assert len(lines) == 12
    full_state = load_checkpoint(tmp_path / "full" / "checkpoint.pt")["model"]
    for name, value in resumed_trainer.model.state_dict().items():
        assert torch.equal(value, full_state[name]), name
    # the run's wall time and segments carry over the resume
    summary = json.loads((tmp_path / "split" / "summary.json").read_text())
    assert summary["segments"] == 2 and state["segments"] == 1
    assert summary["elapsed"] >= state["elapsed"] + sum(r["time"] for r in resumed.iterations[6:])
    assert json.loads((tmp_path / "full" / "summary.json").read_text())["segments"] == 1


def test_elapsed_stops_with_fit_and_adds_up_over_fits() -> None:
    """`elapsed` is the time spent inside `fit`: read after `fit` returned it stays put (a runner
    timing the call around `fit` always measures at least as much), and a second `fit` adds to it."""
    trainer = Trainer(_model(0), _config(epochs=1))
    assert trainer.elapsed == 0.0
    started = time.perf_counter()
    trainer.fit(_spheres().loader(batch_size=32, seed=5))
    around = time.perf_counter() - started
    after = trainer.elapsed
    time.sleep(0.02)
    assert trainer.elapsed == after and 0 < after <= around
    trainer.fit(_spheres().loader(batch_size=32, seed=5))  # nothing left to train: a short second segment
    assert trainer.elapsed > after and trainer.segments == 2


@pytest.mark.parametrize("stop_at", [4, 6], ids=["mid-epoch", "epoch-end"])
def test_stop_request_checkpoints_where_it_stands_and_resumes_exactly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                     stop_at: int) -> None:
    """`request_stop` (e.g. on SIGTERM at a GPU window's end) checkpoints after the current iteration,
    mid-epoch with the epoch's batch order, and raises `TrainingInterrupted` (not an `Exception`, so
    failure handlers pass it on); the resumed run equals the uninterrupted one bit for bit."""
    eval_loader = _spheres().loader(shuffle=False)
    full_trainer = Trainer(_model(0), _config(epochs=3), out_dir=tmp_path / "full")
    full = full_trainer.fit(_spheres().loader(batch_size=32, seed=5), eval_loader=eval_loader)

    def stop(trainer: Trainer, record: dict) -> None:
        if trainer.iteration == stop_at:  # 3 batches an epoch: iteration 4 is inside epoch 2, 6 ends it
            anode.request_stop()

    stopped = Trainer(_model(0), _config(epochs=3), out_dir=tmp_path / "split", callback=stop)
    with pytest.raises(anode.TrainingInterrupted, match=r"stopped on request after .*checkpoint\.pt resumes it"):
        stopped.fit(_spheres().loader(batch_size=32, seed=5), eval_loader=eval_loader)
    assert not issubclass(anode.TrainingInterrupted, Exception)
    state = load_checkpoint(tmp_path / "split" / "checkpoint.pt")
    assert (state["iteration"], state["epoch"], state["epoch_position"]) == (stop_at, stop_at // 3, stop_at % 3)
    assert not (tmp_path / "split" / "summary.json").exists()  # the run is not finished
    assert not stopped.stop_event.is_set()  # the request was answered: the next fit runs on
    resumed_trainer = Trainer(_model(seed=123), _config(epochs=3), out_dir=tmp_path / "split")
    resumed = resumed_trainer.fit(_spheres().loader(batch_size=32, seed=5), eval_loader=eval_loader)
    assert _key(resumed) == _key(full) and resumed_trainer.iteration == 9
    strip = ("time",)
    assert [{k: v for k, v in e.items() if k not in strip} for e in resumed.epochs] == \
        [{k: v for k, v in e.items() if k not in strip} for e in full.epochs]  # epoch means over both segments
    for a, b in zip(resumed_trainer.model.parameters(), full_trainer.model.parameters()):
        assert torch.equal(a, b)
    # without an out_dir, the same trainer's next fit continues from where it stopped, with the same batches
    in_memory, loader = Trainer(_model(0), _config(epochs=3), callback=stop), _spheres().loader(batch_size=32, seed=5)
    with pytest.raises(anode.TrainingInterrupted, match="nothing was saved"):
        in_memory.fit(loader, eval_loader=eval_loader)
    in_memory.callback = None
    assert _key(in_memory.fit(loader, eval_loader=eval_loader)) == _key(full)


def test_mid_epoch_checkpoint_needs_a_loader_that_restores_its_order(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:

    def stop(trainer: Trainer, record: dict) -> None:
        anode.request_stop()

    with pytest.raises(anode.TrainingInterrupted):
        Trainer(_model(0), _config(epochs=3), out_dir=tmp_path, callback=stop).fit(
            _spheres().loader(batch_size=32, seed=5))
    batches = list(_spheres().loader(batch_size=32, seed=5))  # a plain list: no state_dict
    with pytest.raises(ValueError, match=r"saved 1 batches into an epoch.*TensorLoader\); got list"):
        Trainer(_model(0), _config(epochs=3), out_dir=tmp_path).fit(batches)
    # such a loader is stopped at the end of its epoch instead
    trainer = Trainer(_model(0), _config(epochs=3), out_dir=tmp_path / "list", callback=stop)
    with pytest.raises(anode.TrainingInterrupted, match="after epoch 1;"):
        trainer.fit(batches)
    assert load_checkpoint(tmp_path / "list" / "checkpoint.pt")["epoch_position"] == 0 and trainer.iteration == 3


def test_a_stop_request_is_the_trainers_own() -> None:
    """`Trainer.request_stop` stops that trainer alone; `anode.request_stop` asks the trainers fitting
    now and leaves no request behind for a later fit (no process-wide stop flag)."""
    bystander = Trainer(_model(0), _config(epochs=2))
    seen: list[int] = []

    def stop_self(trainer: Trainer, record: dict) -> None:
        if trainer.iteration == 2:
            seen.append(anode.request_stop())  # the fitting trainers: only this one
            trainer.request_stop()

    stopped = Trainer(_model(0), _config(epochs=2), callback=stop_self)
    with pytest.raises(anode.TrainingInterrupted, match="nothing was saved"):
        stopped.fit(_spheres().loader(batch_size=32, seed=5))
    assert seen == [1] and stopped.iteration == 2 and not stopped.stop_event.is_set()
    assert not bystander.stop_event.is_set()
    bystander.fit(_spheres().loader(batch_size=32, seed=5))
    assert bystander.iteration == 6  # 3 batches x 2 epochs: untouched by the other trainer's request
    assert anode.request_stop() == 0  # nobody is fitting: nothing is asked, and nothing is left pending
    again = Trainer(_model(0), _config(epochs=1))
    again.fit(_spheres().loader(batch_size=32, seed=5))
    assert again.iteration == 3
    shared = threading.Event()
    pair = [Trainer(_model(0), _config(epochs=1), stop_event=shared) for _ in range(2)]
    pair[0].request_stop()
    assert pair[1].stop_event.is_set()  # one shared event stops both


def test_resume_refuses_changed_result_settings(tmp_path: Path) -> None:
    _run(0, 1, tmp_path)
    changed = _config(epochs=2, lr=0.1, loss="mse")
    trainer = Trainer(_model(), changed, out_dir=tmp_path)
    with pytest.raises(ValueError, match=r"cannot resume from .*checkpoint\.pt: .*lr: 0\.01 -> 0\.1; loss: 'huber' -> 'mse'.*"
                       r"Start a fresh run \(delete the checkpoint / use --fresh\) or resume with the original settings"):
        trainer.fit(_spheres().loader(batch_size=32, seed=5))
    assert trainer.iteration == 0 and trainer.history.iterations == []  # nothing restored, nothing trained
    for key, value in (("weight_decay", 1e-4), ("eval_every", 2)):
        with pytest.raises(ValueError, match=rf"{key}: .* -> {value!r}"):
            Trainer(_model(), _config(**{key: value}), out_dir=tmp_path).fit(_spheres().loader(batch_size=32, seed=5))


def test_resume_applies_current_budget_and_bookkeeping(tmp_path: Path) -> None:
    assert RESUME_FREE_KEYS == {"epochs", "max_iterations", "checkpoint_every", "progress"}
    _run(0, 1, tmp_path)
    trainer = Trainer(_model(), _config(epochs=3, max_iterations=7, checkpoint_every=2, progress=False), out_dir=tmp_path)
    history = trainer.fit(_spheres().loader(batch_size=32, seed=5))
    assert trainer.iteration == 7 and len(history.iterations) == 7  # the new budget applies
    assert load_checkpoint(tmp_path / "checkpoint.pt")["train_config"]["max_iterations"] == 7
    assert resume_conflicts({"lr": 0.01, "epochs": 1}, _config(epochs=5)) == []  # missing keys count as defaults
    assert resume_conflicts({"lr": 0.01, "loss": "mse"}, _config()) == ["loss: 'mse' -> 'huber'"]


def test_resume_false_starts_over(tmp_path: Path) -> None:
    _run(0, 1, tmp_path)
    history = _run(0, 1, tmp_path, resume=False)
    assert len(history.iterations) == 3 and history.iterations[0]["iteration"] == 0


def test_checkpoint_is_weights_only(tmp_path: Path) -> None:
    trainer = Trainer(_model(), _config(epochs=1), out_dir=tmp_path)
    trainer.fit(_spheres().loader(batch_size=32))
    raw = torch.load(tmp_path / "checkpoint.pt", weights_only=True)  # loads without arbitrary pickles
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert state["format"] == raw["format"] == 1
    assert state["anode_version"] == anode.__version__
    assert state["train_config"] == trainer.config.to_dict()
    for name, value in trainer.model.state_dict().items():
        assert torch.equal(state["model"][name], value)
    assert isinstance(state["loader"]["generator"], torch.Tensor)


def test_load_checkpoint_rejects_other_torch_files(tmp_path: Path) -> None:
    path = tmp_path / "weights.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, path)
    with pytest.raises(ValueError, match="is not an anode checkpoint"):
        load_checkpoint(path)
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "missing.pt")


class _Payload:
    """Unpickling this would create a marker file: a weights-only load must refuse it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.marker,))


def test_load_checkpoint_does_not_execute_pickles(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"format": 1, "payload": _Payload(marker)}, path)
    with pytest.raises((ValueError, pickle.UnpicklingError)):
        load_checkpoint(path)
    assert not marker.exists()


@pytest.mark.parametrize("kind", ["text", "empty", "module"])
def test_load_checkpoint_rejects_non_checkpoint_files(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "file.pt"
    if kind == "text":
        path.write_text("not a checkpoint\n")
    elif kind == "empty":
        path.write_bytes(b"")
    else:
        torch.save(nn.Linear(2, 2), path)
    with pytest.raises(ValueError, match="is not an anode checkpoint"):
        load_checkpoint(path)


# ---------------------------------------------------------------------------------------------
# Solver failures during training
# ---------------------------------------------------------------------------------------------


def test_adjoint_backward_failure_surfaces_as_solver_error() -> None:
    # The forward solve (rtol 1e-3) fits in 5 steps; the adjoint solve (rtol 1e-9) cannot.
    solver = SolverConfig(adjoint=True, max_num_steps=5, adjoint_rtol=1e-9, adjoint_atol=1e-9)
    model = _model(solver=solver)
    ds = _spheres()
    model(ds.data)  # forward alone succeeds
    trainer = Trainer(model, _config())
    with pytest.raises(anode.MaxStepsExceeded, match="during the backward pass") as info:
        trainer.step(ds.data, ds.targets)
    assert isinstance(info.value, anode.SolverError)
    assert model.nfe.backward > 0


def test_forward_failure_in_fit_keeps_records() -> None:
    model = _model()
    trainer = Trainer(model, _config(epochs=3))
    ds = _spheres()
    calls = {"n": 0}

    def explode_after_two(tr: Trainer, rec: dict) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            tr.model.odeblock.solver = SolverConfig(rtol=1e-9, atol=1e-9, max_num_steps=1)

    trainer.callback = explode_after_two
    with pytest.raises(anode.SolverError, match="during the forward solve"):
        trainer.fit(ds.loader(batch_size=32))
    assert len(trainer.history.iterations) == 2
