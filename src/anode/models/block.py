"""ODEBlock: augment the input with zeros and integrate the vector field over [0, 1]."""

from __future__ import annotations

import torch
from torch import nn

from ..config import SolverConfig
from ..solve import NFE, odesolve

__all__ = ["ODEBlock", "check_input"]


def check_input(x: object, data_shape: tuple[int, ...], reference: torch.Tensor | None) -> torch.Tensor:
    """Validate a batch before any solving: tensor, float dtype matching the model, shape, finite.

    Arguments:
        x: the batch, expected shape `[batch, *data_shape]`.
        data_shape: the shape of one sample.
        reference: a parameter of the model (for its dtype), or None.

    Returns:
        `x`, unchanged.

    Raises:
        TypeError: not a tensor, or a dtype that is not the model's floating dtype.
        ValueError: wrong shape, or NaN/inf entries.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"input must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"input must be a floating-point tensor, got dtype {x.dtype}; convert it with x.float()")
    if reference is not None and x.dtype != reference.dtype:
        raise TypeError(
            f"input dtype {x.dtype} does not match the model's parameters ({reference.dtype}); "
            f"convert the input (x.to({reference.dtype})) or the model (model.to({x.dtype}))"
        )
    if x.dim() != len(data_shape) + 1 or tuple(x.shape[1:]) != tuple(data_shape):
        raise ValueError(
            f"input of shape {tuple(x.shape)} does not match the model, which expects [batch, {', '.join(map(str, data_shape))}]"
        )
    if not bool(torch.isfinite(x).all()):
        raise ValueError("input contains NaN or infinite values; clean or impute the data before the model")
    return x


class ODEBlock(nn.Module):
    """Solve dh/dt = f(h, t) on [0, 1] from h(0) = [x, 0] (p zero features or channels).

    The number of augmented dimensions p and the expected sample shape are read from the
    vector field's `augment_dim` and `data_shape` attributes (as on `ODEFunc`/`ConvODEFunc`;
    a custom vector field without them is treated as p = 0 and is not shape-checked).

    Arguments:
        odefunc: the vector field, a module called as `odefunc(t, h)`.
        solver: method, tolerances and gradient mode.

    Raises:
        TypeError: `odefunc` is not an `nn.Module` or `solver` not a `SolverConfig`.
    """

    def __init__(self, odefunc: nn.Module, *, solver: SolverConfig = SolverConfig()) -> None:
        super().__init__()
        if not isinstance(odefunc, nn.Module):
            raise TypeError(f"odefunc must be an nn.Module, got {type(odefunc).__name__}")
        if not isinstance(solver, SolverConfig):
            raise TypeError(f"solver must be an anode.SolverConfig, got {type(solver).__name__}")
        self.odefunc = odefunc
        self.solver = solver
        self.augment_dim: int = int(getattr(odefunc, "augment_dim", 0))
        self.data_shape: tuple[int, ...] | None = getattr(odefunc, "data_shape", None)
        self.nfe = NFE()

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        """Return h(0) = [x, 0]: `augment_dim` zero features (vectors) or channels (images)."""
        if self.augment_dim == 0:
            return x
        zeros = x.new_zeros((x.shape[0], self.augment_dim, *x.shape[2:]))
        return torch.cat([x, zeros], 1)

    def forward(self, x: torch.Tensor, eval_times: torch.Tensor | None = None) -> torch.Tensor:
        """Integrate from the augmented input.

        Arguments:
            x: batch `[batch, *data_shape]`.
            eval_times: 1-D increasing times in [0, 1] to return the state at; None for h(1) only.

        Returns:
            h(1) of shape `[batch, d+p, ...]`, or `[len(eval_times), batch, d+p, ...]`.

        Raises:
            TypeError, ValueError: bad input (see `check_input`) or bad `eval_times`.
            SolverError: the solver failed.
        """
        if self.data_shape is not None:
            reference = next(self.odefunc.parameters(), None)
            check_input(x, self.data_shape, reference)
        if eval_times is None:
            times = torch.tensor([0.0, 1.0], dtype=x.dtype, device=x.device)
        else:
            times = torch.as_tensor(eval_times).to(device=x.device, dtype=x.dtype)
            if times.dim() != 1 or times.numel() < 2 or not bool((times[1:] > times[:-1]).all()):
                raise ValueError(
                    f"eval_times must be a 1-D strictly increasing tensor with at least 2 times, got {times.tolist()}"
                )
        out = odesolve(self.odefunc, self.augment(x), times, self.solver, nfe=self.nfe)
        return out[-1] if eval_times is None else out

    def trajectory(self, x: torch.Tensor, timesteps: int) -> torch.Tensor:
        """States at `timesteps` evenly spaced times in [0, 1]: shape `[timesteps, batch, d+p, ...]`.

        Raises:
            ValueError: `timesteps` < 2.
        """
        if isinstance(timesteps, bool) or not isinstance(timesteps, int) or timesteps < 2:
            raise ValueError(f"timesteps must be an int >= 2, got {timesteps!r}")
        return self.forward(x, eval_times=torch.linspace(0.0, 1.0, timesteps))
