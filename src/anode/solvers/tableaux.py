"""Every method's coefficients: the Butcher tableaux of the "anode" backend and their forms per dtype.

* `ADAPTIVE_TABLEAUX` (dopri5, bosh3): embedded pairs with the first-same-as-last property, with
  the error weights and the weights of the step's midpoint that the 4th-order dense output uses
  (`solvers.dense`); the same Python expressions as torchdiffeq's float64 tables, so the same values.
* `FIXED_TABLEAUX` (euler, midpoint, heun2, heun3, rk4 as torchdiffeq's 3/8 rule): documentation
  of the fixed-grid steps, which `solvers.loop` computes op for op as torchdiffeq writes them.
* the tableau rounded to the state's dtype (`adaptive_consts`, NumPy; `tableau_tensors`, torch),
  made once per setting in bounded caches (`solvers.caches`);
* the arithmetic of a tableau row against the stages: `coefficients` (a row times the step size,
  on the host or the device) and `stage_dot`/`stage_sum` (torchdiffeq's stacked stage sum, bit
  for bit); `sum_terms`, the same sums of a few terms on NumPy arrays in the order of torch's CPU
  sum kernel, used where `host_sum_lanes`/`host_mean_lanes` measured that it reproduces torch
  (the per-row loop's NumPy step, `solvers.loop`).

The step control lives in `solvers.control`, the dense output in `solvers.dense`, the loops in
`solvers.loop`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .caches import bounded_cache

__all__ = [
    "ADAPTIVE_TABLEAUX",
    "FIXED_TABLEAUX",
    "AdaptiveConsts",
    "AdaptiveTableau",
    "FixedTableau",
    "adaptive_consts",
    "coefficients",
    "host_arrays",
    "host_mean_lanes",
    "host_sum_lanes",
    "numpy_type",
    "product_sum",
    "stage_dot",
    "stage_sum",
    "sum_terms",
    "tableau_tensors",
]


@dataclass(frozen=True)
class AdaptiveTableau:
    """An embedded explicit RK pair with the first-same-as-last property, as torchdiffeq stores it.

    Arguments:
        order: torchdiffeq's `order` (step-size exponent 1/order; initial step uses order - 1).
        alpha: nodes of stages 2..s+1 (the last one is 1: the FSAL stage at t1).
        beta: rows of the RK matrix for those stages; the last row is the solution weights.
        c_error: weights of the error estimate over all s+1 stages.
        c_mid: weights giving y at the step's midpoint (for the 4th-order dense output).
    """

    order: int
    alpha: tuple[float, ...]
    beta: tuple[tuple[float, ...], ...]
    c_error: tuple[float, ...]
    c_mid: tuple[float, ...]


@dataclass(frozen=True)
class FixedTableau:
    """A fixed-step explicit RK method.

    Arguments:
        order: order of accuracy.
        c: nodes of stages 2..s; `None` marks a stage evaluated at t1 itself (rk4's last stage).
        a: rows of the RK matrix for stages 2..s.
        b: solution weights over the s stages.
    """

    order: int
    c: tuple[float | None, ...]
    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]


# Same Python expressions as torchdiffeq's float64 tables (dopri5.py, bosh3.py), so the same values.
ADAPTIVE_TABLEAUX: dict[str, AdaptiveTableau] = {
    "dopri5": AdaptiveTableau(
        order=5,
        alpha=(1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0),
        beta=(
            (1 / 5,),
            (3 / 40, 9 / 40),
            (44 / 45, -56 / 15, 32 / 9),
            (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
            (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
            (35 / 384, 0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
        ),
        c_error=(
            35 / 384 - 1951 / 21600,
            0,
            500 / 1113 - 22642 / 50085,
            125 / 192 - 451 / 720,
            -2187 / 6784 - -12231 / 42400,
            11 / 84 - 649 / 6300,
            -1.0 / 60.0,
        ),
        c_mid=(
            6025192743 / 30085553152 / 2,
            0,
            51252292925 / 65400821598 / 2,
            -2691868925 / 45128329728 / 2,
            187940372067 / 1594534317056 / 2,
            -1776094331 / 19743644256 / 2,
            11237099 / 235043384 / 2,
        ),
    ),
    "bosh3": AdaptiveTableau(
        order=3,
        alpha=(1 / 2, 3 / 4, 1.0),
        beta=((1 / 2,), (0.0, 3 / 4), (2 / 9, 1 / 3, 4 / 9)),
        c_error=(2 / 9 - 7 / 24, 1 / 3 - 1 / 4, 4 / 9 - 1 / 3, -1 / 8),
        c_mid=(0.0, 0.5, 0.0, 0.0),
    ),
}

# The fixed-grid steps are computed op for op as torchdiffeq writes them (`_fixed_increment`);
# these tableaux document them (and a test checks the two agree).
FIXED_TABLEAUX: dict[str, FixedTableau] = {
    "euler": FixedTableau(order=1, c=(), a=(), b=(1.0,)),
    "midpoint": FixedTableau(order=2, c=(0.5,), a=((0.5,),), b=(0.0, 1.0)),
    "heun2": FixedTableau(order=2, c=(1.0,), a=((1.0,),), b=(0.5, 0.5)),
    "heun3": FixedTableau(order=3, c=(1 / 3, 2 / 3), a=((1 / 3,), (0.0, 2 / 3)), b=(1 / 4, 0.0, 3 / 4)),
    # torchdiffeq's RK4 is the 3/8 rule (rk4_alt_step_func), its last stage at t1 exactly.
    "rk4": FixedTableau(
        order=4, c=(1 / 3, 2 / 3, None), a=((1 / 3,), (-1 / 3, 1.0), (1.0, -1.0, 1.0)), b=(1 / 8, 3 / 8, 3 / 8, 1 / 8)
    ),
}


def numpy_type(dtype: torch.dtype) -> type:
    """The NumPy scalar type that rounds like `dtype` (np.float32 or np.float64).

    Raises:
        TypeError: a dtype other than float32/float64 (the anode backend integrates only those).
    """
    if dtype == torch.float32:
        return np.float32
    if dtype == torch.float64:
        return np.float64
    raise TypeError(
        f"the 'anode' solver backend integrates float32 or float64 states, got {dtype}; "
        f"convert the state (y0.float()) or use SolverConfig(backend='torchdiffeq')"
    )


@dataclass(frozen=True)
class AdaptiveConsts:
    """A tableau's coefficients rounded to one dtype (as torchdiffeq's `.to(y0.dtype)` does)."""

    alpha: np.ndarray
    one_idx: np.ndarray  # stages at alpha == 1 (evaluated just before t1)
    beta: tuple[np.ndarray, ...]
    c_error: np.ndarray
    c_mid: np.ndarray


@bounded_cache(maxsize=16)
def adaptive_consts(method: str, np_t: type) -> AdaptiveConsts:
    """The tableau of adaptive `method` rounded to the NumPy type `np_t` (made once per pair)."""
    tab = ADAPTIVE_TABLEAUX[method]
    alpha = np.array(tab.alpha, dtype=np_t)
    return AdaptiveConsts(
        alpha=alpha,
        one_idx=np.flatnonzero(alpha == 1),
        beta=tuple(np.array(row, dtype=np_t) for row in tab.beta),
        c_error=np.array(tab.c_error, dtype=np_t),
        c_mid=np.array(tab.c_mid, dtype=np_t),
    )


@bounded_cache(maxsize=64)
def tableau_tensors(method: str, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, ...]:
    """(alpha, c_mid, c_error, beta rows...) as tensors in the state's dtype, plus the mask of the
    stages at alpha == 1 last: built once per method, dtype and device."""
    tab = ADAPTIVE_TABLEAUX[method]
    rows = (tab.alpha, tab.c_mid, tab.c_error, *tab.beta)
    with torch.inference_mode(False):  # cached: ordinary tensors even when first built in inference mode
        tensors = tuple(torch.tensor(row, dtype=torch.float64).to(dtype=dtype, device=device) for row in rows)
        return (*tensors, tensors[0] == 1)


def host_arrays(device: torch.device) -> bool:
    """Whether per-step coefficients and stage times are computed with NumPy and wrapped without a
    copy (CPU), or as tensor ops on the device (no host-to-device copy, no synchronisation).
    Both round identically (float32/float64 IEEE products and sums)."""
    return device.type == "cpu"


def coefficients(row: np.ndarray, dt_y: np.floating, host: bool, row_t: torch.Tensor,
                  dt_t: torch.Tensor | None = None) -> torch.Tensor:
    """`row * dt` in the state's dtype: from the host (NumPy, wrapped without a copy), on the device
    (`row_t * dt`), or, when the step size carries a gradient (`dt_t`), as a differentiable product."""
    if dt_t is not None:
        return row_t * dt_t
    if host:
        return torch.from_numpy(row * dt_y)
    return row_t * float(dt_y)


def stage_sum(ks: list[torch.Tensor], coef: torch.Tensor) -> torch.Tensor:
    """sum_j coef[j] * ks[j] as torchdiffeq computes it (`torch.sum(k * coef, dim=-1)` over the
    stacked stages), so that the rounding, and hence the float32 gradient noise, is the same.
    (`linalg.vecdot` is that product and sum, in one call from Python.)"""
    return stage_dot(torch.stack(ks, -1), coef)


def product_sum(ks: list[torch.Tensor], coef: torch.Tensor) -> torch.Tensor:
    """`torch.sum(torch.stack(ks, -1) * coef, dim=-1)` as written: the per-row loop's stage sum with a
    graph, whose coefficients broadcast over the rows' other dimensions. Its values are `stage_sum`'s;
    its backward (the multiplication's reduction of the coefficients' gradient) rounds as the
    ensemble solves and per-sample solves recorded before `linalg.vecdot` have."""
    return torch.sum(torch.stack(ks, -1) * coef, dim=-1)


def stage_dot(stacked: torch.Tensor, coef: torch.Tensor) -> torch.Tensor:
    """`torch.sum(stacked * coef, dim=-1)` with its bits: `linalg.vecdot` in one call, except for the
    stages of a 0-d state (a 1-D `stacked`), where vecdot is a BLAS dot product that rounds otherwise."""
    if stacked.dim() == 1:
        return torch.sum(stacked * coef, dim=-1)
    return torch.linalg.vecdot(stacked, coef, dim=-1)


def sum_terms(terms: list[np.ndarray] | np.ndarray, lanes: int, *, scratch: bool = False) -> np.ndarray | None:
    """The sum of n <= 7 arrays (a list, or an array over its first axis) in the order in which
    torch's CPU sum kernel adds the n elements of a contiguous last dimension (`SumKernel.cpp`,
    `cascade_sum`) with SIMD vectors of `lanes` elements: n < lanes, the scalar row sum with four
    partial sums (term k into partial k % 4, the partials then added to the first); n >= lanes, one
    partial sum per lane over whole vectors, the tail summed first and the lanes added to it. Every
    partial sum starts from +0.0, so the first term is added to +0.0 (a sum of -0.0 terms is +0.0,
    as torch's); the others need not be (a sum that started from +0.0 is never -0.0, and adding
    -0.0 or +0.0 to it gives the same). None where the kernel would take a path not written here.
    `host_sum_lanes` measures which `lanes` reproduces torch on this machine, if any.

    `scratch`: the terms are the caller's to overwrite (the sum is then written into one of them)."""
    order = _sum_order(len(terms), lanes)
    if order is None:
        return None
    first = terms[order[0]]
    acc = np.add(first, 0.0, out=first) if scratch else first + 0.0
    for k in order[1:]:
        acc += terms[k]
    return acc


