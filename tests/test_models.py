"""Models: augmentation invariants, NODE equivalence at p = 0, shapes, parameter counts,
input validation and the ResNet baselines' NFE."""

from __future__ import annotations

import pytest
import torch
import torchdiffeq
from torch import nn

import anode
from anode import (
    ConvODEFunc,
    ConvODENet,
    ConvResNet,
    ODEBlock,
    ODEFunc,
    ODENet,
    ResNet,
    SolverConfig,
    count_parameters,
)

pytestmark = pytest.mark.usefixtures("single_thread")


def _x(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# ---------------------------------------------------------------------------------------------
# Augmentation
# ---------------------------------------------------------------------------------------------


def test_augment_vectors_appends_exact_zeros() -> None:
    block = ODEBlock(ODEFunc(3, 8, augment_dim=4))
    x = _x(5, 3) + 10.0
    h0 = block.augment(x)
    assert h0.shape == (5, 7)
    assert torch.equal(h0[:, :3], x)
    assert torch.equal(h0[:, 3:], torch.zeros(5, 4))


def test_augment_images_appends_zero_channels() -> None:
    block = ODEBlock(ConvODEFunc((2, 5, 4), 6, augment_dim=3))
    x = _x(2, 2, 5, 4) + 1.0
    h0 = block.augment(x)
    assert h0.shape == (2, 5, 5, 4)
    assert torch.equal(h0[:, :2], x)
    assert torch.equal(h0[:, 2:], torch.zeros(2, 3, 5, 4))


def test_augment_p0_is_identity() -> None:
    block = ODEBlock(ODEFunc(3, 8))
    x = _x(5, 3)
    assert torch.equal(block.augment(x), x)


@pytest.mark.parametrize("solver", [SolverConfig(), SolverConfig(method="rk4", step_size=0.1)], ids=["dopri5", "rk4"])
def test_trajectory_starts_at_augmented_input(solver: SolverConfig) -> None:
    with anode.seeded(0):
        block = ODEBlock(ODEFunc(2, 16, augment_dim=3), solver=solver)
    x = _x(7, 2)
    traj = block.trajectory(x, 6)
    assert traj.shape == (6, 7, 5)
    assert torch.equal(traj[0], torch.cat([x, torch.zeros(7, 3)], 1))
    assert not torch.equal(traj[-1], traj[0])  # it actually moved
    torch.testing.assert_close(traj[-1], block(x))  # h(1) is the end of the trajectory


def test_trajectory_images() -> None:
    with anode.seeded(0):
        block = ODEBlock(ConvODEFunc((1, 4, 4), 4, augment_dim=2))
    x = _x(3, 1, 4, 4)
    traj = block.trajectory(x, 3)
    assert traj.shape == (3, 3, 3, 4, 4)
    assert torch.equal(traj[0, :, :1], x)
    assert torch.equal(traj[0, :, 1:], torch.zeros(3, 2, 4, 4))


@pytest.mark.parametrize("timesteps", [1, 0, 2.5, True])
def test_trajectory_bad_timesteps(timesteps: object) -> None:
    block = ODEBlock(ODEFunc(2, 4))
    with pytest.raises(ValueError, match="timesteps must be an int >= 2"):
        block.trajectory(_x(2, 2), timesteps)  # type: ignore[arg-type]


@pytest.mark.parametrize("times", [[0.0, 0.5, 0.4], [0.0], [[0.0, 1.0]]])
def test_bad_eval_times(times: list) -> None:
    block = ODEBlock(ODEFunc(2, 4))
    with pytest.raises(ValueError, match="eval_times must be a 1-D strictly increasing"):
        block(_x(2, 2), eval_times=torch.tensor(times))


@pytest.mark.parametrize("time_dependent", [False, True])
def test_p0_equals_plain_torchdiffeq_node(time_dependent: bool) -> None:
    with anode.seeded(0):
        model = ODENet(2, 16, augment_dim=0, output_dim=3, time_dependent=time_dependent)
    x = _x(9, 2)
    h1 = torchdiffeq.odeint(
        model.odeblock.odefunc, x, torch.tensor([0.0, 1.0]), rtol=1e-3, atol=1e-3, method="dopri5",
        options={"max_num_steps": 1000},
    )[-1]
    expected = model.linear_layer(h1)
    features, pred = model(x, return_features=True)
    assert torch.equal(features, h1)
    assert torch.equal(pred, expected)


def test_odenet_feature_and_output_shapes() -> None:
    with anode.seeded(0):
        model = ODENet(3, 8, augment_dim=4, output_dim=2)
    features, pred = model(_x(6, 3), return_features=True)
    assert features.shape == (6, 3 + 4)
    assert pred.shape == (6, 2)
    assert model.linear_layer.in_features == 7
    assert model.augment_dim == 4
    assert torch.equal(model(_x(6, 3)), pred)


@pytest.mark.parametrize("time_dependent", [False, True])
def test_convodenet_feature_and_output_shapes(time_dependent: bool) -> None:
    with anode.seeded(0):
        model = ConvODENet((2, 6, 5), 8, augment_dim=3, output_dim=4, time_dependent=time_dependent)
    features, pred = model(_x(3, 2, 6, 5), return_features=True)
    assert features.shape == (3, 2 + 3, 6, 5)
    assert pred.shape == (3, 4)
    assert model.linear_layer.in_features == 5 * 6 * 5
    assert model.nfe.forward > 0


def test_double_precision_model() -> None:
    with anode.seeded(0):
        model = ODENet(2, 8, augment_dim=1).double()
    assert model(_x(4, 2, dtype=torch.float64)).dtype == torch.float64


# ---------------------------------------------------------------------------------------------
# Parameter counts (the paper's Table 1 / Table 2 models)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("img_size", "filters", "p", "expected"),
    [
        ((1, 28, 28), 92, 0, 84395),
        ((1, 28, 28), 64, 5, 84816),
        ((3, 32, 32), 125, 0, 172358),
        ((3, 32, 32), 64, 10, 171799),
    ],
)
def test_parameter_counts(img_size: tuple[int, int, int], filters: int, p: int, expected: int) -> None:
    model = ConvODENet(img_size, filters, augment_dim=p, output_dim=10)
    assert count_parameters(model) == expected


