"""Per-sample step control: `SolverConfig(backend="anode", step_control="sample")`."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.autograd import gradcheck

import anode
from anode import NFE, ODEBlock, ODEFunc, SolverConfig, odesolve
from anode.solvers import rk

pytestmark = pytest.mark.usefixtures("single_thread")

F64 = torch.float64
SAMPLE = {"backend": "anode", "step_control": "sample"}


class VanDerPol(nn.Module):
    """A batch of Van der Pol oscillators, one stiffness mu per sample (the field holds per-sample data)."""

    def __init__(self, mu: torch.Tensor) -> None:
        super().__init__()
        self.mu = nn.Parameter(mu.clone())

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x, v = y[:, 0], y[:, 1]
        return torch.stack([v, self.mu * (1 - x * x) * v - x], 1)


def _vdp(mu: list[float], *, rtol: float = 1e-6, t_end: float = 5.0, **kwargs) -> tuple[torch.Tensor, NFE]:
    y0 = torch.tensor([[2.0, 0.0]] * len(mu), dtype=F64)
    nfe = NFE()
    out = odesolve(VanDerPol(torch.tensor(mu, dtype=F64)), y0, torch.tensor([0.0, 1.0, t_end], dtype=F64),
                   SolverConfig(rtol=rtol, atol=rtol, **{**SAMPLE, **kwargs}), nfe=nfe)
    return out, nfe


@pytest.mark.parametrize("method", ["dopri5", "bosh3"])
@pytest.mark.parametrize("dtype", [torch.float32, F64], ids=["float32", "float64"])
def test_batch_of_one_is_bitwise_batch_control(method: str, dtype: torch.dtype) -> None:
    results = {}
    for control in ("batch", "sample"):
        with anode.seeded(0):
            block = ODEBlock(ODEFunc(2, 16, time_dependent=True),
                             solver=SolverConfig(method=method, backend="anode", step_control=control)).to(dtype)
        x = torch.tensor([[1.5, -0.7]], dtype=dtype, requires_grad=True)
        out = block(x, eval_times=torch.tensor([0.0, 0.3, 1.0]))
        out.pow(2).sum().backward()
        results[control] = (out.detach(), [x.grad] + [p.grad for p in block.parameters()], block.nfe)
    (out_b, grads_b, nfe_b), (out_s, grads_s, nfe_s) = results["batch"], results["sample"]
    assert torch.equal(out_s, out_b)
    for g_s, g_b in zip(grads_s, grads_b, strict=True):
        assert torch.equal(g_s, g_b)
    assert (nfe_s.forward, nfe_s.accepted_steps, nfe_s.rejected_steps) == (
        nfe_b.forward, nfe_b.accepted_steps, nfe_b.rejected_steps)
    assert nfe_s.per_sample == [nfe_b.forward] and nfe_b.per_sample == []


@pytest.mark.parametrize("method", ["dopri5", "bosh3"])
def test_per_sample_loop_on_one_sample_has_the_batch_loops_forward_bits(method: str) -> None:
    """The vectorised loop itself (a batch of one is routed to the batch loop): the same steps and bits."""
    field = VanDerPol(torch.tensor([6.0], dtype=F64))
    y0 = torch.tensor([[2.0, 0.0]], dtype=F64)
    times = [0.0, 0.7, 3.0]
    nfe_s, nfe_b = NFE(), NFE()
    with torch.no_grad():
        out_s = rk._solve_adaptive_per_sample(field, y0, times, method, 1e-6, 1e-6, 1000, rk.Counts(nfe_s), "forward")
        out_b = odesolve(field, y0, torch.tensor(times, dtype=F64), SolverConfig(method=method, rtol=1e-6, atol=1e-6,
                                                                             backend="anode"), nfe=nfe_b)
    assert torch.equal(out_s, out_b)
    assert nfe_s.forward == nfe_b.forward == nfe_s.per_sample[0]
    assert (nfe_s.accepted_steps, nfe_s.rejected_steps) == (nfe_b.accepted_steps, nfe_b.rejected_steps)


def test_a_samples_result_does_not_depend_on_its_batch() -> None:
    """Sample mu = 3 alone and inside two different batches: the same steps, the same NFE, the same
    numbers. Bitwise here: every operation of a step is element-wise or a reduction within one sample's
    row (stage sums over the stage axis, the RMS norm over the row), and the step control is per sample.
    (A field whose own kernels reduce across the batch, e.g. a matrix product whose blocking depends on
    the number of rows, can round a row differently in another batch: then it is equal to rounding.)"""
    alone, nfe_alone = _vdp([3.0])
    in_a, nfe_a = _vdp([1.0, 3.0, 9.0])
    in_b, nfe_b = _vdp([3.0, 2.0, 5.0, 7.5, 1.2])
    assert torch.equal(in_a[:, 1], alone[:, 0])
    assert torch.equal(in_b[:, 0], alone[:, 0])
    assert nfe_a.per_sample[1] == nfe_b.per_sample[0] == nfe_alone.forward == nfe_alone.per_sample[0]
    assert nfe_a.per_sample_accepted[1] == nfe_alone.accepted_steps


def test_a_samples_result_in_an_mlp_batch_equals_its_solve_alone() -> None:
    with anode.seeded(1):
        func = ODEFunc(2, 32, time_dependent=True).double()
    x = torch.randn(6, 2, dtype=F64, generator=torch.Generator().manual_seed(2))
    solver = SolverConfig(rtol=1e-6, atol=1e-6, **SAMPLE)
    t = torch.tensor([0.0, 1.0], dtype=F64)
    full = odesolve(func, x, t, solver)
    for i in (0, 3, 5):
        alone = odesolve(func, x[i:i + 1], t, solver)
        # nn.Linear's matrix product may block a row differently in a batch of 6 than alone: equal to rounding
        torch.testing.assert_close(full[:, i], alone[:, 0], rtol=1e-12, atol=1e-12)


def test_a_stiff_sample_does_not_cost_the_easy_ones() -> None:
    _, easy = _vdp([1.0, 1.0])
    _, mixed = _vdp([1.0, 1.0, 50.0])
    assert mixed.per_sample[:2] == easy.per_sample
    assert mixed.per_sample[2] > 2 * easy.per_sample[0]
    assert mixed.forward == mixed.per_sample_max  # the batched calls: as many as the hardest sample needs
    assert mixed.per_sample_mean == pytest.approx(sum(mixed.per_sample) / 3)
    _, batch = _vdp([1.0, 1.0, 50.0], step_control="batch")
    assert batch.forward > mixed.per_sample[0]  # batch control makes every sample pay for the stiff one


def test_frozen_samples_add_no_nfe() -> None:
    """A sample whose solve ends early (one easy step to the end) stays frozen at its counts while the
    others go on; the field is not called any more once every sample is done."""
    calls = []

    class Field(nn.Module):
        def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            calls.append(t.shape)
            rate = torch.tensor([0.0, 1.0, 20.0], dtype=y.dtype)[:, None]
            return -rate * y * (1 + t)

    nfe = NFE()
    out = odesolve(Field(), torch.ones(3, 4, dtype=F64), torch.tensor([0.0, 2.0], dtype=F64),
                   SolverConfig(rtol=1e-6, atol=1e-8, **SAMPLE), nfe=nfe)
    assert len(calls) == nfe.forward == max(nfe.per_sample)
    assert all(shape == (3, 1) for shape in calls)  # one time per sample, broadcastable against y
    assert nfe.per_sample[0] < nfe.per_sample[1] < nfe.per_sample[2]
    assert nfe.per_sample[0] == 2 + 6 * nfe.per_sample_accepted[0] + 6 * nfe.per_sample_rejected[0]
    assert torch.equal(out[-1, 0], torch.ones(4, dtype=F64))
    torch.testing.assert_close(out[-1, 1], torch.full((4,), torch.tensor(-4.0).exp().item(), dtype=F64),
                               rtol=1e-5, atol=1e-8)


def test_gradcheck_through_a_per_sample_solve() -> None:
    mu = torch.tensor([0.5, 2.0, 4.0], dtype=F64, requires_grad=True)
    y0 = torch.tensor([[2.0, 0.0], [1.0, 0.5], [-1.0, 1.0]], dtype=F64, requires_grad=True)

    def solve(y0: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
        def field(t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            x, v = y[:, 0], y[:, 1]
            return torch.stack([v, mu * (1 - x * x) * v - x], 1)

        return odesolve(field, y0, torch.tensor([0.0, 0.3, 0.8], dtype=F64),
                        SolverConfig(rtol=1e-9, atol=1e-9, **SAMPLE))

    # (as with batch control, later step sizes are detached, as in torchdiffeq: the discrete map is
    # differentiated exactly only up to that, invisible at 1e-9; see test_solvers_anode's gradcheck)
    assert gradcheck(solve, (y0, mu), eps=1e-6, atol=1e-6, rtol=1e-5)


def test_adjoint_forward_per_sample_backward_joint() -> None:
    mu = torch.tensor([1.0, 4.0, 2.0], dtype=F64)
    y0 = torch.tensor([[2.0, 0.0]] * 3, dtype=F64)
    t = torch.tensor([0.0, 1.0, 2.0], dtype=F64)
    grads = {}
    for adjoint in (False, True):
        field = VanDerPol(mu)
        y = y0.clone().requires_grad_(True)
        nfe = NFE()
        out = odesolve(field, y, t, SolverConfig(rtol=1e-8, atol=1e-8, adjoint=adjoint, **SAMPLE), nfe=nfe)
        out.pow(2).sum().backward()
        grads[adjoint] = (y.grad, field.mu.grad)
        assert len(nfe.per_sample) == 3
        assert (nfe.backward > 0) == adjoint
    for g_adj, g_bp in zip(grads[True], grads[False], strict=True):
        # the adjoint's gradients are those of the continuous problem, to its solve's tolerance
        torch.testing.assert_close(g_adj, g_bp, rtol=1e-3, atol=1e-6)


def test_van_der_pol_accuracy_against_a_tight_solve() -> None:
    mu = [1.0, 2.5, 6.0, 9.0]
    out, _ = _vdp(mu, rtol=1e-7, t_end=10.0)
    ref, _ = _vdp(mu, rtol=1e-11, t_end=10.0, step_control="batch", max_num_steps=100_000)
    assert float((out - ref).detach().abs().max()) < 1e-4


def test_in_ode_block_and_trainer_pieces() -> None:
    """Inside an ODEBlock (the fused MLP path is not used: the generic loop runs) with a float32 MLP."""
    with anode.seeded(0):
        block = ODEBlock(ODEFunc(2, 16, augment_dim=1), solver=SolverConfig(**SAMPLE))
    x = torch.randn(8, 2, generator=torch.Generator().manual_seed(0))
    out = block(x)
    out.sum().backward()
    assert out.shape == (8, 3) and len(block.nfe.per_sample) == 8
    assert all(p.grad is not None for p in block.parameters())


def test_config_key_and_fingerprint() -> None:
    from anode.lab.experiments.config import parse_config
    from anode.lab.experiments.fingerprint import _solver_part

    assert "step_control" not in _solver_part(SolverConfig())  # existing fingerprints unchanged
    assert _solver_part(SolverConfig(**SAMPLE))["step_control"] == "sample"
    assert SolverConfig(**SAMPLE).to_dict()["step_control"] == "sample"
    assert SolverConfig(**SolverConfig(**SAMPLE).to_dict()) == SolverConfig(**SAMPLE)
    del parse_config  # (the [solver] table is SolverConfig's fields: test_experiment_config covers the parsing)


def test_errors() -> None:
    with pytest.raises(ValueError, match=r"unknown step_control 'row'; valid choices: \['batch', 'sample'\]"):
        SolverConfig(step_control="row")
    with pytest.raises(ValueError, match=r"needs backend='anode'.*valid choices: \['batch', 'sample'\]"):
        SolverConfig(step_control="sample")
    with pytest.raises(ValueError, match="needs backend='anode' and an adaptive method"):
        SolverConfig(method="rk4", step_size=0.1, step_control="sample", backend="anode")
    with pytest.raises(ValueError, match="0-d state"):
        odesolve(lambda t, y: -y, torch.tensor([1.0]).sum(), torch.tensor([0.0, 1.0]), SolverConfig(**SAMPLE))
    # with sample_failure="raise" a failing sample is named (the solve stops); by default it is skipped
    with pytest.raises(anode.MaxStepsExceeded, match="sample 2 of the batch"):
        _vdp([1.0, 1.0, 200.0], rtol=1e-9, max_num_steps=60, sample_failure="raise")

    def blows_up(t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        rate = torch.tensor([0.0, 1.0], dtype=y.dtype)[:, None]
        return rate * y * y * 1e3

    with pytest.raises(anode.SolverError, match="sample 1 of the batch"):
        odesolve(blows_up, torch.ones(2, 3, dtype=F64), torch.tensor([0.0, 5.0], dtype=F64),
                 SolverConfig(sample_failure="raise", **SAMPLE))


# ----------------------------------------------------------------------------- end to end: Trainer, configs, ensembles


@pytest.mark.parametrize("augment_dim", [0, 1], ids=["NODE", "ANODE"])
def test_fit_trains_with_per_sample_control(augment_dim: int) -> None:
    from anode.data import ConcentricSpheres
    from anode.training import TrainConfig

    data = ConcentricSpheres(2, num_points_inner=16, num_points_outer=32, seed=0)
    with anode.seeded(0):
        model = anode.ODENet(2, 8, augment_dim=augment_dim, solver=SolverConfig(rtol=1e-3, atol=1e-3, **SAMPLE))
    history = anode.fit(model, data.loader(batch_size=16, seed=0),
                        TrainConfig(epochs=4, lr=1e-2, progress=False), eval_loader=data.loader(batch_size=48))
    records = history.iterations
    assert len(records) == 12
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in records)
    assert history.epochs[-1]["loss"] < history.epochs[0]["loss"]
    for r in records:  # nfe_forward: the batched calls, as many as the sample that needs most
        assert r["nfe_forward"] > 0 and r["nfe_forward"] == r["nfe_forward_sample_max"]
        assert 0 < r["nfe_forward_sample_mean"] <= r["nfe_forward_sample_max"]
    assert {"nfe_forward_sample_mean", "nfe_forward_sample_max", "eval_nfe_forward"} <= set(history.epochs[-1])
    block = model.odeblock
    with torch.no_grad():
        model(data.data[:5])
    assert len(block.nfe.per_sample) == 5 and block.nfe.forward == block.nfe.per_sample_max


def test_trainer_records_are_unchanged_under_batch_control() -> None:
    from anode.data import ConcentricSpheres
    from anode.training import SAMPLE_NFE_KEYS, TrainConfig, Trainer

    data = ConcentricSpheres(2, num_points_inner=8, num_points_outer=8, seed=0)
    with anode.seeded(0):
        model = anode.ODENet(2, 8, solver=SolverConfig(backend="anode"))
    history = Trainer(model, TrainConfig(epochs=1, progress=False)).fit(data.loader(batch_size=8))
    assert not set(SAMPLE_NFE_KEYS) & (set(history.iterations[0]) | set(history.epochs[0]))


def test_sample_nfe_sums_a_samples_counts_over_blocks() -> None:
    from anode.training import sample_nfe

    blocks = [ODEBlock(ODEFunc(2, 4), solver=SolverConfig(**SAMPLE)),
              ODEBlock(ODEFunc(2, 4), solver=SolverConfig(backend="anode")),
              ODEBlock(ODEFunc(2, 4), solver=SolverConfig(**SAMPLE))]
    assert sample_nfe(blocks) == {}  # nothing solved yet
    blocks[0].nfe.forward, blocks[0].nfe.per_sample = 20, [14, 20]
    blocks[1].nfe.forward = 26
    blocks[2].nfe.forward, blocks[2].nfe.per_sample = 8, [8, 3]  # samples: 14 + 26 + 8, 20 + 26 + 3
    assert sample_nfe(blocks) == {"nfe_forward_sample_mean": 48.5, "nfe_forward_sample_max": 49}
    assert sample_nfe(blocks[1:2]) == {}


def _toml(step_control: str | None) -> str:
    key = f'step_control = "{step_control}"\n' if step_control is not None else ""
    return f"""
