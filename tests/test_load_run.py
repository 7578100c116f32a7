"""`anode.load_run`: trained runs (toy, image, stacked ensemble, lab runner) come back with
bit-identical predictions; models rebuild from their architecture; clear refusals."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import anode
from anode.data import TensorLoader
from anode.ensemble import EnsembleTrainer
from anode.models import architecture_of, build_from_architecture

pytestmark = pytest.mark.usefixtures("single_thread")

CFG = anode.TrainConfig(epochs=1, max_iterations=2, progress=False)


def _toy(seed: int = 0, n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=g)
    return x, torch.sign(x[:, :1])


def _images(n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 1, 8, 8, generator=g), torch.arange(n) % 10


def _predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(x)


def test_toy_odenet_run_loads_with_identical_predictions(tmp_path) -> None:
    x, y = _toy()
    with anode.seeded(1):
        model = anode.ODENet(2, 8, augment_dim=1)
    trainer = anode.Trainer(model, CFG, out_dir=tmp_path, extra_state={"seed": 1})
    trainer.fit(TensorLoader(x, y, batch_size=8, seed=0))
    before = _predict(model, x)
    run = anode.load_run(tmp_path)
    assert isinstance(run, anode.TrainedRun)
    assert type(run.model) is anode.ODENet and not run.model.training
    assert torch.equal(_predict(run.model, x), before)
    assert run.train_config == CFG and run.config == {"seed": 1} and run.run_dir == tmp_path
    assert run.history.iterations == trainer.history.iterations and len(run.history.epochs) == 1
    assert torch.equal(_predict(anode.load_run(tmp_path / "checkpoint.pt").model, x), before)  # the file itself


def test_image_convodenet_run_loads_with_identical_predictions(tmp_path) -> None:
    x, y = _images()
    with anode.seeded(2):
        model = anode.ConvODENet((1, 8, 8), 4, augment_dim=1, output_dim=10)
    cfg = anode.TrainConfig(epochs=1, max_iterations=2, loss="cross_entropy", progress=False)
    anode.Trainer(model, cfg, out_dir=tmp_path).fit(TensorLoader(x, y, batch_size=4, seed=0))
    before = _predict(model, x)
    run = anode.load_run(tmp_path)
    assert type(run.model) is anode.ConvODENet
    assert torch.equal(_predict(run.model, x), before)
    assert run.train_config.loss == "cross_entropy"


def test_stacked_ensemble_members_load_with_identical_predictions(tmp_path) -> None:
    trainers, loaders = [], []
    for r in range(2):
        with anode.seeded(10 + r):
            model = anode.ODENet(2, 6, augment_dim=1)
        trainers.append(anode.Trainer(model, CFG, out_dir=tmp_path / f"member-{r}"))
        x, y = _toy(seed=r)
        loaders.append(TensorLoader(x, y, batch_size=8, seed=r))
    EnsembleTrainer(trainers).fit(loaders)
    x, _ = _toy(seed=5)
    for r, trainer in enumerate(trainers):
        run = anode.load_run(tmp_path / f"member-{r}")
        assert torch.equal(_predict(run.model, x), _predict(trainer.model, x))
        assert run.history.iterations == trainer.history.iterations


@pytest.mark.parametrize("together", [1, 2])
def test_lab_runner_runs_load_as_the_lab_builds_them(tmp_path, together) -> None:
    from anode.lab.experiments import parse_config, run_experiment
    from anode.lab.experiments.builders import build_data, build_model

    cfg = parse_config({
        "name": "tiny", "seed": 0, "repeats": 2, "train": {"epochs": 1, "batch_size": 32, "max_iterations": 2},
        "datasets": [{"kind": "spheres", "name": "spheres 2d", "dim": 2, "num_points_inner": 20, "num_points_outer": 40}],
        "models": [{"name": "ANODE", "kind": "odenet", "hidden_dim": 6, "augment_dim": 1},
                   {"name": "ResNet", "kind": "resnet", "hidden_dim": 6, "num_layers": 2}],
    })
    run_experiment(cfg, tmp_path, jobs=1, device="cpu", progress=False, log=lambda _: None, together=together)
    data = build_data(cfg.datasets[0], cfg, seed=0)
    run_dirs = sorted(tmp_path.glob("runs/*/*/seed-*"))
    assert len(run_dirs) == 4
    for run_dir in run_dirs:
        run = anode.load_run(run_dir)
        result = json.loads((run_dir / "result.json").read_text())
        assert result["trained_together"] == together
        spec = cfg.model(run.config["model"])
        built = build_model(spec, cfg, data, seed=run.config["seed"])
        built.load_state_dict(anode.load_checkpoint(run_dir / "checkpoint.pt")["model"])
        assert type(run.model) is type(built)
        assert torch.equal(_predict(run.model, data.train_x), _predict(built, data.train_x))
        assert run.history.epochs[-1]["loss"] == result["final_loss"]


@pytest.mark.parametrize("model", [
    lambda: anode.ODEFlow(1, 4, augment_dim=1, augmentation="learned", time_dependent=True),
    lambda: anode.ResNet(2, 4, 3, non_linearity="tanh"),
    lambda: anode.ConvResNet((1, 8, 8), 3, 2),
    lambda: anode.ODEBlock(anode.ODEFunc(2, 4, augment_dim=2), augment_dim=2, solver=anode.SolverConfig(rtol=1e-4)),
    lambda: anode.ODENet(2, augment_dim=2, augmentation="second_order", odefunc=anode.ODEFunc(2, 4, augment_dim=2,
                                                                                             output_dim=2)),
    lambda: anode.ConvODENet((1, 8, 8), odefunc=anode.ConvODEFunc((1, 8, 8), 3, augment_dim=1), augment_dim=1),
])
def test_architecture_round_trip(model) -> None:
    original = model()
    architecture = architecture_of(original)
    assert json.loads(json.dumps(architecture)) == architecture  # plain data
    rebuilt = build_from_architecture(architecture)
    rebuilt.load_state_dict(original.state_dict())
    assert architecture_of(rebuilt) == architecture
    shape = (1, 8, 8) if "img_size" in architecture["args"] else (1,) if isinstance(original, anode.ODEFlow) else (2,)
    x = torch.randn(3, *shape)
    assert torch.equal(_predict(rebuilt, x), _predict(original, x))


def _custom_run(tmp_path):
    x, y = _toy()
    with anode.seeded(3):
        model = anode.ODENet(2, odefunc=_MyField())
    anode.Trainer(model, CFG, out_dir=tmp_path).fit(TensorLoader(x, y, batch_size=8, seed=0))
    return model, x


class _MyField(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(2, 2)

    def forward(self, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.layer(h))


def test_custom_field_is_refused_by_name_and_loads_with_model(tmp_path) -> None:
    model, x = _custom_run(tmp_path)
    with pytest.raises(ValueError, match=r"_MyField.*vector field of ODENet.*load_run\(run_dir, model=my_model\)"):
        anode.load_run(tmp_path)
    with anode.seeded(99):  # other initial weights: all are replaced by the run's
        mine = anode.ODENet(2, odefunc=_MyField())
    run = anode.load_run(tmp_path, model=mine)
    assert run.model is mine
    assert torch.equal(_predict(mine, x), _predict(model, x))


def test_run_before_architectures_is_refused_with_the_fix(tmp_path) -> None:
    x, y = _toy()
    anode.Trainer(anode.ODENet(2, 4), CFG, out_dir=tmp_path).fit(TensorLoader(x, y, batch_size=8, seed=0))
    path = tmp_path / "checkpoint.pt"
    state = anode.load_checkpoint(path)
    del state["architecture"], state["architecture_error"]
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"predates anode 0\.2\.0.*model=my_model.*load_state_dict"):
        anode.load_run(tmp_path)
    trainer = anode.Trainer(anode.ODENet(2, 4), CFG, out_dir=tmp_path)  # still resumes
    trainer.load_checkpoint(path)
    assert trainer.iteration == 2
    assert anode.load_run(tmp_path, model=anode.ODENet(2, 4)).train_config == CFG


def test_every_listed_class_rebuilds() -> None:
    from anode.models import ARCHITECTURE_CLASSES
    from anode.models.rebuild import build_from_architecture as build

    for name in ARCHITECTURE_CLASSES:
        assert getattr(anode, name).__name__ == name
    with pytest.raises(ValueError, match="an architecture is a dict"):
        build(["ODENet"])  # type: ignore[arg-type]


def test_refusals(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="no run folder"):
        anode.load_run(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="has no checkpoint.pt"):
        anode.load_run(tmp_path)
    (tmp_path / "copy").mkdir()
    (tmp_path / "copy" / "summary.json").write_text(json.dumps({"reused_from": "elsewhere/seed-0"}))
    with pytest.raises(FileNotFoundError, match=r"copied from the identical run elsewhere/seed-0"):
        anode.load_run(tmp_path / "copy")
    bogus = tmp_path / "bogus"
    bogus.mkdir()
    torch.save({"model": {}}, bogus / "checkpoint.pt")
    with pytest.raises(ValueError, match="not an anode checkpoint"):
        anode.load_run(bogus)
    x, y = _toy()
    anode.Trainer(anode.ODENet(2, 4), CFG, out_dir=tmp_path / "run").fit(TensorLoader(x, y, batch_size=8, seed=0))
    with pytest.raises(ValueError, match="do not fit the given ODENet"):
        anode.load_run(tmp_path / "run", model=anode.ODENet(2, 5))
    with pytest.raises(TypeError, match="model must be an nn.Module"):
        anode.load_run(tmp_path / "run", model="ODENet")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown model class 'Sequential'"):
        build_from_architecture({"class": "Sequential", "args": {}})


def test_float64_run_comes_back_in_float64(tmp_path) -> None:
    x, y = _toy()
    model = anode.ODENet(2, 4).double()
    anode.Trainer(model, CFG, out_dir=tmp_path).fit(TensorLoader(x.double(), y.double(), batch_size=8, seed=0))
    run = anode.load_run(tmp_path)
    assert next(run.model.parameters()).dtype == torch.float64
    assert torch.equal(_predict(run.model, x.double()), _predict(model, x.double()))