def test_count_parameters_ignores_frozen() -> None:
    model = ODENet(2, 4)
    total = count_parameters(model)
    model.linear_layer.weight.requires_grad_(False)
    assert count_parameters(model) == total - 2


def test_mlp_parameter_count() -> None:
    # (d+p+1)*h + h  +  h*h + h  +  h*(d+p) + (d+p)  +  (d+p)*out + out
    d, p, h = 2, 5, 32
    model = ODENet(d, h, augment_dim=p, time_dependent=True)
    assert count_parameters(model) == (d + p + 1) * h + h + h * h + h + h * (d + p) + (d + p) + (d + p) + 1


# ---------------------------------------------------------------------------------------------
# Input validation
# ---------------------------------------------------------------------------------------------


class _CountingODEFunc(ODEFunc):
    calls = 0

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        type(self).calls += 1
        return super().forward(t, x)


def _checked_model() -> ODENet:
    model = ODENet(2, 4, augment_dim=1)
    model.odeblock.odefunc = _CountingODEFunc(2, 4, augment_dim=1)
    _CountingODEFunc.calls = 0
    return model


def test_wrong_feature_size_names_shape() -> None:
    model = _checked_model()
    with pytest.raises(ValueError, match=r"input of shape \(4, 3\).*expects \[batch, 2\]"):
        model(torch.ones(4, 3))
    with pytest.raises(ValueError, match=r"input of shape \(2\,?\)"):
        model(torch.ones(2))
    assert _CountingODEFunc.calls == 0  # rejected before any solving


def test_wrong_image_size_names_shape() -> None:
    model = ConvODENet((1, 5, 5), 4)
    with pytest.raises(ValueError, match=r"input of shape \(2, 1, 5, 6\).*expects \[batch, 1, 5, 5\]"):
        model(torch.ones(2, 1, 5, 6))


def test_integer_input_is_type_error() -> None:
    with pytest.raises(TypeError, match="floating-point tensor.*x.float"):
        _checked_model()(torch.ones(4, 2, dtype=torch.int64))


def test_dtype_mismatch_is_type_error() -> None:
    model = _checked_model()
    with pytest.raises(TypeError, match=r"input dtype torch.float64 does not match.*torch.float32"):
        model(torch.ones(4, 2, dtype=torch.float64))
    assert _CountingODEFunc.calls == 0


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_input_is_value_error(bad: float) -> None:
    x = torch.ones(4, 2)
    x[2, 1] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        _checked_model()(x)


def test_non_tensor_input() -> None:
    with pytest.raises(TypeError, match="must be a torch.Tensor, got list"):
        _checked_model()([[1.0, 2.0]])


def test_resnet_validates_input_too() -> None:
    with pytest.raises(ValueError, match=r"input of shape \(3, 5\)"):
        ResNet(2, 4, 3)(torch.ones(3, 5))
    with pytest.raises(TypeError, match="does not match"):
        ResNet(2, 4, 3)(torch.ones(3, 2, dtype=torch.float64))