name = "per-sample"
repeats = 1

[train]
epochs = 1
batch_size = 16
max_iterations = 2

[solver]
backend = "anode"
rtol = 1e-3
atol = 1e-3
{key}
[[datasets]]
kind = "spheres"
name = "s2"
dim = 2
num_points_inner = 8
num_points_outer = 16

[[models]]
name = "ANODE"
kind = "odenet"
hidden_dim = 8
augment_dim = 1
"""


def test_experiment_config_with_sample_control_runs_and_fingerprints(tmp_path) -> None:
    from anode.lab.experiments import load_config, run_experiment
    from anode.lab.experiments.fingerprint import fingerprint_digest, read_fingerprint

    configs = {}
    for control in ("sample", "batch", None):
        path = tmp_path / f"{control}.toml"
        path.write_text(_toml(control), encoding="utf-8")
        configs[control] = load_config(path)
    assert configs["sample"].solver == SolverConfig(rtol=1e-3, atol=1e-3, **SAMPLE)
    assert configs["batch"].solver == configs[None].solver

    out = tmp_path / "exp"
    run_experiment(configs["sample"], out, jobs=1, device="cpu", progress=False, log=lambda _: None)
    (run_dir,) = (out / "runs").glob("*/*/seed-*")
    history = anode.History.load(run_dir).iterations
    assert len(history) == 2 and all("nfe_forward_sample_max" in r for r in history)
    sample_print = read_fingerprint(run_dir)
    assert sample_print["solver"]["step_control"] == "sample"

    # the same run under batch control: another fingerprint; without the key: the batch one, key absent
    out_batch = tmp_path / "exp-batch"
    run_experiment(configs[None], out_batch, jobs=1, device="cpu", progress=False, log=lambda _: None)
    (batch_dir,) = (out_batch / "runs").glob("*/*/seed-*")
    batch_print = read_fingerprint(batch_dir)
    assert "step_control" not in batch_print["solver"]
    assert fingerprint_digest(sample_print) != fingerprint_digest(batch_print)
    assert {k: v for k, v in sample_print["solver"].items() if k != "step_control"} == batch_print["solver"]
    # a folder made under one control refuses the other
    with pytest.raises(anode.lab.experiments.FingerprintMismatch, match="step_control"):
        run_experiment(configs["sample"], out_batch, jobs=1, device="cpu", progress=False, log=lambda _: None)


@pytest.mark.parametrize(("p", "augmentation", "relu"), [(0, "zeros", True), (1, "zeros", False), (2, "learned", True)])
def test_stacked_members_with_per_sample_control_are_each_member_alone(p: int, augmentation: str, relu: bool) -> None:
    """Member and sample axes together: every (member, sample) pair keeps its own steps, so each
    member's predictions, per-sample NFE and gradients are those of its own per-sample solve."""
    from anode.ensemble import StackedODENet

    def member(seed: int) -> anode.ODENet:
        with anode.seeded(seed):
            return anode.ODENet(2, 12, augment_dim=p, augmentation=augmentation, time_dependent=True,
                                non_linearity="relu" if relu else "tanh",
                                solver=SolverConfig(rtol=1e-8, atol=1e-8, **SAMPLE)).double()

    models = [member(s) for s in range(3)]
    x = torch.randn(3, 9, 2, generator=torch.Generator().manual_seed(3), dtype=F64) * 4
    stack = StackedODENet(models)
    out = stack(x)
    out.pred.pow(2).sum().backward()
    assert out.failures == [None] * 3
    for r, model in enumerate(models):
        alone = model(x[r])
        # to rounding, which the error control amplifies at ReLU kinks (as under batch control per member)
        torch.testing.assert_close(out.pred[r], alone, rtol=1e-6 if relu else 1e-11, atol=1e-8 if relu else 1e-12)
        assert out.counts[r]["per_sample"] == model.nfe.per_sample and len(set(model.nfe.per_sample)) > 1
        assert out.counts[r]["forward"] == model.nfe.forward == max(model.nfe.per_sample)
        alone.pow(2).sum().backward()
        for name, param in model.named_parameters():  # relative to the largest entry; ReLU kinks amplify rounding
            gap = (stack.param(name).grad[r] - param.grad).abs().max() / param.grad.abs().max()
            assert gap <= (1e-4 if relu else 1e-9), (name, gap.item())
    # the batched field takes a time per (member, sample), with its gradient
    h = stack.augment(x[:, :4]).detach().requires_grad_(True)
    t = torch.rand(3, 4, dtype=F64, generator=torch.Generator().manual_seed(4)).requires_grad_(True)
    assert torch.autograd.gradcheck(stack.field, (t, h))


