"""Adam stepped over a whole parameter group at once: torch's updates, bitwise, in a dozen calls.

torch's Adam runs each operation of its update once per parameter tensor (the "foreach" variant
only moves that loop into C++ on a CPU). For the toy models of this field (eight small tensors)
that bookkeeping is most of the step. `FlatAdam` keeps each group's moments in one flat buffer
(the per-parameter state entries are views of it, so `state_dict`, checkpoints and resuming are
torch's Adam's), gathers the gradients into one vector, runs the element-wise update on it once
and writes the parameters in one foreach call. Element-wise operations round each element on its
own, so the updates are bitwise those of `torch.optim.Adam` (`tests/test_optim.py`).

The flat path uses torch internals (`torch.optim.Adam._init_group`,
`torch.optim.optimizer._get_scalar_dtype`, `torch._foreach_copy_`, `torch._foreach_addcdiv_`,
`torch.autograd._profiler_enabled`, torch's registries of global step hooks) and the functional
`torch.optim.adam.adam`. `missing_private_apis()` lists those this torch lacks; when any is missing,
a `FlatAdam` made then is plain `torch.optim.Adam` (torch's default implementation, the same math
through the public API) and says so in `flat_path`.

`step` and `zero_grad` also skip what torch wraps around them for its profiler (a `record_function`
label each, about a twentieth of a toy training step) while no profiler runs: the step hooks run as
torch runs them, and under a profiler both are torch's own, labels included.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch

# (torch.optim deletes its submodules' names from its namespace: the modules themselves)
_TORCH_ADAM = importlib.import_module("torch.optim.adam")
_TORCH_OPTIMIZER = importlib.import_module("torch.optim.optimizer")

__all__ = ["FlatAdam", "flat_path_available", "missing_private_apis"]

#: What the flat path needs from torch beyond its public API: (owner, attribute, dotted name),
#: looked up when used (never imported by name, so that this module imports whatever torch lacks).
_PRIVATE_APIS: tuple[tuple[Any, str, str], ...] = (
    (torch.optim.Adam, "_init_group", "torch.optim.Adam._init_group"),
    (_TORCH_OPTIMIZER, "_get_scalar_dtype", "torch.optim.optimizer._get_scalar_dtype"),
    (torch, "_foreach_copy_", "torch._foreach_copy_"),
    (torch, "_foreach_addcdiv_", "torch._foreach_addcdiv_"),
    (_TORCH_ADAM, "adam", "torch.optim.adam.adam"),
    (torch.autograd, "_profiler_enabled", "torch.autograd._profiler_enabled"),
)
#: torch's registries of the step hooks of every optimiser (dicts), which `FlatAdam.step` runs itself.
_HOOK_REGISTRIES: tuple[tuple[Any, str, str], ...] = (
    (_TORCH_OPTIMIZER, "_global_optimizer_pre_hooks", "torch.optim.optimizer._global_optimizer_pre_hooks"),
    (_TORCH_OPTIMIZER, "_global_optimizer_post_hooks", "torch.optim.optimizer._global_optimizer_post_hooks"),
)
#: The arguments `_init_group` is called with (self, group and the six lists), as in torch 2.x.
_INIT_GROUP_ARITY = 8


def missing_private_apis() -> list[str]:
    """The torch internals that `FlatAdam`'s flat path uses and this torch lacks (checked now).

    Arguments:
        None.

    Returns:
        Their dotted names, e.g. ["torch._foreach_copy_"]; empty when the flat path can run.
        `torch.optim.Adam._init_group` is also listed when its signature is not the one expected.
    """
    missing = []
    for owner, name, label in _PRIVATE_APIS:
        value = getattr(owner, name, None)
        if not callable(value):
            missing.append(label)
        elif name == "_init_group":
            try:
                arity = len(inspect.signature(value).parameters)
            except (TypeError, ValueError):
                arity = -1
            if arity != _INIT_GROUP_ARITY:
                missing.append(label)
    missing += [label for owner, name, label in _HOOK_REGISTRIES if not isinstance(getattr(owner, name, None), dict)]
    return missing


def flat_path_available() -> bool:
    """Whether a `FlatAdam` made now takes the flat path (`missing_private_apis()` is empty).

    Arguments:
        None.

    Returns:
        True for the flat path; False when `FlatAdam` would be plain `torch.optim.Adam`.
    """
    return not missing_private_apis()

#: The group options under which the flat update is torch's Adam (any other value: torch's own step).
_FLAT_OPTIONS: dict[str, Any] = {"amsgrad": False, "maximize": False, "capturable": False, "differentiable": False,
                                 "fused": None, "decoupled_weight_decay": False}


@dataclass
class _FlatGroup:
    """One group's flat buffers: moments, step counters, gathered gradients, the denominator; and
    the per-parameter views of them that the optimiser's state holds."""

    params: list[torch.Tensor]
    state: Any  # the optimiser's state mapping whose entries are views of these buffers
    count: int  # steps taken (every parameter's state["step"])
    exp_avg: torch.Tensor
    exp_avg_sq: torch.Tensor
    steps: torch.Tensor
    grad: torch.Tensor
    denom: torch.Tensor
    exp_avg_views: list[torch.Tensor]
    grad_views: list[torch.Tensor]
    denom_views: list[torch.Tensor]

    @classmethod
    def build(cls, params: list[torch.Tensor], state: Any) -> _FlatGroup | None:
        """Flat buffers holding the current state (zeros for a fresh group), written back into
        `state` as views; None when the state cannot be flattened (parameters of several dtypes or
        devices, steps that differ between parameters, or some parameters with state and others not)."""
        first = params[0]
        if any(p.dtype != first.dtype or p.device != first.device or p.is_complex() for p in params):
            return None
        states = [state[p] for p in params]
        fresh = [not s for s in states]
        if any(fresh) and not all(fresh):
            return None
        sizes = [p.numel() for p in params]
        if all(fresh):
            count = 0
            exp_avg = first.new_zeros(sum(sizes))
            exp_avg_sq = first.new_zeros(sum(sizes))
        else:
            counts = {float(s["step"]) for s in states}
            if len(counts) != 1 or not all(torch.is_tensor(s.get("exp_avg")) and torch.is_tensor(s.get("exp_avg_sq"))
                                           for s in states):
                return None
            count = int(counts.pop())
            exp_avg = torch.cat([s["exp_avg"].reshape(-1) for s in states]).to(first)
            exp_avg_sq = torch.cat([s["exp_avg_sq"].reshape(-1) for s in states]).to(first)
        # torch's Adam keeps each step counter as a scalar on the CPU (float32 unless the default is float64)
        steps = torch.full((len(params),), float(count), dtype=_TORCH_OPTIMIZER._get_scalar_dtype())
        denom = torch.empty_like(exp_avg)

        def views(flat: torch.Tensor) -> list[torch.Tensor]:
            return [v.view_as(p) for v, p in zip(flat.split(sizes), params)]

        exp_avg_views, exp_avg_sq_views = views(exp_avg), views(exp_avg_sq)
        for entry, m, v, step in zip(states, exp_avg_views, exp_avg_sq_views, steps.unbind(0)):
            entry["step"], entry["exp_avg"], entry["exp_avg_sq"] = step, m, v
        grad = torch.empty_like(exp_avg)
        return cls(list(params), state, count, exp_avg, exp_avg_sq, steps, grad, denom, exp_avg_views, views(grad),
                   views(denom))

    def holds(self, params: list[torch.Tensor], state: Any) -> bool:
        """Whether these buffers still serve the group: the same parameters, of the buffers' dtype and
        device (`module.to` swaps a parameter's data), and the same state mapping (`load_state_dict`
        replaces it; see `FlatAdam.load_state_dict`)."""
        dtype, device = self.exp_avg.dtype, self.exp_avg.device
        return (state is self.state and len(params) == len(self.params)
                and all(p is q and p.dtype is dtype and p.device == device for p, q in zip(params, self.params)))

    def update(self, group: dict[str, Any]) -> None:
        """One Adam step of every parameter: `torch.optim.adam._multi_tensor_adam`'s operations
        (capturable off), each run once over the flat buffers."""
        params = self.params
        beta1, beta2 = group["betas"]
        lr, eps, weight_decay = group["lr"], group["eps"], group["weight_decay"]
        self.count += 1
        self.steps.add_(1.0)
        torch._foreach_copy_(self.grad_views, [p.grad for p in params])
        grad = self.grad
        if weight_decay != 0:
            grad = grad.add(torch.cat([p.reshape(-1) for p in params]), alpha=weight_decay)
        self.exp_avg.lerp_(grad, 1 - beta1)
        self.exp_avg_sq.mul_(beta2)
        self.exp_avg_sq.addcmul_(grad, grad, value=1 - beta2)
        step = float(self.count)  # torch reads its float32 counter back as a Python float
        bias_correction1 = 1 - beta1**step
        bias_correction2 = 1 - beta2**step
        step_size = (lr / bias_correction1) * -1
        torch.sqrt(self.exp_avg_sq, out=self.denom)
        self.denom.div_(bias_correction2**0.5)
        self.denom.add_(eps)
        torch._foreach_addcdiv_(params, self.exp_avg_views, self.denom_views, value=step_size)


