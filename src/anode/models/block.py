"""ODEBlock: augment the input, integrate the vector field over a time span, count NFE."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import nn

from ..config import SolverConfig
from ..regularisers import NOISE_KINDS, regularised_odesolve
from ..solve import NFE, odesolve
from ..solvers.base import all_finite
from ..solvers.caches import bounded_cache
from .architecture import describe_module, plain_solver
from .augment import AUGMENTATIONS, Augmentation, LearnedAugmentation, SecondOrderAugmentation, ZeroAugmentation, make_augmentation
from .validation import check_int

__all__ = ["DEFAULT_T", "ODEBlock", "check_input", "check_times"]

#: The default output times: integrate over [0, 1] and return h(1).
DEFAULT_T: tuple[float, float] = (0.0, 1.0)

Times = torch.Tensor | Sequence[float]


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
    if not all_finite(x):
        raise ValueError("input contains NaN or infinite values; clean or impute the data before the model")
    return x


def check_times(t: object, *, name: str = "t") -> torch.Tensor:
    """Validate output times: a 1-D strictly increasing sequence of at least 2 finite numbers.

    Arguments:
        t: a tensor or a sequence of numbers.
        name: the argument's name, used in messages.

    Returns:
        `t` as a tensor (its own dtype; cast later to the state's).

    Raises:
        TypeError: not a tensor or a sequence of numbers.
        ValueError: not 1-D, fewer than 2 times, non-finite, or not strictly increasing (the value is named).
    """
    try:
        times = t.detach() if isinstance(t, torch.Tensor) else torch.as_tensor(t, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(f"{name} must be a tensor or a sequence of numbers, got {t!r}") from err
    if not (times.is_floating_point() or times.dtype in (torch.int32, torch.int64)):
        raise TypeError(f"{name} must hold real numbers, got dtype {times.dtype}")
    if times.dim() != 1 or times.numel() < 2 or not all_finite(times) \
            or not bool((times[1:] > times[:-1]).all()):
        raise ValueError(
            f"{name} must be a 1-D strictly increasing sequence of at least 2 finite times "
            f"(t[0] is the start), got {times.tolist()}"
        )
    return t if isinstance(t, torch.Tensor) else times


@bounded_cache(maxsize=64)
def _default_times(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """`DEFAULT_T` as a tensor on `device` in `dtype`, built once (an ordinary tensor even when
    first asked for under inference mode)."""
    with torch.inference_mode(False):
        return torch.tensor(DEFAULT_T, dtype=torch.float64).to(device=device, dtype=dtype)


class ODEBlock(nn.Module):
    """Solve dh/dt = f(h, t) from h(t[0]) = augment(x) and return h at the output times `t`.

    **Augmentation** is chosen explicitly: `augment_dim=p` and `augmentation=` one of
    `AUGMENTATIONS` ("zeros": the paper's [x, 0]; "learned": [x, g(x)]; "second_order" and
    "second_order_learned": [x, v] with dx/dt = v, dv/dt = f) or an `Augmentation` instance.
    The vector field then acts on d + p features (or C + p channels). For backward compatibility
    a field's `augment_dim` attribute (as on `ODEFunc`/`ConvODEFunc`) is used when `augment_dim`
    is not given; both given and different is an error.

    **Times**: `t` is any 1-D strictly increasing sequence (default `DEFAULT_T` = [0, 1]); the
    solve starts at `t[0]` from h(t[0]) = augment(x), so `t=[0.5, 1]` integrates over [0.5, 1]
    and `t=[0, 2]` over [0, 2]. The block returns h(t[-1]) unless `return_trajectory=True`, which
    returns the states at every time in `t`, shape `[len(t), batch, ...]` (one rule, whatever
    `len(t)`). The legacy `eval_times=` means `t=eval_times, return_trajectory=True`.

    **Regularisers**: inside `with block.regularised(kinetic_energy=True, ...)`, each forward call
    also integrates the chosen regularisers (see `anode.regularisers`) and adds their batch means
    to `block.regularisation`.

    Arguments:
        odefunc: the vector field, a module called as `odefunc(t, h)`.
        solver: method, tolerances, gradient mode and extra backend options.
        augment_dim: p, the number of augmented dimensions (None: the field's `augment_dim`
            attribute, or 0).
        augmentation: a name from `AUGMENTATIONS` or an `Augmentation` module.
        data_shape: the shape of one input sample, (d,) or (C, H, W), used to check inputs and
            to build learned/second-order augmentations (None: the field's `data_shape`
            attribute, or unchecked).
        compile_field: evaluate the vector field through `torch.compile` (compiled on the first
            forward call, recompiled if `odefunc` is replaced). NFE are still counted outside the
            compiled code. Meant for GPUs: on CPU, for the small MLP fields of the toy
            experiments, it is slower than the eager field. Double backward through a
            compiled field (the Jacobian regulariser with backprop) is not supported by torch.

    Raises:
        TypeError: `odefunc` is not an `nn.Module`, `solver` not a `SolverConfig`, or
            `augmentation` neither a name nor an `Augmentation`, `compile_field` not a bool.
        RuntimeError: `compile_field=True` with a torch that has no `torch.compile`.
        ValueError: an unknown augmentation name (choices listed), `augment_dim` < 0, or
            arguments that contradict the field's own `augment_dim`/`data_shape`.
    """

    def __init__(
        self,
        odefunc: nn.Module,
        *,
        solver: SolverConfig = SolverConfig(),
        augment_dim: int | None = None,
        augmentation: str | Augmentation = "zeros",
        data_shape: tuple[int, ...] | None = None,
        compile_field: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(odefunc, nn.Module):
            raise TypeError(f"odefunc must be an nn.Module, got {type(odefunc).__name__}")
        _check_compile(compile_field)
        if not isinstance(solver, SolverConfig):
            raise TypeError(f"solver must be an anode.SolverConfig, got {type(solver).__name__}")
        self.odefunc = odefunc
        self.solver = solver
        self.data_shape: tuple[int, ...] | None = _resolve_data_shape(odefunc, data_shape)
        if isinstance(augmentation, Augmentation):
            if augment_dim is not None and augment_dim != augmentation.augment_dim:
                raise ValueError(f"augment_dim={augment_dim} contradicts the augmentation's augment_dim = "
                                 f"{augmentation.augment_dim}: give one of them")
            _resolve_augment_dim(odefunc, augmentation.augment_dim)  # the field's own attribute must agree
            augmenter = augmentation
        elif isinstance(augmentation, str):
            if augmentation not in AUGMENTATIONS:
                raise ValueError(f"unknown augmentation {augmentation!r}; valid choices: {list(AUGMENTATIONS)}")
            augmenter = make_augmentation(augmentation, augment_dim=_resolve_augment_dim(odefunc, augment_dim),
                                          data_shape=self.data_shape)
        else:
            raise TypeError(f"augmentation must be a name from {list(AUGMENTATIONS)} or an anode Augmentation, "
                            f"got {type(augmentation).__name__}")
        self.augmenter = augmenter
        self.augment_dim: int = augmenter.augment_dim
        self.nfe = NFE()
        self.compile_field = compile_field
        self._compiled: dict[str, nn.Module] = {}  # a plain dict: the compiled wrapper is no submodule
        self._regularise: dict[str, object] | None = None
        self.regularisation: dict[str, torch.Tensor] = {}
        self._data_shape_arg = None if data_shape is None else list(data_shape)

    def architecture(self) -> dict[str, object]:
        """The constructor arguments as plain data (`anode.models.architecture_of`).

        Returns:
            `{"class": "ODEBlock", "args": {...}}` with the vector field's own architecture under "odefunc".

        Raises:
            ValueError: a vector field or augmentation of your own, or solver options that are
                not plain data (the class is named, with the fix: `anode.load_run(run_dir, model=my_model)`).
        """
        if type(self.augmenter) not in _STANDARD_AUGMENTERS.get(self.augmenter.name, ()):
            describe_module(self.augmenter, where="augmentation of ODEBlock")  # raises: not rebuildable
        return {"class": "ODEBlock", "args": {
            "odefunc": describe_module(self.odefunc, where="vector field of ODEBlock"),
            "solver": plain_solver(self.solver, where="ODEBlock"), "augment_dim": self.augment_dim,
            "augmentation": self.augmentation, "data_shape": self._data_shape_arg, "compile_field": self.compile_field,
        }}

    @property
    def augmentation(self) -> str:
        """The augmentation strategy's name."""
        return self.augmenter.name

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        """Return h(0) = augment(x), e.g. [x, 0] with `augment_dim` zero features (vectors) or channels (images)."""
        return self.augmenter(x)

    @contextlib.contextmanager
    def regularised(
        self,
        *,
        kinetic_energy: bool = False,
        jacobian_norm: bool = False,
        generator: torch.Generator | None = None,
        noise_kind: str = "gaussian",
    ) -> Iterator[dict[str, torch.Tensor]]:
        """Integrate regularisers along every forward solve inside the `with` block.

        `block.regularisation` (also yielded) is reset on entry and maps each chosen regulariser
        to the sum, over the forward calls in the block, of its batch-mean integral (a scalar
        tensor that gradients flow through).

        Arguments:
            kinetic_energy: integrate ||f||^2.
            jacobian_norm: integrate the Hutchinson estimate of ||df/dh||_F^2.
            generator: draws the Hutchinson noise, once per forward call (required with `jacobian_norm`).
            noise_kind: "gaussian" or "rademacher".

        Raises:
            ValueError: no regulariser chosen, `jacobian_norm` without `generator`, or an unknown `noise_kind`.
        """
        if not (kinetic_energy or jacobian_norm):
            raise ValueError("regularised() needs kinetic_energy=True and/or jacobian_norm=True")
        if jacobian_norm and generator is None:
            raise ValueError("jacobian_norm needs generator= (a torch.Generator for the Hutchinson noise)")
        if noise_kind not in NOISE_KINDS:
            raise ValueError(f"unknown noise_kind {noise_kind!r}; valid choices: {list(NOISE_KINDS)}")
        previous = self._regularise
        self._regularise = {"kinetic_energy": kinetic_energy, "jacobian_norm": jacobian_norm,
                            "generator": generator, "noise_kind": noise_kind}
        self.regularisation = {}
        try:
            yield self.regularisation
        finally:
            self._regularise = previous

    def forward(
        self,
        x: torch.Tensor,
        eval_times: Times | None = None,
        *,
        t: Times | None = None,
        return_trajectory: bool = False,
    ) -> torch.Tensor:
        """Integrate from the augmented input over `t` (see the class docstring, "Times").

        Arguments:
            x: batch `[batch, *data_shape]`.
            eval_times: legacy; the same as `t=eval_times, return_trajectory=True`.
            t: output times, 1-D strictly increasing, `t[0]` the start (None: `DEFAULT_T`).
            return_trajectory: return the states at every time of `t`, not only the last.

        Returns:
            h(t[-1]) of shape `[batch, d+p, ...]`, or `[len(t), batch, d+p, ...]` with `return_trajectory`.

        Raises:
            TypeError, ValueError: bad input (see `check_input`) or bad times (the value is named).
            SolverError: the solver failed.
        """
        if eval_times is not None:
            if t is not None:
                raise ValueError("give the output times once: t= (eval_times= is its legacy spelling)")
            t, return_trajectory = check_times(eval_times, name="eval_times"), True
        times = None if t is None else check_times(t)
        if self.data_shape is not None:
            reference = next(self.odefunc.parameters(), None)
            check_input(x, self.data_shape, reference)
        if times is None:
            times = _default_times(x.device, x.dtype)
        else:
            times = times.to(device=x.device, dtype=x.dtype)
        field = self.augmenter.dynamics(self.field())
        h0 = self.augment(x)
        if self._regularise is None:
            out = odesolve(field, h0, times, self.solver, nfe=self.nfe)
        else:
            out, integrals = regularised_odesolve(field, h0, times, self.solver, nfe=self.nfe, **self._regularise)
            for name, value in integrals.items():
                mean = value.mean()
                self.regularisation[name] = self.regularisation[name] + mean if name in self.regularisation else mean
        return out if return_trajectory else out[-1]

    def __getstate__(self) -> dict:
        """Pickle and deepcopy without the compiled wrapper (rebuilt on the next forward call)."""
        state = super().__getstate__() if hasattr(super(), "__getstate__") else self.__dict__.copy()
        return {**state, "_compiled": {}}

    def field(self) -> nn.Module:
        """The vector field the solver calls: `odefunc`, or its `torch.compile`d wrapper with
        `compile_field` (built once per `odefunc`).

        Raises:
            RuntimeError: `compile_field` set to True on a torch without `torch.compile`.
        """
        if not self.compile_field:
            return self.odefunc
        _check_compile(self.compile_field)
        cached = self._compiled.get("field")
        if cached is None or self._compiled.get("source") is not self.odefunc:
            cached = torch.compile(self.odefunc)
            self._compiled.update(field=cached, source=self.odefunc)
        return cached

    def trajectory(self, x: torch.Tensor, timesteps: int, *, t_span: tuple[float, float] = DEFAULT_T) -> torch.Tensor:
        """States at `timesteps` evenly spaced times over `t_span`: shape `[timesteps, batch, d+p, ...]`.

        Raises:
            ValueError: `timesteps` < 2 or a bad `t_span`.
        """
        if isinstance(timesteps, bool) or not isinstance(timesteps, int) or timesteps < 2:
            raise ValueError(f"timesteps must be an int >= 2, got {timesteps!r}")
        check_times(t_span, name="t_span")
        if len(t_span) != 2:
            raise ValueError(f"t_span must be (start, end), got {t_span!r}")
        return self.forward(x, t=torch.linspace(float(t_span[0]), float(t_span[1]), timesteps), return_trajectory=True)


#: The augmentation classes each name stands for (another class cannot be rebuilt by name).
_STANDARD_AUGMENTERS: dict[str, tuple[type, ...]] = {
    "zeros": (ZeroAugmentation,), "learned": (LearnedAugmentation,), "second_order": (SecondOrderAugmentation,),
    "second_order_learned": (SecondOrderAugmentation,),
}


def _check_compile(compile_field: object) -> None:
    if not isinstance(compile_field, bool):
        raise TypeError(f"compile_field must be True or False, got {compile_field!r}")
    if compile_field and not callable(getattr(torch, "compile", None)):
        raise RuntimeError(f"compile_field=True needs torch.compile (torch >= 2.0), this is torch {torch.__version__}: "
                           "upgrade torch or leave compile_field=False")


def _resolve_augment_dim(odefunc: nn.Module, augment_dim: int | None) -> int:
    own = getattr(odefunc, "augment_dim", None)
    if augment_dim is None:
        return int(own) if own is not None else 0
    check_int("augment_dim", augment_dim, minimum=0)
    if own is not None and int(own) != augment_dim:
        raise ValueError(f"augment_dim={augment_dim} contradicts the vector field's augment_dim = {own} "
                         f"(its input has d + {own} features): make them equal")
    return augment_dim


def _resolve_data_shape(odefunc: nn.Module, data_shape: tuple[int, ...] | None) -> tuple[int, ...] | None:
    own = getattr(odefunc, "data_shape", None)
    if data_shape is None:
        return tuple(own) if own is not None else None
    if not isinstance(data_shape, (tuple, list)) or not data_shape:
        raise ValueError(f"data_shape must be a non-empty tuple such as (d,) or (C, H, W), got {data_shape!r}")
    for value in data_shape:
        check_int("data_shape entry", value, minimum=1)
    if own is not None and tuple(own) != tuple(data_shape):
        raise ValueError(f"data_shape={tuple(data_shape)} contradicts the vector field's data_shape = {tuple(own)}")
    return tuple(data_shape)


