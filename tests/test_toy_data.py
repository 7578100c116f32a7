"""Toy datasets (g1d, concentric spheres, shifted sines, angular hold-out) and TensorLoader."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import kstest

from anode.data import ConcentricSpheres, Data1D, ShiftedSines, TensorLoader, ToyDataset, angular_split

pytestmark = pytest.mark.usefixtures("single_thread")

# ---------------------------------------------------------------------------------------------
# Data1D (g1d)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("flip", [False, True])
def test_data1d_values(flip: bool) -> None:
    ds = Data1D(200, target_flip=flip, noise_scale=0.0, seed=0)
    assert ds.data.shape == (200, 1) and ds.targets.shape == (200, 1)
    assert ds.data.dtype == torch.float32 and ds.targets.dtype == torch.float32
    assert set(ds.data.flatten().tolist()) == {-1.0, 1.0}  # both classes, exact values
    assert torch.equal(ds.targets, -ds.data if flip else ds.data)
    assert 60 < int((ds.data > 0).sum()) < 140  # roughly balanced
    assert len(ds) == 200 and ds.dim == 1
    x, y = ds[3]
    assert torch.equal(x, ds.data[3]) and torch.equal(y, ds.targets[3])


def test_data1d_noise() -> None:
    clean = Data1D(2000, target_flip=True, seed=1)
    noisy = Data1D(2000, target_flip=True, noise_scale=0.1, seed=1)
    assert torch.equal(noisy.targets, clean.targets)  # noise is on inputs only
    residual = noisy.data + noisy.targets  # = noise, since clean x = -target
    assert 0.09 < float(residual.std()) < 0.11
    assert abs(float(residual.mean())) < 0.01


def test_data1d_seeded() -> None:
    a, b, c = Data1D(100, seed=7), Data1D(100, seed=7), Data1D(100, seed=8)
    assert torch.equal(a.data, b.data)
    assert not torch.equal(a.data, c.data)
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    assert torch.equal(Data1D(100, seed=g1).data, Data1D(100, seed=g2).data)


@pytest.mark.parametrize(("kwargs", "match"), [
    (dict(num_points=0), "num_points must be an integer >= 1"),
    (dict(num_points=10, noise_scale=-0.1), "noise_scale must be a finite number >= 0"),
    (dict(num_points=10, noise_scale=float("nan")), "noise_scale must be a finite number >= 0"),
])
def test_data1d_validation(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Data1D(**kwargs)


# ---------------------------------------------------------------------------------------------
# Concentric spheres
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dim", [1, 2, 3, 5])
def test_spheres_labels_and_radii(dim: int) -> None:
    ds = ConcentricSpheres(dim, inner_range=(0.0, 0.5), outer_range=(1.0, 1.5),
                           num_points_inner=300, num_points_outer=500, seed=0)
    assert ds.data.shape == (800, dim) and ds.targets.shape == (800, 1)
    assert ds.data.dtype == torch.float32
    r = ds.data.double().norm(dim=1)
    inner = ds.targets[:, 0] == -1
    assert int(inner.sum()) == 300 and int((ds.targets[:, 0] == 1).sum()) == 500
    eps = 1e-6
    assert bool((r[inner] <= 0.5 + eps).all())
    assert bool((r[~inner] >= 1.0 - eps).all()) and bool((r[~inner] <= 1.5 + eps).all())
    # Points fill their shells rather than sitting on one radius, and all directions are used.
    assert float(r[~inner].max() - r[~inner].min()) > 0.4
    unit = ds.data / r[:, None].float()
    assert float(unit.mean(0).norm()) < 0.15
    if dim == 1:
        assert bool((ds.data > 0).any()) and bool((ds.data < 0).any())


def _shell_pvalue(points: torch.Tensor, low: float, high: float) -> float:
    """KS p-value of (r^d - a^d) / (b^d - a^d) against Uniform(0, 1): uniform in volume <=> uniform."""
    d = points.shape[1]
    r = points.double().norm(dim=1).numpy()
    u = (r**d - low**d) / (high**d - low**d)
    return float(kstest(u, "uniform").pvalue)


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("seed", [0, 1])
def test_spheres_uniform_in_volume(dim: int, seed: int) -> None:
    n = 2000
    ds = ConcentricSpheres(dim, inner_range=(0.5, 1.0), outer_range=(1.5, 2.0),
                           num_points_inner=n, num_points_outer=n, seed=seed)
    assert _shell_pvalue(ds.data[:n], 0.5, 1.0) > 1e-3
    assert _shell_pvalue(ds.data[n:], 1.5, 2.0) > 1e-3


@pytest.mark.parametrize("dim", [2, 3])
def test_uniform_radius_formula_fails_the_volume_test(dim: int) -> None:
    """The 2019 code's sampling (r uniform in [a, b]) must fail the same test: the test has power."""
    n = 2000
    gen = torch.Generator().manual_seed(0)
    direction = torch.randn(n, dim, generator=gen)
    direction = direction / direction.norm(dim=1, keepdim=True)
    r = 0.5 + 0.5 * torch.rand(n, 1, generator=gen)
    assert _shell_pvalue(direction * r, 0.5, 1.0) < 1e-6