def _step_hooks(step: Callable[..., Any]) -> Callable[..., Any]:
    """`step` with torch's step hooks around it as `torch.optim.Optimizer.profile_hook_step` runs
    them (global and per-optimiser pre hooks, which may replace the arguments; then the post hooks),
    and torch's wrapper itself, profiler label included, while a profiler runs or on the fallback.
    Marked `hooked`, so that torch does not wrap it again; a subclass's own `step` (which torch
    wraps) calls it without running the hooks twice."""

    @functools.wraps(step)
    def hooked(*args: Any, **kwargs: Any) -> Any:
        self = args[0]
        if type(self).step is not hooked:  # called from a subclass's step: torch's wrapper ran the hooks
            return step(*args, **kwargs)
        if not self.flat_path or torch.autograd._profiler_enabled():
            return torch.optim.Optimizer.profile_hook_step(step)(*args, **kwargs)
        for pre_hook in (*_TORCH_OPTIMIZER._global_optimizer_pre_hooks.values(), *self._optimizer_step_pre_hooks.values()):
            result = pre_hook(self, args, kwargs)
            if result is not None:
                if isinstance(result, tuple) and len(result) == 2:
                    args, kwargs = result
                else:
                    raise RuntimeError(f"{step} must return None or a tuple of (new_args, new_kwargs), but got {result}.")
        out = step(*args, **kwargs)
        self._optimizer_step_code()
        for post_hook in (*self._optimizer_step_post_hooks.values(), *_TORCH_OPTIMIZER._global_optimizer_post_hooks.values()):
            post_hook(self, args, kwargs)
        return out

    hooked.hooked = True  # (what torch's `_patch_step_function` checks)
    return hooked


