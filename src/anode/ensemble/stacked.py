"""R models of one architecture as one model with stacked weights (a leading member axis).

`stack_models(models)` copies the weights of R anode models into tensors of shape `[R, ...]`:
`StackedODENet` for `ODENet`/`ODEFlow` (anode's own MLP field `ODEFunc`, any augmentation
strategy) and `StackedResNet` for the `ResNet` baseline. Their forward maps a batch `[R, B, d]`
(one batch per member) to predictions `[R, B, out]` with one batched matrix product per layer; an
ODE model integrates all members in one batched solve in which every member keeps its own step
size, accepted/rejected steps and NFE (`ensemble.solve`), optionally with the kinetic-energy
regulariser integrated along, as `anode.regularisers` does it. `copy_member_to(r, model)` writes
member r's weights back into a standalone model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from ..config import SolverConfig
from ..models.augment import (
    LearnedAugmentation,
    SecondOrderAugmentation,
    ZeroAugmentation,
)
from ..models.fields import NON_LINEARITIES, ODEFunc
from ..models.nets import ODEFlow, ODENet, ResNet
from .solve import MemberFailure, ensemble_odesolve

__all__ = ["ENSEMBLE_METHODS", "StackedODENet", "StackedOutput", "StackedResNet", "ensemble_support", "stack_models",
           "stack_signature"]

#: Adaptive methods the batched solve integrates (with torchdiffeq's step control, per member).
ENSEMBLE_METHODS: tuple[str, ...] = ("dopri5", "bosh3")


def ensemble_support(model: nn.Module) -> str | None:
    """Why `model` cannot be trained in a stacked ensemble, or None when it can.

    Supported: anode's `ResNet`, and `ODENet` and `ODEFlow` with anode's own `ODEFunc` field, any
    augmentation strategy, solved by dopri5 or bosh3 with backpropagation through the solver (no
    adjoint, no extra solver options), on either solver backend (both take torchdiffeq's steps).

    Arguments:
        model: a model.

    Returns:
        A one-line reason, or None.
    """
    if type(model) is ResNet:
        return None
    if type(model) not in (ODENet, ODEFlow):
        return f"{type(model).__name__} is not an anode ODENet, ODEFlow or ResNet"
    block = model.odeblock
    if type(block.odefunc) is not ODEFunc:
        return f"its vector field is {type(block.odefunc).__name__}, not anode's ODEFunc"
    solver: SolverConfig = block.solver
    if solver.method not in ENSEMBLE_METHODS:
        return f"method {solver.method!r} (stacked training integrates {list(ENSEMBLE_METHODS)})"
    if solver.adjoint:
        return "the adjoint method (stacked training backpropagates through the solver)"
    if solver.options:
        return f"solver options {sorted(solver.options)}"
    if type(block.augmenter) not in (ZeroAugmentation, LearnedAugmentation, SecondOrderAugmentation):
        return f"augmentation {type(block.augmenter).__name__}"
    return None


def stack_signature(model: nn.Module) -> tuple[object, ...]:
    """What must be equal for models to stack: class, parameter shapes, activations, ODE options, solver."""
    shapes = tuple((name, tuple(p.shape), p.dtype) for name, p in model.named_parameters())
    activations = tuple(type(m).__name__ for m in model.modules() if type(m) in NON_LINEARITIES.values())
    if type(model) is ResNet:
        return (ResNet, shapes, activations)
    block = model.odeblock
    return (type(model), shapes, activations, block.odefunc.time_dependent, block.augmentation, block.augment_dim,
            block.data_shape, block.solver)


@dataclass(frozen=True)
class StackedOutput:
    """What a stacked forward returns.

    Attributes:
        pred: `[R, B, out]`, member r's predictions in `pred[r]` (meaningless for a failed member).
        counts: per member, its forward NFE and steps (`forward`, `accepted_steps`, `rejected_steps`).
        failures: per member, None or its `MemberFailure`.
        kinetic_energy: `[R]`, each member's batch mean of the integral of ||f||^2 (None unless asked for).
    """

    pred: torch.Tensor
    counts: list[dict[str, int]]
    failures: list[MemberFailure | None]
    kinetic_energy: torch.Tensor | None = None


class _BatchedLinear(torch.autograd.Function):
    """R linear layers at once, with the arithmetic of R separate `F.linear` calls.

    The forward is one `baddbmm`; the backward computes, per member, what autograd computes for
    `F.linear` (`addmm(b, x, W.t())`): grad_x = g @ W, grad_W = g.t() @ x (torch's
    `mm_mat2_backward` for a transposed weight), grad_b = g summed over the batch. Written out,
    the gradients round as a model's own do, so a stacked member trains like the model alone.
    (Not twice differentiable.)
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x, weight)
        return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        x, weight = ctx.saved_tensors
        grad_x = torch.bmm(grad, weight) if ctx.needs_input_grad[0] else None
        grad_w = torch.bmm(grad.transpose(1, 2), x) if ctx.needs_input_grad[1] else None
        grad_b = grad.sum(1) if ctx.needs_input_grad[2] else None
        return grad_x, grad_w, grad_b


