"""Time one training iteration of a toy ANODE against a plain-torchdiffeq reference and a no-solver floor.

One iteration = zero_grad + forward + SmoothL1 loss + backward (through the solver) + Adam step, for
ANODE with d = 2, p = 5, a time-dependent MLP of width 32, batch 64, dopri5 at rtol = atol = 1e-3:

* anode:      `anode.ODENet` (counted vector field, input checks, typed errors);
* reference:  the loop of the 2019 code written directly on torchdiffeq (own ODEFunc with
              `self.nfe += 1`, zero augmentation by `torch.cat`, `odeint(..., method="dopri5",
              options={"max_num_steps": 1000})`, `nn.Linear` readout, `SmoothL1Loss`, Adam);
* floor:      the same vector field evaluated eagerly NFE times in a chain (h += f(t, h) / NFE),
              with the same readout, loss, backward and Adam step: the arithmetic the solve cannot
              avoid, with no solver logic at all.

All three start every timed repetition from identical weights (copied from the anode model) and a
fresh Adam, on the same batch, so each repetition does exactly the same work. Repetitions are
interleaved (the order rotates every round) so that machine noise hits all three alike.

    python benchmarks/toy_iteration.py [--repeats 50] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn
from torchdiffeq import odeint

import anode

DATA_DIM, AUGMENT_DIM, HIDDEN, BATCH, TOL, LR = 2, 5, 32, 64, 1e-3, 1e-3


# --- the 2019 reference, as in the paper's code -------------------------------------------------


class RefODEFunc(nn.Module):
    def __init__(self, data_dim: int, hidden_dim: int, augment_dim: int = 0) -> None:
        super().__init__()
        self.augment_dim = augment_dim
        self.data_dim = data_dim
        self.input_dim = data_dim + augment_dim
        self.nfe = 0
        self.fc1 = nn.Linear(self.input_dim + 1, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, hidden_dim)
        self.fc3 = nn.Linear(hidden_dim, self.input_dim)
        self.non_linearity = nn.ReLU(inplace=True)

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        self.nfe += 1
        t_vec = torch.ones(x.shape[0], 1) * t
        t_and_x = torch.cat([t_vec, x], 1)
        out = self.non_linearity(self.fc1(t_and_x))
        out = self.non_linearity(self.fc2(out))
        return self.fc3(out)


class RefODEBlock(nn.Module):
    def __init__(self, odefunc: RefODEFunc, tol: float = 1e-3) -> None:
        super().__init__()
        self.odefunc = odefunc
        self.tol = tol

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.odefunc.nfe = 0
        integration_time = torch.tensor([0, 1]).float().type_as(x)
        aug = torch.zeros(x.shape[0], self.odefunc.augment_dim)
        x_aug = torch.cat([x, aug], 1)
        out = odeint(self.odefunc, x_aug, integration_time, rtol=self.tol, atol=self.tol, method="dopri5",
                     options={"max_num_steps": 1000})
        return out[1]


class RefODENet(nn.Module):
    def __init__(self, data_dim: int, hidden_dim: int, output_dim: int = 1, augment_dim: int = 0,
                 tol: float = 1e-3) -> None:
        super().__init__()
        self.odeblock = RefODEBlock(RefODEFunc(data_dim, hidden_dim, augment_dim), tol=tol)
        self.linear_layer = nn.Linear(data_dim + augment_dim, output_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_layer(self.odeblock(x))


# --- the floor: NFE chained evaluations of the same field, no solver ----------------------------


class Floor(nn.Module):
    def __init__(self, odefunc: nn.Module, linear: nn.Linear, augment_dim: int, nfe: int) -> None:
        super().__init__()
        self.odefunc = odefunc
        self.linear_layer = linear
        self.augment_dim = augment_dim
        self.nfe = nfe
        self.times = [torch.tensor(k / nfe) for k in range(nfe)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.cat([x, x.new_zeros(x.shape[0], self.augment_dim)], 1)
        for t in self.times:
            h = h + self.odefunc(t, h) / self.nfe
        return self.linear_layer(h)


# --- timing -------------------------------------------------------------------------------------


def make_iteration(model: nn.Module, init: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor
                   ) -> tuple[Callable[[], None], Callable[[], float]]:
    """(reset, iterate): reset restores the initial weights and a fresh Adam (untimed)."""
    loss_fn = nn.SmoothL1Loss()
    holder: dict[str, torch.optim.Optimizer] = {}

    def reset() -> None:
        model.load_state_dict(init)
        holder["opt"] = torch.optim.Adam(model.parameters(), lr=LR)

    def iterate() -> float:
        opt = holder["opt"]
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return float(loss.detach())

    return reset, iterate


def first_iteration(model: nn.Module, init: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor
                    ) -> tuple[float, list[torch.Tensor]]:
    model.load_state_dict(init)
    model.zero_grad(set_to_none=True)
    loss = nn.SmoothL1Loss()(model(x), y)
    loss.backward()
    return float(loss.detach()), [p.grad.detach().clone() for p in model.parameters()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=50, help="timed rounds (each times all three once)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed rounds first")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.repeats < 1 or args.warmup < 0:
        parser.error("--repeats must be >= 1 and --warmup >= 0")
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(BATCH, DATA_DIM, generator=gen)
    y = torch.where(x.norm(dim=1, keepdim=True) < 1.0, -1.0, 1.0)

    with anode.seeded(0):
        model = anode.ODENet(DATA_DIM, HIDDEN, augment_dim=AUGMENT_DIM, time_dependent=True,
                             solver=anode.SolverConfig(method="dopri5", rtol=TOL, atol=TOL))
    init = {k: v.clone() for k, v in model.state_dict().items()}
    ref = RefODENet(DATA_DIM, HIDDEN, augment_dim=AUGMENT_DIM, tol=TOL)
    ref.load_state_dict(init)  # same parameter names: odeblock.odefunc.fc{1,2,3}, linear_layer

    # First iteration: same NFE, same loss, same gradients?
    loss_anode, grads_anode = first_iteration(model, init, x, y)
    nfe_anode, nfe_anode_bwd = model.nfe.forward, model.nfe.backward
    loss_ref, grads_ref = first_iteration(ref, init, x, y)
    nfe_ref = ref.odeblock.odefunc.nfe
    grad_diff = max(float((a - b).abs().max()) for a, b in zip(grads_anode, grads_ref))
    same_nfe = nfe_anode == nfe_ref
    same_loss = abs(loss_anode - loss_ref) <= 1e-6 * max(1.0, abs(loss_ref))

    floor = Floor(anode.ODEFunc(DATA_DIM, HIDDEN, augment_dim=AUGMENT_DIM, time_dependent=True),
                  nn.Linear(DATA_DIM + AUGMENT_DIM, 1), AUGMENT_DIM, nfe_anode)
    floor_init = {k.removeprefix("odeblock."): v for k, v in init.items()}
    floor.load_state_dict(floor_init)

    variants = {name: make_iteration(m, state, x, y) for name, m, state in
                (("anode", model, init), ("reference", ref, init), ("floor", floor, floor_init))}
    names = list(variants)
    times: dict[str, list[float]] = {name: [] for name in names}
    start = time.perf_counter()
    for rnd in range(args.warmup + args.repeats):
        order = names[rnd % 3:] + names[: rnd % 3]
        for name in order:
            reset, iterate = variants[name]
            reset()
            t0 = time.perf_counter()
            iterate()
            elapsed = time.perf_counter() - t0
            if rnd >= args.warmup:
                times[name].append(elapsed)
    total = time.perf_counter() - start
    # every timed repetition started from the same state, so the NFE must not have changed
    if model.nfe.forward != nfe_anode or ref.odeblock.odefunc.nfe != nfe_ref:
        raise RuntimeError("NFE changed between repetitions: the reset is broken")

    med = {name: statistics.median(v) for name, v in times.items()}
    q = {name: statistics.quantiles(v, n=4) if len(v) > 1 else [v[0]] * 3 for name, v in times.items()}
    print(f"torch {torch.__version__}, torchdiffeq via anode {anode.__version__}, "
          f"threads {torch.get_num_threads()}, device cpu")
    print(f"ANODE d={DATA_DIM} p={AUGMENT_DIM} width={HIDDEN} time-dependent, batch {BATCH}, "
          f"dopri5 rtol=atol={TOL:g}, backprop through the solver, Adam lr {LR:g}")
    print(f"first iteration: NFE anode {nfe_anode} (backward {nfe_anode_bwd}) vs reference {nfe_ref} -> "
          f"{'same NFE' if same_nfe else 'DIFFERENT NFE'}; loss anode {loss_anode:.8f} vs reference "
          f"{loss_ref:.8f} -> {'same loss' if same_loss else 'DIFFERENT LOSS'} "
          f"(|diff| {abs(loss_anode - loss_ref):.2e}); max |grad diff| {grad_diff:.2e}")
    print(f"{args.repeats} interleaved rounds after {args.warmup} warm-up rounds ({total:.1f} s):")
    for name in names:
        print(f"  {name:<10} median {1e3 * med[name]:8.3f} ms  (IQR {1e3 * q[name][0]:.3f}-{1e3 * q[name][2]:.3f} ms)"
              f"  NFE {nfe_anode if name != 'reference' else nfe_ref}")
    print(f"ratio anode/reference = {med['anode'] / med['reference']:.3f}")
    print(f"ratio anode/floor     = {med['anode'] / med['floor']:.3f}")
    print(f"ratio reference/floor = {med['reference'] / med['floor']:.3f}")
    if not (same_nfe and same_loss):
        raise SystemExit("anode and the reference disagree on the first iteration")


if __name__ == "__main__":
    main()
