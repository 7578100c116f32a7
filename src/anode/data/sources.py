"""Finding and loading whole datasets (MNIST/IDX, CIFAR-10, SVHN, Tiny ImageNet, class folders).

Each `load_*` function locates a dataset's files under a directory (or archive), checks them and
returns `Loaded` arrays; the file formats themselves are read by `anode.data.readers`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from .readers import (
    IMAGE_EXTENSIONS,
    FileTree,
    Loaded,
    archive_tree,
    decode_images,
    dir_tree,
    read_cifar_batches,
    read_cifar_meta,
    read_idx,
    read_svhn_mat,
    verify_checksum,
)

__all__ = ["load_cifar10", "load_folder", "load_idx_dataset", "load_svhn", "load_tiny_imagenet",
           "read_class_folders", "read_tiny_imagenet"]


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
