"""Low-dimensional datasets of the paper: g1d, concentric spheres g(x), shifted sines, angular hold-out."""

from __future__ import annotations

import math

import torch

from ..rng import make_generator
from .loader import TensorLoader

__all__ = ["ConcentricSpheres", "Data1D", "ShiftedSines", "ToyDataset", "angular_split"]


def _check_count(name: str, value: object, *, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def _check_nonneg(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


class ToyDataset:
    """Points `data` [N, d] (float32) with targets `targets` [N, 1] (float32, -1 or +1 for classes).

    Indexable like a `torch.utils.data.Dataset`; `loader()` batches it without a Python loop per sample.
    """

    def __init__(self, data: torch.Tensor, targets: torch.Tensor) -> None:
        if data.dim() != 2 or targets.dim() != 2 or data.shape[0] != targets.shape[0]:
            raise ValueError(
                f"data must be [N, d] and targets [N, 1] with the same N, got {tuple(data.shape)} and {tuple(targets.shape)}"
            )
        self.data = data
        self.targets = targets

    @property
    def dim(self) -> int:
        return int(self.data.shape[1])

    def __len__(self) -> int:
        return int(self.data.shape[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.data[index], self.targets[index]

    def loader(self, *, batch_size: int = 64, shuffle: bool = True, seed: int | torch.Generator | None = 0) -> TensorLoader:
        """A `TensorLoader` over this dataset (shuffling with its own generator)."""
        return TensorLoader(self.data, self.targets, batch_size=batch_size, shuffle=shuffle, seed=seed)


class Data1D(ToyDataset):
    """g1d: x = +1 or -1 with equal probability; y = x (identity) or y = -x (`target_flip`).

    A NODE cannot represent the flipped map (trajectories of a 1-D flow cannot cross).

    Arguments:
        num_points: number of samples.
        target_flip: targets -x instead of x.
        noise_scale: std of Gaussian noise added to the inputs (0 for none).
        seed: seed or generator.
    """

    def __init__(
        self, num_points: int, *, target_flip: bool = False, noise_scale: float = 0.0,
        seed: int | torch.Generator | None = 0,
    ) -> None:
        _check_count("num_points", num_points, minimum=1)
        noise_scale = _check_nonneg("noise_scale", noise_scale)
        gen = make_generator(seed)
        x = torch.where(torch.rand(num_points, 1, generator=gen) > 0.5, 1.0, -1.0)
        targets = -x if target_flip else x.clone()
        if noise_scale > 0:
            x = x + noise_scale * torch.randn(num_points, 1, generator=gen)
        super().__init__(x, targets)


def _uniform_ball_shell(num: int, dim: int, low: float, high: float, gen: torch.Generator) -> torch.Tensor:
    """`num` points uniform in volume in {low <= |x| <= high} in R^dim."""
    direction = torch.randn(num, dim, generator=gen)
    direction = direction / direction.norm(dim=1, keepdim=True).clamp_min(1e-12)
    u = torch.rand(num, 1, generator=gen, dtype=torch.float64)
    radius = (low**dim + u * (high**dim - low**dim)) ** (1.0 / dim)
    return direction * radius.to(direction.dtype)


class ConcentricSpheres(ToyDataset):
    """g(x): -1 for |x| in `inner_range`, +1 for |x| in `outer_range`, uniform in volume in both regions.

    (The 2019 code sampled r uniformly between the radii, which is uniform in volume only
    for a zero inner radius in 1-D; here r = (a^d + u (b^d - a^d))^(1/d).)

    Arguments:
        dim: d >= 1.
        inner_range: (r_min, r_max) of the inner ball/shell, label -1.
        outer_range: (r_min, r_max) of the outer shell, label +1; must lie outside inner_range.
        num_points_inner: samples in the inner region.
        num_points_outer: samples in the outer region.
        seed: seed or generator.

    Raises:
        ValueError: bad dim, counts or radii (overlapping, negative or decreasing ranges).
    """

    def __init__(
        self,
        dim: int,
        *,
        inner_range: tuple[float, float] = (0.0, 0.5),
        outer_range: tuple[float, float] = (1.0, 1.5),
        num_points_inner: int = 1000,
        num_points_outer: int = 2000,
        seed: int | torch.Generator | None = 0,
    ) -> None:
        _check_count("dim", dim, minimum=1)
        _check_count("num_points_inner", num_points_inner)
        _check_count("num_points_outer", num_points_outer)
        if num_points_inner + num_points_outer == 0:
            raise ValueError("num_points_inner + num_points_outer must be positive, got 0")
        for name, (low, high) in (("inner_range", inner_range), ("outer_range", outer_range)):
            if not 0 <= low < high:
                raise ValueError(f"{name} must satisfy 0 <= r_min < r_max, got {(low, high)}")
        if outer_range[0] < inner_range[1]:
            raise ValueError(f"outer_range {outer_range} must start at or beyond the end of inner_range {inner_range}")
        gen = make_generator(seed)
        inner = _uniform_ball_shell(num_points_inner, dim, *inner_range, gen)
        outer = _uniform_ball_shell(num_points_outer, dim, *outer_range, gen)
        targets = torch.cat([-torch.ones(num_points_inner, 1), torch.ones(num_points_outer, 1)])
        super().__init__(torch.cat([inner, outer]), targets)
        self.inner_range = inner_range
        self.outer_range = outer_range


class ShiftedSines(ToyDataset):
    """The separable comparison set: y = sin(pi x) +- shift/2 + noise, label +1 (upper) or -1 (lower).

    In d = 1 the point is y only; in d = 2 (x, y); higher dimensions add uniform [-1, 1] coordinates.

    Arguments:
        dim: d >= 1.
        shift: vertical distance between the two sines.
        num_points_upper: samples with label +1.
        num_points_lower: samples with label -1.
        noise_scale: std of Gaussian noise on y.
        seed: seed or generator.
    """

    def __init__(
        self,
        dim: int,
        *,
        shift: float = 1.4,
        num_points_upper: int = 500,
        num_points_lower: int = 500,
        noise_scale: float = 0.1,
        seed: int | torch.Generator | None = 0,
    ) -> None:
        _check_count("dim", dim, minimum=1)
        n_up = _check_count("num_points_upper", num_points_upper)
        n_low = _check_count("num_points_lower", num_points_lower)
        if n_up + n_low == 0:
            raise ValueError("num_points_upper + num_points_lower must be positive, got 0")
        noise_scale = _check_nonneg("noise_scale", noise_scale)
        gen = make_generator(seed)
        n = n_up + n_low
        labels = torch.cat([torch.ones(n_up, 1), -torch.ones(n_low, 1)])
        x = 2 * torch.rand(n, 1, generator=gen) - 1
        y = torch.sin(math.pi * x) + noise_scale * torch.randn(n, 1, generator=gen) + labels * (shift / 2)
        columns = [y] if dim == 1 else [x, y, 2 * torch.rand(n, dim - 2, generator=gen) - 1]
        super().__init__(torch.cat(columns, 1), labels)


def angular_split(
    dataset: ToyDataset, *, angle_range: tuple[float, float] = (0.0, math.pi / 5)
) -> tuple[ToyDataset, ToyDataset]:
    """Hold out the points whose polar angle (of the first two coordinates) lies in `angle_range`.

    The paper's generalisation test trains on the spheres data without the slice [0, pi/5] and
    validates on that slice. Angles are measured in [0, 2 pi).

    Arguments:
        dataset: a dataset with d >= 2.
        angle_range: (start, end) in radians, 0 <= start < end <= 2 pi.

    Returns:
        (train, held_out) datasets.

    Raises:
        ValueError: d < 2, a bad range, or a split that leaves one side empty.
    """
    if dataset.dim < 2:
        raise ValueError(f"angular_split needs points with at least 2 coordinates, got d = {dataset.dim}")
    start, end = angle_range
    if not 0 <= start < end <= 2 * math.pi:
        raise ValueError(f"angle_range must satisfy 0 <= start < end <= 2*pi, got {angle_range}")
    angle = torch.atan2(dataset.data[:, 1], dataset.data[:, 0]).remainder(2 * math.pi)
    held = (angle >= start) & (angle <= end)
    if bool(held.all()) or not bool(held.any()):
        raise ValueError(
            f"angle_range {angle_range} leaves {int(held.sum())} of {len(dataset)} points held out; pick a range that splits the data"
        )
    return ToyDataset(dataset.data[~held], dataset.targets[~held]), ToyDataset(dataset.data[held], dataset.targets[held])
