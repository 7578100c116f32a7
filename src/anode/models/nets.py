"""Whole models: ODE block + linear readout (NODE/ANODE), and ResNet baselines."""

from __future__ import annotations

import torch
from torch import nn

from ..config import SolverConfig
from ..solve import NFE
from .block import ODEBlock, check_input
from .fields import ConvODEFunc, ODEFunc, _activation, _check_int

__all__ = ["ConvODENet", "ConvResNet", "ODEFlow", "ODENet", "ResNet", "count_parameters"]


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (the paper's parameter counts)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


class _ODEClassifier(nn.Module):
    """ODE block followed by a linear layer on the flattened augmented state."""

    odeblock: ODEBlock
    linear_layer: nn.Linear

    @property
    def nfe(self) -> NFE:
        """NFE of the latest forward solve and the backward pass after it."""
        return self.odeblock.nfe

    @property
    def augment_dim(self) -> int:
        return self.odeblock.augment_dim

    def forward(
        self, x: torch.Tensor, return_features: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Predict from `x`; with `return_features` return `(h(1), prediction)`."""
        features = self.odeblock(x)
        pred = self.linear_layer(features.flatten(1))
        return (features, pred) if return_features else pred


class ODENet(_ODEClassifier):
    """NODE (augment_dim = 0) or ANODE on vectors: MLP vector field, dopri5 by default, linear readout.

    Arguments:
        data_dim: d.
        hidden_dim: width of the vector field's hidden layers.
        output_dim: size of the prediction.
        augment_dim: p, augmented zero dimensions.
        time_dependent: the vector field sees t.
        non_linearity: "relu", "softplus" or "tanh".
        solver: method, tolerances and gradient mode.

    Raises:
        ValueError, TypeError: invalid sizes or options.
    """

    def __init__(
        self,
        data_dim: int,
        hidden_dim: int,
        *,
        output_dim: int = 1,
        augment_dim: int = 0,
        time_dependent: bool = False,
        non_linearity: str = "relu",
        solver: SolverConfig = SolverConfig(),
    ) -> None:
        super().__init__()
        _check_int("output_dim", output_dim, minimum=1)
        self.odeblock = ODEBlock(ODEFunc(data_dim, hidden_dim, augment_dim=augment_dim, time_dependent=time_dependent,
                                         non_linearity=non_linearity), solver=solver)
        self.linear_layer = nn.Linear(data_dim + augment_dim, output_dim)


class ODEFlow(_ODEClassifier):
    """The flow alone: prediction = the first `data_dim` coordinates of h(1), no trainable readout.

    This is the model of the paper's Section 3 (Prop. 1): with augment_dim = 0 it is a
    homeomorphism of R^d, so it cannot map x = -1 -> 1 and 1 -> -1 in d = 1; with augment_dim >= 1
    it can (trajectories cross in the projection, not in R^(d+p)).

    Arguments:
        data_dim: d.
        hidden_dim: width of the vector field's hidden layers.
        augment_dim: p, augmented zero dimensions.
        time_dependent: the vector field sees t.
        non_linearity: "relu", "softplus" or "tanh".
        solver: method, tolerances and gradient mode.
    """

    def __init__(
        self,
        data_dim: int,
        hidden_dim: int,
        *,
        augment_dim: int = 0,
        time_dependent: bool = False,
        non_linearity: str = "relu",
        solver: SolverConfig = SolverConfig(),
    ) -> None:
        super().__init__()
        self.odeblock = ODEBlock(ODEFunc(data_dim, hidden_dim, augment_dim=augment_dim, time_dependent=time_dependent,
                                         non_linearity=non_linearity), solver=solver)
        self.data_dim = data_dim

    def forward(
        self, x: torch.Tensor, return_features: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Predict h(1)[:, :d]; with `return_features` return `(h(1), prediction)`."""
        features = self.odeblock(x)
        pred = features[:, : self.data_dim]
        return (features, pred) if return_features else pred


class ConvODENet(_ODEClassifier):
    """NODE/ANODE on images: conv vector field on C + p channels, linear layer on (C+p) x H x W.

    This is the paper's Table 1 architecture: the ODE acts directly on the image (no
    downsampling front end). `features` (with `return_features=True`) are `[batch, C+p, H, W]`.

    Arguments:
        img_size: (C, H, W).
        num_filters: hidden channels of the vector field.
        output_dim: number of classes.
        augment_dim: p, augmented zero channels.
        time_dependent: the vector field sees t as an extra channel.
        non_linearity: "relu", "softplus" or "tanh".
        solver: method, tolerances and gradient mode.

    Raises:
        ValueError, TypeError: invalid sizes or options.
    """

    def __init__(
        self,
        img_size: tuple[int, int, int],
        num_filters: int,
        *,
        output_dim: int = 1,
        augment_dim: int = 0,
        time_dependent: bool = False,
        non_linearity: str = "relu",
        solver: SolverConfig = SolverConfig(),
    ) -> None:
        super().__init__()
        _check_int("output_dim", output_dim, minimum=1)
        odefunc = ConvODEFunc(
            img_size, num_filters, augment_dim=augment_dim, time_dependent=time_dependent, non_linearity=non_linearity
        )
        self.odeblock = ODEBlock(odefunc, solver=solver)
        channels, height, width = odefunc.data_shape
        self.linear_layer = nn.Linear((channels + augment_dim) * height * width, output_dim)


class _Residual(nn.Module):
    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class _ResNetBase(nn.Module):
    residual_blocks: nn.ModuleList
    linear_layer: nn.Linear
    data_shape: tuple[int, ...]

    def _setup(self, num_layers: int) -> None:
        self.num_layers = num_layers
        self.nfe = NFE()

    def forward(
        self, x: torch.Tensor, return_features: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Predict from `x`; with `return_features` return `(features, prediction)`.

        `nfe.forward` is set to the number of residual-function evaluations (= num_layers),
        the discrete analogue of an ODE block's NFE.
        """
        check_input(x, self.data_shape, self.linear_layer.weight)
        features = x
        for block in self.residual_blocks:
            features = block(features)
        self.nfe.reset()
        self.nfe.forward = self.num_layers
        pred = self.linear_layer(features.flatten(1))
        return (features, pred) if return_features else pred


class ResNet(_ResNetBase):
    """Discretised baseline: `num_layers` blocks h <- h + MLP(h) (d -> hidden -> hidden -> d), then linear.

    Arguments:
        data_dim: d.
        hidden_dim: width of each block's MLP.
        num_layers: number of residual blocks.
        output_dim: size of the prediction.
        non_linearity: "relu", "softplus" or "tanh".

    Raises:
        ValueError, TypeError: invalid sizes or options.
    """

    def __init__(
        self, data_dim: int, hidden_dim: int, num_layers: int, *, output_dim: int = 1, non_linearity: str = "relu"
    ) -> None:
        super().__init__()
        for name, value, minimum in (("data_dim", data_dim, 1), ("hidden_dim", hidden_dim, 1),
                                     ("num_layers", num_layers, 1), ("output_dim", output_dim, 1)):
            _check_int(name, value, minimum=minimum)
        self.data_shape = (data_dim,)
        self.residual_blocks = nn.ModuleList(
            _Residual(nn.Sequential(
                nn.Linear(data_dim, hidden_dim), _activation(non_linearity),
                nn.Linear(hidden_dim, hidden_dim), _activation(non_linearity),
                nn.Linear(hidden_dim, data_dim),
            ))
            for _ in range(num_layers)
        )
        self.linear_layer = nn.Linear(data_dim, output_dim)
        self._setup(num_layers)


class ConvResNet(_ResNetBase):
    """Image baseline: `num_layers` blocks h <- h + conv(1x1, 3x3, 1x1)(h) on the image, then linear.

    Arguments:
        img_size: (C, H, W).
        num_filters: hidden channels of each block.
        num_layers: number of residual blocks.
        output_dim: number of classes.
        non_linearity: "relu", "softplus" or "tanh".

    Raises:
        ValueError, TypeError: invalid sizes or options.
    """

    def __init__(
        self,
        img_size: tuple[int, int, int],
        num_filters: int,
        num_layers: int,
        *,
        output_dim: int = 1,
        non_linearity: str = "relu",
    ) -> None:
        super().__init__()
        _check_int("num_layers", num_layers, minimum=1)
        _check_int("output_dim", output_dim, minimum=1)
        # ConvODEFunc validates img_size and num_filters and has exactly the block's layers.
        blocks = [ConvODEFunc(img_size, num_filters, non_linearity=non_linearity) for _ in range(num_layers)]
        self.data_shape = blocks[0].data_shape
        self.residual_blocks = nn.ModuleList(_Residual(_TimeFree(b)) for b in blocks)
        channels, height, width = self.data_shape
        self.linear_layer = nn.Linear(channels * height * width, output_dim)
        self._setup(num_layers)


class _TimeFree(nn.Module):
    """Calls a time-independent vector field without a time argument."""

    def __init__(self, field: ConvODEFunc) -> None:
        super().__init__()
        self.field = field
        self._t = torch.zeros(())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.field(self._t, x)