def test_stacked_training_with_per_sample_control_follows_each_run_alone() -> None:
    from anode.data import ConcentricSpheres
    from anode.data.loader import TensorLoader
    from anode.ensemble import EnsembleTrainer
    from anode.training import TrainConfig, Trainer

    data = ConcentricSpheres(2, num_points_inner=30, num_points_outer=60, seed=0)
    cfg = TrainConfig(epochs=2, progress=False)

    def trainer(seed: int) -> Trainer:
        with anode.seeded(seed):
            return Trainer(anode.ODENet(2, 12, augment_dim=1, time_dependent=True, solver=SolverConfig(**SAMPLE)), cfg)

    alone = []
    for seed in (0, 1):
        t = trainer(seed)
        t.fit(TensorLoader(data.data, data.targets, batch_size=30, seed=seed))
        alone.append(t.history)
    together = EnsembleTrainer([trainer(s) for s in (0, 1)]).fit(
        [TensorLoader(data.data, data.targets, batch_size=30, seed=s) for s in (0, 1)])
    for a, b in zip(alone, together, strict=True):
        assert len(a.iterations) == len(b.iterations) == 6
        for ra, rb in zip(a.iterations, b.iterations, strict=True):
            assert rb["loss"] == pytest.approx(ra["loss"], rel=1e-5)
            for key in ("nfe_forward", "nfe_forward_sample_max"):
                assert rb[key] == ra[key], key
            assert rb["nfe_forward_sample_mean"] == pytest.approx(ra["nfe_forward_sample_mean"], rel=1e-12)


