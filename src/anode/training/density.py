"""Training density models (`anode.CNF`, `anode.AugmentedCNF`) by maximum likelihood, with NFE per iteration.

`fit_density` trains on the negative log-likelihood (a CNF) or the negative ELBO (an augmented
CNF), optionally with the kinetic-energy and Jacobian-norm regularisers, and records one dict per
iteration: the loss, the regularisation, the forward and backward NFE and the wall time.
`test_log_likelihood` evaluates held-out points: the exact log-density of a CNF (an estimate with
the Hutchinson trace), the importance-weighted bound with K samples of an augmented CNF.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch

from anode.models.cnf import CNF, AugmentedCNF
from anode.models.validation import check_int
from anode.solvers.base import failed_samples_error

__all__ = ["DENSITY_FIELDS", "density_loss", "fit_density", "test_log_likelihood"]

#: What `fit_density` records per iteration.
DENSITY_FIELDS = ("iteration", "loss", "regularisation", "nfe_forward", "nfe_backward", "time")


def _check_model(model: object) -> CNF | AugmentedCNF:
    if not isinstance(model, (CNF, AugmentedCNF)):
        raise TypeError(f"model must be an anode.CNF or anode.AugmentedCNF, got {type(model).__name__}")
    return model


def density_loss(model: CNF | AugmentedCNF, x: torch.Tensor, *, generator: torch.Generator) -> torch.Tensor:
    """The training loss of a batch: mean -log p(x) (CNF) or mean -ELBO with one draw of a (augmented CNF).

    Arguments:
        model: an `anode.CNF` or `anode.AugmentedCNF`.
        x: data `[batch, d]`.
        generator: draws a ~ q(a | x) and the Hutchinson probes.

    Returns:
        A scalar tensor (nats per point).

    Raises:
        TypeError: another kind of model.
    """
    model = _check_model(model)
    if isinstance(model, AugmentedCNF):
        return -model.elbo(x, generator=generator).mean()
    return -model.log_prob(x, generator=generator).mean()


def test_log_likelihood(model: CNF | AugmentedCNF, x: torch.Tensor, *, k: int, generator: torch.Generator,
                        batch_size: int = 512) -> torch.Tensor:
    """Per-point test log-likelihood under `torch.no_grad()`: log p(x) of a CNF, the importance-weighted
    bound with `k` samples of an augmented CNF (a lower bound on its log p(x)).

    Arguments:
        model: an `anode.CNF` or `anode.AugmentedCNF`.
        x: points `[n, d]`.
        k: K, importance samples per point (ignored for a CNF; state it with the number).
        generator: draws a and the Hutchinson probes.
        batch_size: points per solve (an augmented CNF solves `k` times as many at once).

    Returns:
        Shape `[n]`, nats. Under per-sample step control with `sample_failure="skip"` (the
        default) a point whose solve failed gets NaN (`model.nfe.failed_samples` names it in its
        chunk of `batch_size` points).

    Raises:
        TypeError: another kind of model.
        ValueError: `k` or `batch_size` < 1.
    """
    model = _check_model(model)
    check_int("k", k, minimum=1)
    check_int("batch_size", batch_size, minimum=1)
    out = []
    with torch.no_grad():
        for chunk in x.split(batch_size):
            if isinstance(model, AugmentedCNF):
                out.append(model.iw_bound(chunk, k=k, generator=generator))
            else:
                out.append(model.log_prob(chunk, generator=generator))
    return torch.cat(out)


def fit_density(
    model: CNF | AugmentedCNF,
    data: torch.Tensor,
    *,
    iterations: int,
    batch_size: int,
    lr: float,
    seed: int,
    weight_decay: float = 0.0,
    kinetic_energy: float = 0.0,
    jacobian_norm: float = 0.0,
    on_iteration: Callable[[dict[str, float]], None] | None = None,
) -> list[dict[str, float]]:
    """Train `model` on `data` with Adam for `iterations` steps; return one record per iteration.

    Batches are drawn without replacement within each pass over the data, reshuffled every pass, from
    a generator seeded with `seed` (which also draws a ~ q(a | x) and the probes). The loss is
    `density_loss`; with `kinetic_energy` or `jacobian_norm` > 0 the weighted regularisers
    (Finlay et al. 2020) are added to the objective but not to the recorded `loss`.

    Arguments:
        model: an `anode.CNF` or `anode.AugmentedCNF`.
        data: training points `[n, d]`.
        iterations: optimiser steps.
        batch_size: points per step (at most n).
        lr: Adam's learning rate.
        seed: seeds batch order, a ~ q(a | x) and the probes.
        weight_decay: Adam's weight decay.
        kinetic_energy, jacobian_norm: regulariser weights (0: off).
        on_iteration: called with each record as it is made (e.g. to write it out).

    Returns:
        Records with `DENSITY_FIELDS`: iteration (from 0), loss (nats per point, without the
        regularisers), regularisation (the weighted regularisers, 0 when off), nfe_forward,
        nfe_backward (0 when backpropagating through the solver; the adjoint's otherwise), time (s).

    Raises:
        TypeError: another kind of model, or `data` not a floating-point tensor.
        ValueError: non-positive `iterations`, `batch_size` or `lr`, a batch larger than the data,
            or negative weights.
        SolverError: a solve failed (the records made so far went to `on_iteration`); under per-sample
            step control with `sample_failure="skip"` (the default), a point whose solve failed stops
            the iteration before its backward pass and optimiser step, naming the failed points.
    """
    model = _check_model(model)
    if not isinstance(data, torch.Tensor) or not data.is_floating_point() or data.dim() != 2:
        raise TypeError(f"data must be a floating-point tensor [n, d], got {type(data).__name__}"
                        + (f" of shape {tuple(data.shape)} and dtype {data.dtype}" if isinstance(data, torch.Tensor) else ""))
    check_int("iterations", iterations, minimum=1)
    check_int("batch_size", batch_size, minimum=1)
    if batch_size > data.shape[0]:
        raise ValueError(f"batch_size {batch_size} is larger than the data ({data.shape[0]} points); "
                         f"use batch_size <= {data.shape[0]}")
    for name, value in (("lr", lr), ("weight_decay", weight_decay), ("kinetic_energy", kinetic_energy),
                        ("jacobian_norm", jacobian_norm)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0 \
                or (name == "lr" and value == 0):
            raise ValueError(f"{name} must be a finite number {'> 0' if name == 'lr' else '>= 0'}, got {value!r}")
    generator = torch.Generator().manual_seed(int(seed))
    optimiser = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    regularised = kinetic_energy > 0 or jacobian_norm > 0
    records: list[dict[str, float]] = []
    order = torch.empty(0, dtype=torch.long)
    for iteration in range(iterations):
        if order.numel() < batch_size:
            order = torch.randperm(data.shape[0], generator=generator)
        idx, order = order[:batch_size], order[batch_size:]
        x = data[idx]
        start = time.perf_counter()
        optimiser.zero_grad(set_to_none=True)
        if regularised:
            with model.regularised(kinetic_energy=kinetic_energy > 0, jacobian_norm=jacobian_norm > 0) as reg:
                loss = density_loss(model, x, generator=generator)
            penalty = kinetic_energy * reg.get("kinetic_energy", 0.0) + jacobian_norm * reg.get("jacobian_norm", 0.0)
        else:
            loss = density_loss(model, x, generator=generator)
            penalty = torch.zeros(())
        if model.nfe.failed_samples:  # NaN log-densities: stop before they reach the weights
            raise failed_samples_error(model.nfe.failed_samples, where=f"training iteration {iteration}")
        (loss + penalty if regularised else loss).backward()
        nfe_forward = model.nfe.forward
        optimiser.step()
        record = {"iteration": iteration, "loss": float(loss.detach()), "regularisation": float(penalty.detach()),
                  "nfe_forward": nfe_forward, "nfe_backward": model.nfe.backward, "time": time.perf_counter() - start}
        records.append(record)
        if on_iteration is not None:
            on_iteration(record)
    return records

