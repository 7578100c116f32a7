"""What a trained toy model shows for the figures: trajectories, feature snapshots, input-space maps."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["features_of", "input_map", "select_points", "trajectories", "vector_field_1d"]


def select_points(data: torch.Tensor, targets: torch.Tensor, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`count` evenly spaced samples (deterministic) of the data, for plotting."""
    count = min(count, data.shape[0])
    idx = torch.linspace(0, data.shape[0] - 1, count).round().long()
    return data[idx], targets[idx]


@torch.no_grad()
def features_of(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The model's features (h(1) for ODE models, the last residual state for ResNets)."""
    was_training = model.training
    model.eval()
    try:
        features, _ = model(x, return_features=True)
    finally:
        model.train(was_training)
    return features.flatten(1)


@torch.no_grad()
def trajectories(model: nn.Module, x: torch.Tensor, timesteps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """States along the flow: `(times [T], states [T, N, d+p])`.

    ODE models are solved at `timesteps` even times in [0, 1]; ResNets give their L + 1 hidden
    states at times 0, 1/L, ..., 1.
    """
    if hasattr(model, "odeblock"):
        states = model.odeblock.trajectory(x, timesteps)
        return torch.linspace(0.0, 1.0, timesteps), states.flatten(2)
    states = [x]
    for block in model.residual_blocks:
        states.append(block(states[-1]))
    return torch.linspace(0.0, 1.0, len(states)), torch.stack(states).flatten(2)


@torch.no_grad()
def input_map(model: nn.Module, data: torch.Tensor, resolution: int) -> dict[str, Any]:
    """Model output over a grid covering the data (d = 1: a line; d = 2: the plane).

    Returns:
        `{"xs": [...], "ys": [...] (d = 2), "values": [...]}` with values[i][j] at (xs[j], ys[i]).
    """
    was_training = model.training
    model.eval()
    try:
        extent = float(data.abs().max()) * 1.1
        axis = torch.linspace(-extent, extent, resolution, dtype=data.dtype)
        if data.shape[1] == 1:
            values = model(axis[:, None])[:, 0]
            return {"xs": axis.tolist(), "values": values.tolist()}
        grid_y, grid_x = torch.meshgrid(axis, axis, indexing="ij")
        points = torch.zeros(resolution * resolution, data.shape[1], dtype=data.dtype)
        points[:, 0], points[:, 1] = grid_x.flatten(), grid_y.flatten()
        values = model(points)[:, 0].reshape(resolution, resolution)
        return {"xs": axis.tolist(), "ys": axis.tolist(), "values": values.tolist()}
    finally:
        model.train(was_training)


@torch.no_grad()
def vector_field_1d(model: nn.Module, data: torch.Tensor, *, num_t: int = 12, num_h: int = 15) -> dict[str, Any]:
    """Velocities of a 1-D ODE model (d + p = 1) on a (t, h) grid covering its trajectories."""
    odefunc = model.odeblock.odefunc
    extent = float(data.abs().max()) * 1.5
    times = torch.linspace(0.0, 1.0, num_t)
    states = torch.linspace(-extent, extent, num_h, dtype=data.dtype)
    velocities = torch.stack([odefunc(t, states[:, None])[:, 0] for t in times])
    return {"times": times.tolist(), "states": states.tolist(), "velocities": velocities.tolist()}
