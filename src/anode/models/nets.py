"""Whole models: ODE block + linear readout (NODE/ANODE), and ResNet baselines."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..config import SolverConfig
from ..solve import NFE
from .architecture import describe_module, plain_solver
from .block import ODEBlock, check_input
from .fields import ConvODEFunc, ODEFunc, make_activation
from .validation import check_int

__all__ = ["ConvODENet", "ConvResNet", "ODEFlow", "ODENet", "ResNet", "count_parameters"]


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (the paper's parameter counts)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


_SECOND_ORDER = ("second_order", "second_order_learned")
#: The augmentation class each name builds (a model holding another cannot be rebuilt by name).
_AUGMENTERS = {"zeros": "ZeroAugmentation", "learned": "LearnedAugmentation", "second_order": "SecondOrderAugmentation",
               "second_order_learned": "SecondOrderAugmentation"}


def _field_options(time_dependent: bool | None, non_linearity: str | None) -> dict[str, object]:
    """Options for anode's own vector field; None keeps the field's default."""
    return {k: v for k, v in (("time_dependent", time_dependent), ("non_linearity", non_linearity)) if v is not None}


def _check_custom_field(
    model: str, odefunc: nn.Module | None, width_name: str, width: int | None,
    time_dependent: bool | None, non_linearity: str | None,
) -> None:
    """Either `odefunc` (the user's field) or the width of anode's own field, never both or neither."""
    if odefunc is None:
        if width is None:
            raise TypeError(f"{model} needs {width_name} (the width of its own vector field) or odefunc= (your own field)")
        return
    if not isinstance(odefunc, nn.Module):
        raise TypeError(f"odefunc must be an nn.Module called as odefunc(t, h), got {type(odefunc).__name__}")
    given = [n for n, v in ((width_name, width), ("time_dependent", time_dependent), ("non_linearity", non_linearity))
             if v is not None]
    if given:
        raise ValueError(f"{model}: {', '.join(given)} configure anode's own vector field; with odefunc= leave them out")


class _ODEClassifier(nn.Module):
    """ODE block followed by a linear layer on the flattened augmented state."""

    odeblock: ODEBlock
    linear_layer: nn.Linear
    #: The constructor's plain arguments (all but `solver` and `odefunc`, read from the block).
    _arguments: dict[str, object]

    def architecture(self) -> dict[str, object]:
        """The constructor arguments as plain data (`anode.models.architecture_of`).

        Returns:
            `{"class": name, "args": {...}}`; `anode.models.build_from_architecture` rebuilds the model.

        Raises:
            ValueError: a vector field or solver options that are not anode's own plain data (the
                class is named, with the fix: `anode.load_run(run_dir, model=my_model)`).
        """
        name = type(self).__name__
        args: dict[str, object] = {**self._arguments, "solver": plain_solver(self.odeblock.solver, where=name)}
        if args.pop("custom_field"):
            args["odefunc"] = describe_module(self.odeblock.odefunc, where=f"vector field of {name}")
        if type(self.odeblock.augmenter).__name__ != _AUGMENTERS.get(self.odeblock.augmentation):
            describe_module(self.odeblock.augmenter, where=f"augmentation of {name}")  # raises: not rebuildable
        args["augmentation"] = self.odeblock.augmentation
        return {"class": name, "args": args}

    @property
    def nfe(self) -> NFE:
        """NFE of the latest forward solve and the backward pass after it."""
        return self.odeblock.nfe

    @property
    def augment_dim(self) -> int:
        return self.odeblock.augment_dim

    def _readout(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear_layer(features.flatten(1))

    def forward(
        self,
        x: torch.Tensor,
        return_features: bool = False,
        *,
        t: torch.Tensor | Sequence[float] | None = None,
        return_trajectory: bool = False,
        eval_times: object = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Predict from h(t[-1]) (see `ODEBlock`, "Times").

        Arguments:
            x: batch `[batch, *data_shape]`.
            return_features: also return the features h(t[-1]).
            t: output times, 1-D strictly increasing, `t[0]` the start (None: [0, 1]).
            return_trajectory: also return the states at every time of `t`, `[len(t), batch, ...]`.
            eval_times: not accepted on models; the error points to `t=`.

        Returns:
            The prediction; `(h(t[-1]), prediction)` with `return_features`;
            `(trajectory, prediction)` with `return_trajectory`.

        Raises:
            TypeError: `eval_times` given (use `t=..., return_trajectory=True`), or bad input.
            ValueError: both `return_features` and `return_trajectory`, or bad times.
            SolverError: the solver failed.
        """
        if eval_times is not None:
            raise TypeError(f"{type(self).__name__} takes the output times as t=...; pass "
                            "t=eval_times, return_trajectory=True for the states at every time")
        if return_features and return_trajectory:
            raise ValueError("choose return_features (h at the last time) or return_trajectory (h at every time)")
        states = self.odeblock(x, t=t, return_trajectory=return_trajectory)
        features = states[-1] if return_trajectory else states
        pred = self._readout(features)
        if return_trajectory:
            return states, pred
        return (features, pred) if return_features else pred


