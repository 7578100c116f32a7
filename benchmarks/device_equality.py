"""The "anode" backend against torchdiffeq on the device it runs on (meant for a GPU; runs on a CPU too).

`tests/test_backend_equality.py` proves equal steps and bits on the CPU. On a GPU the same holds
only where every kernel is deterministic and both backends issue the same operations in the same
layouts. This checks it there, on random conv problems shaped like Table 1's MNIST ANODE (1 + p
channels, 28 x 28, batch 32, 32 filters, dopri5), with cuDNN in deterministic mode:

- forward solves without a graph (the adjoint's forward pass, evaluation): solutions bit for bit;
- adjoint training gradients: forward and backward NFE equal, gradients within 1e-5 relative (they
  are summed in another order, as on the CPU).

Last lines, one a line: `forward_bitwise: k/n`, `reference_adjoint_repeatable: k/n` (torchdiffeq's
adjoint run twice gives the same bits: whether the device is deterministic enough for the next two
lines to mean anything), `adjoint_same_nfe: k/n`, `adjoint_grad_max_rel: x`.

    python benchmarks/device_equality.py [--device cuda] [--cases 6]
"""

from __future__ import annotations

import argparse

import torch

from anode import NFE, ConvODEFunc, SolverConfig, odesolve, seeded


def _run(backend: str, seed: int, device: torch.device, *, grads: bool) -> tuple[torch.Tensor, list[torch.Tensor], NFE]:
    p = 1 + seed % 5
    with seeded(seed):
        field = ConvODEFunc((1, 28, 28), 32, augment_dim=p).to(device)
    gen = torch.Generator().manual_seed(100 + seed)
    x = torch.randn(32, 1, 28, 28, generator=gen)
    y0 = torch.cat([x, torch.zeros(32, p, 28, 28)], 1).to(device)
    t = torch.tensor([0.0, 1.0], device=device)
    nfe = NFE()
    solver = SolverConfig(backend=backend, method="dopri5", rtol=1e-3, atol=1e-3, adjoint=grads)
    if not grads:
        with torch.no_grad():
            return odesolve(field, y0, t, solver, nfe=nfe), [], nfe
    y0.requires_grad_(True)
    out = odesolve(field, y0, t, solver, nfe=nfe)
    weight = torch.randn(out.shape, generator=gen).to(device)
    (out * weight).sum().backward()
    return out.detach(), [y0.grad, *(q.grad for q in field.parameters())], nfe


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max()) / max(float(b.abs().max()), 1e-30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--cases", type=int, default=6)
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    bitwise = same_nfe = repeatable = 0
    worst = 0.0
    for seed in range(args.cases):
        ref, _, ref_nfe = _run("torchdiffeq", seed, device, grads=False)
        new, _, new_nfe = _run("anode", seed, device, grads=False)
        equal = torch.equal(ref, new) and ref_nfe.forward == new_nfe.forward
        bitwise += equal
        _, ref_g, ref_nfe = _run("torchdiffeq", seed, device, grads=True)
        _, again_g, again_nfe = _run("torchdiffeq", seed, device, grads=True)
        repeatable += (again_nfe.backward == ref_nfe.backward
                       and all(torch.equal(a, b) for a, b in zip(again_g, ref_g)))
        _, new_g, new_nfe = _run("anode", seed, device, grads=True)
        same = (ref_nfe.forward, ref_nfe.backward) == (new_nfe.forward, new_nfe.backward)
        same_nfe += same
        rel = max(_rel(a, b) for a, b in zip(new_g, ref_g)) if same else float("nan")
        if same:
            worst = max(worst, rel)
        print(f"case {seed}: no-graph solve bitwise {equal} (NFE {new_nfe.forward}); adjoint NFE "
              f"{new_nfe.forward}/{new_nfe.backward} vs {ref_nfe.forward}/{ref_nfe.backward}, gradients max rel {rel:.1e}")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device: {name}, torch {torch.__version__}")
    print(f"forward_bitwise: {bitwise}/{args.cases}")
    print(f"reference_adjoint_repeatable: {repeatable}/{args.cases}")
    print(f"adjoint_same_nfe: {same_nfe}/{args.cases}")
    print(f"adjoint_grad_max_rel: {worst:.2e}")


if __name__ == "__main__":
    main()
