"""Any field, any span: user vector fields, explicit augmentation strategies, output times `t=`."""

from __future__ import annotations

import math

import pytest
import torch
import torchdiffeq
from torch import nn

import anode
from anode import ConvODENet, ODEBlock, ODEFlow, ODEFunc, ODENet, SolverConfig, count_parameters
from anode.models import LearnedAugmentation, SecondOrderAugmentation, ZeroAugmentation, make_augmentation

pytestmark = pytest.mark.usefixtures("single_thread")

TIGHT = SolverConfig(rtol=1e-9, atol=1e-9)


def _x(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


class Spring(nn.Module):
    """Acceleration -x of the harmonic oscillator x'' = -x on the state [x, v]."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return -h[:, : self.dim]


class Growth(nn.Module):
    """dh/dt = t h, so h(T) = h(t0) exp((T^2 - t0^2) / 2)."""

    def forward(self, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return t * h


class MLPField(nn.Module):
    """A user's own field on d + p features, with no anode attributes."""

    def __init__(self, width: int, hidden: int = 8) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(width, hidden), nn.Tanh(), nn.Linear(hidden, width))

    def forward(self, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return self.net(h)


# ---------------------------------------------------------------------------------------------
# Second order (SONODE)
# ---------------------------------------------------------------------------------------------


def test_second_order_solves_the_harmonic_oscillator() -> None:
    x0 = _x(5, 2, dtype=torch.float64)
    model = ODEFlow(2, odefunc=Spring(2), augment_dim=2, augmentation="second_order", solver=TIGHT)
    t = torch.linspace(0.0, 3.0, 7, dtype=torch.float64)
    traj, pred = model(x0, t=t, return_trajectory=True)
    assert traj.shape == (7, 5, 4)
    cos, sin = torch.cos(t)[:, None, None], torch.sin(t)[:, None, None]
    torch.testing.assert_close(traj[:, :, :2], x0 * cos, atol=1e-4, rtol=0)  # x(t) = x0 cos t
    torch.testing.assert_close(traj[:, :, 2:], -x0 * sin, atol=1e-4, rtol=0)  # v(t) = -x0 sin t
    torch.testing.assert_close(pred, x0 * math.cos(3.0), atol=1e-4, rtol=0)


def test_second_order_learned_velocity() -> None:
    x0 = _x(4, 3, dtype=torch.float64)
    with anode.seeded(0):
        model = ODEFlow(3, odefunc=Spring(3), augment_dim=3, augmentation="second_order_learned", solver=TIGHT)
    model.double()
    v0 = model.odeblock.augmenter.layer(x0).detach()
    out = model(x0, t=[0.0, 1.0], return_features=True)[0].detach()
    torch.testing.assert_close(out[:, :3], x0 * math.cos(1.0) + v0 * math.sin(1.0), atol=1e-4, rtol=0)
    assert count_parameters(model) == 3 * 3 + 3  # only v(0)'s layer is trainable


def test_second_order_with_anode_fields_has_acceleration_outputs() -> None:
    with anode.seeded(0):
        model = ODENet(2, 8, augment_dim=2, augmentation="second_order", output_dim=1)
    field = model.odeblock.odefunc
    assert field.fc1.in_features == 4 and field.fc3.out_features == 2  # acceleration of x
    # field: 4*8+8 + 8*8+8 + 8*2+2 ; readout on [x, v]: 4*1+1
    assert count_parameters(model) == (4 * 8 + 8) + (8 * 8 + 8) + (8 * 2 + 2) + (4 + 1)
    traj, _ = model(_x(3, 2), t=[0.0, 0.5, 1.0], return_trajectory=True)
    dt_x = (traj[2, :, :2] - traj[0, :, :2]) / 1.0
    assert torch.isfinite(dt_x).all() and torch.equal(traj[0, :, 2:], torch.zeros(3, 2))  # v(0) = 0
    with anode.seeded(0):
        conv = ConvODENet((1, 4, 4), 3, augment_dim=1, augmentation="second_order", output_dim=2)
    assert conv.odeblock.odefunc.conv3.out_channels == 1
    assert conv(_x(2, 1, 4, 4)).shape == (2, 2)


def test_second_order_needs_augment_dim_equal_to_the_data() -> None:
    with pytest.raises(ValueError, match="augment_dim must be 2 .*got 1"):
        ODENet(2, 8, augment_dim=1, augmentation="second_order")
    with pytest.raises(ValueError, match="augment_dim must be 3 \\(the data's channels\\), got 2"):
        ConvODENet((3, 4, 4), 4, augment_dim=2, augmentation="second_order")


def test_second_order_field_must_return_the_acceleration() -> None:
    model = ODEFlow(2, odefunc=MLPField(4), augment_dim=2, augmentation="second_order")
    with pytest.raises(ValueError, match=r"must return the acceleration dv/dt of shape \(3, 2\).*got \(3, 4\)"):
        model(_x(3, 2))


# ---------------------------------------------------------------------------------------------
# Learned and zero augmentation
# ---------------------------------------------------------------------------------------------


def _copy_shared(dst: nn.Module, src: nn.Module) -> None:
    dst.odeblock.odefunc.load_state_dict(src.odeblock.odefunc.state_dict())
    dst.linear_layer.load_state_dict(src.linear_layer.state_dict())


def test_learned_augmentation_with_zero_weights_equals_zero_augmentation() -> None:
    with anode.seeded(0):
        zeros = ODENet(2, 16, augment_dim=3, time_dependent=True)
        learned = ODENet(2, 16, augment_dim=3, augmentation="learned", time_dependent=True)
    _copy_shared(learned, zeros)
    with torch.no_grad():
        learned.odeblock.augmenter.layer.weight.zero_()
        learned.odeblock.augmenter.layer.bias.zero_()
    x = _x(9, 2)
    assert torch.equal(learned.odeblock.augment(x), zeros.odeblock.augment(x))
    assert torch.equal(learned(x), zeros(x))
    with torch.no_grad():
        learned.odeblock.augmenter.layer.bias.fill_(0.5)
    assert torch.equal(learned.odeblock.augment(x)[:, 2:], torch.full((9, 3), 0.5))
    assert not torch.equal(learned(x), zeros(x))


def test_learned_augmentation_on_images_is_a_1x1_conv() -> None:
    with anode.seeded(0):
        zeros = ConvODENet((2, 5, 5), 4, augment_dim=3, output_dim=10)
        learned = ConvODENet((2, 5, 5), 4, augment_dim=3, augmentation="learned", output_dim=10)
    layer = learned.odeblock.augmenter.layer
    assert isinstance(layer, nn.Conv2d) and layer.kernel_size == (1, 1)
    assert count_parameters(learned) == count_parameters(zeros) + 2 * 3 + 3
    x = _x(2, 2, 5, 5)
    h0 = learned.odeblock.augment(x)
    torch.testing.assert_close(h0[:, 2:], layer(x))
    assert torch.equal(h0[:, :2], x)


def test_parameter_counts_of_each_strategy() -> None:
    d, hidden, p = 2, 16, 2
    field = (d + p) * hidden + hidden + hidden * hidden + hidden
    with anode.seeded(0):
        counts = {name: count_parameters(ODENet(d, hidden, augment_dim=p, augmentation=name))
                  for name in anode.AUGMENTATIONS}
    readout = (d + p) + 1
    assert counts["zeros"] == field + hidden * (d + p) + (d + p) + readout
    assert counts["learned"] == counts["zeros"] + d * p + p
    assert counts["second_order"] == field + hidden * d + d + readout
    assert counts["second_order_learned"] == counts["second_order"] + d * p + p


def test_p0_with_a_custom_field_is_bit_identical_to_a_plain_node() -> None:
    with anode.seeded(0):
        field = MLPField(2)
    x = _x(6, 2)
    plain = torchdiffeq.odeint(field, x, torch.tensor([0.0, 1.0]), rtol=1e-3, atol=1e-3, method="dopri5",
                               options={"max_num_steps": 1000})[-1]
    block = ODEBlock(field, augment_dim=0)
    assert torch.equal(block(x), plain)
    model = ODENet(2, odefunc=field, output_dim=1)
    features, _ = model(x, return_features=True)
    assert torch.equal(features, plain)


def test_zero_augmentation_module() -> None:
    x = _x(3, 2)
    assert ZeroAugmentation(0)(x) is x
    assert torch.equal(ZeroAugmentation(2)(x), torch.cat([x, torch.zeros(3, 2)], 1))
    assert isinstance(make_augmentation("learned", augment_dim=1, data_shape=(2,)), LearnedAugmentation)
    assert isinstance(make_augmentation("second_order", augment_dim=2, data_shape=(2,)), SecondOrderAugmentation)


# ---------------------------------------------------------------------------------------------
# Custom fields: explicit augmentation for any field
# ---------------------------------------------------------------------------------------------


def test_custom_field_with_explicit_augmentation_in_a_sequential() -> None:
    with anode.seeded(0):
        field = MLPField(3)
        model = nn.Sequential(ODEBlock(field, augment_dim=1), nn.Linear(3, 1))
    x = _x(4, 2)
    h0 = model[0].augment(x)
    assert torch.equal(h0, torch.cat([x, torch.zeros(4, 1)], 1))
    expected = torchdiffeq.odeint(field, h0, torch.tensor([0.0, 1.0]), rtol=1e-3, atol=1e-3, method="dopri5",
                                  options={"max_num_steps": 1000})[-1]
    assert torch.equal(model[0](x), expected)
    assert model(x).shape == (4, 1)


def test_custom_field_in_each_model() -> None:
    with anode.seeded(0):
        net = ODENet(2, odefunc=MLPField(3), augment_dim=1, augmentation="learned", output_dim=4)
        flow = ODEFlow(2, odefunc=MLPField(3), augment_dim=1)
        conv = ConvODENet((1, 4, 4), odefunc=nn.Conv2d(3, 3, 3, padding=1), augment_dim=2, output_dim=5)
    conv.odeblock.odefunc = _TimeFree(conv.odeblock.odefunc)
    assert net(_x(3, 2)).shape == (3, 4)
    assert count_parameters(net) == count_parameters(net.odeblock.odefunc) + (2 * 1 + 1) + (3 * 4 + 4)
    assert flow(_x(3, 2)).shape == (3, 2)
    assert conv(_x(2, 1, 4, 4)).shape == (2, 5)
    with pytest.raises(ValueError, match=r"input of shape \(3, 3\) does not match the model, which expects \[batch, 2\]"):
        net(_x(3, 3))


class _TimeFree(nn.Module):
    def __init__(self, conv: nn.Module) -> None:
        super().__init__()
        self.conv = conv

    def forward(self, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return self.conv(h)


def test_custom_field_argument_errors() -> None:
    with pytest.raises(ValueError, match="hidden_dim configure anode's own vector field; with odefunc= leave them out"):
        ODENet(2, 8, odefunc=MLPField(2))
    with pytest.raises(ValueError, match="time_dependent configure"):
        ODEFlow(2, odefunc=MLPField(2), time_dependent=True)
    with pytest.raises(TypeError, match="ODENet needs hidden_dim .* or odefunc="):
        ODENet(2)
    with pytest.raises(TypeError, match="odefunc must be an nn.Module"):
        ODENet(2, odefunc=lambda t, h: h)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown augmentation 'ones'; valid choices: \\['zeros', 'learned'"):
        ODEBlock(MLPField(2), augmentation="ones")
    with pytest.raises(ValueError, match=r"augmentation 'learned' needs the shape of one sample: pass data_shape="):
        ODEBlock(MLPField(3), augment_dim=1, augmentation="learned")
    with pytest.raises(ValueError, match="augment_dim=2 contradicts the vector field's augment_dim = 1"):
        ODEBlock(ODEFunc(2, 4, augment_dim=1), augment_dim=2)
    with pytest.raises(ValueError, match="augmentation 'learned' needs augment_dim >= 1, got 0"):
        ODEBlock(MLPField(2), augmentation="learned", data_shape=(2,))
    with pytest.raises(ValueError, match="augment_dim must be >= 0, got -1"):
        ODEBlock(MLPField(2), augment_dim=-1)


def test_legacy_attribute_still_augments() -> None:
    block = ODEBlock(ODEFunc(2, 4, augment_dim=3))
    assert block.augment_dim == 3 and block.augmentation == "zeros"
    block = ODEBlock(ODEFunc(2, 4, augment_dim=3), augmentation=LearnedAugmentation((2,), 3))
    assert block.augmentation == "learned"
    with pytest.raises(ValueError, match="augment_dim=2 contradicts the vector field's augment_dim = 3"):
        ODEBlock(ODEFunc(2, 4, augment_dim=3), augmentation=LearnedAugmentation((2,), 2))
    with pytest.raises(ValueError, match="augment_dim=1 contradicts the augmentation's augment_dim = 2"):
        ODEBlock(MLPField(4), augment_dim=1, augmentation=ZeroAugmentation(2))
    with pytest.raises(TypeError, match="augmentation must be a name from"):
        ODEBlock(MLPField(4), augmentation=2)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Times
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("span", "expected"), [([0.5, 1.0], (1.0 - 0.25) / 2), ([0.0, 2.0], 2.0), ([-1.0, 0.0], -0.5)])
def test_t_sets_the_interval(span: list[float], expected: float) -> None:
    x = _x(3, 2, dtype=torch.float64)
    block = ODEBlock(Growth(), solver=TIGHT)
    torch.testing.assert_close(block(x, t=span), x * math.exp(expected), atol=1e-6, rtol=1e-6)


def test_t_through_a_model_and_trajectory_rule() -> None:
    x = _x(3, 2, dtype=torch.float64)
    model = ODEFlow(2, odefunc=Growth(), solver=TIGHT)
    t = torch.tensor([0.5, 0.75, 1.0], dtype=torch.float64)
    out = model(x, t=t)
    assert out.shape == (3, 2)  # the last time only, whatever len(t)
    traj, pred = model(x, t=t, return_trajectory=True)
    assert traj.shape == (3, 3, 2) and torch.equal(traj[0], x) and torch.equal(traj[-1][:, :2], pred)
    expected = x[None] * torch.exp((t**2 - 0.25) / 2)[:, None, None]
    torch.testing.assert_close(traj, expected, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(model.odeblock.trajectory(x, 3, t_span=(0.5, 1.0)), traj)


@pytest.mark.parametrize(("t", "shown"), [
    ([0.0, 0.5, 0.4], r"\[0.0, 0.5, 0.4\]"),
    ([1.0], r"\[1.0\]"),
    ([[0.0, 1.0]], r"\[\[0.0, 1.0\]\]"),
    ([0.0, float("nan")], r"\[0.0, nan\]"),
    ([1.0, 1.0], r"\[1.0, 1.0\]"),
])
def test_bad_t_names_the_value(t: list, shown: str) -> None:
    model = ODENet(2, 4)
    with pytest.raises(ValueError, match=r"t must be a 1-D strictly increasing sequence .*got " + shown):
        model(_x(2, 2), t=t)


def test_bad_t_type() -> None:
    with pytest.raises(TypeError, match="t must be a tensor or a sequence of numbers, got 'ab'"):
        ODEBlock(ODEFunc(2, 4))(_x(2, 2), t="ab")  # type: ignore[arg-type]


def test_eval_times_on_models_points_to_t() -> None:
    model = ODENet(2, 4)
    with pytest.raises(TypeError, match=r"takes the output times as t=.*return_trajectory=True"):
        model(_x(2, 2), eval_times=torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="choose return_features .* or return_trajectory"):
        model(_x(2, 2), return_features=True, return_trajectory=True)


def test_eval_times_on_the_block_is_t_with_the_trajectory() -> None:
    with anode.seeded(0):
        block = ODEBlock(ODEFunc(2, 4))
    x, times = _x(2, 2), torch.tensor([0.0, 0.5, 1.0])
    assert torch.equal(block(x, times), block(x, t=times, return_trajectory=True))
    with pytest.raises(ValueError, match="give the output times once"):
        block(x, times, t=times)


# ---------------------------------------------------------------------------------------------
# Experiment configs: augmentation by name, parameter matching for ODE models
# ---------------------------------------------------------------------------------------------


def test_config_builds_each_augmentation_and_matches_parameters() -> None:
    from anode.lab.experiments.builders import PreparedData, build_model
    from anode.lab.experiments.config import parse_config

    cfg = parse_config({
        "name": "aug", "datasets": [{"kind": "spheres", "name": "s2", "dim": 2}],
        "models": [
            {"name": "zeros", "hidden_dim": 32, "augment_dim": 2, "role": "augmented"},
            {"name": "learned", "augment_dim": 2, "augmentation": "learned", "match_parameters": "zeros"},
            {"name": "sonode", "augment_dim": 2, "augmentation": "second_order", "match_parameters": "zeros"},
        ],
    })
    data = PreparedData((2,), 1, True, torch.zeros(4, 2), torch.zeros(4, 1))
    models = {m.name: build_model(m, cfg, data, seed=0) for m in cfg.models}
    assert {name: m.odeblock.augmentation for name, m in models.items()} == \
        {"zeros": "zeros", "learned": "learned", "sonode": "second_order"}
    counts = {name: count_parameters(m) for name, m in models.items()}
    for name in ("learned", "sonode"):
        assert abs(counts[name] - counts["zeros"]) <= 0.03 * counts["zeros"], counts
    assert models["learned"].odeblock.odefunc.fc2.in_features <= 32  # never wider: it pays for its input layer
    assert models["sonode"].odeblock.odefunc.fc2.in_features > 32  # wider: its output is d, not d + p


def test_config_match_parameters_cycle_is_rejected() -> None:
    from anode.lab.experiments.config import parse_config
    from anode.lab.experiments.schema import ConfigError

    with pytest.raises(ConfigError, match="match_parameters forms a cycle: a -> b -> a"):
        parse_config({"name": "x", "datasets": [{"kind": "g1d", "name": "g"}],
                      "models": [{"name": "a", "match_parameters": "b"}, {"name": "b", "match_parameters": "a"}]})
