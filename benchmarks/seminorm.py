"""Backward NFE of the adjoint with and without the seminorm (Kidger et al., 2021), side by side.

The seminorm leaves the parameter-gradient channels of the adjoint state out of the backward solve's
error norm, so the backward solve takes fewer steps (the gradients are integrals, not states that feed
back). It is an option, off in the paper protocol: `SolverConfig(adjoint=True, options={"adjoint_options":
{"norm": "seminorm"}})`. This measures it on one training step of the toy ANODE (spheres d = 2, p = 1,
width 32, batch 64, dopri5 1e-3) and of Table 1's MNIST NODE and ANODE (batch 32 of random images),
each from the same weights and batch with and without it, and prints per model the backward NFE, the
largest relative gradient difference, and last, one ratio a line:

    seminorm_backward_nfe_ratio <model>: <backward NFE with / without>

    python benchmarks/seminorm.py [--threads 1] [--image-batch 32]
"""

from __future__ import annotations

import argparse
from typing import Any

import torch

from anode import ConvODENet, ODENet, SolverConfig, seeded
from anode.data import ConcentricSpheres

SEMINORM = {"adjoint_options": {"norm": "seminorm"}}


def one_step(make_model: Any, x: torch.Tensor, y: torch.Tensor, loss_fn: Any, *, seminorm: bool) -> dict[str, Any]:
    """Backward NFE and gradients of one adjoint step from seed-0 weights."""
    solver = SolverConfig(method="dopri5", rtol=1e-3, atol=1e-3, adjoint=True, options=SEMINORM if seminorm else {})
    with seeded(0):
        model = make_model(solver)
    loss = loss_fn(model(x), y)
    loss.backward()
    grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    return {"nfe_forward": model.nfe.forward, "nfe_backward": model.nfe.backward, "grads": grads}


def compare(name: str, make_model: Any, x: torch.Tensor, y: torch.Tensor, loss_fn: Any) -> float:
    plain, semi = (one_step(make_model, x, y, loss_fn, seminorm=s) for s in (False, True))
    diff = float((plain["grads"] - semi["grads"]).abs().max() / plain["grads"].abs().max())
    print(f"  {name}: NFE fwd {plain['nfe_forward']}, bwd {plain['nfe_backward']} -> {semi['nfe_backward']} with the "
          f"seminorm; largest gradient difference {diff:.1e} of the largest gradient")
    return semi["nfe_backward"] / plain["nfe_backward"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--image-batch", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ratios = {}
    data = ConcentricSpheres(2, num_points_inner=32, num_points_outer=32, seed=0)
    huber = torch.nn.HuberLoss()
    print("one adjoint training step each, dopri5 rtol = atol = 1e-3, CPU")
    ratios["toy ANODE"] = compare("toy ANODE (spheres 2d, p = 1)", lambda s: ODENet(2, 32, augment_dim=1, solver=s),
                                  data.data, data.targets, huber)
    g = torch.Generator().manual_seed(0)
    images = torch.rand(args.image_batch, 1, 28, 28, generator=g)
    labels = torch.randint(0, 10, (args.image_batch,), generator=g)
    ce = torch.nn.CrossEntropyLoss()
    for name, filters, p in (("MNIST NODE", 92, 0), ("MNIST ANODE", 64, 5)):
        ratios[name] = compare(f"{name} ({filters} filters, p = {p})",
                               lambda s, f=filters, q=p: ConvODENet((1, 28, 28), f, augment_dim=q, output_dim=10,
                                                                    time_dependent=False, solver=s), images, labels, ce)
    for name, ratio in ratios.items():
        print(f"seminorm_backward_nfe_ratio {name}: {ratio:.2f}")


if __name__ == "__main__":
    main()
