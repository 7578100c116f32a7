"""Train R `Trainer`s as one stacked model: one batched solve and one optimiser step per iteration.

Each member is an ordinary `anode.Trainer` (its model, settings, output folder, callback,
history and checkpoints); `EnsembleTrainer` only replaces the per-iteration computation. Member r
draws its batches from its own loader, keeps its own step sizes, accepted/rejected steps and NFE
in the batched solve, and is updated by the same Adam arithmetic on its own slice of the stacked
weights (with its own weight decay: members may differ in it), so its records equal those of the
same Trainer fitted alone up to float rounding
(`tests/test_ensemble.py` checks losses to 1e-5 over several epochs). Checkpoints are written per
member in the Trainer's own format, so a stopped ensemble resumes as an ensemble or as separate
runs, and separate runs stopped at the same iteration resume together.

A member whose solve fails stops (its history up to the failed iteration is kept, as when it
fails alone) and the others go on. Under per-sample step control a member fails when one of its
samples fails, before its optimiser step, with the error its `Trainer.step` raises alone
(`anode.training.evaluation.check_failed_samples`; with `sample_failure="raise"`, the first failed
sample's typed error naming it).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch
from torch.nn import functional as F
from tqdm.auto import tqdm

from ..history import History, write_json
from ..optim import FlatAdam
from ..solve import SolverError
from ..solvers.base import failed_samples_error
from ..solvers.control import row_error
from ..training import Trainer, default_optimizer
from ..training.evaluation import SAMPLE_NFE_KEYS
from ..training.losses import check_targets, make_loss
from .solve import MemberFailure
from .stacked import StackedODENet, StackedResNet, ensemble_support, stack_models

__all__ = ["MEMBER_KEYS", "EnsembleTrainer", "trainer_support"]

#: TrainConfig keys that may differ between members (they do not change the stacked computation;
#: a member's weight decay is added to its own rows of the gradients, as its Adam would add it).
MEMBER_KEYS = frozenset({"regulariser_seed", "progress", "weight_decay"})
#: Adam hyper-parameters anode's default optimiser uses (others are not stacked).
_ADAM_DEFAULTS = {"betas": (0.9, 0.999), "eps": 1e-8, "amsgrad": False, "maximize": False}


def trainer_support(trainer: Trainer) -> str | None:
    """Why `trainer` cannot train in an ensemble, or None when it can.

    It can when its model stacks (`anode.ensemble.ensemble_support`), it uses the default Adam
    optimiser and the config's own loss, no scheduler, no TensorBoard, and no regulariser other
    than the kinetic energy (on an ODE model).

    Arguments:
        trainer: a Trainer.

    Returns:
        A one-line reason, or None.
    """
    reason = ensemble_support(trainer.model)
    if reason is not None:
        return reason
    cfg = trainer.config
    if set(cfg.regularisers) - {"kinetic_energy"}:
        return f"regularisers {sorted(set(cfg.regularisers) - {'kinetic_energy'})} (stacked training integrates the kinetic energy only)"
    if cfg.regularisers and not trainer.blocks:
        return "a regulariser on a model without an ODE block"
    if trainer.scheduler is not None:
        return "a learning-rate scheduler"
    if trainer._tensorboard is not None:
        return "TensorBoard logging"
    if type(trainer.loss_fn) is not type(make_loss(cfg.loss)) or getattr(trainer.loss_fn, "reduction", "mean") != "mean" \
            or getattr(trainer.loss_fn, "delta", 1.0) != 1.0:
        return "a custom loss function"
    opt = trainer.optimizer
    if type(opt) not in (torch.optim.Adam, FlatAdam) or len(opt.param_groups) != 1:  # the same updates
        return f"optimizer {type(opt).__name__} (stacked training uses the default Adam)"
    group = opt.param_groups[0]
    if group["lr"] != cfg.lr or group["weight_decay"] != cfg.weight_decay or any(
            tuple(group[k]) != v if isinstance(v, tuple) else group[k] != v for k, v in _ADAM_DEFAULTS.items()):
        return "an Adam with other settings than the config's"
    return None


def _member_loss(pred: torch.Tensor, target: torch.Tensor, loss: str) -> torch.Tensor:
    """Each member's batch-mean loss: [R, B, out] x [R, B, ...] -> [R]."""
    if loss == "huber":
        return F.huber_loss(pred, target, reduction="none").flatten(1).mean(1)
    if loss == "mse":
        return F.mse_loss(pred, target, reduction="none").flatten(1).mean(1)
    size, batch = pred.shape[:2]
    return F.cross_entropy(pred.flatten(0, 1), target.flatten(0, 1), reduction="none").view(size, batch).mean(1)