def test_a_stacked_per_sample_solve_needs_a_sample_axis() -> None:
    from anode.ensemble import ensemble_odesolve

    with pytest.raises(ValueError, match=r"needs a state \[R, B, \.\.\.\].*got shape \(2, 3\)"):
        ensemble_odesolve(lambda t, y: -y, torch.ones(2, 3), SolverConfig(**SAMPLE))
    out, counts, failures = ensemble_odesolve(lambda t, y: -y * torch.arange(1, 4).view(1, 3, 1), torch.ones(2, 3, 1),
                                              SolverConfig(rtol=1e-8, atol=1e-8, **SAMPLE))
    torch.testing.assert_close(out[:, :, 0], torch.exp(-torch.arange(1.0, 4.0)).expand(2, 3), rtol=1e-5, atol=1e-6)
    assert failures == [None, None] and counts[0]["per_sample"] == counts[1]["per_sample"]


def _per_sample_run(dtype: torch.dtype, graph: bool) -> tuple[torch.Tensor, list[torch.Tensor], NFE]:
    with anode.seeded(3):
        block = ODEBlock(ODEFunc(2, 16, augment_dim=1, time_dependent=True),
                         solver=SolverConfig(rtol=1e-5, atol=1e-5, **SAMPLE)).to(dtype)
    gen = torch.Generator().manual_seed(4)
    x = (3.0 * torch.randn(24, 2, generator=gen)).to(dtype).requires_grad_(graph)
    with torch.set_grad_enabled(graph):
        out = block(x, eval_times=torch.tensor([0.0, 0.4, 1.0]))
    grads = []
    if graph:
        out.pow(2).sum().backward()
        grads = [x.grad] + [p.grad for p in block.parameters()]
    return out.detach(), grads, block.nfe


@pytest.mark.parametrize("graph", [False, True], ids=["no-graph", "graph"])
@pytest.mark.parametrize("dtype", [torch.float32, F64], ids=["float32", "float64"])
def test_device_arithmetic_path_is_the_host_paths_bits(dtype: torch.dtype, graph: bool,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Off the CPU the per-row step runs as torch operations on the device (no NumPy step, stage times
    and coefficients as tensors); forced here on the CPU, a per-sample solve gives the host path's values,
    per-sample NFE and steps, and gradients, bit for bit (no GPU was available to run it there)."""
    host = _per_sample_run(dtype, graph)
    monkeypatch.setattr(rk, "_host_arrays", lambda device: False)
    device = _per_sample_run(dtype, graph)
    assert torch.equal(device[0], host[0])
    for g_d, g_h in zip(device[1], host[1], strict=True):
        assert torch.equal(g_d, g_h)
    assert (device[2].forward, device[2].per_sample, device[2].per_sample_accepted, device[2].per_sample_rejected) == (
        host[2].forward, host[2].per_sample, host[2].per_sample_accepted, host[2].per_sample_rejected)
    assert len(set(host[2].per_sample)) > 1  # the samples took different steps
