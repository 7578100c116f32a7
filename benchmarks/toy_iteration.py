"""Time one training iteration of a toy ANODE: plain torchdiffeq reference, anode on both solver backends, floor.

One iteration = zero_grad + forward + SmoothL1 loss + backward (through the solver) + Adam step, for
ANODE with d = 2, p = 5, a time-dependent MLP of width 32, batch 64, dopri5 at rtol = atol = 1e-3.
The reference steps torch's default Adam, as the 2019 code does; anode's variants and the floor step
the Adam that anode's `Trainer` builds (`anode.training.default_optimizer`: `anode.optim.FlatAdam`,
torch's Adam on flat buffers, bitwise the same updates, fewer calls):

* reference:         the loop of the 2019 code written directly on torchdiffeq (own ODEFunc with
                     `self.nfe += 1`, zero augmentation by `torch.cat`, `odeint(..., method="dopri5",
                     options={"max_num_steps": 1000})`, `nn.Linear` readout, `SmoothL1Loss`, Adam);
* anode-torchdiffeq: `anode.ODENet` with `SolverConfig(backend="torchdiffeq")` (counted vector field,
                     input checks, typed errors, torchdiffeq's solver loop);
* anode:             `anode.ODENet` with `SolverConfig(backend="anode")`: for this MLP field the fused
                     solve (`anode.solvers.fused`: rk's forward operations without autograd, the
                     same steps and bits, and a hand-written backward of the whole solve);
* anode-rk:          the same with the fused solve turned off (the field's `fused_mlp()` returns
                     None), i.e. `anode.solvers.rk`'s loop with autograd through its operations;
* floor:             the same vector field evaluated eagerly NFE times in a chain (h += f(t, h) / NFE),
                     with the same readout, loss, backward and Adam step: the arithmetic the solve cannot
                     avoid, with no solver logic at all.

All variants start every timed repetition from identical weights (copied from the anode model) and the
same Adam state (after one warm-up step, as in any training step but a run's first), on the same batch,
so each repetition does exactly the same work. Repetitions are
interleaved (the order rotates every round) so that machine noise hits all of them alike.

Each repetition is timed twice: wall-clock (`time.perf_counter`) and process CPU time
(`time.process_time`). On a shared machine the wall-clock also counts the time the process waits
for a core; with one intra-op thread (`--threads 1`) the CPU time is the work itself and is far
less noisy, so the summary ratios use CPU time by default (`--clock wall` for wall-clock); both
tables are printed.

The last lines are machine-readable (`name: value`), ending with `anode/reference` and
`anode/floor` (ratios of median times, for the "anode" backend) and `nfe_equal` (true when the
first iteration's NFE and accepted/rejected steps are the same for the reference and every anode
variant, and the losses agree).

    python benchmarks/toy_iteration.py [--repeats 50] [--threads N] [--clock cpu|wall]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn
from torchdiffeq import odeint

import anode
from anode.training import default_optimizer

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


class UnfusedODEFunc(anode.ODEFunc):
    """anode's MLP field without the fused solve (the "anode" backend then runs `solvers.rk`)."""

    def fused_mlp(self) -> None:
        return None


# --- timing -------------------------------------------------------------------------------------


