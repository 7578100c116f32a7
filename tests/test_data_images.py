"""Tests for anode.data.images: format readers on tiny files written here, real shared data when present."""

from __future__ import annotations

import dataclasses
import gzip
import os
import pickle
import re
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from anode.data.images import (
    ChecksumError,
    ImageDataset,
    download_dataset,
    load_image_dataset,
    make_image_loaders,
)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
MNIST_DIR = SHARED / "mnist"
CIFAR_TGZ = SHARED / "cifar10" / "cifar10_jpeg_q75_classfolders.tgz"
TINY_TGZ = SHARED / "tiny-imagenet" / "tiny-imagenet-200_val_only.tgz"
needs_mnist = pytest.mark.skipif(not MNIST_DIR.is_dir(), reason=f"shared MNIST not found at {MNIST_DIR}")
needs_cifar = pytest.mark.skipif(not CIFAR_TGZ.is_file(), reason=f"shared CIFAR-10 archive not found at {CIFAR_TGZ}")
needs_tiny = pytest.mark.skipif(not TINY_TGZ.is_file(), reason=f"shared Tiny ImageNet archive not found at {TINY_TGZ}")

Image = pytest.importorskip("PIL.Image")
IDX_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


# ----------------------------------------------------------------------------- helpers


def idx_bytes(arr: np.ndarray) -> bytes:
    magic = 2051 if arr.ndim == 3 else 2049
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return header + arr.astype(np.uint8).tobytes()


def write_idx_set(folder: Path, gz: bool = True, n_train: int = 12, n_test: int = 5, classes: int = 7) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    arrays = {
        IDX_NAMES[0]: rng.integers(0, 256, (n_train, 5, 4), dtype=np.uint8),
        IDX_NAMES[1]: np.arange(n_train, dtype=np.uint8) % classes,
        IDX_NAMES[2]: rng.integers(0, 256, (n_test, 5, 4), dtype=np.uint8),
        IDX_NAMES[3]: np.arange(n_test, dtype=np.uint8) % classes,
    }
    for stem, arr in arrays.items():
        data = idx_bytes(arr)
        (folder / (stem + ".gz" if gz else stem)).write_bytes(gzip.compress(data) if gz else data)
    return arrays


def small_dataset(n: int = 100, c: int = 3, seed: int = 0) -> ImageDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, c, 4, 4), dtype=torch.uint8, generator=g)
    # give the channels different statistics, so standardisation has work to do
    x[:, 0] //= 4
    y = torch.arange(n) % 5
    return ImageDataset("toy", "random", x, y, x[:20].clone(), y[:20].clone(), 5, tuple("abcde"))


# ----------------------------------------------------------------------------- MNIST / IDX


@needs_mnist
def test_real_mnist_counts_labels_and_checksums():
    ds = load_image_dataset("mnist", SHARED)  # verify_checksums=True by default
    assert ds.source == "MNIST (original IDX files)"
    assert ds.train_images.shape == (60000, 1, 28, 28) and ds.test_images.shape == (10000, 1, 28, 28)
    assert ds.image_shape == (1, 28, 28) and ds.num_classes == 10
    assert ds.train_images.dtype == torch.uint8 and ds.train_labels.dtype == torch.int64
    for y in (ds.train_labels, ds.test_labels):
        assert set(y.unique().tolist()) == set(range(10))
    assert int(ds.train_labels[0]) == 5 and int(ds.test_labels[0]) == 7
    assert int(ds.train_images.max()) == 255 and int(ds.train_images.min()) == 0


@pytest.mark.parametrize("gz", [True, False])
def test_idx_round_trip_and_inferred_classes(tmp_path, gz):
    arrays = write_idx_set(tmp_path, gz=gz)
    ds = load_image_dataset("idx", tmp_path)
    assert ds.num_classes == 7 and ds.class_names == tuple(str(i) for i in range(7))
    assert torch.equal(ds.train_images[:, 0], torch.from_numpy(arrays[IDX_NAMES[0]]))
    assert torch.equal(ds.test_images[:, 0], torch.from_numpy(arrays[IDX_NAMES[2]]))
    assert ds.train_labels.tolist() == arrays[IDX_NAMES[1]].tolist()
    assert ds.image_shape == (1, 5, 4)


