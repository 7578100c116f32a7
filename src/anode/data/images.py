"""Image classification datasets held in memory as uint8 tensors (MNIST, CIFAR-10, SVHN, Tiny ImageNet).

Files are read once (no torchvision needed), kept as uint8 ``[N, C, H, W]`` tensors, and turned into
float batches by the loaders' vectorised transform, so training has no per-image Python pipeline.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import readers as R
from . import sources as S
from .loader import TensorLoader, make_generator

__all__ = [
    "DATASET_NAMES",
    "NORMALIZATIONS",
    "ChecksumError",
    "ImageDataset",
    "ImageTransform",
    "channel_stats",
    "download_dataset",
    "load_image_dataset",
    "make_image_loaders",
]

ChecksumError = R.ChecksumError
DATASET_NAMES = ("mnist", "idx", "cifar10", "svhn", "tinyimagenet", "folder")
NORMALIZATIONS = ("none", "standardize")



@dataclass(frozen=True, eq=False)
class ImageDataset:
    """A labelled image dataset with both splits in memory.

    Attributes:
        name: short name, e.g. ``"mnist"``.
        source: what was read, for reports, e.g. ``"CIFAR-10 (JPEG q75 copy)"``.
        train_images, test_images: uint8 ``[N, C, H, W]``.
        train_labels, test_labels: int64 ``[N]`` in ``0..num_classes-1``.
        num_classes: number of classes.
        class_names: one name per class index.

    Raises:
        ValueError: on wrong dtypes or shapes, mismatched splits, empty splits or labels out of range.
    """

    name: str
    source: str
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    num_classes: int
    class_names: tuple[str, ...]

    def __post_init__(self) -> None:
        if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int) or self.num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {self.num_classes!r}")
        if len(self.class_names) != self.num_classes:
            raise ValueError(f"{len(self.class_names)} class_names for {self.num_classes} classes")
        for split in ("train", "test"):
            x, y = getattr(self, f"{split}_images"), getattr(self, f"{split}_labels")
            if not isinstance(x, torch.Tensor) or x.dtype != torch.uint8 or x.ndim != 4:
                raise ValueError(f"{split}_images must be a uint8 tensor [N, C, H, W], got {_describe(x)}")
            if not isinstance(y, torch.Tensor) or y.dtype != torch.int64 or y.shape != (x.shape[0],):
                raise ValueError(f"{split}_labels must be an int64 tensor [{x.shape[0]}], got {_describe(y)}")
            if x.shape[0] == 0:
                raise ValueError(f"the {split} split is empty")
            if int(y.min()) < 0 or int(y.max()) >= self.num_classes:
                raise ValueError(
                    f"{split}_labels must lie in 0..{self.num_classes - 1}, got {int(y.min())}..{int(y.max())}"
                )
        if self.train_images.shape[1:] != self.test_images.shape[1:]:
            raise ValueError(
                f"train and test images differ in shape: {tuple(self.train_images.shape[1:])} vs "
                f"{tuple(self.test_images.shape[1:])}"
            )

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        c, h, w = self.train_images.shape[1:]
        return int(c), int(h), int(w)

    def __repr__(self) -> str:
        return (
            f"ImageDataset(name={self.name!r}, source={self.source!r}, train={self.train_images.shape[0]}, "
            f"test={self.test_images.shape[0]}, image_shape={self.image_shape}, num_classes={self.num_classes})"
        )


def _describe(t: object) -> str:
    return f"{t.dtype} {tuple(t.shape)}" if isinstance(t, torch.Tensor) else type(t).__name__


def load_image_dataset(
    name: str,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    verify_checksums: bool = True,
    max_per_class: int | None = None,
    tiny_val_split: bool = False,
) -> ImageDataset:
    """Read a dataset from disk into memory.

    Arguments:
        name: ``"mnist"``, ``"idx"`` (any dataset in MNIST's four IDX files), ``"cifar10"``, ``"svhn"``,
            ``"tinyimagenet"`` or ``"folder"`` (``<data_dir>/{train,test}/<class>/<image>``, same-size
            images, labels from sorted class names). Case, ``-`` and ``_`` are ignored.
        data_dir: the folder holding the files, or a parent with a subfolder named after the dataset
            (``mnist/``, ``cifar10/``, ``tiny-imagenet/``, ``svhn/``; e.g. ``../shared/data``), or for
            cifar10/tinyimagenet/folder an archive file. Defaults to ``$ANODE_DATA_DIR``.
            CIFAR-10 prefers ``cifar-10-batches-py/`` (labels in batches.meta order) over class folders,
            over a ``.tgz`` read in memory. Tiny ImageNet labels follow ``wnids.txt``.
        verify_checksums: check published md5s (MNIST ``.gz`` files, CIFAR-10 batches, SVHN ``.mat``) and
            the sha256 of the shared ``.tgz`` copies. Not applied to ``idx``, ``folder``, or unknown files.
        max_per_class: keep only the first k images of each class in each split (file order for
            IDX/pickles/.mat, sorted file names for folders) for quick runs. Noted in ``source``.
        tiny_val_split: Tiny ImageNet only: build both splits from val/ (per class in annotation order,
            the first 40 of 50 train, the last 10 test), e.g. for the val-only shared copy.

    Returns:
        The `ImageDataset`.

    Raises:
        ValueError: unknown name, no data_dir, bad `max_per_class`, malformed files (the message names the file).
        ChecksumError: (a ValueError) a digest differs from the published one.
        FileNotFoundError: missing files (the message names them and the expected layout).
        ImportError: scipy (SVHN) or Pillow (image folders) missing.
    """
    key = str(name).lower().replace("-", "").replace("_", "")
    if key not in DATASET_NAMES:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASET_NAMES)}")
    if data_dir is None:
        data_dir = os.environ.get("ANODE_DATA_DIR") or None
    if data_dir is None:
        raise ValueError(
            "no data directory: pass data_dir=... or set the environment variable ANODE_DATA_DIR "
            "(e.g. to the shared data folder holding mnist/, cifar10/, tiny-imagenet/)"
        )
    k = max_per_class
    if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
        raise ValueError(f"max_per_class must be a positive int or None, got {max_per_class!r}")
    base = Path(data_dir).expanduser()
    if not base.exists():
        raise FileNotFoundError(f"data directory {base} does not exist")
    if key in ("mnist", "idx"):
        out = S.load_idx_dataset(base, key, verify_checksums)
    elif key == "cifar10":
        out = S.load_cifar10(base, verify_checksums, max_per_class)
    elif key == "svhn":
        out = S.load_svhn(base, verify_checksums)
    elif key == "tinyimagenet":
        out = S.load_tiny_imagenet(base, verify_checksums, max_per_class, tiny_val_split)
    else:
        out = S.load_folder(base, max_per_class)
    tx, ty, vx, vy, classes, source = out
    if max_per_class is not None:
        source += f" [first {max_per_class} per class]"
        keep_t, keep_v = R.first_per_class(ty, max_per_class), R.first_per_class(vy, max_per_class)
        tx, ty, vx, vy = tx[keep_t], ty[keep_t], vx[keep_v], vy[keep_v]
    t = [torch.from_numpy(np.ascontiguousarray(a)) for a in (tx, ty, vx, vy)]
    return ImageDataset(key, source, t[0], t[1].long(), t[2], t[3].long(), len(classes), tuple(classes))


@dataclass(frozen=True)
class ImageTransform:
    """Vectorised batch transform: uint8 ``[B, C, H, W]`` -> float32 in [0, 1], then optional per-channel
    standardisation ``(x - mean) / std``. ``mean``/``std`` are None for no standardisation."""

    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(torch.float32).div_(255.0)
        if self.mean is not None and self.std is not None:
            shape = (1, -1, 1, 1)
            x = x.sub_(torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(shape))
            x = x.div_(torch.tensor(self.std, dtype=x.dtype, device=x.device).view(shape))
        return x


def channel_stats(images: torch.Tensor, chunk: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std of uint8 images scaled to [0, 1], computed in chunks."""
    c = images.shape[1]
    s = torch.zeros(c, dtype=torch.float64)
    s2 = torch.zeros(c, dtype=torch.float64)
    for i in range(0, images.shape[0], chunk):
        x = images[i : i + chunk].to(torch.float64).div_(255.0).transpose(0, 1).reshape(c, -1)
        s += x.sum(1)
        s2 += (x * x).sum(1)
    n = images.numel() // c
    mean = s / n
    std = (s2 / n - mean * mean).clamp_min(1e-12).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())


