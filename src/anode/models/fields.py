"""Vector fields f(h, t): an MLP for vectors and a 1x1-3x3-1x1 conv stack for images."""

from __future__ import annotations

import operator

import torch
from torch import nn

from ..solvers.fused import ACTIVATIONS, MLPField
from .validation import check_int

__all__ = ["NON_LINEARITIES", "ConvODEFunc", "ODEFunc", "make_activation"]

NON_LINEARITIES: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "softplus": nn.Softplus, "tanh": nn.Tanh}


def make_activation(non_linearity: str) -> nn.Module:
    """A new activation module by name.

    Arguments:
        non_linearity: one of `NON_LINEARITIES` ("relu", "softplus", "tanh").

    Returns:
        The module, e.g. `nn.ReLU()`.

    Raises:
        ValueError: an unknown name (the message lists the valid ones).
    """
    if non_linearity not in NON_LINEARITIES:
        raise ValueError(f"unknown non_linearity {non_linearity!r}; valid choices: {sorted(NON_LINEARITIES)}")
    return NON_LINEARITIES[non_linearity]()


class ODEFunc(nn.Module):
    """MLP vector field on R^(d+p): (d+p [+1 for t]) -> hidden -> hidden -> d+p.

    Arguments:
        data_dim: d, the dimension of the data.
        hidden_dim: width of the two hidden layers.
        augment_dim: p, the number of augmented dimensions (the field's input has d + p features).
        time_dependent: feed t to the first layer as an extra input.
        non_linearity: one of "relu", "softplus", "tanh".
        output_dim: size of the output (None: d + p, a velocity of the whole state); a
            second-order model uses d, the acceleration.

    Raises:
        ValueError, TypeError: invalid sizes or an unknown non-linearity.
    """

    def __init__(
        self,
        data_dim: int,
        hidden_dim: int,
        *,
        augment_dim: int = 0,
        time_dependent: bool = False,
        non_linearity: str = "relu",
        output_dim: int | None = None,
    ) -> None:
        super().__init__()
        check_int("data_dim", data_dim, minimum=1)
        check_int("hidden_dim", hidden_dim, minimum=1)
        check_int("augment_dim", augment_dim, minimum=0)
        if output_dim is not None:
            check_int("output_dim", output_dim, minimum=1)
        self.data_shape: tuple[int, ...] = (data_dim,)
        self.augment_dim = augment_dim
        self.input_dim = data_dim + augment_dim
        self.time_dependent = time_dependent
        self.fc1 = nn.Linear(self.input_dim + int(time_dependent), hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, hidden_dim)
        self.fc3 = nn.Linear(hidden_dim, self.input_dim if output_dim is None else output_dim)
        self.non_linearity = make_activation(non_linearity)
        self._arguments = {"data_dim": data_dim, "hidden_dim": hidden_dim, "augment_dim": augment_dim,
                           "time_dependent": time_dependent, "non_linearity": non_linearity, "output_dim": output_dim}

    def architecture(self) -> dict[str, object]:
        """The constructor arguments as plain data (`anode.models.architecture_of`).

        Returns:
            `{"class": "ODEFunc", "args": {...}}`.
        """
        return {"class": "ODEFunc", "args": dict(self._arguments)}

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Velocity at state `x` [batch, d+p] and time `t` (scalar tensor)."""
        if self.time_dependent:
            x = torch.cat([torch.ones_like(x[:, :1]) * t.to(x.dtype), x], 1)
        out = self.non_linearity(self.fc1(x))
        out = self.non_linearity(self.fc2(out))
        return self.fc3(out)

    def fused_mlp(self) -> MLPField | None:
        """This field's layers for the "anode" backend's fused solve (`anode.solvers.fused`), or None
        when `forward` would not be exactly the plain MLP: a subclass overriding `forward`, modules
        swapped or parametrized, a softplus with non-default beta/threshold, or hooks registered."""
        if type(self).forward is not ODEFunc.forward:
            return None
        # read from the module dicts directly (a solve asks every call; nn.Module.__getattr__ is slow)
        modules = self._modules
        layers = (modules["fc1"], modules["fc2"], modules["fc3"])
        act = modules["non_linearity"]
        if any(type(layer) is not nn.Linear or layer._parameters["bias"] is None for layer in layers) or type(act) not in _FUSED:
            return None
        if isinstance(act, nn.Softplus) and (act.beta != 1 or act.threshold != 20):
            return None
        for m in (self, *layers, act):
            if m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks:
                return None
        params = tuple(layer._parameters[name] for layer in layers for name in ("weight", "bias"))
        cached = self.__dict__.get("_fused")  # (params, MLPField)
        if (cached is None or cached[1].activation != _FUSED[type(act)] or cached[1].time_dependent != self.time_dependent
                or not all(map(operator.is_, cached[0], params))):
            cached = (params, MLPField(params[::2], params[1::2], _FUSED[type(act)], self.time_dependent))
            self.__dict__["_fused"] = cached  # rebuilt when a parameter or the activation is replaced
        return cached[1]


#: The activation modules the fused solve handles, by name.
_FUSED: dict[type[nn.Module], str] = {cls: name for name, cls in NON_LINEARITIES.items() if name in ACTIVATIONS}


class _Conv2dTime(nn.Conv2d):
    """Conv2d that sees t as an extra constant input channel (as in the 2019 code)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, padding: int) -> None:
        super().__init__(in_channels + 1, out_channels, kernel_size=kernel_size, padding=padding)

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        t_img = torch.ones_like(x[:, :1]) * t.to(x.dtype)
        return super().forward(torch.cat([t_img, x], 1))