def _member_correct(pred: torch.Tensor, target: torch.Tensor, loss: str) -> torch.Tensor:
    """Each member's number of correct predictions (`anode.training`'s rule, per member): [R]."""
    if loss == "cross_entropy":
        return (pred.argmax(2) == target).sum(1)
    return (torch.sign(pred) == torch.sign(target)).all(dim=2).sum(1)


class EnsembleTrainer:
    """Fit several Trainers together (see the module docstring).

    Arguments:
        trainers: the members: Trainers whose models share one architecture and whose settings
            are equal up to `regulariser_seed`, `progress` and `weight_decay`.

    Raises:
        ValueError: no trainers, a trainer that cannot train in an ensemble (the reason is given),
            or members with different settings or architectures.
    """

    def __init__(self, trainers: Sequence[Trainer]) -> None:
        self.trainers = list(trainers)
        if not self.trainers:
            raise ValueError("an ensemble needs at least one trainer")
        for i, trainer in enumerate(self.trainers):
            reason = trainer_support(trainer)
            if reason is not None:
                raise ValueError(f"trainer {i} cannot train in an ensemble: {reason}")
        shared = {k: v for k, v in self.trainers[0].config.to_dict().items() if k not in MEMBER_KEYS}
        for i, trainer in enumerate(self.trainers[1:], 1):
            other = {k: v for k, v in trainer.config.to_dict().items() if k not in MEMBER_KEYS}
            changed = sorted(k for k in shared if shared[k] != other[k])
            if changed:
                raise ValueError(f"trainer {i} has other training settings than trainer 0 ({', '.join(changed)}); "
                                 "only runs with equal settings train together")
        self.config = self.trainers[0].config
        self.stack: StackedODENet | StackedResNet | None = None
        self.optimizer: torch.optim.Adam | None = None
        decays = [t.config.weight_decay for t in self.trainers]
        #: The stacked Adam's weight decay: the members' when they share one, else 0 and
        #: `_decays` (value -> members) adds each member's to its rows of the gradients.
        self._weight_decay = decays[0] if len(set(decays)) == 1 else 0.0
        self._decays: dict[float, list[int]] = {}
        if len(set(decays)) > 1:
            for r, decay in enumerate(decays):
                if decay != 0:
                    self._decays.setdefault(decay, []).append(r)
        self.alive = [True] * len(self.trainers)
        self.errors: list[SolverError | None] = [None] * len(self.trainers)
        self._targets_checked = False  # the first step of each fit checks every member's targets

    def fit(self, train_loaders: Sequence[Any], *, eval_loaders: Sequence[Any] | None = None,
            resume: bool = True) -> list[History | SolverError]:
        """Train every member for `config.epochs` epochs (or `config.max_iterations` steps).

        Arguments:
            train_loaders: member r's loader at index r; all yield the same number of batches of
                the same sizes (e.g. `TensorLoader`s over equally many samples, seeded per member).
            eval_loaders: member r's evaluation loader (or None) at index r; None: no evaluation.
            resume: resume each member from its `out_dir/checkpoint.pt` when it exists; all members
                must then stand at the same iteration.

        Returns:
            Per member, its `History`, or the `SolverError` that stopped it (its history so far
            stays in `trainers[r].history`; written to its `out_dir` with `History.save`).

        Raises:
            ValueError: loaders of different lengths or counts, members resuming from different
                iterations (train those apart), or first-batch targets that do not fit the
                predictions under the config's loss (`anode.training.losses.check_targets`).
        """
        size = len(self.trainers)
        eval_loaders = list(eval_loaders) if eval_loaders is not None else [None] * size
        if len(train_loaders) != size or len(eval_loaders) != size:
            raise ValueError(f"give one train (and eval) loader per member: {size} members, "
                             f"{len(train_loaders)} train and {len(eval_loaders)} eval loaders")
        lengths = {len(loader) for loader in train_loaders}
        if len(lengths) != 1:
            raise ValueError(f"members' loaders yield different numbers of batches {sorted(lengths)}; "
                             "only runs over equally many samples train together")
        for trainer, loader in zip(self.trainers, train_loaders):
            trainer._train_loader = loader
            if resume and trainer.checkpoint_path is not None and trainer.checkpoint_path.exists():
                trainer.load_checkpoint(trainer.checkpoint_path, train_loader=loader)
        positions = {(t.epoch, t.iteration) for t in self.trainers}
        if len(positions) != 1:
            raise ValueError(f"members resume from different (epoch, iteration) positions {sorted(positions)}; "
                             "train them apart or start them over")
        self._build()
        self._targets_checked = False
        lead, cfg = self.trainers[0], self.config
        epochs = tqdm(range(lead.epoch, cfg.epochs), desc=f"epochs ({size} runs together)", leave=True,
                      disable=not cfg.progress, initial=lead.epoch, total=cfg.epochs)
        for _ in epochs:
            if self._budget_spent():
                break
            firsts = [len(t.history.iterations) for t in self.trainers]
            for batches in zip(*train_loaders):
                self._step(batches)
                if self._budget_spent() or not any(self.alive):
                    break
            self._sync_members()
            for r in self._live():
                try:
                    self.trainers[r]._end_epoch(firsts[r], eval_loaders[r])
                except SolverError as err:  # its evaluation failed: it stops, as it would alone
                    self.alive[r], self.errors[r] = False, err
            if not any(self.alive):
                break
        for r in self._live():
            trainer = self.trainers[r]
            if trainer.out_dir is not None:
                if trainer._saved_at != trainer.iteration:
                    trainer._save(trainer.out_dir, train_loaders[r])
                write_json(trainer.out_dir / "summary.json", trainer.summary())
        return [t.history if self.alive[r] else self.errors[r] for r, t in enumerate(self.trainers)]  # type: ignore[misc]

    # --- internals -----------------------------------------------------------------------------

    def _live(self) -> list[int]:
        return [r for r, ok in enumerate(self.alive) if ok]

    def _budget_spent(self) -> bool:
        cap = self.config.max_iterations
        return cap is not None and all(self.trainers[r].iteration >= cap for r in self._live())

    def _build(self) -> None:
        """Stack the members' weights and Adam states (as loaded from their checkpoints)."""
        models = [t.model for t in self.trainers]
        self.stack = stack_models(models)
        self.optimizer = default_optimizer(self.stack.parameters(), lr=self.config.lr, weight_decay=self._weight_decay)
        member_params = [dict(m.named_parameters()) for m in models]
        for name, stacked in zip(self.stack.names, self.stack.params):
            states = [t.optimizer.state.get(params[name]) for t, params in zip(self.trainers, member_params)]
            if all(not s for s in states):
                continue
            if any(not s for s in states) or len({float(s["step"]) for s in states}) != 1:
                raise ValueError("members' optimiser states are at different steps; train them apart")
            self.optimizer.state[stacked] = {
                "step": states[0]["step"].clone(),
                "exp_avg": torch.stack([s["exp_avg"] for s in states]).clone(),
                "exp_avg_sq": torch.stack([s["exp_avg_sq"] for s in states]).clone(),
            }

    @torch.no_grad()
    def _sync_member(self, r: int) -> None:
        """Copy member r's weights and Adam state from the stack into its own model and optimiser."""
        stack, optimizer, trainer = self.stack, self.optimizer, self.trainers[r]
        stack.copy_member_to(r, trainer.model)
        own = dict(trainer.model.named_parameters())
        for name, stacked in zip(stack.names, stack.params):
            state = optimizer.state.get(stacked)
            if state:
                trainer.optimizer.state[own[name]] = {"step": state["step"].clone(), "exp_avg": state["exp_avg"][r].clone(),
                                                      "exp_avg_sq": state["exp_avg_sq"][r].clone()}

    def _sync_members(self) -> None:
        for r in self._live():
            self._sync_member(r)

    @torch.no_grad()
    def _decay_members(self) -> None:
        """Add each member's own weight decay to its rows of the stacked gradients (members that
        differ in it; the stacked Adam then has none): `grad + decay * weight`, the operation its
        Adam applies alone (`grad.add(param, alpha=weight_decay)`), element for element."""
        for decay, members in self._decays.items():
            grads = [p.grad[r] for p in self.stack.params if p.grad is not None for r in members]
            weights = [p[r] for p in self.stack.params if p.grad is not None for r in members]
            torch._foreach_add_(grads, weights, alpha=decay)

    def _member_error(self, r: int, failure: MemberFailure) -> SolverError:
        """The error member r's failed solve raises in its own `Trainer.step` (per-sample control:
        its failed samples named, or under `sample_failure="raise"` its first, as `row_error` names it)."""
        if not failure.samples:
            return failure.error
        solver = getattr(self.stack, "solver", None)  # (samples only come from an ODE stack)
        if solver is not None and solver.sample_failure == "raise":
            return row_error(failure.error, failure.samples[0][0])
        return failed_samples_error(failure.samples, where=f"training iteration {self.trainers[r].iteration}")

    def _step(self, batches: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """One iteration of every live member; appends its record to its history."""
        start = time.perf_counter()
        stack, optimizer, cfg = self.stack, self.optimizer, self.config
        device = stack.params[0].device
        x = torch.stack([b[0] for b in batches]).to(device)
        y = torch.stack([b[1] for b in batches]).to(device)
        optimizer.zero_grad(set_to_none=True)
        weight = cfg.kinetic_energy
        out = stack(x, alive=self.alive, kinetic_energy=weight > 0)
        pred, counts = out.pred, out.counts
        for r, failure in enumerate(out.failures):
            if failure is not None and self.alive[r]:
                self.alive[r], self.errors[r] = False, self._member_error(r, failure)
        live = self._live()
        if not live:
            return
        if not self._targets_checked:  # before the first optimiser step, as Trainer.fit does
            for r in live:
                check_targets(pred[r], y[r], cfg.loss)
            self._targets_checked = True
        losses = _member_loss(pred, y, cfg.loss)
        objective = losses
        if weight > 0:  # as Trainer.step: data loss + (0 + weight * kinetic energy)
            regularisation = losses.new_zeros(()) + weight * out.kinetic_energy
            objective = losses + regularisation
        objective[live].sum().backward()
        self._decay_members()
        optimizer.step()
        values = losses.detach().cpu().tolist()
        correct = _member_correct(pred.detach(), y, cfg.loss).tolist()
        elapsed = (time.perf_counter() - start) / len(live)
        for r in live:
            trainer = self.trainers[r]
            record: dict[str, Any] = {
                "iteration": trainer.iteration, "epoch": trainer.epoch, "loss": values[r],
                "accuracy": correct[r] / x.shape[1],
                "nfe_forward": counts[r]["forward"], "nfe_backward": 0, "time": elapsed,
            }
            per_sample = counts[r].get("per_sample")
            if per_sample:  # per-sample step control: the records of `Trainer` (`training.evaluation.sample_nfe`)
                record.update(dict(zip(SAMPLE_NFE_KEYS, (sum(per_sample) / len(per_sample), max(per_sample)), strict=True)))
            if weight > 0:
                record["kinetic_energy"] = float(out.kinetic_energy[r].detach())
                record["regularisation"] = float(regularisation[r].detach())
            trainer.iteration += 1
            trainer.history.iterations.append(record)
            if trainer.callback is not None:
                self.stack.copy_member_to(r, trainer.model)  # the callback sees the member's current weights
                trainer.callback(trainer, record)

