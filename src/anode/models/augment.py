"""Augmentation strategies: how the ODE block builds h(0) from x, and which dynamics it integrates.

- "zeros": h(0) = [x, 0] with p zero features/channels (Dupont et al. 2019, the paper's ANODE).
- "learned": h(0) = [x, g(x)] with g a linear layer (vectors) or a 1x1 convolution (images)
  producing the p extra dimensions (Massaroli et al. 2020, "Dissecting Neural ODEs"; torchdyn's
  `Augmenter`). With zero weights it equals "zeros" exactly.
- "second_order": the state is [x, v] with v of the shape of x (p = d features or C channels),
  dx/dt = v and dv/dt = f(t, [x, v]); the vector field returns the acceleration (shape of x).
  v(0) = 0 (Norcliffe et al. 2020, "On Second Order Behaviour in Augmented Neural ODEs").
- "second_order_learned": as "second_order" with v(0) = g(x) learned as in "learned".

Each strategy is a small `nn.Module`; `make_augmentation` builds one by name.
"""

from __future__ import annotations

import torch
from torch import nn

from .validation import check_int

__all__ = [
    "AUGMENTATIONS", "Augmentation", "LearnedAugmentation", "SecondOrderAugmentation", "ZeroAugmentation",
    "make_augmentation",
]

#: Names accepted by `make_augmentation`, `ODEBlock(augmentation=...)` and `ModelSpec.augmentation`.
AUGMENTATIONS: tuple[str, ...] = ("zeros", "learned", "second_order", "second_order_learned")


def _input_layer(data_shape: tuple[int, ...], augment_dim: int) -> nn.Module:
    """Linear d -> p for vectors, 1x1 conv C -> p for images."""
    if len(data_shape) == 1:
        return nn.Linear(data_shape[0], augment_dim)
    if len(data_shape) == 3:
        return nn.Conv2d(data_shape[0], augment_dim, kernel_size=1)
    raise ValueError(f"learned augmentation needs vectors (d,) or images (C, H, W), got data_shape {data_shape}")


class Augmentation(nn.Module):
    """Base class: `forward(x)` returns h(0) with `augment_dim` extra features (dim 1);
    `dynamics(odefunc)` returns the vector field the block integrates (the field itself by default).

    Arguments:
        augment_dim: p, the number of extra features or channels.

    Raises:
        TypeError, ValueError: `augment_dim` not an int >= 0.
    """

    name = "base"

    def __init__(self, augment_dim: int) -> None:
        super().__init__()
        check_int("augment_dim", augment_dim, minimum=0)
        self.augment_dim = augment_dim

    def dynamics(self, odefunc: nn.Module) -> nn.Module:
        """The vector field on the augmented state (here `odefunc` itself)."""
        return odefunc

    def extra_repr(self) -> str:
        return f"augment_dim={self.augment_dim}"


class ZeroAugmentation(Augmentation):
    """h(0) = [x, 0]: p zero features (vectors) or channels (images); p = 0 returns `x` itself."""

    name = "zeros"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`x` with `augment_dim` zeros appended along dim 1."""
        if self.augment_dim == 0:
            return x
        if x.dim() == 2:  # one call, the same tensor as concatenating zeros
            return torch.nn.functional.pad(x, (0, self.augment_dim))
        # images: the concatenation's contiguous layout (pad would keep a channels-last input's)
        return torch.cat([x, x.new_zeros((x.shape[0], self.augment_dim, *x.shape[2:]))], 1)


class LearnedAugmentation(Augmentation):
    """h(0) = [x, g(x)], g linear (vectors) or a 1x1 convolution (images) with p outputs.

    Arguments:
        data_shape: shape of one sample, (d,) or (C, H, W).
        augment_dim: p >= 1.

    Raises:
        ValueError: p = 0 or a data shape that is neither a vector nor an image.
    """

    name = "learned"

    def __init__(self, data_shape: tuple[int, ...], augment_dim: int) -> None:
        super().__init__(augment_dim)
        if augment_dim < 1:
            raise ValueError(f"augmentation 'learned' needs augment_dim >= 1, got {augment_dim}")
        self.layer = _input_layer(tuple(data_shape), augment_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`x` with the learned features g(x) appended along dim 1."""
        return torch.cat([x, self.layer(x)], 1)


class _SecondOrderField(nn.Module):
    """[x, v] -> [v, f(t, [x, v])]; checks that f returns an acceleration of the shape of x."""

    def __init__(self, odefunc: nn.Module, channels: int) -> None:
        super().__init__()
        self.odefunc = odefunc
        self.channels = channels

    def forward(self, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        v = h[:, self.channels:]
        acceleration = self.odefunc(t, h)
        if acceleration.shape != v.shape:
            raise ValueError(
                f"augmentation 'second_order': the vector field must return the acceleration dv/dt of shape "
                f"{tuple(v.shape)} (the shape of x), got {tuple(acceleration.shape)}"
            )
        return torch.cat([v, acceleration], 1)


class SecondOrderAugmentation(Augmentation):
    """Second-order dynamics on [x, v]: dx/dt = v, dv/dt = f(t, [x, v]) (SONODE).

    Arguments:
        data_shape: shape of one sample, (d,) or (C, H, W).
        augment_dim: must equal d (vectors) or C (images): v has the shape of x.
        learned_velocity: v(0) = g(x) (linear or 1x1 conv) instead of v(0) = 0.

    Raises:
        ValueError: `augment_dim` differs from the data's features/channels.
    """

    name = "second_order"

    def __init__(self, data_shape: tuple[int, ...], augment_dim: int, *, learned_velocity: bool = False) -> None:
        super().__init__(augment_dim)
        data_shape = tuple(data_shape)
        if augment_dim != data_shape[0]:
            raise ValueError(
                f"augmentation 'second_order' appends a velocity v of the shape of x: augment_dim must be "
                f"{data_shape[0]} (the data's {'features' if len(data_shape) == 1 else 'channels'}), got {augment_dim}"
            )
        self.learned_velocity = learned_velocity
        if learned_velocity:
            self.name = "second_order_learned"
            self.layer = _input_layer(data_shape, augment_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[x, v(0)]."""
        v0 = self.layer(x) if self.learned_velocity else torch.zeros_like(x)
        return torch.cat([x, v0], 1)

    def dynamics(self, odefunc: nn.Module) -> nn.Module:
        """[x, v] -> [v, odefunc(t, [x, v])]."""
        return _SecondOrderField(odefunc, self.augment_dim)


def make_augmentation(name: str, *, augment_dim: int, data_shape: tuple[int, ...] | None = None) -> Augmentation:
    """Build an augmentation strategy by name.

    Arguments:
        name: one of `AUGMENTATIONS`.
        augment_dim: p.
        data_shape: shape of one sample; needed by every strategy but "zeros".

    Returns:
        The strategy module.

    Raises:
        ValueError: unknown name (valid ones listed), a missing `data_shape`, or a `augment_dim`
            the strategy cannot use.
    """
    if name not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {name!r}; valid choices: {list(AUGMENTATIONS)}")
    if name == "zeros":
        return ZeroAugmentation(augment_dim)
    if data_shape is None:
        raise ValueError(
            f"augmentation {name!r} needs the shape of one sample: pass data_shape=(d,) or (C, H, W) "
            "(anode's own vector fields carry it)"
        )
    if name == "learned":
        return LearnedAugmentation(data_shape, augment_dim)
    return SecondOrderAugmentation(data_shape, augment_dim, learned_velocity=name == "second_order_learned")