class ConvODEFunc(nn.Module):
    """Conv vector field on images with C + p channels: 1x1 (C+p -> F), 3x3 (F -> F), 1x1 (F -> C+p).

    Arguments:
        img_size: (C, H, W) of the input images.
        num_filters: F, channels of the hidden feature maps.
        augment_dim: p, the number of augmented channels (the field's input has C + p channels).
        time_dependent: give every conv layer t as an extra constant channel.
        non_linearity: one of "relu", "softplus", "tanh".
        out_channels: channels of the output (None: C + p); a second-order model uses C.

    Raises:
        ValueError, TypeError: invalid sizes or an unknown non-linearity.
    """

    def __init__(
        self,
        img_size: tuple[int, int, int],
        num_filters: int,
        *,
        augment_dim: int = 0,
        time_dependent: bool = False,
        non_linearity: str = "relu",
        out_channels: int | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(img_size, (tuple, list)) or len(img_size) != 3:
            raise ValueError(f"img_size must be (channels, height, width), got {img_size!r}")
        for name, value in zip(("channels", "height", "width"), img_size):
            check_int(f"img_size {name}", value, minimum=1)
        check_int("num_filters", num_filters, minimum=1)
        check_int("augment_dim", augment_dim, minimum=0)
        if out_channels is not None:
            check_int("out_channels", out_channels, minimum=1)
        self.data_shape = tuple(int(v) for v in img_size)
        self.augment_dim = augment_dim
        self.channels = img_size[0] + augment_dim
        self.num_filters = num_filters
        self.time_dependent = time_dependent
        conv = _Conv2dTime if time_dependent else nn.Conv2d
        self.conv1 = conv(self.channels, num_filters, kernel_size=1, padding=0)
        self.conv2 = conv(num_filters, num_filters, kernel_size=3, padding=1)
        self.conv3 = conv(num_filters, self.channels if out_channels is None else out_channels, kernel_size=1, padding=0)
        self.non_linearity = make_activation(non_linearity)
        self._arguments = {"img_size": list(self.data_shape), "num_filters": num_filters, "augment_dim": augment_dim,
                           "time_dependent": time_dependent, "non_linearity": non_linearity,
                           "out_channels": out_channels}

    def architecture(self) -> dict[str, object]:
        """The constructor arguments as plain data (`anode.models.architecture_of`).

        Returns:
            `{"class": "ConvODEFunc", "args": {...}}`.
        """
        return {"class": "ConvODEFunc", "args": dict(self._arguments)}

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Velocity at state `x` [batch, C+p, H, W] and time `t` (scalar tensor)."""
        if self.time_dependent:
            out = self.non_linearity(self.conv1(t, x))
            out = self.non_linearity(self.conv2(t, out))
            return self.conv3(t, out)
        out = self.non_linearity(self.conv1(x))
        out = self.non_linearity(self.conv2(out))
        return self.conv3(out)
