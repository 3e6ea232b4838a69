"""idx (MNIST-style), CIFAR-10 batches, the bundled sample and the build_classification_dataset entry."""

from __future__ import annotations

import gzip
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from cvzoo.data.bundled import load_fashion_sample
from cvzoo.data.datasets.classification import (
    FASHION_MNIST_CLASSES,
    ArrayClassificationDataset,
    build_classification_dataset,
)
from cvzoo.data.formats.cifar import CifarFormatError, load_cifar10_split
from cvzoo.data.formats.idx import IdxFormatError, find_idx_files, load_idx_split, read_idx
from cvzoo.data.images import DatasetError

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


def _idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    header = struct.pack(">BBBB", 0, 0, type_code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def _write_idx_dir(root: Path, n_train=12, n_test=6, gz=True, seed=0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 5, 4), dtype=np.uint8)
        labels = (np.arange(n) % 3).astype(np.uint8)
        for kind, arr in (("images-idx3-ubyte", images), ("labels-idx1-ubyte", labels)):
            data = _idx_bytes(arr)
            name = f"{prefix}-{kind}"
            if gz:
                (root / f"{name}.gz").write_bytes(gzip.compress(data))
            else:
                (root / name).write_bytes(data)
        out[prefix] = (images, labels)
    return out["train"]


@pytest.mark.parametrize("dtype, code", [(np.uint8, 0x08), (np.int16, 0x0B), (np.int32, 0x0C), (np.float32, 0x0D)])
def test_read_idx_types_raw_and_gzip(tmp_path, dtype, code):
    array = (np.arange(24).reshape(2, 3, 4) * 3 - 5 * (dtype != np.uint8)).astype(dtype)
    raw, packed = tmp_path / "a", tmp_path / "b.whatever"
    raw.write_bytes(_idx_bytes(array, code))
    packed.write_bytes(gzip.compress(_idx_bytes(array, code)))  # gzip found by content, not name
    for path in (raw, packed):
        out = read_idx(path)
        assert out.dtype == dtype and np.array_equal(out, array)