def test_mnist_accepts_parent_folder_and_env_var(tmp_path, monkeypatch):
    write_idx_set(tmp_path / "mnist", classes=10, n_train=20, n_test=10)
    ds = load_image_dataset("MNIST", tmp_path, verify_checksums=False)
    assert ds.name == "mnist" and ds.num_classes == 10 and len(ds.train_labels) == 20
    monkeypatch.setenv("ANODE_DATA_DIR", str(tmp_path / "mnist"))
    assert len(load_image_dataset("mnist", verify_checksums=False).test_labels) == 10
    monkeypatch.delenv("ANODE_DATA_DIR")
    with pytest.raises(ValueError, match="ANODE_DATA_DIR"):
        load_image_dataset("mnist")


def test_mnist_checksum_mismatch_names_file(tmp_path):
    write_idx_set(tmp_path)
    with pytest.raises(ChecksumError, match=r"train-images-idx3-ubyte\.gz.*expected f68b3c2dcbeaaa9fbdd348bbdeb94873"):
        load_image_dataset("mnist", tmp_path)


def test_idx_wrong_magic(tmp_path):
    write_idx_set(tmp_path, gz=False)
    bad = tmp_path / IDX_NAMES[2]
    bad.write_bytes((2049).to_bytes(4, "big") + bad.read_bytes()[4:])
    with pytest.raises(ValueError, match=re.escape(str(bad)) + ".*magic number 2049"):
        load_image_dataset("idx", tmp_path)


@pytest.mark.parametrize("gz", [True, False])
def test_idx_truncated_payload(tmp_path, gz):
    write_idx_set(tmp_path, gz=gz)
    bad = tmp_path / (IDX_NAMES[0] + (".gz" if gz else ""))
    raw = gzip.decompress(bad.read_bytes()) if gz else bad.read_bytes()
    bad.write_bytes(gzip.compress(raw[:-7]) if gz else raw[:-7])
    with pytest.raises(ValueError, match=re.escape(str(bad)) + ".*truncated"):
        load_image_dataset("idx", tmp_path)


def test_idx_truncated_gzip_stream(tmp_path):
    write_idx_set(tmp_path)
    bad = tmp_path / (IDX_NAMES[1] + ".gz")
    bad.write_bytes(bad.read_bytes()[:-10])
    with pytest.raises(ValueError, match=re.escape(str(bad))):
        load_image_dataset("idx", tmp_path)


def test_idx_count_mismatch(tmp_path):
    write_idx_set(tmp_path, gz=False)
    (tmp_path / IDX_NAMES[3]).write_bytes(idx_bytes(np.zeros(4, np.uint8)))
    pattern = re.escape(IDX_NAMES[2]) + ".*5 images.*" + re.escape(IDX_NAMES[3]) + ".*4 labels"
    with pytest.raises(ValueError, match=pattern):
        load_image_dataset("idx", tmp_path)


def test_idx_missing_file_and_empty_dir(tmp_path):
    write_idx_set(tmp_path)
    (tmp_path / (IDX_NAMES[3] + ".gz")).unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(IDX_NAMES[3])):
        load_image_dataset("idx", tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        load_image_dataset("mnist", tmp_path / "empty")


def test_max_per_class_keeps_first_k_of_each_class(tmp_path):
    arrays = write_idx_set(tmp_path, n_train=30, classes=3)
    ds = load_image_dataset("idx", tmp_path, max_per_class=2)
    assert ds.train_labels.tolist() == [0, 1, 2, 0, 1, 2]
    assert torch.equal(ds.train_images[:, 0], torch.from_numpy(arrays[IDX_NAMES[0]][:6]))
    assert "first 2 per class" in ds.source
    with pytest.raises(ValueError, match="max_per_class"):
        load_image_dataset("idx", tmp_path, max_per_class=0)


def test_unknown_name_lists_choices(tmp_path):
    with pytest.raises(ValueError, match="mnist, idx, cifar10, svhn, tinyimagenet, folder"):
        load_image_dataset("imagenet", tmp_path)


# ----------------------------------------------------------------------------- CIFAR-10


def write_cifar_batches(folder: Path, per_batch: int = 3) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    out = {}
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [(i + j) % 3 for j in range(per_batch)]
        raw = pickle.dumps({b"batch_label": name.encode(), b"labels": labels, b"data": data}, protocol=2)
        # the official (2009, Python 2) files name numpy's pre-2.0 module path
        (folder / name).write_bytes(raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
        out[name] = (data, labels)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [b"zebra", b"apple", b"mango"], b"num_vis": 3072}, f, protocol=2)
    return out