class ODENet(_ODEClassifier):
    """NODE (augment_dim = 0) or ANODE on vectors: a vector field, dopri5 by default, linear readout on d + p.

    Arguments:
        data_dim: d.
        hidden_dim: width of anode's MLP vector field (leave out with `odefunc`).
        output_dim: size of the prediction.
        augment_dim: p, augmented dimensions (p = d for second-order augmentation).
        augmentation: "zeros" (the paper), "learned", "second_order" or "second_order_learned" (see `ODEBlock`).
        time_dependent: anode's field sees t (None: the field's default, False).
        non_linearity: "relu", "softplus" or "tanh" (None: the field's default, "relu").
        solver: method, tolerances, gradient mode and options.
        odefunc: your own vector field `odefunc(t, h)` on `[batch, d + p]` states, returning the
            velocity (or, with second-order augmentation, the acceleration `[batch, d]`).

    Raises:
        ValueError, TypeError: invalid sizes or options, both or neither of `hidden_dim` and `odefunc`.
    """

    def __init__(
        self,
        data_dim: int,
        hidden_dim: int | None = None,
        *,
        output_dim: int = 1,
        augment_dim: int = 0,
        augmentation: str = "zeros",
        time_dependent: bool | None = None,
        non_linearity: str | None = None,
        solver: SolverConfig = SolverConfig(),
        odefunc: nn.Module | None = None,
    ) -> None:
        super().__init__()
        check_int("output_dim", output_dim, minimum=1)
        self.odeblock = _vector_block("ODENet", data_dim, hidden_dim, augment_dim, augmentation, time_dependent,
                                      non_linearity, solver, odefunc)
        self.linear_layer = nn.Linear(data_dim + augment_dim, output_dim)
        self._arguments = {"data_dim": data_dim, "hidden_dim": hidden_dim, "output_dim": output_dim,
                           "augment_dim": augment_dim, "augmentation": augmentation, "time_dependent": time_dependent,
                           "non_linearity": non_linearity, "custom_field": odefunc is not None}


def _vector_block(
    model: str, data_dim: int, hidden_dim: int | None, augment_dim: int, augmentation: str,
    time_dependent: bool | None, non_linearity: str | None, solver: SolverConfig, odefunc: nn.Module | None,
) -> ODEBlock:
    _check_custom_field(model, odefunc, "hidden_dim", hidden_dim, time_dependent, non_linearity)
    check_int("data_dim", data_dim, minimum=1)
    check_int("augment_dim", augment_dim, minimum=0)
    if odefunc is None:
        odefunc = ODEFunc(data_dim, hidden_dim, augment_dim=augment_dim,  # type: ignore[arg-type]
                          output_dim=data_dim if augmentation in _SECOND_ORDER else None,
                          **_field_options(time_dependent, non_linearity))  # type: ignore[arg-type]
    return ODEBlock(odefunc, solver=solver, augment_dim=augment_dim, augmentation=augmentation, data_shape=(data_dim,))