@bounded_cache(maxsize=256)
def _sum_order(n: int, lanes: int) -> tuple[int, ...] | None:
    """The order in which `sum_terms` adds its n terms (None: a path of the kernel not written there)."""
    if n < lanes:
        return None if n >= 8 else (0, *range(4, n), *range(1, min(n, 4)))
    return (*range(lanes, n), *range(lanes)) if n < 2 * lanes else None


def _inner_sum(p: np.ndarray, lanes: int) -> np.ndarray | None:
    """`sum_terms` over the last dimension of `p`."""
    return sum_terms(np.moveaxis(p, -1, 0), lanes)


@bounded_cache(maxsize=64)
def host_sum_lanes(dtype: torch.dtype, n: int) -> int | None:
    """The SIMD width (elements) with which `sum_terms` reproduces torch's CPU sum of products over
    a last dimension of `n` terms (`stage_dot`) bit for bit in `dtype`, measured once on random
    operands (signed zeros, magnitudes over 16 decades); None: none does (use torch)."""
    np_t = numpy_type(dtype)
    gen = np.random.default_rng(12345)
    shape = (1024, 2, n)
    a = (gen.standard_normal(shape) * 10.0 ** gen.uniform(-8, 8, shape)).astype(np_t)
    b = (gen.standard_normal(shape) * 10.0 ** gen.uniform(-2, 2, shape)).astype(np_t)
    a[gen.random(shape) < 0.05] = 0.0
    a[gen.random(shape) < 0.05] = -0.0
    wide = np.zeros((*shape[:-1], n + 1), dtype=np_t)  # the stages as a narrowed column buffer
    wide[..., :n] = a
    with torch.inference_mode(False):
        ref = torch.linalg.vecdot(torch.from_numpy(wide).narrow(-1, 0, n), torch.from_numpy(b), dim=-1).numpy()
        ref_sum = torch.sum(torch.from_numpy(a * b), dim=-1).numpy()
    for lanes in (32 // a.itemsize, 64 // a.itemsize, 16 // a.itemsize):
        got = _inner_sum(a * b, lanes)
        if got is not None and got.tobytes() == ref.tobytes() == ref_sum.tobytes():
            return lanes
    return None


@bounded_cache(maxsize=64)
def host_mean_lanes(dtype: torch.dtype, m: int) -> int | None:
    """As `host_sum_lanes`, for torch's CPU mean over a last dimension of `m` elements
    (`sum_terms` divided by m): the SIMD width that reproduces it, or None (use torch)."""
    np_t = numpy_type(dtype)
    gen = np.random.default_rng(54321)
    x = (gen.standard_normal((2048, m)) * 10.0 ** gen.uniform(-8, 8, (2048, m))).astype(np_t) ** 2
    with torch.inference_mode(False):
        ref = torch.from_numpy(x).mean(1).numpy()
    for lanes in (32 // x.itemsize, 64 // x.itemsize, 16 // x.itemsize):
        got = _inner_sum(x, lanes)
        if got is not None and (got / np_t(m)).tobytes() == ref.tobytes():
            return lanes
    return None