def test_cifar_pickles_channel_order_and_meta_order(tmp_path):
    batches = write_cifar_batches(tmp_path / "cifar-10-batches-py")
    ds = load_image_dataset("cifar10", tmp_path, verify_checksums=False)
    assert ds.source == "CIFAR-10 (original python batches)"
    assert ds.class_names == ("zebra", "apple", "mango") and ds.num_classes == 3
    assert ds.train_images.shape == (15, 3, 32, 32) and ds.test_images.shape == (3, 3, 32, 32)
    data, labels = batches["data_batch_2"]
    img = ds.train_images[3]  # first image of the second batch
    for c in range(3):  # row layout: 1024 red, 1024 green, 1024 blue values, row-major 32x32
        assert int(img[c, 1, 2]) == int(data[0, c * 1024 + 1 * 32 + 2])
    assert ds.train_labels[3:6].tolist() == labels
    assert ds.test_labels.tolist() == batches["test_batch"][1]


def test_cifar_pickle_checksum_and_unsafe_pickle(tmp_path):
    write_cifar_batches(tmp_path)
    with pytest.raises(ChecksumError, match=r"data_batch_1.*expected c99cafc152244af753f735de768cd75f"):
        load_image_dataset("cifar10", tmp_path)
    with open(tmp_path / "data_batch_3", "wb") as f:
        pickle.dump({b"data": os.getcwd, b"labels": []}, f)
    with pytest.raises(ValueError, match="data_batch_3.*refusing"):
        load_image_dataset("cifar10", tmp_path, verify_checksums=False)


def _class_tree(root: Path, classes: dict[str, list[int]], size=(6, 5), ext="png") -> dict:
    pixels = {}
    for split in ("train", "test"):
        for name, values in classes.items():
            for k, v in enumerate(values):
                arr = np.full((*size, 3), v, dtype=np.uint8)
                arr[0, 0] = (v, 255 - v, 7)
                path = root / split / name / f"{k:04d}.{ext}"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(arr).save(path)
                pixels[(split, name, k)] = arr
    return pixels


def test_cifar_class_folders_png_and_archive(tmp_path):
    _class_tree(tmp_path / "cifar10" / "jpg", {"dog": [10, 20], "cat": [30, 40, 50]}, size=(32, 32))
    ds = load_image_dataset("cifar10", tmp_path)
    assert ds.class_names == ("cat", "dog")  # sorted
    assert ds.train_labels.tolist() == [0, 0, 0, 1, 1]
    assert ds.train_images[:, 0, 5, 5].tolist() == [30, 40, 50, 10, 20]
    assert ds.train_images[0, :, 0, 0].tolist() == [30, 225, 7]  # RGB order preserved
    archive = tmp_path / "cifar-10-folders.tgz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(tmp_path / "cifar10" / "jpg", arcname="jpg")
    ds2 = load_image_dataset("cifar10", archive, max_per_class=1)
    assert ds2.train_labels.tolist() == [0, 1] and ds2.train_images[:, 0, 5, 5].tolist() == [30, 10]


def test_cifar_missing_data_lists_layouts(tmp_path):
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py.*cifar10_jpeg_q75_classfolders.tgz"):
        load_image_dataset("cifar10", tmp_path)


@needs_cifar
def test_real_cifar_archive_subset():
    ds = load_image_dataset("cifar10", SHARED, max_per_class=3)
    assert ds.source.startswith("CIFAR-10 (JPEG q75 copy)")
    assert ds.class_names == ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
    assert ds.train_images.shape == (30, 3, 32, 32) and ds.test_images.shape == (30, 3, 32, 32)
    assert ds.train_labels.bincount().tolist() == [3] * 10
    assert float(ds.train_images.float().std()) > 20  # real pictures, not blank


