"""A few optimiser steps of every image model on CPU: losses finite, parameters move, NFE recorded."""

from __future__ import annotations

import pytest
import torch

import anode


def _batch(channels: int, size: int, classes: int, n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return torch.rand(n, channels, size, size, generator=gen), torch.randint(0, classes, (n,), generator=gen)


@pytest.mark.parametrize(
    "build",
    [
        lambda: anode.ConvODENet((1, 12, 12), 8, output_dim=10),
        lambda: anode.ConvODENet((1, 12, 12), 6, augment_dim=2, output_dim=10, solver=anode.SolverConfig(adjoint=True)),
        lambda: anode.ConvODENet((3, 8, 8), 6, augment_dim=1, output_dim=5, time_dependent=True, non_linearity="softplus"),
        lambda: anode.ConvResNet((3, 8, 8), 6, 2, output_dim=5),
    ],
    ids=["node", "anode-adjoint", "anode-time-dependent", "conv-resnet"],
)
def test_conv_models_train_a_few_steps(build) -> None:  # type: ignore[no-untyped-def]
    with anode.seeded(0):
        model = build()
    channels, size = model.odeblock.data_shape[:2] if hasattr(model, "odeblock") else model.data_shape[:2]
    x, y = _batch(channels, size, model.linear_layer.out_features)
    before = [p.detach().clone() for p in model.parameters()]
    trainer = anode.Trainer(model, anode.TrainConfig(loss="cross_entropy", lr=1e-2, progress=False))
    records = [trainer.step(x, y) for _ in range(3)]
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in records)
    assert records[-1]["loss"] < records[0]["loss"]  # same batch, Adam at lr 1e-2: it must go down
    assert all(not torch.equal(b, p) for b, p in zip(before, model.parameters()))
    assert all(r["nfe_forward"] > 0 for r in records)
    adjoint = hasattr(model, "odeblock") and model.odeblock.solver.adjoint
    assert all((r["nfe_backward"] > 0) == adjoint for r in records)
