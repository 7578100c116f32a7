"""Regularisers that make neural ODEs cheap to solve (Finlay et al. 2020, "How to train your neural ODE").

Both are integrated along the solve as extra state, so they cost no extra solve and work with
backpropagation through the solver and with the adjoint method alike:

- kinetic energy: the integral over the time span of ||f(h(t), t)||^2 (summed over the state's
  features), which favours straight trajectories travelled at constant speed;
- Jacobian Frobenius norm: the integral of ||df/dh||_F^2, estimated with Hutchinson's trick
  ||e^T df/dh||^2 with noise e drawn once per solve (E[e e^T] = I), which favours flows that
  adaptive solvers integrate with few steps.

Both are per-sample integrals; `ODEBlock.regularised` and the trainer average them over the batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from .config import SolverConfig
from .solve import NFE, odesolve

__all__ = ["NOISE_KINDS", "REGULARISERS", "RegularisedField", "hutchinson_noise", "regularised_odesolve"]

#: Names of the regularisers, in the order their integrals are appended to the state.
REGULARISERS: tuple[str, ...] = ("kinetic_energy", "jacobian_norm")
#: Distributions of the Hutchinson noise: standard normal (Finlay et al.) or +-1 (Rademacher, lower variance).
NOISE_KINDS: tuple[str, ...] = ("gaussian", "rademacher")

VectorField = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def hutchinson_noise(
    like: torch.Tensor, *, generator: torch.Generator, kind: str = "gaussian"
) -> torch.Tensor:
    """Noise e with E[e e^T] = I, of the shape, dtype and device of `like`.

    Arguments:
        like: a tensor whose shape, dtype and device the noise takes.
        generator: the random generator (drawn on its own device, then moved to `like`'s).
        kind: "gaussian" or "rademacher".

    Returns:
        The noise tensor.

    Raises:
        ValueError: unknown `kind` (the valid ones are listed).
        TypeError: `generator` is not a `torch.Generator`.
    """
    if kind not in NOISE_KINDS:
        raise ValueError(f"unknown noise kind {kind!r}; valid choices: {list(NOISE_KINDS)}")
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    if kind == "gaussian":
        noise = torch.randn(like.shape, generator=generator, device=generator.device, dtype=like.dtype)
    else:
        bits = torch.randint(0, 2, like.shape, generator=generator, device=generator.device)
        noise = (bits * 2 - 1).to(like.dtype)
    return noise.to(like.device)


class RegularisedField(nn.Module):
    """The dynamics of z = [h (flattened), integrals...]: dz/dt = [f(h, t), ||f||^2, ||e^T df/dh||^2].

    Arguments:
        func: the vector field `func(t, h)` on states of shape `[batch, *state_shape]`.
        state_shape: the shape of one sample's state h.
        kinetic_energy: integrate ||f||^2.
        jacobian_norm: integrate the Hutchinson estimate of ||df/dh||_F^2 (needs `noise`).
        noise: Hutchinson noise of shape `[batch, *state_shape]`, fixed for the whole solve.

    Raises:
        ValueError: neither regulariser chosen, or `jacobian_norm` without `noise`.
    """

    def __init__(
        self,
        func: VectorField,
        state_shape: tuple[int, ...],
        *,
        kinetic_energy: bool = False,
        jacobian_norm: bool = False,
        noise: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        if not (kinetic_energy or jacobian_norm):
            raise ValueError("RegularisedField needs kinetic_energy=True or jacobian_norm=True")
        if jacobian_norm and noise is None:
            raise ValueError("jacobian_norm=True needs the Hutchinson noise (see hutchinson_noise)")
        self.func = func
        self.state_shape = tuple(state_shape)
        self.size = math.prod(self.state_shape)
        self.kinetic_energy = kinetic_energy
        self.jacobian_norm = jacobian_norm
        self.noise = noise

    @property
    def names(self) -> tuple[str, ...]:
        """The regularisers integrated, in state order."""
        return tuple(n for n, on in zip(REGULARISERS, (self.kinetic_energy, self.jacobian_norm)) if on)

    def forward(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """dz/dt at the flat state `z` of shape `[batch, size + len(names)]`."""
        h = z[:, : self.size].reshape(z.shape[0], *self.state_shape)
        if self.jacobian_norm:
            outer_grad = torch.is_grad_enabled()
            with torch.enable_grad():
                if not h.requires_grad:
                    h = h.detach().requires_grad_(True)
                f = self.func(t, h)
                (vjp,) = torch.autograd.grad(f, h, self.noise, create_graph=outer_grad)
            jac = vjp.pow(2).flatten(1).sum(1, keepdim=True)
            if not outer_grad:
                f, jac = f.detach(), jac.detach()
        else:
            f = self.func(t, h)
        parts = [f.flatten(1)]
        if self.kinetic_energy:
            parts.append(f.flatten(1).pow(2).sum(1, keepdim=True))
        if self.jacobian_norm:
            parts.append(jac)
        return torch.cat(parts, 1)


def regularised_odesolve(
    func: VectorField,
    y0: torch.Tensor,
    t: torch.Tensor,
    solver: SolverConfig = SolverConfig(),
    *,
    kinetic_energy: bool = False,
    jacobian_norm: bool = False,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    noise_kind: str = "gaussian",
    nfe: NFE | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Like `odesolve`, also integrating the chosen regularisers over [t[0], t[-1]].

    The integrals join the solver's state, so adaptive methods control their error too (the NFE of
    a regularised solve can differ from an unregularised one).

    Arguments:
        func: vector field `func(t, y)` on states shaped like `y0` (`[batch, ...]`); an
            `nn.Module` when `solver.adjoint` is True.
        y0: initial state `[batch, ...]`.
        t: 1-D increasing output times.
        solver: method, tolerances, gradient mode.
        kinetic_energy: integrate ||f||^2.
        jacobian_norm: integrate ||e^T df/dh||^2 (Hutchinson).
        noise: explicit Hutchinson noise shaped like `y0`; or give `generator` to draw it.
        generator: draws the noise (once per call) when `noise` is None.
        noise_kind: "gaussian" or "rademacher", for noise drawn from `generator`.
        nfe: counts to update, as in `odesolve`.

    Returns:
        `(states, integrals)`: states of shape `(len(t), *y0.shape)`, and a dict mapping each chosen
        regulariser's name to its per-sample integral (shape `[batch]`).

    Raises:
        ValueError: no regulariser chosen, `y0` without a batch dimension, `jacobian_norm` with
            neither `noise` nor `generator`, or `noise` of the wrong shape.
        SolverError: the solve failed.
    """
    if y0.dim() < 2:
        raise ValueError(f"y0 must be batched, [batch, ...], got shape {tuple(y0.shape)}")
    if jacobian_norm and noise is None:
        if generator is None:
            raise ValueError("jacobian_norm needs noise= or generator= (explicit randomness for the Hutchinson estimate)")
        noise = hutchinson_noise(y0, generator=generator, kind=noise_kind)
    if noise is not None and tuple(noise.shape) != tuple(y0.shape):
        raise ValueError(f"noise must have the shape of y0 {tuple(y0.shape)}, got {tuple(noise.shape)}")
    field = RegularisedField(func, tuple(y0.shape[1:]), kinetic_energy=kinetic_energy, jacobian_norm=jacobian_norm,
                             noise=noise if jacobian_norm else None)
    names = field.names
    z0 = torch.cat([y0.flatten(1), y0.new_zeros(y0.shape[0], len(names))], 1)
    zs = odesolve(field, z0, t, solver, nfe=nfe)
    states = zs[:, :, : field.size].reshape(zs.shape[0], *y0.shape)
    integrals = {name: zs[-1, :, field.size + i] for i, name in enumerate(names)}
    return states, integrals