def test_read_idx_bad_magic_names_file(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(b"\x12\x34\x08\x03" + b"\x00" * 20)
    with pytest.raises(IdxFormatError, match="magic") as info:
        read_idx(path)
    assert str(path) in str(info.value)
    path.write_bytes(b"\x00\x00\x07\x01\x00\x00\x00\x01\x00")
    with pytest.raises(IdxFormatError, match="element type"):
        read_idx(path)


def test_read_idx_size_mismatch_and_truncation(tmp_path):
    path = tmp_path / "x-idx1-ubyte"
    path.write_bytes(_idx_bytes(np.zeros(10, np.uint8))[:-1])
    with pytest.raises(IdxFormatError, match=r"shape \(10,\).*9 bytes"):
        read_idx(path)
    path.write_bytes(b"\x00\x00\x08\x03\x00\x00")
    with pytest.raises(IdxFormatError, match="truncated header"):
        read_idx(path)
    path.write_bytes(gzip.compress(_idx_bytes(np.zeros(10, np.uint8)))[:-12])
    with pytest.raises(IdxFormatError, match="gzip"):
        read_idx(path)


def test_idx_dir_split_and_errors(tmp_path):
    images, labels = _write_idx_dir(tmp_path / "raw", gz=False)  # torchvision's <root>/raw layout
    got_images, got_labels = load_idx_split(tmp_path, "train")
    assert np.array_equal(got_images, images) and got_labels.dtype == np.int64
    assert np.array_equal(got_labels, labels)
    assert load_idx_split(tmp_path, "test")[0].shape == (6, 5, 4)
    os.remove(tmp_path / "raw" / "t10k-labels-idx1-ubyte")
    with pytest.raises(DatasetError, match="t10k-labels-idx1-ubyte"):
        find_idx_files(tmp_path, "val")
    # counts that disagree
    (tmp_path / "raw" / "t10k-labels-idx1-ubyte").write_bytes(_idx_bytes(np.zeros(5, np.uint8)))
    with pytest.raises(IdxFormatError, match="6 images.*5 labels"):
        load_idx_split(tmp_path, "val")


def test_build_idx_dataset_infers_name_stats_and_classes(tmp_path):
    _write_idx_dir(tmp_path / "Fashion-MNIST")
    ds, info = build_classification_dataset(tmp_path / "Fashion-MNIST", "val")
    assert isinstance(ds, ArrayClassificationDataset)
    assert info.name == "fashion_mnist" and info.mean == (0.2860,) and info.std == (0.3530,)
    assert info.classes == FASHION_MNIST_CLASSES and info.image_size == (5, 4) and info.channels == 1
    _write_idx_dir(tmp_path / "MNIST")
    _, info = build_classification_dataset(tmp_path / "MNIST", "train")
    assert info.mean == (0.1307,) and info.classes == [str(i) for i in range(10)]
    images, _ = _write_idx_dir(tmp_path / "digits_idx")
    _, info = build_classification_dataset(tmp_path / "digits_idx", "val")  # stats of the *train* split
    assert info.name == "idx" and info.classes == ["0", "1", "2"]
    assert info.mean == (round(images.mean() / 255, 4),) and info.std == (round(images.std() / 255, 4),)


@pytest.mark.skipif(not FASHION_DIR.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_real_fashion_mnist_t10k_matches_the_bundled_sample():
    images, labels = load_idx_split(FASHION_DIR, "val")
    assert images.shape == (10000, 28, 28) and np.bincount(labels).tolist() == [1000] * 10
    sample_images, sample_labels, _ = load_fashion_sample("val")
    # The bundled val split is the first 20 test images of each class (assets/README.md).
    first20 = np.concatenate([np.flatnonzero(labels == k)[:20] for k in range(10)])
    order = np.argsort(sample_labels, kind="stable")
    assert np.array_equal(sample_images[order], images[first20])


def _cifar_dir(root: Path, n=3, protocol=2) -> dict[str, tuple[np.ndarray, list[int]]]:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    batches = {}
    for i, name in enumerate([f"data_batch_{j}" for j in range(1, 6)] + ["test_batch"]):
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = [(i + k) % 10 for k in range(n)]
        with open(root / name, "wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"data": data, b"labels": labels}, f, protocol=protocol)
        batches[name] = (data, labels)
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    with open(root / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": names, b"num_vis": 3072}, f, protocol=protocol)
    return batches


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_cifar_batches_load_in_chw_order(tmp_path, protocol):
    batches = _cifar_dir(tmp_path / "cifar-10-batches-py", protocol=protocol)
    images, labels, classes = load_cifar10_split(tmp_path, "train")  # the parent folder works too
    assert images.shape == (15, 3, 32, 32) and images.dtype == np.uint8 and classes[1] == "automobile"
    data, lab = batches["data_batch_2"]
    # row layout: 1024 red, 1024 green, 1024 blue values, each row-major 32x32
    assert images[3, 1, 2, 5] == data[0, 1024 + 2 * 32 + 5]
    assert images[5, 2, 31, 31] == data[2, 3071]
    assert labels[3:6].tolist() == lab
    ds, info = build_classification_dataset(tmp_path, "val")
    assert len(ds) == 3 and info.name == "cifar10" and info.mean == (0.4914, 0.4822, 0.4465)
    assert info.channels == 3 and info.image_size == (32, 32)
    assert torch.equal(ds[0][0], torch.from_numpy(batches["test_batch"][0][0].reshape(3, 32, 32)))


def test_cifar_missing_batch_is_named(tmp_path):
    _cifar_dir(tmp_path)
    os.remove(tmp_path / "data_batch_3")
    with pytest.raises(DatasetError, match="missing data_batch_3"):
        load_cifar10_split(tmp_path, "train")
    assert load_cifar10_split(tmp_path, "val")[0].shape == (3, 3, 32, 32)


def test_cifar_rejects_foreign_pickles_and_bad_shapes(tmp_path):
    _cifar_dir(tmp_path)

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    with open(tmp_path / "test_batch", "wb") as f:
        pickle.dump({b"data": Evil(), b"labels": []}, f)
    with pytest.raises(CifarFormatError, match="not allowed"):
        load_cifar10_split(tmp_path, "val")
    with open(tmp_path / "test_batch", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, f)
    with pytest.raises(CifarFormatError, match=r"test_batch: data must be uint8 \[N, 3072\]"):
        load_cifar10_split(tmp_path, "val")


def test_bundled_sample_and_builder():
    images, labels, classes = load_fashion_sample("train")
    assert images.shape == (1000, 28, 28) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == [100] * 10 and classes == FASHION_MNIST_CLASSES
    ds, info = build_classification_dataset("fashion_mnist_sample", "val")
    assert len(ds) == 200 and ds.images.shape == (200, 1, 28, 28) and ds.labels.dtype == torch.int64
    assert info.mean == (0.2860,) and info.num_classes == 10 and info.image_size == (28, 28)
    image, label = ds[7]
    assert image.dtype == torch.uint8 and torch.equal(image[0], torch.from_numpy(load_fashion_sample("val")[0][7]))
    assert label == ds.targets[7]
    with pytest.raises(DatasetError, match="unknown split"):
        load_fashion_sample("holdout")
    with pytest.raises(DatasetError, match="unknown split"):
        build_classification_dataset("fashion_mnist_sample", "dev")


def test_array_dataset_validates_input():
    with pytest.raises(DatasetError, match="uint8"):
        ArrayClassificationDataset(np.zeros((2, 4, 4), np.float32), [0, 1], ["a", "b"])
    with pytest.raises(DatasetError, match="2 classes"):
        ArrayClassificationDataset(np.zeros((2, 4, 4), np.uint8), [0, 2], ["a", "b"])
    with pytest.raises(DatasetError, match="labels of shape"):
        ArrayClassificationDataset(np.zeros((2, 4, 4), np.uint8), [0], ["a", "b"])