@pytest.mark.slow
@needs_cifar
def test_real_cifar_archive_full():
    ds = load_image_dataset("cifar10", CIFAR_TGZ)
    assert ds.train_images.shape == (50000, 3, 32, 32) and ds.test_images.shape == (10000, 3, 32, 32)
    assert ds.train_labels.bincount().tolist() == [5000] * 10
    assert ds.test_labels.bincount().tolist() == [1000] * 10


# ----------------------------------------------------------------------------- generic folders


def test_folder_grayscale_and_size_mismatch(tmp_path):
    for split in ("train", "test"):
        for c, v in (("a", 3), ("b", 9)):
            (tmp_path / split / c).mkdir(parents=True)
            Image.fromarray(np.full((4, 4), v, np.uint8)).save(tmp_path / split / c / "x.png")
    ds = load_image_dataset("folder", tmp_path)
    assert ds.image_shape == (1, 4, 4) and ds.train_images[:, 0, 0, 0].tolist() == [3, 9]
    bad = tmp_path / "test" / "b" / "y.png"
    Image.fromarray(np.zeros((5, 4), np.uint8)).save(bad)
    with pytest.raises(ValueError, match=re.escape("test/b/y.png") + ".*4x5"):
        load_image_dataset("folder", tmp_path)


# ----------------------------------------------------------------------------- SVHN


def write_svhn(folder: Path, n: int = 6) -> tuple[np.ndarray, np.ndarray]:
    sio = pytest.importorskip("scipy.io")
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
    y = (np.arange(n) % 10 + 1).reshape(n, 1).astype(np.uint8)  # 1..10, 10 meaning digit 0
    y[0, 0] = 10
    for name in ("train_32x32.mat", "test_32x32.mat"):
        sio.savemat(folder / name, {"X": x, "y": y})
    return x, y


def test_svhn_mat_layout_and_labels(tmp_path):
    x, _y = write_svhn(tmp_path / "svhn")
    ds = load_image_dataset("svhn", tmp_path, verify_checksums=False)
    assert ds.train_images.shape == (6, 3, 32, 32) and ds.num_classes == 10
    assert ds.train_labels.tolist() == [0, 2, 3, 4, 5, 6]
    assert int(ds.train_images[4, 2, 7, 11]) == int(x[7, 11, 2, 4])
    assert torch.equal(ds.train_images, torch.from_numpy(x.transpose(3, 2, 0, 1).copy()))


def test_svhn_checksum_and_missing(tmp_path):
    write_svhn(tmp_path)
    with pytest.raises(ChecksumError, match=r"train_32x32\.mat.*expected e26dedcc434d2e4c54c9b2d4a06d8373"):
        load_image_dataset("svhn", tmp_path)
    (tmp_path / "test_32x32.mat").unlink()
    with pytest.raises(FileNotFoundError, match=r"test_32x32\.mat"):
        load_image_dataset("svhn", tmp_path, verify_checksums=False)


# ----------------------------------------------------------------------------- Tiny ImageNet

WNIDS = ("n0300", "n0100", "n0200")  # deliberately unsorted: labels must follow this order
COLOURS = {"n0300": (200, 30, 30), "n0100": (30, 200, 30), "n0200": (30, 30, 200)}


def write_tiny(root: Path, with_train: bool = True, val_per_class: int = 5) -> None:
    (root / "val" / "images").mkdir(parents=True)
    (root / "wnids.txt").write_text("\n".join(WNIDS) + "\n")
    rows = []
    k = 0
    for _j in range(val_per_class):
        for w in WNIDS:
            Image.fromarray(np.full((8, 8, 3), COLOURS[w], np.uint8)).save(root / "val" / "images" / f"val_{k}.JPEG")
            rows.append(f"val_{k}.JPEG\t{w}\t0\t0\t7\t7")
            k += 1
    (root / "val" / "val_annotations.txt").write_text("\n".join(rows) + "\n")
    if with_train:
        for w in WNIDS:
            d = root / "train" / w / "images"
            d.mkdir(parents=True)
            for i in range(2):
                Image.fromarray(np.full((8, 8, 3), COLOURS[w], np.uint8)).save(d / f"{w}_{i}.JPEG")
        Image.fromarray(np.full((8, 8), 90, np.uint8)).save(root / "train" / "n0100" / "images" / "n0100_9.JPEG")
        cmyk = Image.new("CMYK", (8, 8), (0, 255, 255, 0))
        cmyk.save(root / "train" / "n0200" / "images" / "n0200_8.JPEG")


