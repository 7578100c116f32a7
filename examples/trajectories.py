"""Trajectories over any time span and the flow figure (runs in seconds on a CPU).

Trains an ANODE on concentric circles, asks the model for its trajectory at 20 times in [0, 1]
(`t=..., return_trajectory=True`), and saves the flow figure.

    PYTHONPATH=src python examples/trajectories.py [OUT_DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

import anode


def main(out_dir: Path) -> None:
    torch.set_num_threads(1)
    data = anode.data.ConcentricSpheres(2, num_points_inner=100, num_points_outer=200, seed=0)
    with anode.seeded(0):
        model = anode.ODENet(2, 32, augment_dim=1, time_dependent=True)
    anode.fit(model, data.loader(batch_size=64, seed=0), anode.TrainConfig(epochs=8, lr=1e-2, progress=False))

    t = torch.linspace(0.0, 1.0, 20)
    points = torch.arange(0, len(data.data), 5)  # 60 points of both classes
    with torch.no_grad():
        trajectory, _pred = model(data.data[points], t=t, return_trajectory=True)  # [20, 60, 3], [60, 1]
    print(f"trajectory {tuple(trajectory.shape)}; starts at [x, 0]: {bool((trajectory[0, :, 2] == 0).all())}")
    figure = anode.plotting.plot_trajectories(t, trajectory, labels=data.targets[points, 0])
    out_dir.mkdir(parents=True, exist_ok=True)
    path = anode.plotting.save_figure(figure, out_dir / "flow.png")
    print(f"saved {path}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("results/examples"))
