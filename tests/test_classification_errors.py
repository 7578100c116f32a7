"""Targets that do not fit the model or the loss are an anode ValueError naming the fix, raised
before the first optimiser step (Trainer.fit, EnsembleTrainer.fit) or in evaluate."""

from __future__ import annotations

import pytest
import torch

import anode
from anode.data import TensorLoader
from anode.ensemble import EnsembleTrainer

pytestmark = pytest.mark.usefixtures("single_thread")


def _images() -> tuple[torch.Tensor, torch.Tensor]:
    """Eight random 1x8x8 "images" with labels in 0..9 (the first batch holds a 9)."""
    g = torch.Generator().manual_seed(0)
    return torch.rand(8, 1, 8, 8, generator=g), torch.tensor([9, 0, 1, 2, 3, 4, 5, 6])


def _loader(x: torch.Tensor, y: torch.Tensor) -> TensorLoader:
    return TensorLoader(x, y, batch_size=4, shuffle=False)


def _cfg(**changes) -> anode.TrainConfig:
    return anode.TrainConfig(epochs=1, max_iterations=2, progress=False, **changes)


def _untouched(model: torch.nn.Module):
    """Snapshot of the weights, to check no optimiser step happened."""
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    return lambda: all(torch.equal(saved[k], v) for k, v in model.state_dict().items())


def test_class_labels_with_the_default_huber_loss() -> None:
    x, y = _images()
    model = anode.ConvODENet((1, 8, 8), 4, output_dim=10)
    same = _untouched(model)
    with pytest.raises(ValueError, match=r"integer class labels.*'huber'.*use loss='cross_entropy'"):
        anode.fit(model, _loader(x, y), _cfg())
    assert same()
    with pytest.raises(ValueError, match=r"integer class labels.*use loss='cross_entropy'"):
        anode.evaluate(model, _loader(x, y))
    with pytest.raises(ValueError, match=r"integer class labels.*'mse'.*use loss='cross_entropy'"):
        anode.fit(model, _loader(x, y), _cfg(loss="mse"))


def test_labels_beyond_the_output_width() -> None:
    x, y = _images()
    model = anode.ConvODENet((1, 8, 8), 4, output_dim=1)
    same = _untouched(model)
    with pytest.raises(ValueError, match=r"class label 9 .*output_dim = 1.*output_dim=10 \(e\.g\. output_dim=10 for MNIST\)"):
        anode.fit(model, _loader(x, y), _cfg(loss="cross_entropy"))
    assert same()
    with pytest.raises(ValueError, match=r"build the model with output_dim=10"):
        anode.evaluate(model, _loader(x, y), loss="cross_entropy")
    narrow = anode.ConvResNet((1, 8, 8), 3, 1, output_dim=5)
    with pytest.raises(ValueError, match=r"class label 9 .*output_dim = 5.*output_dim=10"):
        anode.fit(narrow, _loader(x, y), _cfg(loss="cross_entropy"))


def test_regression_targets_of_another_shape() -> None:
    x = torch.randn(8, 2)
    model = anode.ODENet(2, 4)  # predictions [batch, 1]
    same = _untouched(model)
    with pytest.raises(ValueError, match=r"targets of shape \(8,\) do not match the predictions of shape \(8, 1\)"):
        anode.fit(model, TensorLoader(x, x[:, 0].clone(), batch_size=8, shuffle=False), _cfg())
    with pytest.raises(ValueError, match=r"targets of shape \(4, 2\) do not match the predictions of shape \(4, 1\)"):
        anode.evaluate(model, _loader(x, x.clone()))
    assert same()


def test_other_label_mistakes() -> None:
    x, y = _images()
    model = anode.ConvODENet((1, 8, 8), 4)
    with pytest.raises(ValueError, match=r"shape \[batch\], got shape \(4, 1\); use y.squeeze\(1\)"):
        anode.fit(model, _loader(x, y[:, None]), _cfg(loss="cross_entropy"))
    with pytest.raises(ValueError, match=r"integer class labels.*y.long\(\)"):
        anode.fit(model, _loader(x, y.float()), _cfg(loss="cross_entropy"))
    with pytest.raises(ValueError, match=r"the label -1"):
        anode.fit(model, _loader(x, y - 1), _cfg(loss="cross_entropy"))


def test_the_default_image_model_trains_on_ten_classes() -> None:
    x, y = _images()
    model = anode.ConvODENet((1, 8, 8), 4)  # output_dim defaults to 10
    history = anode.fit(model, _loader(x, y), _cfg(loss="cross_entropy"))
    assert len(history.iterations) == 2
    assert anode.ConvResNet((1, 8, 8), 3, 1).linear_layer.out_features == 10
    metrics = anode.evaluate(model, _loader(x, y), loss="cross_entropy")
    assert 0.0 <= metrics["accuracy"] <= 1.0


def test_a_custom_loss_fn_is_not_second_guessed() -> None:
    x = torch.randn(8, 2)
    model = anode.ODENet(2, 4)
    loss_fn = lambda pred, target: ((pred[:, 0] - target) ** 2).mean()
    anode.fit(model, TensorLoader(x, x[:, 0].clone(), batch_size=4, shuffle=False), _cfg(), loss_fn=loss_fn)


def test_checked_before_the_first_stacked_step() -> None:
    trainers, loaders = [], []
    for r in range(2):
        model = anode.ODENet(2, 4)
        trainers.append(anode.Trainer(model, _cfg()))
        x = torch.randn(8, 2)
        loaders.append(TensorLoader(x, (x[:, 0] > 0).long(), batch_size=4, seed=r))
    same = _untouched(trainers[0].model)
    with pytest.raises(ValueError, match=r"integer class labels.*use loss='cross_entropy'"):
        EnsembleTrainer(trainers).fit(loaders)
    assert same()
