"""Building an experiment's datasets and models from their specs."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from anode.data import ConcentricSpheres, Data1D, ShiftedSines, TensorLoader, angular_split
from anode.data.images import ImageDataset, load_image_dataset, make_image_loaders
from anode.lab.experiments.config import DatasetSpec, ExperimentConfig, G1DSpec, ImageSpec, ModelSpec, SinesSpec, SpheresSpec
from anode.models import ConvODENet, ConvResNet, ODEFlow, ODENet, ResNet, count_parameters
from anode.rng import make_generator, seeded

__all__ = ["PreparedData", "build_data", "build_model"]


@dataclass
class PreparedData:
    """A dataset ready for training: tensors (toy) or loaders (images), and its shapes."""

    data_shape: tuple[int, ...]
    output_dim: int
    is_toy: bool
    train_x: torch.Tensor
    train_y: torch.Tensor
    eval_x: torch.Tensor | None = None
    eval_y: torch.Tensor | None = None
    image_loaders: tuple[TensorLoader, TensorLoader] | None = None
    description: str = ""

    def train_loader(self, batch_size: int, *, seed: int) -> TensorLoader:
        if self.image_loaders is not None:
            loader = self.image_loaders[0]
            loader.generator = make_generator(seed)
            return loader
        return TensorLoader(self.train_x, self.train_y, batch_size=batch_size, shuffle=True, seed=seed)

    def eval_loader(self, batch_size: int) -> TensorLoader | None:
        if self.image_loaders is not None:
            return self.image_loaders[1]
        if self.eval_x is None or self.eval_y is None:
            return None
        return TensorLoader(self.eval_x, self.eval_y, batch_size=max(batch_size, 1024), shuffle=False)


@functools.lru_cache(maxsize=2)
def _load_images(dataset: str, data_dir: str | None, options: tuple[tuple[str, Any], ...]) -> ImageDataset:
    return load_image_dataset(dataset, data_dir, **dict(options))


def build_data(spec: DatasetSpec, cfg: ExperimentConfig, *, seed: int) -> PreparedData:
    """Generate or load a dataset. Toy data depend on `cfg.seed` only (the same for every repeat).

    Raises:
        ValueError, FileNotFoundError: from the dataset readers (e.g. missing image files).
    """
    if isinstance(spec, ImageSpec):
        images = _load_images(spec.dataset, spec.data_dir, tuple(sorted(spec.options.items())))
        loaders = make_image_loaders(
            images, batch_size=cfg.train.batch_size, seed=cfg.seed, normalization=spec.normalization,
            train_subset=spec.train_subset, test_subset=spec.test_subset,
        )
        return PreparedData(images.image_shape, images.num_classes, False, images.train_images, images.train_labels,
                            images.test_images, images.test_labels, loaders, images.source)
    if isinstance(spec, G1DSpec):
        data = Data1D(spec.num_points, target_flip=spec.target_flip, noise_scale=spec.noise_scale, seed=cfg.seed)
    elif isinstance(spec, SpheresSpec):
        data = ConcentricSpheres(spec.dim, inner_range=spec.inner_range, outer_range=spec.outer_range,
                                 num_points_inner=spec.num_points_inner, num_points_outer=spec.num_points_outer,
                                 seed=cfg.seed)
    elif isinstance(spec, SinesSpec):
        data = ShiftedSines(spec.dim, shift=spec.shift, num_points_upper=spec.num_points_upper,
                            num_points_lower=spec.num_points_lower, noise_scale=spec.noise_scale, seed=cfg.seed)
    else:  # pragma: no cover - the config schema admits only the kinds above
        raise TypeError(f"unsupported dataset spec {type(spec).__name__}")
    if isinstance(spec, SpheresSpec) and spec.holdout_angle is not None:
        train, held = angular_split(data, angle_range=spec.holdout_angle)
        return PreparedData((spec.dim,), 1, True, train.data, train.targets, held.data, held.targets)
    return PreparedData((data.dim,), 1, True, data.data, data.targets)


def build_model(spec: ModelSpec, cfg: ExperimentConfig, data: PreparedData, *, seed: int) -> nn.Module:
    """Instantiate a model with weights drawn from `seed` (the caller's RNG state is untouched).

    Raises:
        ValueError: a vector model on images or an image model on vectors.
    """
    is_image = len(data.data_shape) == 3
    if spec.kind in ("convodenet", "convresnet") and not is_image:
        raise ValueError(f"model {spec.name!r} of kind {spec.kind!r} needs image data, got samples of shape {data.data_shape}")
    if spec.kind in ("odenet", "flow", "resnet") and is_image:
        raise ValueError(
            f"model {spec.name!r} of kind {spec.kind!r} needs vector data, got images of shape {data.data_shape}; use convodenet/convresnet"
        )
    if spec.kind == "flow" and data.output_dim != data.data_shape[0]:
        raise ValueError(
            f"model {spec.name!r} of kind 'flow' predicts the first d = {data.data_shape[0]} coordinates of h(1), "
            f"but the targets have {data.output_dim}; use kind = 'odenet' (linear readout) for this dataset"
        )
    with seeded(seed):
        return _instantiate(spec, cfg, data, _matched_width(spec, cfg, data))


def _instantiate(spec: ModelSpec, cfg: ExperimentConfig, data: PreparedData, width: int) -> nn.Module:
    common = {"augment_dim": spec.augment_dim, "augmentation": spec.augmentation, "time_dependent": spec.time_dependent,
              "non_linearity": spec.non_linearity, "solver": cfg.solver}
    if spec.kind == "odenet":
        return ODENet(data.data_shape[0], width, output_dim=data.output_dim, **common)
    if spec.kind == "flow":
        return ODEFlow(data.data_shape[0], width, **common)
    if spec.kind == "convodenet":
        return ConvODENet(data.data_shape, width, output_dim=data.output_dim, **common)  # type: ignore[arg-type]
    if spec.kind == "resnet":
        return ResNet(data.data_shape[0], width, spec.num_layers, output_dim=data.output_dim,
                      non_linearity=spec.non_linearity)
    return ConvResNet(data.data_shape, width, spec.num_layers, output_dim=data.output_dim,  # type: ignore[arg-type]
                      non_linearity=spec.non_linearity)


def _matched_width(spec: ModelSpec, cfg: ExperimentConfig, data: PreparedData) -> int:
    """`spec.hidden_dim`, or the width whose parameter count is closest to the model named in `match_parameters`.

    Works for every kind (the parameter count grows with the width), e.g. an ANODE with
    "learned" augmentation matched to a "zeros" ANODE or a NODE.
    """
    if spec.match_parameters is None:
        return spec.hidden_dim
    target_spec = cfg.model(spec.match_parameters)
    target = count_parameters(_instantiate(target_spec, cfg, data, _matched_width(target_spec, cfg, data)))
    best, best_gap = 1, float("inf")
    for width in range(1, 4097):  # parameter count grows with width: stop once past the target
        count = count_parameters(_instantiate(spec, cfg, data, width))
        if abs(count - target) < best_gap:
            best, best_gap = width, abs(count - target)
        if count > target:
            break
    return best
