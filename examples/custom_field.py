"""Your own vector field, augmented, inside your own nn.Module (runs in seconds on a CPU).

An ANODE block with a custom field learns g(x) = -x in one dimension (impossible for a plain
NODE flow, Dupont et al. 2019, Prop. 1), followed by a linear readout; `anode.fit` counts the
block's NFE although the top-level model is an ordinary `nn.Module`.

    PYTHONPATH=src python examples/custom_field.py
"""

from __future__ import annotations

import torch
from torch import nn

import anode


class MyField(nn.Module):
    """f(t, h) on the augmented state h = [x, a] (d + p = 2 features): any module called as f(t, h)."""

    def __init__(self, width: int, hidden: int = 32) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(width + 1, hidden), nn.Softplus(), nn.Linear(hidden, width))

    def forward(self, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([h, t.expand(h.shape[0], 1)], 1))


class MyModel(nn.Module):
    """Your model: an augmented ODE block (p = 1, learned augmentation) and a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.ode = anode.ODEBlock(MyField(2), augment_dim=1, augmentation="learned", data_shape=(1,))
        self.head = nn.Linear(2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.ode(x))


def main() -> None:
    torch.set_num_threads(1)
    data = anode.data.Data1D(64, target_flip=True, seed=0)  # x = +-1 -> -x
    with anode.seeded(0):
        model = MyModel()
    history = anode.fit(model, data.loader(batch_size=32, seed=0),
                        anode.TrainConfig(epochs=15, lr=1e-2, loss="mse", progress=False))
    with torch.no_grad():
        pred = model(torch.tensor([[-1.0], [1.0]]))
    print(f"g(-1) = {pred[0, 0]:+.3f}, g(+1) = {pred[1, 0]:+.3f} (targets +1, -1)")
    print(f"final loss {history.epochs[-1]['loss']:.4f}, NFE of the block {history.iterations[-1]['nfe_forward']}")
    print(f"parameters: {anode.count_parameters(model)}")


if __name__ == "__main__":
    main()