class ODEFlow(_ODEClassifier):
    """The flow alone: prediction = the first `data_dim` coordinates of h(t[-1]), no trainable readout.

    This is the model of the paper's Section 3 (Prop. 1): with augment_dim = 0 it is a
    homeomorphism of R^d, so it cannot map x = -1 -> 1 and 1 -> -1 in d = 1; with augment_dim >= 1
    it can (trajectories cross in the projection, not in R^(d+p)).

    Arguments:
        data_dim: d.
        hidden_dim: width of anode's MLP vector field (leave out with `odefunc`).
        augment_dim: p, augmented dimensions.
        augmentation: "zeros", "learned", "second_order" or "second_order_learned" (see `ODEBlock`).
        time_dependent: anode's field sees t (None: the field's default).
        non_linearity: "relu", "softplus" or "tanh" (None: the field's default).
        solver: method, tolerances, gradient mode and options.
        odefunc: your own vector field on `[batch, d + p]` states.

    Raises:
        ValueError, TypeError: invalid sizes or options, both or neither of `hidden_dim` and `odefunc`.
    """

    def __init__(
        self,
        data_dim: int,
        hidden_dim: int | None = None,
        *,
        augment_dim: int = 0,
        augmentation: str = "zeros",
        time_dependent: bool | None = None,
        non_linearity: str | None = None,
        solver: SolverConfig = SolverConfig(),
        odefunc: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.odeblock = _vector_block("ODEFlow", data_dim, hidden_dim, augment_dim, augmentation, time_dependent,
                                      non_linearity, solver, odefunc)
        self.data_dim = data_dim
        self._arguments = {"data_dim": data_dim, "hidden_dim": hidden_dim, "augment_dim": augment_dim,
                           "augmentation": augmentation, "time_dependent": time_dependent,
                           "non_linearity": non_linearity, "custom_field": odefunc is not None}

    def _readout(self, features: torch.Tensor) -> torch.Tensor:
        return features[:, : self.data_dim]


class ConvODENet(_ODEClassifier):
    """NODE/ANODE on images: conv vector field on C + p channels, linear layer on (C+p) x H x W.

    This is the paper's Table 1 architecture: the ODE acts directly on the image (no
    downsampling front end). `features` (with `return_features=True`) are `[batch, C+p, H, W]`.

    Arguments:
        img_size: (C, H, W).
        num_filters: hidden channels of anode's conv vector field (leave out with `odefunc`).
        output_dim: number of classes (default 10, as MNIST, CIFAR-10 and SVHN); train with
            `TrainConfig(loss="cross_entropy")` on integer class labels.
        augment_dim: p, augmented channels (p = C for second-order augmentation).
        augmentation: "zeros", "learned" (1x1 conv), "second_order" or "second_order_learned".
        time_dependent: anode's field sees t as an extra channel (None: the field's default).
        non_linearity: "relu", "softplus" or "tanh" (None: the field's default).
        solver: method, tolerances, gradient mode and options.
        odefunc: your own vector field on `[batch, C + p, H, W]` states.

    Raises:
        ValueError, TypeError: invalid sizes or options, both or neither of `num_filters` and `odefunc`.
    """

    def __init__(
        self,
        img_size: tuple[int, int, int],
        num_filters: int | None = None,
        *,
        output_dim: int = 10,
        augment_dim: int = 0,
        augmentation: str = "zeros",
        time_dependent: bool | None = None,
        non_linearity: str | None = None,
        solver: SolverConfig = SolverConfig(),
        odefunc: nn.Module | None = None,
    ) -> None:
        super().__init__()
        check_int("output_dim", output_dim, minimum=1)
        _check_custom_field("ConvODENet", odefunc, "num_filters", num_filters, time_dependent, non_linearity)
        custom_field = odefunc is not None
        check_int("augment_dim", augment_dim, minimum=0)
        _image_shape(img_size)
        if odefunc is None:
            odefunc = ConvODEFunc(
                img_size, num_filters, augment_dim=augment_dim,  # type: ignore[arg-type]
                out_channels=img_size[0] if augmentation in _SECOND_ORDER else None,
                **_field_options(time_dependent, non_linearity),  # type: ignore[arg-type]
            )
            data_shape = odefunc.data_shape
        else:
            data_shape = _image_shape(img_size)
        self.odeblock = ODEBlock(odefunc, solver=solver, augment_dim=augment_dim, augmentation=augmentation,
                                 data_shape=data_shape)
        channels, height, width = data_shape
        self.linear_layer = nn.Linear((channels + augment_dim) * height * width, output_dim)
        self._arguments = {"img_size": list(data_shape), "num_filters": num_filters, "output_dim": output_dim,
                           "augment_dim": augment_dim, "augmentation": augmentation, "time_dependent": time_dependent,
                           "non_linearity": non_linearity, "custom_field": custom_field}


def _image_shape(img_size: object) -> tuple[int, int, int]:
    if not isinstance(img_size, (tuple, list)) or len(img_size) != 3:
        raise ValueError(f"img_size must be (channels, height, width), got {img_size!r}")
    for name, value in zip(("channels", "height", "width"), img_size):
        check_int(f"img_size {name}", value, minimum=1)
    return (int(img_size[0]), int(img_size[1]), int(img_size[2]))


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
    _arguments: dict[str, object]

    def architecture(self) -> dict[str, object]:
        """The constructor arguments as plain data (`anode.models.architecture_of`).

        Returns:
            `{"class": name, "args": {...}}`; `anode.models.build_from_architecture` rebuilds the model.
        """
        return {"class": type(self).__name__, "args": dict(self._arguments)}

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
            check_int(name, value, minimum=minimum)
        self.data_shape = (data_dim,)
        self.residual_blocks = nn.ModuleList(
            _Residual(nn.Sequential(
                nn.Linear(data_dim, hidden_dim), make_activation(non_linearity),
                nn.Linear(hidden_dim, hidden_dim), make_activation(non_linearity),
                nn.Linear(hidden_dim, data_dim),
            ))
            for _ in range(num_layers)
        )
        self.linear_layer = nn.Linear(data_dim, output_dim)
        self._setup(num_layers)
        self._arguments = {"data_dim": data_dim, "hidden_dim": hidden_dim, "num_layers": num_layers,
                           "output_dim": output_dim, "non_linearity": non_linearity}


class ConvResNet(_ResNetBase):
    """Image baseline: `num_layers` blocks h <- h + conv(1x1, 3x3, 1x1)(h) on the image, then linear.

    Arguments:
        img_size: (C, H, W).
        num_filters: hidden channels of each block.
        num_layers: number of residual blocks.
        output_dim: number of classes (default 10, as MNIST, CIFAR-10 and SVHN); train with
            `TrainConfig(loss="cross_entropy")` on integer class labels.
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
        output_dim: int = 10,
        non_linearity: str = "relu",
    ) -> None:
        super().__init__()
        check_int("num_layers", num_layers, minimum=1)
        check_int("output_dim", output_dim, minimum=1)
        # ConvODEFunc validates img_size and num_filters and has exactly the block's layers.
        blocks = [ConvODEFunc(img_size, num_filters, non_linearity=non_linearity) for _ in range(num_layers)]
        self.data_shape = blocks[0].data_shape
        self.residual_blocks = nn.ModuleList(_Residual(_TimeFree(b)) for b in blocks)
        channels, height, width = self.data_shape
        self.linear_layer = nn.Linear(channels * height * width, output_dim)
        self._setup(num_layers)
        self._arguments = {"img_size": list(self.data_shape), "num_filters": num_filters, "num_layers": num_layers,
                           "output_dim": output_dim, "non_linearity": non_linearity}


class _TimeFree(nn.Module):
    """Calls a time-independent vector field without a time argument."""

    def __init__(self, field: ConvODEFunc) -> None:
        super().__init__()
        self.field = field
        self._t = torch.zeros(())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.field(self._t, x)