class FlatAdam(torch.optim.Adam):
    """`torch.optim.Adam` (L2 weight decay, no amsgrad) whose step runs on flat buffers.

    The updates, the state and its `state_dict` are those of `torch.optim.Adam`, bitwise; a state
    saved by either loads into the other. A group takes the flat path when every parameter has a
    dense gradient of the group's dtype and device, its options are the ones given here, and its
    parameters have taken equally many steps; otherwise (and for groups added with other options)
    that step is torch's own.

    The flat path needs torch internals (see the module docstring). Whether they are there is
    checked once, when the optimiser is made, and recorded in `flat_path`: when any is missing
    (`missing_private_apis()` names them), this optimiser is plain `torch.optim.Adam` with torch's
    default implementation (`foreach=None`): the same math through the public API, every step and
    `load_state_dict` torch's own.

    Arguments:
        params: parameters or parameter groups.
        lr: learning rate.
        betas: the moments' decay rates.
        eps: added to the denominator.
        weight_decay: L2 penalty added to the gradients (Adam's, not AdamW's).

    Attributes:
        flat_path: True when the flat path is in use; False when this is plain `torch.optim.Adam`
            (torch internals missing).

    Raises:
        ValueError: a negative or non-finite option (torch's checks).
    """

    def __init__(self, params: Iterable[Any], *, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0) -> None:
        self.flat_path = flat_path_available()
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         foreach=True if self.flat_path else None)
        self._flat: dict[int, _FlatGroup] = {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """torch's, then the flat buffers rebuilt from the loaded state (views of them replace the
        loaded entries), so that the next step does not."""
        super().load_state_dict(state_dict)
        self._flat.clear()
        if not self.flat_path:  # torch's default implementation, whatever the saved state chose
            for group in self.param_groups:
                group["foreach"] = None
            return
        for index, group in enumerate(self.param_groups):
            if self._flat_options(group) and all(self.state.get(p) for p in group["params"]):
                flat = _FlatGroup.build(group["params"], self.state)
                if flat is not None:
                    self._flat[index] = flat

    def zero_grad(self, set_to_none: bool = True) -> None:
        """torch's `zero_grad`; setting the gradients to None while no profiler runs, without its
        profiler label.

        Arguments:
            set_to_none: set the gradients to None (else zero them, torch's way).
        """
        if not set_to_none or not self.flat_path or torch.autograd._profiler_enabled():
            super().zero_grad(set_to_none)
            return
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.grad = None

    @_step_hooks
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One Adam step of every group (see the class docstring).

        Arguments:
            closure: re-evaluates the model and returns the loss (optional).

        Returns:
            The closure's loss, or None.
        """
        if not self.flat_path:
            # torch's Adam.step body: without its wrappers, which would run the step hooks a second
            # time (this method has them) and set the grad mode set here
            with torch.no_grad():
                return inspect.unwrap(torch.optim.Adam.step)(self, closure)
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        with torch.no_grad():
            for index, group in enumerate(self.param_groups):
                flat = self._flat_group(index, group)
                if flat is None:
                    self._flat.pop(index, None)
                    self._torch_step(group)
                else:
                    flat.update(group)
        return loss

    @staticmethod
    def _flat_options(group: dict[str, Any]) -> bool:
        """Whether the group's options are those the flat update implements."""
        return (bool(group["params"]) and all(group.get(k, v) == v for k, v in _FLAT_OPTIONS.items())
                and not any(torch.is_tensor(group[k]) for k in ("lr", "eps", "weight_decay"))
                and not any(map(torch.is_tensor, group["betas"])))

    def _flat_group(self, index: int, group: dict[str, Any]) -> _FlatGroup | None:
        """The group's flat buffers for this step (built when needed), or None: torch's step."""
        params = group["params"]
        if not self._flat_options(group) or any(p.grad is None or p.grad.layout != torch.strided for p in params):
            return None
        flat = self._flat.get(index)
        if flat is None or not flat.holds(params, self.state):
            flat = _FlatGroup.build(params, self.state)
            if flat is None:
                return None
            self._flat[index] = flat
        return flat

    def _torch_step(self, group: dict[str, Any]) -> None:
        """`torch.optim.Adam.step` for one group (its own loop body)."""
        params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps = [], [], [], [], [], []
        has_complex = self._init_group(group, params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps)
        beta1, beta2 = group["betas"]
        # decoupled_weight_decay: a group option of torch's Adam since it absorbed AdamW
        extra = {"decoupled_weight_decay": group["decoupled_weight_decay"]} if "decoupled_weight_decay" in group else {}
        _TORCH_ADAM.adam(
            params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps, amsgrad=group["amsgrad"],
            has_complex=has_complex, beta1=beta1, beta2=beta2, lr=group["lr"], weight_decay=group["weight_decay"],
            eps=group["eps"], maximize=group["maximize"], foreach=group["foreach"], capturable=group["capturable"],
            differentiable=group["differentiable"], fused=group["fused"], grad_scale=getattr(self, "grad_scale", None),
            found_inf=getattr(self, "found_inf", None), **extra)
