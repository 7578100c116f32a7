"""Format readers for the image datasets of `anode.data.images` (no torchvision).

Every reader returns plain numpy arrays: images as uint8 ``[N, C, H, W]`` and labels as int64
``[N]``. Errors name the offending file and, where it helps, the expected layout. The public entry
point is `anode.data.images.load_image_dataset`; `anode.data.sources` finds each dataset's files
and calls these.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib
import io
import os
import pickle
import tarfile
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "IMAGE_EXTENSIONS",
    "ChecksumError",
    "FileTree",
    "archive_tree",
    "dir_tree",
    "file_digest",
    "first_per_class",
    "read_cifar_batches",
    "read_idx",
    "read_svhn_mat",
    "verify_checksum",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")

#: what every load_* function returns: (train_x, train_y, test_x, test_y, class_names, source).
Loaded = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, tuple[str, ...], str]
#: relative POSIX path -> file on disk (read lazily) or bytes already in memory (from an archive).
FileTree = Mapping[str, Path | bytes]


class ChecksumError(ValueError):
    """A file's digest differs from the published one (corrupt or different file)."""


# ----------------------------------------------------------------------------- checksums


def file_digest(path: Path, algorithm: str = "md5") -> str:
    """Hex digest of a file, read in chunks.

    Arguments:
        path: the file.
        algorithm: any `hashlib` algorithm name (``"md5"``, ``"sha256"``).

    Returns:
        The lowercase hex digest.
    """
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_checksum(path: Path, expected: str, algorithm: str = "md5") -> None:
    """Check a file against its published digest.

    Raises:
        ChecksumError: naming the file, the expected and the actual digest.
    """
    actual = file_digest(path, algorithm)
    if actual != expected.lower():
        raise ChecksumError(
            f"{algorithm} checksum mismatch for {path}: expected {expected}, got {actual} "
            "(corrupt or different file; pass verify_checksums=False to skip this check)"
        )


# ----------------------------------------------------------------------------- IDX (MNIST)

_IDX_MAGIC = {"images": 2051, "labels": 2049}  # ubyte data, 3 dims / 1 dim


def read_idx(path: Path, kind: str) -> np.ndarray:
    """Read an IDX file (gzipped or plain, detected from its first bytes).

    Arguments:
        path: the file, e.g. ``train-images-idx3-ubyte.gz``.
        kind: ``"images"`` (magic 2051, returns uint8 ``[N, 1, H, W]``) or ``"labels"``
            (magic 2049, returns int64 ``[N]``).

    Returns:
        The array.

    Raises:
        FileNotFoundError: if the file is missing.
        ValueError: naming the file on a wrong magic number, a truncated or oversized payload
            or a truncated gzip stream.
    """
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (EOFError, OSError, gzip.BadGzipFile) as exc:
            raise ValueError(f"{path}: corrupt or truncated gzip stream ({exc})") from exc
    expected = _IDX_MAGIC[kind]
    ndim = 3 if kind == "images" else 1
    if len(raw) < 4 + 4 * ndim:
        raise ValueError(f"{path}: truncated IDX header ({len(raw)} bytes)")
    magic = int.from_bytes(raw[:4], "big")
    if magic != expected:
        raise ValueError(f"{path}: wrong IDX magic number {magic}, expected {expected} for {kind}")
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    size = int(np.prod(dims))
    if len(raw) - offset != size:
        what = "truncated" if len(raw) - offset < size else "oversized"
        raise ValueError(
            f"{path}: {what} IDX payload: header says {dims} ({size} bytes), found {len(raw) - offset} bytes"
        )
    arr = np.frombuffer(raw, dtype=np.uint8, count=size, offset=offset).reshape(dims)
    return arr.reshape(dims[0], 1, dims[1], dims[2]).copy() if kind == "images" else arr.astype(np.int64)


# ----------------------------------------------------------------------------- CIFAR pickles