@pytest.mark.parametrize(("kwargs", "match"), [
    (dict(dim=0), "dim must be an integer >= 1"),
    (dict(dim=2, inner_range=(0.5, 0.2)), r"inner_range must satisfy 0 <= r_min < r_max"),
    (dict(dim=2, inner_range=(0.0, 1.2), outer_range=(1.0, 1.5)), "must start at or beyond the end of inner_range"),
    (dict(dim=2, num_points_inner=0, num_points_outer=0), "must be positive"),
    (dict(dim=2, num_points_inner=-1), "num_points_inner must be an integer >= 0"),
])
def test_spheres_validation(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ConcentricSpheres(**kwargs)


def test_spheres_seeded() -> None:
    a = ConcentricSpheres(2, num_points_inner=50, num_points_outer=50, seed=3)
    b = ConcentricSpheres(2, num_points_inner=50, num_points_outer=50, seed=3)
    c = ConcentricSpheres(2, num_points_inner=50, num_points_outer=50, seed=4)
    assert torch.equal(a.data, b.data) and not torch.equal(a.data, c.data)


# ---------------------------------------------------------------------------------------------
# Shifted sines
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_shifted_sines(dim: int) -> None:
    ds = ShiftedSines(dim, shift=1.4, num_points_upper=70, num_points_lower=30, noise_scale=0.0, seed=0)
    assert ds.data.shape == (100, dim) and ds.targets.shape == (100, 1)
    labels = ds.targets[:, 0]
    assert torch.equal(labels, torch.cat([torch.ones(70), -torch.ones(30)]))
    if dim == 1:
        y = ds.data[:, 0]
        centred = y - labels * 0.7  # = sin(pi x) in [-1, 1]
        assert bool((centred.abs() <= 1 + 1e-6).all())
    else:
        x, y = ds.data[:, 0], ds.data[:, 1]
        assert bool((x.abs() <= 1).all())
        torch.testing.assert_close(y - torch.sin(math.pi * x), labels * 0.7, atol=1e-5, rtol=0)
    if dim == 3:
        extra = ds.data[:, 2]
        assert bool((extra.abs() <= 1).all()) and float(extra.std()) > 0.3


def test_shifted_sines_noise_and_seed() -> None:
    a = ShiftedSines(2, noise_scale=0.1, num_points_upper=1000, num_points_lower=1000, seed=0)
    b = ShiftedSines(2, noise_scale=0.1, num_points_upper=1000, num_points_lower=1000, seed=0)
    assert torch.equal(a.data, b.data)
    residual = a.data[:, 1] - torch.sin(math.pi * a.data[:, 0]) - a.targets[:, 0] * 0.7
    assert 0.09 < float(residual.std()) < 0.11


# ---------------------------------------------------------------------------------------------
# Angular split
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dim", [2, 3])
def test_angular_split(dim: int) -> None:
    ds = ConcentricSpheres(dim, num_points_inner=400, num_points_outer=800, seed=0)
    train, held = angular_split(ds)
    assert len(train) + len(held) == len(ds)
    angle = lambda d: torch.atan2(d.data[:, 1], d.data[:, 0]).remainder(2 * math.pi)
    a_held, a_train = angle(held), angle(train)
    assert bool(((a_held >= 0) & (a_held <= math.pi / 5)).all())
    assert not bool(((a_train >= 0) & (a_train <= math.pi / 5)).any())
    expected = int(((angle(ds) >= 0) & (angle(ds) <= math.pi / 5)).sum())
    assert len(held) == expected > 0
    # the slice is about a tenth of the circle in the first two coordinates
    assert 0.05 < len(held) / len(ds) < 0.16
    # points and labels travel together
    rows = {tuple(row) for row in torch.cat([ds.data, ds.targets], 1).tolist()}
    for part in (train, held):
        assert all(tuple(row) in rows for row in torch.cat([part.data, part.targets], 1).tolist())


def test_angular_split_custom_range() -> None:
    ds = ConcentricSpheres(2, num_points_inner=200, num_points_outer=200, seed=0)
    _train, held = angular_split(ds, angle_range=(math.pi, 1.5 * math.pi))
    assert bool(((held.data[:, 0] <= 0) & (held.data[:, 1] <= 0)).all())  # third quadrant
    assert 0.15 < len(held) / len(ds) < 0.35


def test_angular_split_errors() -> None:
    with pytest.raises(ValueError, match="at least 2 coordinates, got d = 1"):
        angular_split(ConcentricSpheres(1, num_points_inner=10, num_points_outer=10))
    ds = ConcentricSpheres(2, num_points_inner=10, num_points_outer=10)
    with pytest.raises(ValueError, match="angle_range must satisfy"):
        angular_split(ds, angle_range=(1.0, 0.5))
    with pytest.raises(ValueError, match="pick a range that splits the data"):
        angular_split(ds, angle_range=(0.0, 2 * math.pi))


def test_toy_dataset_shape_validation() -> None:
    with pytest.raises(ValueError, match=r"data must be \[N, d\] and targets \[N, 1\]"):
        ToyDataset(torch.zeros(5, 2), torch.zeros(4, 1))


# ---------------------------------------------------------------------------------------------
# Loaders and the global RNG
# ---------------------------------------------------------------------------------------------


def test_no_global_rng_use() -> None:
    state = torch.random.get_rng_state()
    datasets = [
        Data1D(50, noise_scale=0.1, seed=1),
        ConcentricSpheres(3, num_points_inner=20, num_points_outer=20, seed=1),
        ShiftedSines(3, num_points_upper=20, num_points_lower=20, seed=1),
    ]
    angular_split(datasets[1])
    for ds in datasets:
        for _ in range(2):
            for _x, _y in ds.loader(batch_size=7, shuffle=True, seed=2):
                pass
    assert torch.equal(torch.random.get_rng_state(), state)


def test_loader_is_seeded_and_independent_of_global_rng() -> None:
    ds = Data1D(30, noise_scale=0.5, seed=0)

    def order(seed: int) -> torch.Tensor:
        return torch.cat([x for x, _ in ds.loader(batch_size=4, seed=seed)])

    first = order(5)
    torch.manual_seed(123)  # the global RNG does not matter
    assert torch.equal(order(5), first)
    assert not torch.equal(order(6), first)


def test_loader_covers_each_sample_once_and_reshuffles() -> None:
    data = torch.arange(10.0)[:, None]
    loader = TensorLoader(data, data.clone(), batch_size=3, seed=0)
    assert len(loader) == 4 and loader.num_samples == 10
    epochs = []
    for _ in range(2):
        batches = list(loader)
        assert [len(x) for x, _ in batches] == [3, 3, 3, 1]
        xs = torch.cat([x for x, _ in batches])
        assert torch.equal(torch.cat([y for _, y in batches]), xs)  # inputs and targets stay paired
        assert sorted(xs.flatten().tolist()) == list(range(10))
        epochs.append(xs)
    assert not torch.equal(epochs[0], epochs[1])


def test_loader_no_shuffle_drop_last_transform() -> None:
    data = torch.arange(10, dtype=torch.uint8)[:, None]
    loader = TensorLoader(data, torch.arange(10), batch_size=4, shuffle=False, drop_last=True,
                          transform=lambda x: x.float() / 10)
    batches = list(loader)
    assert len(loader) == len(batches) == 2
    assert torch.equal(batches[0][0], torch.arange(4.0)[:, None] / 10)
    assert torch.equal(batches[1][1], torch.arange(4, 8))


def test_loader_state_dict_resumes_order() -> None:
    data = torch.arange(20.0)[:, None]
    a = TensorLoader(data, data, batch_size=5, seed=1)
    list(a)
    state = a.state_dict()
    expected = torch.cat([x for x, _ in a])
    b = TensorLoader(data, data, batch_size=5, seed=99)
    b.load_state_dict(state)
    assert torch.equal(torch.cat([x for x, _ in b]), expected)


@pytest.mark.parametrize(("args", "kwargs", "match"), [
    ((torch.zeros(3, 1), torch.zeros(4)), {}, "same number of samples"),
    ((torch.zeros(0, 1), torch.zeros(0)), {}, "empty dataset"),
    ((torch.zeros(3, 1), torch.zeros(3)), {"batch_size": 0}, "batch_size must be a positive integer"),
])
def test_loader_validation(args: tuple, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        TensorLoader(*args, **kwargs)


def test_datasets_are_finite() -> None:
    # the datasets contain only finite values (used as model inputs, which reject NaN)
    for ds in (Data1D(10, noise_scale=0.3), ConcentricSpheres(4, num_points_inner=10, num_points_outer=10),
               ShiftedSines(2, num_points_upper=5, num_points_lower=5)):
        assert np.isfinite(ds.data.numpy()).all()