def make_iteration(model: nn.Module, init: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor,
                   optimizer: Callable[..., torch.optim.Optimizer]) -> tuple[Callable[[], None], Callable[[], float]]:
    """(reset, iterate). Reset (untimed) restores the initial weights and the optimiser's state after
    one warm-up step, so that every timed iteration does the same work as a training step after the
    first (the first Adam step of a run also creates the optimiser's state, once per run)."""
    loss_fn = nn.SmoothL1Loss()
    model.load_state_dict(init)
    opt = optimizer(model.parameters(), lr=LR)

    def iterate() -> float:
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return float(loss.detach())

    iterate()
    warm = copy.deepcopy(opt.state_dict())

    def reset() -> None:
        model.load_state_dict(init)
        opt.load_state_dict(copy.deepcopy(warm))  # loading keeps the given tensors: the step would change `warm`

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
    parser.add_argument("--repeats", type=int, default=50, help="timed rounds (each times every variant once)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed rounds first")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                        help="which timing the summary ratios use (both are printed; default: process CPU time)")
    args = parser.parse_args()
    if args.repeats < 1 or args.warmup < 0:
        parser.error("--repeats must be >= 1 and --warmup >= 0")
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(BATCH, DATA_DIM, generator=gen)
    y = torch.where(x.norm(dim=1, keepdim=True) < 1.0, -1.0, 1.0)

    def make_anode(backend: str) -> anode.ODENet:
        with anode.seeded(0):
            return anode.ODENet(DATA_DIM, HIDDEN, augment_dim=AUGMENT_DIM, time_dependent=True,
                                solver=anode.SolverConfig(method="dopri5", rtol=TOL, atol=TOL, backend=backend))

    model = make_anode("anode")
    model_rk = make_anode("anode")
    model_rk.odeblock.odefunc.__class__ = UnfusedODEFunc
    model_td = make_anode("torchdiffeq")
    init = {k: v.clone() for k, v in model.state_dict().items()}
    ref = RefODENet(DATA_DIM, HIDDEN, augment_dim=AUGMENT_DIM, tol=TOL)
    ref.load_state_dict(init)  # same parameter names: odeblock.odefunc.fc{1,2,3}, linear_layer

    # First iteration: same NFE, same steps, same loss, same gradients?
    firsts = {}
    for name, net in (("anode", model), ("anode-rk", model_rk), ("anode-torchdiffeq", model_td)):
        loss, grads = first_iteration(net, init, x, y)
        n = net.nfe
        firsts[name] = (loss, grads, (n.forward, n.accepted_steps, n.rejected_steps), n.backward)
    loss_ref, grads_ref = first_iteration(ref, init, x, y)
    nfe_ref = ref.odeblock.odefunc.nfe
    nfe_anode = firsts["anode"][2][0]
    same_nfe = all(f[2][0] == nfe_ref and f[2] == firsts["anode-torchdiffeq"][2] for f in firsts.values())
    same_loss = all(abs(f[0] - loss_ref) <= 1e-6 * max(1.0, abs(loss_ref)) for f in firsts.values())
    grad_diff = {name: max(float((a - b).abs().max()) for a, b in zip(f[1], grads_ref)) for name, f in firsts.items()}

    floor = Floor(anode.ODEFunc(DATA_DIM, HIDDEN, augment_dim=AUGMENT_DIM, time_dependent=True),
                  nn.Linear(DATA_DIM + AUGMENT_DIM, 1), AUGMENT_DIM, nfe_anode)
    floor_init = {k.removeprefix("odeblock."): v for k, v in init.items()}
    floor.load_state_dict(floor_init)

    # the 2019 loop steps torch's default Adam; anode's variants (and the floor) the Adam a Trainer
    # builds (`anode.training.default_optimizer`: FlatAdam, bitwise the same updates)
    variants = {name: make_iteration(m, state, x, y, torch.optim.Adam if name == "reference" else default_optimizer)
                for name, m, state in
                (("reference", ref, init), ("anode-torchdiffeq", model_td, init), ("anode-rk", model_rk, init),
                 ("anode", model, init),
                 ("floor", floor, floor_init))}
    names = list(variants)
    clocks = {"wall": time.perf_counter, "cpu": time.process_time}
    times: dict[str, dict[str, list[float]]] = {clock: {name: [] for name in names} for clock in clocks}
    start = time.perf_counter()
    for rnd in range(args.warmup + args.repeats):
        shift = rnd % len(names)
        order = names[shift:] + names[:shift]
        for name in order:
            reset, iterate = variants[name]
            reset()
            wall0, cpu0 = time.perf_counter(), time.process_time()
            iterate()
            cpu1, wall1 = time.process_time(), time.perf_counter()
            if rnd >= args.warmup:
                times["wall"][name].append(wall1 - wall0)
                times["cpu"][name].append(cpu1 - cpu0)
    total = time.perf_counter() - start
    # every timed repetition started from the same state, so the NFE must not have changed
    if (model.nfe.forward != nfe_anode or model_rk.nfe.forward != nfe_anode
            or model_td.nfe.forward != firsts["anode-torchdiffeq"][2][0]
            or ref.odeblock.odefunc.nfe != nfe_ref):
        raise RuntimeError("NFE changed between repetitions: the reset is broken")

    med = {clock: {name: statistics.median(v) for name, v in by_name.items()} for clock, by_name in times.items()}
    q = {clock: {name: statistics.quantiles(v, n=4) if len(v) > 1 else [v[0]] * 3 for name, v in by_name.items()}
         for clock, by_name in times.items()}
    print(f"torch {torch.__version__}, anode {anode.__version__}, threads {torch.get_num_threads()}, device cpu")
    print(f"ANODE d={DATA_DIM} p={AUGMENT_DIM} width={HIDDEN} time-dependent, batch {BATCH}, "
          f"dopri5 rtol=atol={TOL:g}, backprop through the solver, Adam lr {LR:g}")
    for name, (loss, _, steps, bwd) in firsts.items():
        print(f"first iteration, {name}: NFE {steps[0]} (accepted {steps[1]}, rejected {steps[2]}, backward {bwd}), "
              f"loss {loss:.8f}, max |grad diff| vs reference {grad_diff[name]:.2e}")
    print(f"first iteration, reference: NFE {nfe_ref}, loss {loss_ref:.8f} -> "
          f"{'same NFE' if same_nfe else 'DIFFERENT NFE'}, {'same loss' if same_loss else 'DIFFERENT LOSS'}")
    print(f"{args.repeats} interleaved rounds after {args.warmup} warm-up rounds ({total:.1f} s); timings on a "
          f"shared machine are noisy, compare the medians of one run:")
    for clock, label in (("wall", "wall-clock"), ("cpu", "process CPU time")):
        print(f" {label}:")
        for name in names:
            lo, hi = q[clock][name][0], q[clock][name][2]
            print(f"  {name:<18} median {1e3 * med[clock][name]:8.3f} ms  (IQR {1e3 * lo:.3f}-{1e3 * hi:.3f} ms)"
                  f"  NFE {nfe_anode if name != 'reference' else nfe_ref}")
        m = med[clock]
        print(f"  anode/reference {m['anode'] / m['reference']:.3f}, anode-torchdiffeq/reference "
              f"{m['anode-torchdiffeq'] / m['reference']:.3f}, floor/reference {m['floor'] / m['reference']:.3f}, "
              f"anode/floor {m['anode'] / m['floor']:.3f}")
    med = med[args.clock]
    print(f"summary ratios below: median {'process CPU time' if args.clock == 'cpu' else 'wall-clock'}")
    print(f"anode-torchdiffeq/reference: {med['anode-torchdiffeq'] / med['reference']:.3f}")
    print(f"anode-rk/reference: {med['anode-rk'] / med['reference']:.3f}")
    print(f"anode/anode-rk: {med['anode'] / med['anode-rk']:.3f}")
    print(f"reference/floor: {med['reference'] / med['floor']:.3f}")
    print(f"anode/reference: {med['anode'] / med['reference']:.3f}")
    print(f"anode/floor: {med['anode'] / med['floor']:.3f}")
    print(f"nfe_equal: {'true' if same_nfe and same_loss else 'false'}")
    if not (same_nfe and same_loss):
        raise SystemExit("anode and the reference disagree on the first iteration")


if __name__ == "__main__":
    main()