_PICKLE_GLOBALS = {
    ("_codecs", "encode"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
}


class _SafeUnpickler(pickle.Unpickler):
    """Unpickler that only rebuilds numpy arrays and builtins (no arbitrary code)."""

    def find_class(self, module: str, name: str) -> Any:
        canonical = module.replace("numpy._core", "numpy.core")
        if (canonical, name) not in _PICKLE_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR batch file")
        if canonical.startswith("numpy.core") and hasattr(np, "_core"):
            module = canonical.replace("numpy.core", "numpy._core")
        return getattr(importlib.import_module(module), name)


def _load_pickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            obj = _SafeUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
        raise ValueError(f"{path}: not a readable CIFAR python batch ({exc})") from exc
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a pickled dict, got {type(obj).__name__}")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def read_cifar_batches(folder: Path, files: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Read and concatenate official CIFAR-10 python batches (``data`` N x 3072, ``labels``).

    Returns:
        uint8 images ``[N, 3, 32, 32]`` (rows are 1024 R, then G, then B values) and int64 labels.

    Raises:
        FileNotFoundError: if a batch is missing.
        ValueError: naming the file if its content is not in the official format.
    """
    xs, ys = [], []
    for name in files:
        path = Path(folder) / name
        if not path.is_file():
            raise FileNotFoundError(f"missing CIFAR-10 batch {path} (expected the cifar-10-batches-py/ layout)")
        d = _load_pickle(path)
        data = np.asarray(d.get("data"))
        labels = np.asarray(d.get("labels", d.get("fine_labels")), dtype=np.int64)
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or labels.shape != (data.shape[0],):
            raise ValueError(
                f"{path}: expected 'data' uint8 [N, 3072] and N 'labels', got {data.dtype} {data.shape} "
                f"and {labels.shape}"
            )
        xs.append(data.reshape(-1, 3, 32, 32))
        ys.append(labels)
    return np.concatenate(xs), np.concatenate(ys)


def read_cifar_meta(folder: Path) -> tuple[str, ...]:
    """Class names from ``batches.meta`` (their order defines the label indices)."""
    path = Path(folder) / "batches.meta"
    if not path.is_file():
        raise FileNotFoundError(f"missing {path} (expected the cifar-10-batches-py/ layout)")
    names = _load_pickle(path).get("label_names")
    if not names:
        raise ValueError(f"{path}: no 'label_names' entry")
    return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)


# ----------------------------------------------------------------------------- SVHN


def read_svhn_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read an SVHN ``*_32x32.mat`` file: ``X`` 32x32x3xN uint8, ``y`` N x 1 with 10 meaning 0.

    Returns:
        uint8 images ``[N, 3, 32, 32]`` and int64 labels in 0..9.

    Raises:
        ImportError: if scipy is missing (``pip install "anode[svhn]"``).
        ValueError: naming the file if it is unreadable or not in that layout.
    """
    try:
        from scipy.io import loadmat
    except ImportError as exc:
        raise ImportError('reading SVHN needs scipy: pip install "anode[svhn]"') from exc
    try:
        mat = loadmat(str(path))
    except Exception as exc:  # scipy raises several types for corrupt files
        raise ValueError(f"{path}: unreadable .mat file ({exc})") from exc
    x, y = mat.get("X"), mat.get("y")
    if x is None or y is None:
        raise ValueError(f"{path}: expected variables 'X' and 'y'")
    y = np.asarray(y).reshape(-1).astype(np.int64)
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[2] != 3 or x.shape[3] != y.shape[0]:
        raise ValueError(f"{path}: expected X uint8 [H, W, 3, N] and N labels, got X {x.dtype} {x.shape}, y {y.shape}")
    if y.size and (y.min() < 0 or y.max() > 10):
        raise ValueError(f"{path}: labels must be in 0..10 (10 meaning digit 0), got {y.min()}..{y.max()}")
    y[y == 10] = 0
    return np.ascontiguousarray(x.transpose(3, 2, 0, 1)), y


# ----------------------------------------------------------------------------- image trees


def dir_tree(root: Path) -> dict[str, Path]:
    """All files under `root`, keyed by POSIX path relative to it (hidden entries skipped)."""
    root = Path(root)
    out: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        rel = Path(dirpath).relative_to(root).as_posix()
        for fn in filenames:
            if not fn.startswith("."):
                out[fn if rel == "." else f"{rel}/{fn}"] = Path(dirpath) / fn
    return out


def archive_tree(path: Path) -> dict[str, bytes]:
    """All regular files of a tar (any compression) or zip archive, read into memory (no extraction).

    Raises:
        ValueError: naming the archive if it is corrupt or truncated.
    """
    path = Path(path)
    out: dict[str, bytes] = {}
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                for info in zf.infolist():
                    if not info.is_dir():
                        out[info.filename.removeprefix("./")] = zf.read(info)
        else:
            with tarfile.open(path, "r:*") as tf:
                for m in tf:
                    if m.isfile():
                        f = tf.extractfile(m)
                        if f is not None:
                            out[m.name.removeprefix("./")] = f.read()
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
        raise ValueError(f"{path}: corrupt or truncated archive ({exc})") from exc
    return out


def _pil() -> Any:
    try:
        from PIL import Image
    except ImportError as exc:
        raise ImportError("decoding image files needs Pillow: pip install pillow") from exc
    return Image


def decode_images(tree: FileTree, names: Sequence[str], where: str, rgb: bool = True) -> np.ndarray:
    """Decode images into one uint8 ``[N, C, H, W]`` array; all must have the same size.

    Arguments:
        tree: the file tree holding the images.
        names: keys of `tree`, in output order.
        where: description of the tree's location, for error messages.
        rgb: convert everything to RGB; if False, keep one channel when every image is grayscale.

    Raises:
        ValueError: naming the first file that cannot be decoded or whose size differs from the first.
    """
    Image = _pil()
    arrays: list[np.ndarray] = []
    size = None
    for name in names:
        src = tree[name]
        try:
            with Image.open(src if isinstance(src, Path) else io.BytesIO(src)) as im:
                if im.mode not in ("L", "RGB") or (rgb and im.mode != "RGB"):
                    im = im.convert("RGB")
                a = np.asarray(im, dtype=np.uint8)
        except (OSError, ValueError) as exc:
            raise ValueError(f"{where}/{name}: cannot decode image ({exc})") from exc
        if size is None:
            size = a.shape[:2]
        elif a.shape[:2] != size:
            raise ValueError(
                f"{where}/{name}: image size {a.shape[1]}x{a.shape[0]} differs from {size[1]}x{size[0]} "
                "of the first image (all images must have the same size)"
            )
        arrays.append(a)
    if not arrays:
        raise ValueError(f"{where}: no images found")
    channels = 3 if any(a.ndim == 3 for a in arrays) else 1
    out = np.empty((len(arrays), channels, *size), dtype=np.uint8)
    for i, a in enumerate(arrays):
        out[i] = a.transpose(2, 0, 1) if a.ndim == 3 else a[None]
    return out


def first_per_class(labels: np.ndarray, k: int | None) -> np.ndarray:
    """Indices of the first `k` samples of every class, in their original order (all if k is None)."""
    if k is None:
        return np.arange(len(labels))
    keep = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        keep[np.flatnonzero(labels == c)[:k]] = True
    return np.flatnonzero(keep)