def _subset(
    x: torch.Tensor, y: torch.Tensor, k: int | None, seed: int, split: str
) -> tuple[torch.Tensor, torch.Tensor]:
    if k is None:
        return x, y
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= x.shape[0]:
        raise ValueError(f"{split}_subset must be an int in 1..{x.shape[0]} or None, got {k!r}")
    idx = torch.randperm(x.shape[0], generator=make_generator(seed))[:k].sort().values
    return x[idx], y[idx]


def make_image_loaders(
    dataset: ImageDataset,
    *,
    batch_size: int = 256,
    seed: int = 0,
    normalization: str = "none",
    train_subset: int | None = None,
    test_subset: int | None = None,
) -> tuple[TensorLoader, TensorLoader]:
    """Train and test loaders yielding float32 images and int64 labels.

    Arguments:
        dataset: the `ImageDataset`.
        batch_size: samples per batch (both loaders).
        seed: seeds the train loader's shuffling and the subset choice (no global RNG).
        normalization: ``"none"`` (scale to [0, 1] only, as the 2019 ANODE code's ToTensor) or
            ``"standardize"`` (per-channel mean/std of the full training split).
        train_subset, test_subset: keep k samples drawn at random (from `seed`) without replacement,
            kept in dataset order; None keeps all.

    Returns:
        ``(train_loader, test_loader)``; the train loader reshuffles each pass, the test loader keeps order.
        Each loader's ``transform`` is an `ImageTransform` (its mean/std are exposed for un-normalising).

    Raises:
        ValueError: unknown normalization, or a bad subset size.
    """
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"unknown normalization {normalization!r}; choose one of {', '.join(NORMALIZATIONS)}")
    if normalization == "standardize":
        transform = ImageTransform(*channel_stats(dataset.train_images))
    else:
        transform = ImageTransform()
    tx, ty = _subset(dataset.train_images, dataset.train_labels, train_subset, seed, "train")
    vx, vy = _subset(dataset.test_images, dataset.test_labels, test_subset, seed + 1, "test")
    train = TensorLoader(tx, ty, batch_size=batch_size, shuffle=True, seed=seed, transform=transform)
    test = TensorLoader(vx, vy, batch_size=batch_size, shuffle=False, seed=seed, transform=transform)
    return train, test


