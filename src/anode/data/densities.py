"""The usual 2-D densities of the normalizing-flow literature, generated from explicit seeds.

Each generator returns exactly `num_points` points, a float32 tensor `[num_points, 2]`, shuffled,
drawn from the generator made from `seed` (an int or a `torch.Generator`): the same seed gives the
same points. The shapes and scales follow FFJORD's toy data (Grathwohl et al. 2019), so the
points lie roughly in [-4, 4]^2; the noise levels are the `noise` arguments' defaults.

`DENSITIES` maps names to generators; `make_density(name, num_points, seed=...)` refuses unknown
names, listing the valid ones.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ..rng import make_generator

__all__ = [
    "DENSITIES", "checkerboard", "concentric_rings", "eight_gaussians", "make_density", "pinwheel", "two_moons",
    "two_spirals",
]

Seed = int | torch.Generator | None


def _check_num_points(num_points: object) -> int:
    if isinstance(num_points, bool) or not isinstance(num_points, int) or num_points < 1:
        raise ValueError(f"num_points must be an integer >= 1, got {num_points!r}")
    return num_points


def _check_noise(noise: object, name: str = "noise") -> float:
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not math.isfinite(noise) or noise < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {noise!r}")
    return float(noise)


def _shuffled(points: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    return points[torch.randperm(points.shape[0], generator=gen)].to(torch.float32).contiguous()


def eight_gaussians(num_points: int, *, seed: Seed = 0, noise: float = 0.5) -> torch.Tensor:
    """A mixture of 8 equal Gaussians with centres on a circle.

    Centres at radius 4 / 1.414 ~ 2.83 at angles k * 45 degrees; each component's standard
    deviation is `noise` / 1.414 (0.354 at the default 0.5), as in FFJORD's "8gaussians".

    Arguments:
        num_points: the number of points.
        seed: an int seed or a `torch.Generator`.
        noise: the components' standard deviation before the common scaling by 1/1.414.

    Returns:
        `[num_points, 2]`, float32.

    Raises:
        ValueError: `num_points` < 1 or a negative `noise`.
    """
    num_points, noise = _check_num_points(num_points), _check_noise(noise)
    gen = make_generator(seed)
    angles = torch.arange(8, dtype=torch.float64) * (math.pi / 4)
    centres = 4.0 * torch.stack([angles.cos(), angles.sin()], 1)
    which = torch.randint(0, 8, (num_points,), generator=gen)
    points = centres[which] + noise * torch.randn(num_points, 2, generator=gen, dtype=torch.float64)
    return _shuffled(points / 1.414, gen)


def checkerboard(num_points: int, *, seed: Seed = 0) -> torch.Tensor:
    """Uniform on the 8 dark squares of a 4 x 4 checkerboard covering [-4, 4]^2 (squares of side 2).

    No noise: the density is exactly uniform on its squares, as in FFJORD's "checkerboard".

    Arguments:
        num_points: the number of points.
        seed: an int seed or a `torch.Generator`.

    Returns:
        `[num_points, 2]`, float32.

    Raises:
        ValueError: `num_points` < 1.
    """
    num_points = _check_num_points(num_points)
    gen = make_generator(seed)
    x1 = torch.rand(num_points, generator=gen, dtype=torch.float64) * 4 - 2
    x2 = torch.rand(num_points, generator=gen, dtype=torch.float64) \
        - torch.randint(0, 2, (num_points,), generator=gen).to(torch.float64) * 2
    x2 = x2 + torch.floor(x1) % 2
    return _shuffled(torch.stack([x1, x2], 1) * 2, gen)


def two_spirals(num_points: int, *, seed: Seed = 0, noise: float = 0.1) -> torch.Tensor:
    """Two interleaved spirals of 1.5 turns each, reaching radius ~ 3.3.

    Angle n = sqrt(u) * 3 pi (u uniform), point (-cos n * n, sin n * n) plus uniform [0, 0.5)
    jitter, its mirror image for the second arm, all divided by 3, plus Gaussian noise of standard
    deviation `noise` (FFJORD's "2spirals"). Odd counts give the first arm one more point.

    Arguments:
        num_points: the number of points.
        seed: an int seed or a `torch.Generator`.
        noise: the standard deviation of the Gaussian noise.

    Returns:
        `[num_points, 2]`, float32.

    Raises:
        ValueError: `num_points` < 1 or a negative `noise`.
    """
    num_points, noise = _check_num_points(num_points), _check_noise(noise)
    gen = make_generator(seed)
    n = torch.rand(num_points, 1, generator=gen, dtype=torch.float64).sqrt() * 540 * (2 * math.pi) / 360
    jitter = torch.rand(num_points, 2, generator=gen, dtype=torch.float64) * 0.5
    arm = torch.cat([-torch.cos(n) * n, torch.sin(n) * n], 1) + jitter
    sign = torch.ones(num_points, 1, dtype=torch.float64)
    sign[(num_points + 1) // 2:] = -1
    points = sign * arm / 3 + noise * torch.randn(num_points, 2, generator=gen, dtype=torch.float64)
    return _shuffled(points, gen)


def two_moons(num_points: int, *, seed: Seed = 0, noise: float = 0.1) -> torch.Tensor:
    """Two interleaving half circles (scikit-learn's `make_moons`), scaled by 2 and shifted by (-1, -0.2).

    The upper moon: (cos s, sin s), the lower: (1 - cos s, 0.5 - sin s), s uniform in [0, pi];
    Gaussian noise of standard deviation `noise` is added before the scaling (so 0.2 after it),
    as in FFJORD's "moons". Odd counts give the upper moon one more point.

    Arguments:
        num_points: the number of points.
        seed: an int seed or a `torch.Generator`.
        noise: the standard deviation of the noise, before the scaling by 2.

    Returns:
        `[num_points, 2]`, float32.

    Raises:
        ValueError: `num_points` < 1 or a negative `noise`.
    """
    num_points, noise = _check_num_points(num_points), _check_noise(noise)
    gen = make_generator(seed)
    upper = (num_points + 1) // 2
    s = torch.rand(num_points, generator=gen, dtype=torch.float64) * math.pi
    points = torch.stack([s.cos(), s.sin()], 1)
    points[upper:] = torch.stack([1 - s[upper:].cos(), 0.5 - s[upper:].sin()], 1)
    points = points + noise * torch.randn(num_points, 2, generator=gen, dtype=torch.float64)
    return _shuffled(points * 2 + torch.tensor([-1.0, -0.2], dtype=torch.float64), gen)


def pinwheel(num_points: int, *, seed: Seed = 0, num_arms: int = 5, radial_std: float = 0.3,
             tangential_std: float = 0.1, rate: float = 0.25) -> torch.Tensor:
    """A pinwheel of `num_arms` curved Gaussian arms (FFJORD's "pinwheel").

    Each point: (1 + radial_std * e1, tangential_std * e2) with e ~ N(0, I), rotated by its arm's
    angle plus `rate` * exp(radial coordinate), then scaled by 2. Arms get equal counts (the first
    arms one more when `num_points` is not divisible by `num_arms`).

    Arguments:
        num_points: the number of points.
        seed: an int seed or a `torch.Generator`.
        num_arms: the number of arms.
        radial_std: the noise along an arm.
        tangential_std: the noise across an arm.
        rate: how strongly the arms curl.

    Returns:
        `[num_points, 2]`, float32.

    Raises:
        ValueError: `num_points` or `num_arms` < 1, or negative noise levels or rate.
    """
    num_points = _check_num_points(num_points)
    if isinstance(num_arms, bool) or not isinstance(num_arms, int) or num_arms < 1:
        raise ValueError(f"num_arms must be an integer >= 1, got {num_arms!r}")
    radial_std, tangential_std = _check_noise(radial_std, "radial_std"), _check_noise(tangential_std, "tangential_std")
    rate = _check_noise(rate, "rate")
    gen = make_generator(seed)
    arm = torch.arange(num_points) % num_arms
    features = torch.randn(num_points, 2, generator=gen, dtype=torch.float64) \
        * torch.tensor([radial_std, tangential_std], dtype=torch.float64)
    features[:, 0] += 1
    angles = arm.to(torch.float64) * (2 * math.pi / num_arms) + rate * features[:, 0].exp()
    cos, sin = angles.cos(), angles.sin()
    points = torch.stack([features[:, 0] * cos - features[:, 1] * sin, features[:, 0] * sin + features[:, 1] * cos], 1)
    return _shuffled(2 * points, gen)


def concentric_rings(num_points: int, *, seed: Seed = 0, noise: float = 0.08, num_rings: int = 4) -> torch.Tensor:
    """Concentric circles of radii 3k / `num_rings` (k = 1..num_rings: 0.75, 1.5, 2.25, 3 by default).

    The density analogue of the paper's concentric spheres. Angles uniform, points split equally
    between the rings (the innermost rings one more when not divisible), Gaussian noise of
    standard deviation `noise` (FFJORD's "rings").

    Arguments:
        num_points: the number of points.
        seed: an int seed or a `torch.Generator`.
        noise: the standard deviation of the Gaussian noise.
        num_rings: the number of rings.

    Returns:
        `[num_points, 2]`, float32.

    Raises:
        ValueError: `num_points` or `num_rings` < 1, or a negative `noise`.
    """
    num_points, noise = _check_num_points(num_points), _check_noise(noise)
    if isinstance(num_rings, bool) or not isinstance(num_rings, int) or num_rings < 1:
        raise ValueError(f"num_rings must be an integer >= 1, got {num_rings!r}")
    gen = make_generator(seed)
    radius = (torch.arange(num_points) % num_rings + 1).to(torch.float64) * (3.0 / num_rings)
    angle = torch.rand(num_points, generator=gen, dtype=torch.float64) * 2 * math.pi
    points = radius.unsqueeze(1) * torch.stack([angle.cos(), angle.sin()], 1)
    points = points + noise * torch.randn(num_points, 2, generator=gen, dtype=torch.float64)
    return _shuffled(points, gen)


#: The 2-D densities by name: `generator(num_points, *, seed=..., **options)` -> `[num_points, 2]` float32.
DENSITIES: dict[str, Callable[..., torch.Tensor]] = {
    "eight_gaussians": eight_gaussians,
    "checkerboard": checkerboard,
    "two_spirals": two_spirals,
    "two_moons": two_moons,
    "pinwheel": pinwheel,
    "concentric_rings": concentric_rings,
}


def make_density(name: str, num_points: int, *, seed: Seed = 0, **options: float) -> torch.Tensor:
    """Points from the 2-D density `name` (see `DENSITIES`).

    Arguments:
        name: one of `DENSITIES`.
        num_points: the number of points.
        seed: an int seed or a `torch.Generator`.
        options: the generator's own keyword options (e.g. `noise=`).

    Returns:
        `[num_points, 2]`, float32.

    Raises:
        ValueError: an unknown name (the valid ones are listed), or bad sizes or options.
        TypeError: an option the generator does not take.
    """
    if name not in DENSITIES:
        raise ValueError(f"unknown density {name!r}; valid choices: {sorted(DENSITIES)}")
    return DENSITIES[name](num_points, seed=seed, **options)