def test_tiny_imagenet_layout_rgb_and_wnid_order(tmp_path):
    write_tiny(tmp_path / "tiny-imagenet-200")
    ds = load_image_dataset("tinyimagenet", tmp_path)
    assert ds.class_names == WNIDS and ds.image_shape == (3, 8, 8)
    assert ds.train_labels.bincount().tolist() == [2, 3, 3] and ds.test_labels.bincount().tolist() == [5, 5, 5]
    for label, w in enumerate(WNIDS):
        imgs = ds.train_images[ds.train_labels == label][:2]  # the two colour images, sorted first
        assert np.abs(imgs.float().mean(dim=(2, 3)).numpy() - np.array(COLOURS[w])).max() < 12
    grey = ds.train_images[(ds.train_labels == 1)][-1]  # n0100_9 sorts last in its class
    assert grey.shape == (3, 8, 8) and torch.equal(grey[0], grey[1]) and abs(float(grey.float().mean()) - 90) < 3
    red = ds.train_images[(ds.train_labels == 2)][-1]  # CMYK (0,255,255,0) is red once converted to RGB
    assert float(red[0].float().mean()) > 150 and float(red[1:].float().mean()) < 60
    val_mean = ds.test_images.float().mean(dim=(2, 3)).numpy()
    expected = np.array([COLOURS[WNIDS[i]] for i in ds.test_labels.tolist()])
    assert np.abs(val_mean - expected).max() < 12


def test_tiny_imagenet_missing_train_and_val_split(tmp_path):
    root = tmp_path / "tiny-imagenet-200"
    write_tiny(root, with_train=False)
    with pytest.raises(FileNotFoundError, match="train.*tiny_val_split=True"):
        load_image_dataset("tinyimagenet", tmp_path)
    ds = load_image_dataset("tinyimagenet", root, tiny_val_split=True)
    assert "val only" in ds.source
    assert ds.train_labels.bincount().tolist() == [4, 4, 4] and ds.test_labels.bincount().tolist() == [1, 1, 1]
    archive = tmp_path / "tiny-imagenet-200.tgz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(root, arcname="tiny-imagenet-200")
    ds2 = load_image_dataset("tiny-imagenet", archive, tiny_val_split=True)
    assert torch.equal(ds2.train_images, ds.train_images) and torch.equal(ds2.test_labels, ds.test_labels)


@needs_tiny
def test_real_tiny_imagenet_val_archive():
    with pytest.raises(FileNotFoundError, match="tiny_val_split"):
        load_image_dataset("tinyimagenet", SHARED, max_per_class=1)
    ds = load_image_dataset("tinyimagenet", SHARED, tiny_val_split=True)
    assert ds.num_classes == 200 and len(set(ds.class_names)) == 200 and ds.image_shape == (3, 64, 64)
    assert len(ds.train_labels) + len(ds.test_labels) == 10000
    assert torch.cat([ds.train_labels, ds.test_labels]).bincount(minlength=200).tolist() == [50] * 200
    assert ds.test_labels.bincount(minlength=200).tolist() == [10] * 200


# ----------------------------------------------------------------------------- dataset and loaders


def test_image_dataset_validation():
    ds = small_dataset()
    assert ds.image_shape == (3, 4, 4) and "toy" in repr(ds)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ds.name = "x"  # type: ignore[misc]
    x, y = ds.train_images, ds.train_labels
    with pytest.raises(ValueError, match="uint8"):
        ImageDataset("t", "s", x.float(), y, x, y, 5, tuple("abcde"))
    with pytest.raises(ValueError, match="int64"):
        ImageDataset("t", "s", x, y.int(), x, y, 5, tuple("abcde"))
    with pytest.raises(ValueError, match="0..3"):
        ImageDataset("t", "s", x, y, x, y, 4, tuple("abcd"))
    with pytest.raises(ValueError, match="differ in shape"):
        ImageDataset("t", "s", x, y, x[:, :1], y, 5, tuple("abcde"))