def _member_times(t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """The time column [R, B, 1] of the field's input from a time per member [R] or per sample [R, B]."""
    return t.to(h.dtype).reshape(h.shape[0], -1, 1).expand(h.shape[0], h.shape[1], 1)


class _ReluMLP(torch.autograd.Function):
    """R three-layer ReLU MLPs (anode's `ODEFunc`) at once, as one autograd node.

    The forward repeats `_BatchedLinear`'s products and `torch.relu` on `cat([t, h])` (the same
    bits); the backward writes out what autograd would do through those nodes (relu's
    `threshold_backward`, the linear layers as in `_BatchedLinear`), so the gradients are the
    same, with one Python call per evaluation instead of seven autograd nodes. (Not twice
    differentiable.)
    """

    @staticmethod
    def forward(ctx, t: torch.Tensor | None, h: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor,  # type: ignore[override]
                w2: torch.Tensor, b2: torch.Tensor, w3: torch.Tensor, b3: torch.Tensor) -> torch.Tensor:
        x = h if t is None else torch.cat([_member_times(t, h), h], 2)
        z1 = torch.baddbmm(b1.unsqueeze(1), x, w1.transpose(1, 2)).relu_()  # in place: the same values, no copy
        z2 = torch.baddbmm(b2.unsqueeze(1), z1, w2.transpose(1, 2)).relu_()
        ctx.save_for_backward(x, z1, z2, w1, w2, w3)
        ctx.timed = 0 if t is None else t.dim()  # [R] (a time per member) or [R, B] (per sample)
        return torch.baddbmm(b3.unsqueeze(1), z2, w3.transpose(1, 2))

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        x, z1, z2, w1, w2, w3 = ctx.saved_tensors
        need = ctx.needs_input_grad
        grads: list[torch.Tensor | None] = [None] * 8
        grads[6], grads[7] = (torch.bmm(grad.transpose(1, 2), z2) if need[6] else None), (grad.sum(1) if need[7] else None)
        g2 = torch.ops.aten.threshold_backward(torch.bmm(grad, w3), z2, 0)
        grads[4], grads[5] = (torch.bmm(g2.transpose(1, 2), z1) if need[4] else None), (g2.sum(1) if need[5] else None)
        g1 = torch.ops.aten.threshold_backward(torch.bmm(g2, w2), z1, 0)
        grads[2], grads[3] = (torch.bmm(g1.transpose(1, 2), x) if need[2] else None), (g1.sum(1) if need[3] else None)
        if need[0] or need[1]:
            gx = torch.bmm(g1, w1)
            if ctx.timed:
                grads[0] = (gx[..., :1].sum((1, 2)) if ctx.timed == 1 else gx[..., 0]) if need[0] else None
                gx = gx[..., 1:]
            grads[1] = gx if need[1] else None
        return tuple(grads)


class _Stacked(nn.Module):
    """Stacked parameters named like the members' (`param("linear_layer.weight")` is `[R, out, in]`).

    Raises:
        ValueError: no models, a model that cannot be stacked (the reason is given), or members
            of different architectures.
    """

    def __init__(self, models: Sequence[nn.Module]) -> None:
        super().__init__()
        models = list(models)
        if not models:
            raise ValueError("a stacked ensemble needs at least one model")
        for i, model in enumerate(models):
            reason = ensemble_support(model)
            if reason is not None:
                raise ValueError(f"model {i} cannot be trained in a stacked ensemble: {reason}")
        first = stack_signature(models[0])
        for i, model in enumerate(models[1:], 1):
            if stack_signature(model) != first:
                raise ValueError(f"model {i} has another architecture or solver than model 0; "
                                 "only models of one architecture train together")
        self.size = len(models)
        self.names = [name for name, _ in models[0].named_parameters()]
        self.params = nn.ParameterList(
            [nn.Parameter(torch.stack([dict(m.named_parameters())[name].detach() for m in models]).clone())
             for name in self.names])
        self._by_name = dict(zip(self.names, self.params))  # plain dict: ParameterList indexing is slow per call

    def param(self, name: str) -> torch.Tensor:
        """The stacked parameter of the member models' `name` (e.g. "linear_layer.weight")."""
        return self._by_name[name]

    @torch.no_grad()
    def copy_member_to(self, member: int, model: nn.Module) -> nn.Module:
        """Write member `member`'s weights into `model` (a model of the members' architecture); returns it."""
        own = dict(model.named_parameters())
        for name, stacked in zip(self.names, self.params):
            own[name].copy_(stacked[member])
        return model

    def _linear(self, prefix: str, x: torch.Tensor) -> torch.Tensor:
        """x [R, B, in] -> [R, B, out] with member r's layer `prefix` (weight [R, out, in], bias [R, out])."""
        return _BatchedLinear.apply(x, self.param(f"{prefix}.weight"), self.param(f"{prefix}.bias"))

    def _linear_each(self, prefix: str, x: torch.Tensor) -> torch.Tensor:
        """As `_linear`, member by member with `F.linear` (bitwise the standalone layer's numbers).

        Used for the layers applied once per forward (readout, learned augmentation), where a
        batched product with a narrow output rounds differently from the standalone layer."""
        # unbind: one view op each way (a backward stack) instead of R selects, whose backward
        # writes each member's gradient into zeros and adds the R results (the same values)
        xs, weights, biases = x.unbind(0), self.param(f"{prefix}.weight").unbind(0), self.param(f"{prefix}.bias").unbind(0)
        return torch.stack([F.linear(xs[r], weights[r], biases[r]) for r in range(self.size)])

    def _check_batch(self, x: torch.Tensor, data_dim: int) -> None:
        if x.dim() != 3 or x.shape[0] != self.size or x.shape[2] != data_dim:
            raise ValueError(f"expected a batch per member of shape [{self.size}, batch, {data_dim}], "
                             f"got {tuple(x.shape)}")


class StackedODENet(_Stacked):
    """R `ODENet`/`ODEFlow` models of one architecture, evaluated together (see the module docstring).

    Arguments:
        models: the members (at least one), all of one architecture (see `ensemble_support`).

    Raises:
        ValueError: as `_Stacked`, or a member that is not an ODE model.
    """

    def __init__(self, models: Sequence[nn.Module]) -> None:
        super().__init__(models)
        ref = models[0]
        if type(ref) is ResNet:
            raise ValueError("StackedODENet stacks ODENet/ODEFlow models; use StackedResNet (or stack_models)")
        block = ref.odeblock
        self.solver: SolverConfig = block.solver
        self.time_dependent = block.odefunc.time_dependent
        self.non_linearity = block.odefunc.non_linearity
        self.augmentation = block.augmentation
        self.augment_dim = block.augment_dim
        self.data_dim = block.data_shape[0]
        self.flow = isinstance(ref, ODEFlow)
        #: The field's weights in call order when it is a ReLU MLP, evaluated as one node (`_ReluMLP`).
        self._fused = tuple(self.param(f"odeblock.odefunc.fc{i}.{kind}") for i in (1, 2, 3) for kind in ("weight", "bias")) \
            if type(self.non_linearity) is nn.ReLU else None

    def field(self, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """Every member's `ODEFunc` at its own time `t[r]` and state `h[r]`: [R] x [R, B, D] -> [R, B, D]
        (with per-sample step control a time per sample, `t [R, B]`)."""
        prefix = "odeblock.odefunc"
        if self._fused is not None:
            out = _ReluMLP.apply(t if self.time_dependent else None, h, *self._fused)
            if self.augmentation.startswith("second_order"):
                return torch.cat([h[..., self.data_dim:], out], 2)
            return out
        x = h
        if self.time_dependent:
            x = torch.cat([_member_times(t, h), h], 2)
        out = self.non_linearity(self._linear(f"{prefix}.fc1", x))
        out = self.non_linearity(self._linear(f"{prefix}.fc2", out))
        out = self._linear(f"{prefix}.fc3", out)
        if self.augmentation.startswith("second_order"):
            return torch.cat([h[..., self.data_dim:], out], 2)
        return out

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        """h(0) of every member from its batch x [R, B, d]."""
        if self.augment_dim == 0:
            return x
        if self.augmentation in ("learned", "second_order_learned"):
            extra = self._linear_each("odeblock.augmenter.layer", x)
        else:
            extra = x.new_zeros((*x.shape[:2], self.augment_dim))
        return torch.cat([x, extra], 2)

    def forward(self, x: torch.Tensor, *, alive: Sequence[bool] | None = None,
                kinetic_energy: bool = False) -> StackedOutput:
        """Predictions of every member on its own batch.

        Arguments:
            x: `[R, B, d]`, member r's batch in `x[r]`.
            alive: members to integrate (default all); the others are left at h(0).
            kinetic_energy: also integrate ||f||^2 along the solve (joining the solver's state, so
                that the error control sees it, as `anode.regularisers.regularised_odesolve` does).

        Returns:
            A `StackedOutput`.
        """
        self._check_batch(x, self.data_dim)
        h0 = self.augment(x)
        energy = None
        if kinetic_energy:
            width = h0.shape[-1]

            def field(t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
                f = self.field(t, z[..., :width])
                return torch.cat([f, f.pow(2).sum(-1, keepdim=True)], -1)

            z1, counts, failures = ensemble_odesolve(field, torch.cat([h0, h0.new_zeros((*h0.shape[:2], 1))], -1),
                                                     self.solver, alive=alive)
            h1, energy = z1[..., :width], torch.stack([z1[r, :, width].mean() for r in range(self.size)])
        else:
            h1, counts, failures = ensemble_odesolve(self.field, h0, self.solver, alive=alive)
        pred = h1[..., : self.data_dim] if self.flow else self._linear_each("linear_layer", h1)
        return StackedOutput(pred, counts, failures, energy)


class StackedResNet(_Stacked):
    """R `ResNet` baselines of one architecture, evaluated together.

    Arguments:
        models: the members (at least one).

    Raises:
        ValueError: as `_Stacked`, or a member that is not a ResNet.
    """

    def __init__(self, models: Sequence[nn.Module]) -> None:
        super().__init__(models)
        ref = models[0]
        if type(ref) is not ResNet:
            raise ValueError("StackedResNet stacks ResNet models; use StackedODENet (or stack_models)")
        self.num_layers = ref.num_layers
        self.data_dim = ref.data_shape[0]
        self.activations = [ref.residual_blocks[0].body[1], ref.residual_blocks[0].body[3]]

    def forward(self, x: torch.Tensor, *, alive: Sequence[bool] | None = None,
                kinetic_energy: bool = False) -> StackedOutput:
        """Every member's prediction on its own batch x `[R, B, d]` (NFE: the number of residual blocks).

        Raises:
            ValueError: a batch of the wrong shape, or `kinetic_energy` (a ResNet has no flow).
        """
        if kinetic_energy:
            raise ValueError("a ResNet has no ODE block to regularise")
        self._check_batch(x, self.data_dim)
        h = x
        first, second = self.activations
        for i in range(self.num_layers):
            prefix = f"residual_blocks.{i}.body"
            out = second(self._linear(f"{prefix}.2", first(self._linear(f"{prefix}.0", h))))
            h = h + self._linear(f"{prefix}.4", out)
        counts = [{"forward": self.num_layers, "accepted_steps": 0, "rejected_steps": 0} for _ in range(self.size)]
        return StackedOutput(self._linear_each("linear_layer", h), counts, [None] * self.size)


def stack_models(models: Sequence[nn.Module]) -> StackedODENet | StackedResNet:
    """The stacked ensemble of `models`: `StackedResNet` for ResNets, else `StackedODENet`.

    Raises:
        ValueError: as `StackedODENet` / `StackedResNet`.
    """
    models = list(models)
    if models and type(models[0]) is ResNet:
        return StackedResNet(models)
    return StackedODENet(models)