def download_dataset(name: str, data_dir: str | os.PathLike[str]) -> Path:
    """Download MNIST, CIFAR-10 or SVHN with torchvision into `data_dir` (optional dependency).

    Arguments:
        name: ``"mnist"``, ``"cifar10"`` or ``"svhn"``.
        data_dir: destination folder (created if needed).

    Returns:
        The folder to pass to `load_image_dataset` for that name.

    Raises:
        ValueError: for other names (Tiny ImageNet, IDX and folders must be put in place by hand).
        ImportError: if torchvision is unavailable (``pip install "anode[download]"``).
    """
    key = str(name).lower().replace("-", "").replace("_", "")
    if key not in ("mnist", "cifar10", "svhn"):
        raise ValueError(f"download_dataset supports mnist, cifar10, svhn; put {name!r} files in place by hand")
    try:
        from torchvision import datasets
    except Exception as exc:  # missing or broken install
        raise ImportError(
            'downloading needs torchvision: pip install "anode[download]", or put the files in place '
            f"yourself (see load_image_dataset) ({exc})"
        ) from exc
    root = Path(data_dir).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    if key == "mnist":
        for train in (True, False):
            datasets.MNIST(str(root), train=train, download=True)
        return root / "MNIST" / "raw"
    if key == "cifar10":
        datasets.CIFAR10(str(root), train=True, download=True)
        return root / "cifar-10-batches-py"
    for split in ("train", "test"):
        datasets.SVHN(str(root), split=split, download=True)
    return root
