"""Format readers for the image datasets of `anode.data.images` (no torchvision).

Every reader returns plain numpy arrays: images as uint8 ``[N, C, H, W]`` and labels as int64
``[N]``. Errors name the offending file and, where it helps, the expected layout. The public entry
point is `anode.data.images.load_image_dataset`; these functions are its building blocks.
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
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Union

import numpy as np

__all__ = [
    "ChecksumError",
    "IMAGE_EXTENSIONS",
    "file_digest",
    "verify_checksum",
    "read_idx",
    "read_cifar_batches",
    "read_svhn_mat",
    "FileTree",
    "dir_tree",
    "archive_tree",
    "read_class_folders",
    "read_tiny_imagenet",
    "first_per_class",
    "load_idx_dataset",
    "load_cifar10",
    "load_svhn",
    "load_tiny_imagenet",
    "load_folder",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")

#: what every load_* function returns: (train_x, train_y, test_x, test_y, class_names, source).
Loaded = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, tuple[str, ...], str]
#: relative POSIX path -> file on disk (read lazily) or bytes already in memory (from an archive).
FileTree = Mapping[str, Union[Path, bytes]]


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


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def read_class_folders(
    tree: FileTree, prefix: str, where: str, *, max_per_class: int | None = None, rgb: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]:
    """Read ``<prefix>{train,test}/<class>/<image>``: class indices follow sorted class names.

    Within a class, images are taken in sorted file-name order (the first `max_per_class` if set).

    Returns:
        ``(train_x, train_y, test_x, test_y, class_names)``.

    Raises:
        FileNotFoundError: if a split has no images.
        ValueError: if test has classes absent from train, or on undecodable / differently sized images.
    """
    splits: dict[str, dict[str, list[str]]] = {"train": {}, "test": {}}
    for key in tree:
        parts = key[len(prefix) :].split("/") if key.startswith(prefix) else []
        if len(parts) == 3 and parts[0] in splits and _is_image(parts[2]):
            splits[parts[0]].setdefault(parts[1], []).append(key)
    for split, by_class in splits.items():
        if not by_class:
            raise FileNotFoundError(f"no images in {where}/{prefix}{split}/ (expected {split}/<class>/<image>)")
    classes = tuple(sorted(splits["train"]))
    extra = sorted(set(splits["test"]) - set(classes))
    if extra:
        raise ValueError(f"{where}/{prefix}test/ has classes not in train/: {extra[:5]}")
    out: list[np.ndarray] = []
    for split in ("train", "test"):
        names: list[str] = []
        labels: list[int] = []
        for i, c in enumerate(classes):
            files = sorted(splits[split].get(c, []))[:max_per_class]
            names += files
            labels += [i] * len(files)
        out += [decode_images(tree, names, where, rgb), np.asarray(labels, dtype=np.int64)]
    return out[0], out[1], out[2], out[3], classes


def read_tiny_imagenet(
    tree: FileTree, prefix: str, where: str, *, val_split: bool = False, max_per_class: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]:
    """Read the ``tiny-imagenet-200/`` layout; labels follow ``wnids.txt`` order, images become RGB.

    Train is ``train/<wnid>/images/*.JPEG`` (sorted file names), test is ``val/images`` labelled by
    ``val/val_annotations.txt``. With `val_split`, train/ is ignored and, per class in annotation
    order, the last ``n // 5`` val images (10 of 50) form the test split and the others train.

    Returns:
        ``(train_x, train_y, test_x, test_y, wnids)``.

    Raises:
        FileNotFoundError: naming what is missing (wnids.txt, val annotations, train/ without `val_split`).
        ValueError: on malformed annotations, unknown wnids or undecodable images.
    """

    def text(rel: str) -> str:
        if prefix + rel not in tree:
            raise FileNotFoundError(f"missing {where}/{prefix}{rel} (expected the tiny-imagenet-200/ layout)")
        src = tree[prefix + rel]
        return (src.read_bytes() if isinstance(src, Path) else src).decode("utf-8")

    wnids = tuple(w.strip() for w in text("wnids.txt").splitlines() if w.strip())
    index = {w: i for i, w in enumerate(wnids)}
    val: dict[int, list[str]] = {i: [] for i in range(len(wnids))}
    for n, line in enumerate(text("val/val_annotations.txt").splitlines(), 1):
        fields = line.split("\t")
        if not line.strip():
            continue
        if len(fields) < 2 or fields[1] not in index:
            raise ValueError(f"{where}/{prefix}val/val_annotations.txt line {n}: unknown or missing wnid: {line!r}")
        key = f"{prefix}val/images/{fields[0]}"
        if key not in tree:
            raise FileNotFoundError(f"missing {where}/{key} (listed in val_annotations.txt line {n})")
        val[index[fields[1]]].append(key)

    def gather(groups: Iterable[tuple[int, list[str]]]) -> tuple[np.ndarray, np.ndarray]:
        names: list[str] = []
        labels: list[int] = []
        for label, files in groups:
            names += files[:max_per_class]
            labels += [label] * len(files[:max_per_class])
        return decode_images(tree, names, where, rgb=True), np.asarray(labels, dtype=np.int64)

    if val_split:
        train = [(i, f[: len(f) - len(f) // 5]) for i, f in val.items()]
        test = [(i, f[len(f) - len(f) // 5 :]) for i, f in val.items()]
    else:
        by_class: dict[int, list[str]] = {i: [] for i in range(len(wnids))}
        for key in tree:
            parts = key[len(prefix) :].split("/") if key.startswith(prefix) else []
            if len(parts) == 4 and parts[0] == "train" and parts[2] == "images" and parts[1] in index:
                if _is_image(parts[3]):
                    by_class[index[parts[1]]].append(key)
        if not any(by_class.values()):
            raise FileNotFoundError(
                f"Tiny ImageNet training split not found: no {where}/{prefix}train/<wnid>/images/*.JPEG "
                "(this copy may hold only val/); pass tiny_val_split=True to split val per class "
                "into train (first 40 of 50) and test (last 10)"
            )
        train = [(i, sorted(f)) for i, f in by_class.items()]
        test = list(val.items())
    tx, ty = gather(train)
    vx, vy = gather(test)
    return tx, ty, vx, vy, wnids


# ----------------------------------------------------------------------------- dataset locators
# Each load_* function finds the files under `base` (the folder itself or a conventional subfolder),
# verifies checksums if asked and returns (train_x, train_y, test_x, test_y, class_names, source).

_MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
_CIFAR_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
}
_SVHN_MD5 = {
    "train_32x32.mat": "e26dedcc434d2e4c54c9b2d4a06d8373",
    "test_32x32.mat": "eb5a983be6a315427106f1b164d9cef3",
}
_ARCHIVE_SHA256 = {
    "cifar10_jpeg_q75_classfolders.tgz": "84f832f0e512407bc3bb9d8081544f0a5db3eb1f8310f6b7db5357bb2df34add",
    "tiny-imagenet-200_val_only.tgz": "e3035000e6d6a4e9b2d509bf97f90fc9a4d494f24c05d319f51596b9a713ea87",
}
_SUBDIRS = {
    "mnist": ("mnist", "MNIST/raw", "mnist/MNIST/raw"),
    "idx": ("raw",),
    "cifar10": ("cifar10", "cifar-10", "cifar-10-batches-py", "cifar10/cifar-10-batches-py"),
    "svhn": ("svhn", "SVHN"),
    "tinyimagenet": ("tiny-imagenet", "tinyimagenet", "tiny-imagenet-200", "tiny-imagenet/tiny-imagenet-200"),
    "folder": (),
}
_ARCHIVE_SUFFIXES = (".tgz", ".tar", ".tar.gz", ".tar.bz2", ".tar.xz", ".zip")


def _find(base: Path, name: str, test: Callable[[Path], bool]) -> Path | None:
    for d in (base, *(base / s for s in _SUBDIRS[name])):
        if d.is_dir() and test(d):
            return d
    return None


def _find_archive(base: Path, name: str, stems: tuple[str, ...]) -> Path | None:
    if base.is_file() and base.name.endswith(_ARCHIVE_SUFFIXES):
        return base
    for d in (base, *(base / s for s in _SUBDIRS[name])):
        for stem in stems:
            hits = sorted(p for p in d.glob(f"{stem}*") if p.is_file() and p.name.endswith(_ARCHIVE_SUFFIXES))
            if hits:
                return hits[0]
    return None


def _archive(path: Path, verify: bool) -> dict[str, bytes]:
    if verify and path.name in _ARCHIVE_SHA256:
        verify_checksum(path, _ARCHIVE_SHA256[path.name], "sha256")
    return archive_tree(path)


def load_idx_dataset(base: Path, name: str, verify: bool) -> Loaded:
    """MNIST (``name="mnist"``: 10 classes, md5 of the ``.gz`` files checked if `verify`) or any dataset in
    its four IDX files (``name="idx"``: classes from the largest label, no checksum).

    Raises:
        FileNotFoundError: naming the missing file. ChecksumError, ValueError: naming the bad file.
    """
    stems = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

    def locate(d: Path, stem: str) -> Path | None:
        alt = stem.replace("-idx", ".idx")  # some copies name them train-images.idx3-ubyte
        return next((d / f for s in (stem, alt) for f in (s + ".gz", s) if (d / f).is_file()), None)

    d = _find(base, name, lambda p: locate(p, stems[0]) is not None)
    if d is None:
        raise FileNotFoundError(
            f"no IDX files found in {base} or its subfolders {list(_SUBDIRS[name])}: expected "
            f"{', '.join(s + '.gz' for s in stems)} (gzipped or not)"
        )
    paths = []
    for stem in stems:
        p = locate(d, stem)
        if p is None:
            raise FileNotFoundError(f"missing {d / (stem + '.gz')} (the IDX layout needs {', '.join(stems)})")
        if verify and name == "mnist" and p.name in _MNIST_MD5:
            verify_checksum(p, _MNIST_MD5[p.name])
        paths.append(p)
    arrays = [read_idx(p, "images" if i % 2 == 0 else "labels") for i, p in enumerate(paths)]
    for i in (0, 2):
        if arrays[i].shape[0] != arrays[i + 1].shape[0]:
            raise ValueError(
                f"{paths[i]} has {arrays[i].shape[0]} images but {paths[i + 1]} has {arrays[i + 1].shape[0]} labels"
            )
    k = 10 if name == "mnist" else int(max(arrays[1].max(), arrays[3].max())) + 1
    source = "MNIST (original IDX files)" if name == "mnist" else f"IDX files in {d}"
    return (*arrays, tuple(str(i) for i in range(k)), source)


def load_cifar10(base: Path, verify: bool, max_per_class: int | None) -> Loaded:
    """CIFAR-10 from ``cifar-10-batches-py/`` (batches.meta label order, md5s checked if `verify`), else class
    folders ``{train,test}/<class>/`` (optionally under ``jpg/``), else an archive of them read in memory
    (sha256 of the shared ``cifar10_jpeg_q75_classfolders.tgz`` checked if `verify`).

    Raises:
        FileNotFoundError: nothing found (the message lists the accepted layouts) or a batch missing.
        ChecksumError, ValueError: naming the bad file.
    """
    files = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    d = _find(base, "cifar10", lambda p: (p / "data_batch_1").is_file() or (p / "cifar-10-batches-py").is_dir())
    if d is not None:
        d = d / "cifar-10-batches-py" if (d / "cifar-10-batches-py").is_dir() else d
        for f in files:
            if verify and (d / f).is_file():
                verify_checksum(d / f, _CIFAR_MD5[f])
        tx, ty = read_cifar_batches(d, files[:5])
        vx, vy = read_cifar_batches(d, files[5:])
        return tx, ty, vx, vy, read_cifar_meta(d), "CIFAR-10 (original python batches)"
    d = _find(base, "cifar10", lambda p: (p / "train").is_dir() or (p / "jpg" / "train").is_dir())
    if d is not None:
        d = d / "jpg" if (d / "jpg" / "train").is_dir() else d
        out = read_class_folders(dir_tree(d), "", str(d), max_per_class=max_per_class)
        return (*out, f"CIFAR-10 (class folders at {d})")
    arc = _find_archive(base, "cifar10", ("cifar10", "cifar-10"))
    if arc is None:
        raise FileNotFoundError(
            f"no CIFAR-10 data in {base}: expected cifar-10-batches-py/ (data_batch_1..5, test_batch, "
            "batches.meta), class folders {train,test}/<class>/*.png|jpg (optionally under jpg/), "
            "or the archive cifar10_jpeg_q75_classfolders.tgz"
        )
    tree = _archive(arc, verify)
    prefix = "jpg/" if any(k.startswith("jpg/train/") for k in tree) else ""
    out = read_class_folders(tree, prefix, str(arc), max_per_class=max_per_class)
    q75 = arc.name == "cifar10_jpeg_q75_classfolders.tgz"
    return (*out, "CIFAR-10 (JPEG q75 copy)" if q75 else f"CIFAR-10 (class folders in {arc.name})")


def load_svhn(base: Path, verify: bool) -> Loaded:
    """SVHN ``train_32x32.mat`` / ``test_32x32.mat`` (md5s checked if `verify`); label 10 becomes 0.

    Raises:
        FileNotFoundError: naming the missing file. ChecksumError, ValueError: naming the bad file.
        ImportError: scipy missing.
    """
    d = _find(base, "svhn", lambda p: (p / "train_32x32.mat").is_file()) or base
    out = []
    for f in ("train_32x32.mat", "test_32x32.mat"):
        if not (d / f).is_file():
            raise FileNotFoundError(f"missing {d / f} (SVHN needs train_32x32.mat and test_32x32.mat)")
        if verify:
            verify_checksum(d / f, _SVHN_MD5[f])
        out += read_svhn_mat(d / f)
    return (*out, tuple(str(i) for i in range(10)), "SVHN (cropped digits, 32x32 .mat files)")


def load_tiny_imagenet(base: Path, verify: bool, max_per_class: int | None, val_split: bool) -> Loaded:
    """Tiny ImageNet from a ``tiny-imagenet-200/`` folder or an archive of it read in memory (sha256 of the
    shared val-only ``.tgz`` checked if `verify`); see `read_tiny_imagenet` for `val_split`.

    Raises:
        FileNotFoundError: nothing found, or no train/ without `val_split` (the message says what is missing).
        ChecksumError, ValueError: naming the bad file.
    """
    d = _find(base, "tinyimagenet", lambda p: (p / "wnids.txt").is_file())
    if d is not None:
        tree, where = dir_tree(d), str(d)
    else:
        arc = _find_archive(base, "tinyimagenet", ("tiny-imagenet", "tinyimagenet"))
        if arc is None:
            raise FileNotFoundError(
                f"no Tiny ImageNet data in {base}: expected tiny-imagenet-200/ (wnids.txt, train/<wnid>/images/, "
                "val/images/, val/val_annotations.txt) or an archive of it (.zip, .tgz)"
            )
        tree, where = _archive(arc, verify), str(arc)
    tops = {k.split("/", 1)[0] for k in tree if k.endswith("wnids.txt") and k.count("/") == 1}
    prefix = "tiny-imagenet-200/" if "tiny-imagenet-200" in tops else (f"{min(tops)}/" if tops else "")
    out = read_tiny_imagenet(tree, prefix, where, val_split=val_split, max_per_class=max_per_class)
    split = "train, val as test"
    if val_split:
        split = "val only, split per class: first 4/5 train, last 1/5 test (40/10 of 50)"
    return (*out, f"Tiny ImageNet ({split})")


def load_folder(base: Path, max_per_class: int | None) -> Loaded:
    """Generic ``<base>/{train,test}/<class>/<image>`` tree (or an archive of one); same-size images,
    one channel if all are grayscale, else RGB."""
    tree = archive_tree(base) if base.is_file() else dir_tree(base)
    out = read_class_folders(tree, "", str(base), max_per_class=max_per_class, rgb=False)
    return (*out, f"image class folders at {base}")
