"""CNF vs augmented CNF on MNIST, for one GPU (NOT RUN in this repository; see examples/cnf_mnist_gpu.toml).

Reads the TOML config (data only), dequantises MNIST's pixels (x + u) / 256 with u ~ U[0, 1), maps them
to logit space (alpha = 1e-6, as FFJORD), trains each model with `anode.training.fit_density` (Hutchinson
trace, adjoint) and prints, per model, the test negative log-likelihood in bits per dimension (the
importance-weighted bound with K samples for an augmented CNF) and the forward/backward NFE over training.
Histories are written to OUT/<model>/history.jsonl.

    python examples/cnf_mnist_gpu.py --out results/cnf-mnist            # on a GPU (hours: see the config)
    python examples/cnf_mnist_gpu.py --out /tmp/cnf-mnist --smoke       # random images, seconds on a CPU
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import tomllib
import torch

import anode
from anode.data.images import load_image_dataset
from anode.history import History
from anode.training import fit_density, test_log_likelihood

ALPHA = 1e-6


def to_logit(images: torch.Tensor, *, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Dequantised logit pixels [n, 784] and the log-determinant of the map from [0, 1) per image."""
    x = (images.flatten(1).double() + torch.rand(images.shape[0], images[0].numel(), generator=generator,
                                                   dtype=torch.float64)) / 256.0
    s = ALPHA + (1 - 2 * ALPHA) * x
    y = torch.log(s) - torch.log1p(-s)
    logdet = (math.log(1 - 2 * ALPHA) - torch.log(s) - torch.log1p(-s)).sum(1)
    return y.float(), logdet.float()


def field_parameters(dim: int, p: int, width: int) -> int:
    """Parameters of anode.ODEFunc(dim, width, augment_dim=p, time_dependent=True): three linear layers."""
    return (dim + p + 1) * width + width + width * width + width + width * (dim + p) + dim + p


def matched_width(dim: int, p: int, target: int) -> int:
    """The width whose field has the parameter count closest to `target` (the CNF's field)."""
    return min(range(1, 4096), key=lambda w: abs(field_parameters(dim, p, w) - target))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(Path(__file__).with_suffix(".toml")))
    parser.add_argument("--out", required=True)
    parser.add_argument("--smoke", action="store_true", help="64 random images, 2 iterations, a loose tolerance")
    args = parser.parse_args()
    cfg = tomllib.loads(Path(args.config).read_text(encoding="utf-8"))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    gen = torch.Generator().manual_seed(cfg["seed"])
    if args.smoke:
        train_images = torch.randint(0, 256, (64, 1, 28, 28), generator=gen, dtype=torch.uint8)
        test_images = train_images[:8]
        solver = anode.SolverConfig(rtol=1e-2, atol=1e-2, adjoint=True)
        epochs_iterations, test_points, k = 2, 8, 2
    else:
        data = load_image_dataset("mnist", cfg["data_dir"])
        train_images, test_images = data.train_images, data.test_images
        solver = anode.SolverConfig(**cfg["solver"])
        epochs_iterations = cfg["train"]["epochs"] * (len(train_images) // cfg["train"]["batch_size"])
        test_points, k = cfg["train"]["test_points"], cfg["train"]["iw_samples"]
    train_x, _ = to_logit(train_images, generator=gen)
    test_x, test_logdet = to_logit(test_images[:test_points], generator=gen)
    dim = train_x.shape[1]
    counts = {}
    for spec in cfg["models"]:
        p = spec["augment_dim"]
        with anode.seeded(cfg["seed"]):
            width = matched_width(dim, p, field_parameters(dim, 0, 64 if args.smoke else cfg["models"][0]["hidden_dim"]))
            field = anode.ODEFunc(dim, width, augment_dim=p, time_dependent=True, non_linearity="softplus")
            if p == 0:
                model = anode.CNF(field, dim=dim, trace="hutchinson", probe="rademacher", solver=solver)
            else:
                model = anode.AugmentedCNF(field, data_dim=dim, augment_dim=p, posterior=spec["posterior"],
                                           posterior_hidden=spec.get("posterior_hidden", 32), trace="hutchinson",
                                           probe="rademacher", solver=solver)
        counts[spec["name"]] = sum(q.numel() for q in field.parameters())
        model.to(device)
        batch = min(cfg["train"]["batch_size"], len(train_x))
        records = fit_density(model, train_x.to(device), iterations=epochs_iterations, batch_size=batch,
                              lr=cfg["train"]["lr"], seed=cfg["seed"])
        History(iterations=records).save(Path(args.out) / "".join(c if c.isalnum() else "-" for c in spec["name"]))
        log_lik = test_log_likelihood(model, test_x.to(device), k=k, generator=torch.Generator().manual_seed(1),
                                      batch_size=100).cpu() + test_logdet
        bits = float(-(log_lik.mean() - dim * math.log(256.0)) / (dim * math.log(2.0)))
        nfe_f = sum(r["nfe_forward"] for r in records) / len(records)
        nfe_b = sum(r["nfe_backward"] for r in records) / len(records)
        print(f"{spec['name']}: field parameters {counts[spec['name']]:,}, test {bits:.3f} bits/dim"
              f"{'' if p == 0 else f' (IW bound, K = {k})'}, mean NFE forward {nfe_f:.1f}, backward {nfe_b:.1f}", flush=True)


if __name__ == "__main__":
    main()