def test_loaders_shapes_range_and_order():
    ds = small_dataset()
    train, test = make_image_loaders(ds, batch_size=32, seed=3)
    x, y = next(iter(train))
    assert x.shape == (32, 3, 4, 4) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    assert len(train) == 4 and train.num_samples == 100
    test_labels = torch.cat([b[1] for b in test])
    assert torch.equal(test_labels, ds.test_labels)  # not shuffled
    test_x = torch.cat([b[0] for b in test])
    assert torch.allclose(test_x, ds.test_images.float() / 255)
    def labels_per_pass(seed: int) -> list[list[int]]:
        loader = make_image_loaders(ds, batch_size=32, seed=seed)[0]
        return [torch.cat([b[1] for b in loader]).tolist() for _ in range(2)]

    same, other = labels_per_pass(3), labels_per_pass(4)
    assert same == labels_per_pass(3)  # same seed, same order (pass after pass)
    assert same[0] != same[1] and same[0] != other[0]  # reshuffled each pass; seed matters
    assert sorted(same[0]) == sorted(ds.train_labels.tolist())


def test_loaders_standardize_and_subsets():
    ds = small_dataset()
    train, test = make_image_loaders(ds, batch_size=64, normalization="standardize")
    x = torch.cat([b[0] for b in train]).double()
    mean, std = x.mean(dim=(0, 2, 3)), x.std(dim=(0, 2, 3), unbiased=False)
    assert torch.allclose(mean, torch.zeros(3, dtype=torch.float64), atol=1e-5)
    assert torch.allclose(std, torch.ones(3, dtype=torch.float64), atol=1e-5)
    assert train.transform is test.transform and len(train.transform.mean) == 3
    sub, sub_test = make_image_loaders(ds, batch_size=8, train_subset=10, test_subset=4, seed=1)
    assert sub.num_samples == 10 and sub_test.num_samples == 4
    with pytest.raises(ValueError, match="train_subset"):
        make_image_loaders(ds, train_subset=1000)
    with pytest.raises(ValueError, match="none, standardize"):
        make_image_loaders(ds, normalization="zscore")


def test_download_without_torchvision(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)
    with pytest.raises(ImportError, match=r'pip install "anode\[download\]"'):
        download_dataset("mnist", tmp_path)
    with pytest.raises(ValueError, match="tinyimagenet"):
        download_dataset("tinyimagenet", tmp_path)


class _FakeTorchvisionDatasets:
    """Stands in for `torchvision.datasets`: each class writes its files where torchvision puts them
    (MNIST: `<root>/MNIST/raw/` holding the .gz files and their extracted copies; CIFAR-10:
    `<root>/cifar-10-batches-py/`; SVHN: `<root>/{train,test}_32x32.mat`) and records its call."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        fake = self

        class MNIST:
            def __init__(self, root, train=True, download=False):
                fake.calls.append(("MNIST", root, train, download))
                raw = Path(root) / "MNIST" / "raw"
                write_idx_set(raw, gz=True)
                write_idx_set(raw, gz=False)

        class CIFAR10:
            def __init__(self, root, train=True, download=False):
                fake.calls.append(("CIFAR10", root, train, download))
                write_cifar_batches(Path(root) / "cifar-10-batches-py")

        class SVHN:
            def __init__(self, root, split="train", download=False):
                fake.calls.append(("SVHN", root, split, download))
                write_svhn(Path(root))

        self.MNIST, self.CIFAR10, self.SVHN = MNIST, CIFAR10, SVHN


@pytest.mark.parametrize("name, splits, counts", [("mnist", [True, False], (12, 5)), ("cifar10", [True], (15, 3)),
                                                  ("svhn", ["train", "test"], (6, 6))])
def test_download_puts_files_where_the_reader_finds_them(tmp_path, monkeypatch, name, splits, counts):
    fake = _FakeTorchvisionDatasets()
    module = type(sys)("torchvision")
    module.datasets = fake
    monkeypatch.setitem(sys.modules, "torchvision", module)
    root = tmp_path / "downloads"
    folder = download_dataset(name, root)
    assert [c[2] for c in fake.calls] == splits and all(c[1] == str(root) and c[3] for c in fake.calls)
    # the returned folder and the download root both load (checksums are off: the files are synthetic)
    for where in (folder, root):
        ds = load_image_dataset(name, where, verify_checksums=False)
        assert (ds.train_images.shape[0], ds.test_images.shape[0]) == counts