def test_bad_non_linearity_lists_choices() -> None:
    with pytest.raises(ValueError, match=r"unknown non_linearity 'gelu'.*relu.*softplus.*tanh"):
        ODENet(2, 4, non_linearity="gelu")
    with pytest.raises(ValueError, match="unknown non_linearity"):
        ConvODENet((1, 4, 4), 4, non_linearity="sigmoid")


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(data_dim=0, hidden_dim=4), ValueError, "data_dim must be >= 1"),
        (dict(data_dim=2, hidden_dim=4, augment_dim=-1), ValueError, "augment_dim must be >= 0"),
        (dict(data_dim=2.0, hidden_dim=4), TypeError, "data_dim must be an int"),
        (dict(data_dim=2, hidden_dim=4, output_dim=0), ValueError, "output_dim must be >= 1"),
    ],
)
def test_bad_sizes(kwargs: dict, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        ODENet(**kwargs)


def test_bad_img_size() -> None:
    with pytest.raises(ValueError, match=r"img_size must be \(channels, height, width\)"):
        ConvODENet((28, 28), 4)  # type: ignore[arg-type]


def test_odeblock_argument_types() -> None:
    with pytest.raises(TypeError, match="odefunc must be an nn.Module"):
        ODEBlock(lambda t, y: y)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="solver must be an anode.SolverConfig"):
        ODEBlock(ODEFunc(2, 4), solver={"method": "dopri5"})  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# ResNet baselines
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("num_layers", [1, 5])
def test_resnet_nfe_is_num_layers(num_layers: int) -> None:
    model = ResNet(2, 8, num_layers, output_dim=3)
    features, pred = model(_x(4, 2), return_features=True)
    assert features.shape == (4, 2) and pred.shape == (4, 3)
    assert model.nfe.forward == num_layers
    pred.sum().backward()
    assert model.nfe.backward == 0
    model(_x(4, 2))
    assert model.nfe.forward == num_layers  # reset per call, not accumulated


def test_conv_resnet_nfe_and_shapes() -> None:
    model = ConvResNet((1, 6, 6), 4, 3, output_dim=10)
    features, pred = model(_x(2, 1, 6, 6), return_features=True)
    assert features.shape == (2, 1, 6, 6) and pred.shape == (2, 10)
    assert model.nfe.forward == 3
    assert len(model.residual_blocks) == 3


def test_resnet_blocks_are_residual() -> None:
    model = ResNet(2, 8, 3)
    with torch.no_grad():
        for block in model.residual_blocks:
            last = block.body[-1]
            last.weight.zero_()
            last.bias.zero_()
    x = _x(4, 2)
    features, pred = model(x, return_features=True)
    assert torch.equal(features, x)  # zero residuals: identity
    torch.testing.assert_close(pred, model.linear_layer(x))


def test_resnet_uses_its_blocks() -> None:
    model = ResNet(2, 8, 2)
    x = _x(4, 2)
    h = x
    for block in model.residual_blocks:
        h = h + block.body(h)
    torch.testing.assert_close(model(x), model.linear_layer(h))


def test_time_dependent_field_depends_on_t() -> None:
    with anode.seeded(0):
        f = ODEFunc(2, 8, time_dependent=True)
        g = ConvODEFunc((1, 3, 3), 4, time_dependent=True)
    x, img = _x(3, 2), _x(2, 1, 3, 3)
    assert not torch.equal(f(torch.tensor(0.0), x), f(torch.tensor(1.0), x))
    assert not torch.equal(g(torch.tensor(0.0), img), g(torch.tensor(1.0), img))
    with anode.seeded(0):
        f0 = ODEFunc(2, 8)
    assert torch.equal(f0(torch.tensor(0.0), x), f0(torch.tensor(1.0), x))


def test_seeded_models_identical_and_rng_restored() -> None:
    state = torch.random.get_rng_state()
    with anode.seeded(3):
        a = ODENet(2, 8, augment_dim=1)
    with anode.seeded(3):
        b = ODENet(2, 8, augment_dim=1)
    assert torch.equal(torch.random.get_rng_state(), state)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    with anode.seeded(4):
        c = ODENet(2, 8, augment_dim=1)
    assert not torch.equal(a.linear_layer.weight, c.linear_layer.weight)


def test_custom_vector_field_without_attributes() -> None:
    class Rotation(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.tensor(1.0))

        def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return self.w * torch.stack([-y[:, 1], y[:, 0]], 1)

    block = ODEBlock(Rotation(), solver=SolverConfig(rtol=1e-7, atol=1e-7))
    assert block.augment_dim == 0 and block.data_shape is None
    out = block(torch.tensor([[1.0, 0.0]]))
    torch.testing.assert_close(out, torch.tensor([[torch.cos(torch.tensor(1.0)), torch.sin(torch.tensor(1.0))]]),
                               atol=1e-5, rtol=0)
