"""ImageFolder layouts: train/val trees, stratified split, class_indices.json, corrupt and empty input."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from cvzoo.data.bundled import export_sample_to_folder, load_fashion_sample
from cvzoo.data.datasets.classification import ImageFolderDataset, build_classification_dataset
from cvzoo.data.formats.image_folder import (
    image_folder_split,
    read_class_indices,
    scan_image_folder,
    stratified_split,
    write_class_indices,
)
from cvzoo.data.images import CorruptImageError, DatasetError, MissingDataError


def _write(path, value=0, size=(6, 5), mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value if mode == "L" else (value, value, value)).save(path)


def _tree(root, counts: dict[str, int]):
    for name, n in counts.items():
        for i in range(n):
            _write(root / name / f"{i:03d}.png", value=i)
    return root


def test_exported_sample_round_trips_through_image_folder(tmp_path):
    root = export_sample_to_folder(tmp_path / "fm", splits=("val",))
    images, labels, classes = load_fashion_sample("val")
    (tmp_path / "fm" / "train").mkdir()
    for name in classes:  # a one-image train tree so the train/val layout is recognised
        _write(root / "train" / name / "0.png", mode="L", size=(28, 28))
    # mode=None (default): the grey PNGs are detected from their headers and read as 1 channel
    ds, info = build_classification_dataset(root, "val", class_indices_dir=tmp_path / "out")
    assert len(ds) == 200 and info.classes == sorted(classes) and info.channels == 1
    assert info.image_size is None and info.name == "image_folder"
    # Every exported PNG decodes back to the exact array, with its class mapped by name.
    by_name = {name: i for i, name in enumerate(classes)}
    for i in (0, 57, 199):
        image, label = ds[i]
        assert image.dtype == torch.uint8 and image.shape == (1, 28, 28)
        src = int(ds.samples[i][0].rsplit("/", 1)[1].split(".")[0])
        assert by_name[info.classes[label]] == labels[src]
        assert np.array_equal(image[0].numpy(), images[src])
    mapping = json.loads((tmp_path / "out" / "class_indices.json").read_text())
    assert mapping == {name: i for i, name in enumerate(sorted(classes))}
    assert info.extra["class_indices"].endswith("class_indices.json")


def test_sorted_classes_and_case_insensitive_extensions(tmp_path):
    root = tmp_path / "tree"
    for rel in ("b/x.JPG", "b/y.Png", "b/sub/z.webp", "a/1.tiff", "a/2.BMP", "C/3.jpeg"):
        _write(root / rel)
    (root / "a" / "notes.txt").write_text("skip me")
    (root / "a" / ".hidden.png").write_bytes(b"junk")
    (root / ".cache").mkdir()
    samples, classes = scan_image_folder(root)
    assert classes == ["C", "a", "b"]
    names = [(p.rsplit("/", 1)[1], c) for p, c in samples]
    assert names == [("3.jpeg", 0), ("1.tiff", 1), ("2.BMP", 1), ("x.JPG", 2), ("y.Png", 2), ("z.webp", 2)]


def test_stratified_split_is_per_class_deterministic_and_disjoint(tmp_path):
    root = _tree(tmp_path / "one", {"cat": 10, "dog": 20, "eel": 1})
    all_samples, _ = scan_image_folder(root)
    train = image_folder_split(root, "train", val_fraction=0.2, seed=3)[0]
    val = image_folder_split(root, "val", val_fraction=0.2, seed=3)[0]
    assert sorted(train + val) == sorted(all_samples) and not set(train) & set(val)
    per_class = np.bincount([c for _, c in val], minlength=3)
    assert per_class.tolist() == [2, 4, 0]  # 20% of each class; a single-image class stays in train
    again = stratified_split(all_samples, 0.2, seed=3)
    assert again == (train, val)
    other = stratified_split(all_samples, 0.2, seed=4)[1]
    assert other != val and len(other) == len(val)


def test_val_needs_layout_or_fraction(tmp_path):
    root = _tree(tmp_path / "one", {"a": 2, "b": 2})
    assert len(image_folder_split(root, "train")[0]) == 4
    with pytest.raises(MissingDataError, match="val_fraction"):
        image_folder_split(root, "val")
    with pytest.raises(FileNotFoundError):  # a missing split is also a FileNotFoundError
        build_classification_dataset(root, "val")
    with pytest.raises(ValueError, match="val_fraction"):
        stratified_split(scan_image_folder(root)[0], 1.0)


def test_train_val_layout_uses_train_classes(tmp_path):
    root = tmp_path / "tv"
    _tree(root / "train", {"a": 2, "b": 3, "c": 1})
    _tree(root / "val", {"b": 1, "c": 2})
    samples, classes = image_folder_split(root, "val")
    assert classes == ["a", "b", "c"] and [c for _, c in samples] == [1, 2, 2]
    _tree(root / "val", {"zebra": 1})
    with pytest.raises(DatasetError, match="zebra"):
        image_folder_split(root, "val")


def test_train_without_val_folder(tmp_path):
    _tree(tmp_path / "r" / "train", {"a": 1})
    with pytest.raises(DatasetError, match="no val"):
        image_folder_split(tmp_path / "r", "train")


def test_empty_folder_and_empty_class_raise_naming_them(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match="no class sub-folders") as info:
        build_classification_dataset(empty, "train")
    assert str(empty) in str(info.value)
    root = _tree(tmp_path / "r", {"a": 2})
    (root / "b").mkdir()
    (root / "b" / "readme.txt").write_text("no images here")
    with pytest.raises(DatasetError, match="class folder has no images") as info:
        build_classification_dataset(root, "train")
    assert str(root / "b") in str(info.value)
    with pytest.raises(DatasetError, match="does not exist"):
        build_classification_dataset(tmp_path / "missing", "train")


def test_link_loop_and_link_into_the_tree_add_no_images(tmp_path):
    root = _tree(tmp_path / "r", {"a": 2, "b": 1})
    (root / "a" / "loop").symlink_to(root)  # a/loop/b/000.png would be a 'b' image labelled 'a'
    (root / "a" / "again").symlink_to(root / "b")
    (root / "b" / "dup.png").symlink_to(root / "a" / "000.png")  # a file of 'a' shown as 'b'
    samples, classes = scan_image_folder(root)
    assert [(p[len(str(root)) + 1:], c) for p, c in samples] == [("a/000.png", 0), ("a/001.png", 0), ("b/000.png", 1)]


def test_links_out_of_the_tree_are_followed_once(tmp_path):
    outside = tmp_path / "pool"
    _write(outside / "p.png")
    _write(outside / "q.png")
    (outside / "self").symlink_to(outside)  # a loop outside the tree
    root = _tree(tmp_path / "r", {"a": 1, "b": 1})
    (root / "a" / "ext").symlink_to(outside)
    (root / "a" / "ext2").symlink_to(outside)  # the same folder again: not listed twice
    (root / "b" / "x.png").symlink_to(outside / "p.png")
    (root / "b" / "y.png").symlink_to(outside / "p.png")  # one file through two links: counted once
    _write(root / ".hidden" / "h.png")  # hidden places are not scanned, so a link to one is read
    (root / "b" / "h.png").symlink_to(root / ".hidden" / "h.png")
    _write(root / "loose.png")  # nor are files outside the class folders
    (root / "b" / "loose.png").symlink_to(root / "loose.png")
    samples, classes = scan_image_folder(root)
    assert sorted(p[len(str(root)) + 1:] for p, c in samples if c == 0) == ["a/000.png", "a/ext/p.png", "a/ext/q.png"]
    assert sorted(p[len(str(root)) + 1:] for p, c in samples if c == 1) == ["b/000.png", "b/h.png", "b/loose.png",
                                                                           "b/x.png"]


def _with_corrupt(tmp_path):
    root = _tree(tmp_path / "c", {"a": 3})
    bad = root / "a" / "001.png"
    bad.write_bytes(bad.read_bytes()[:30])  # truncated PNG between two good ones
    return root, bad


def test_corrupt_image_skipped_with_warning(tmp_path):
    root, bad = _with_corrupt(tmp_path)
    with pytest.warns(UserWarning, match=str(bad)):  # met by the size/mode probe already
        ds, _ = build_classification_dataset(root, "train")
    with pytest.warns(UserWarning, match=str(bad)):
        image, label = ds[1]
    assert image[0, 0, 0].item() == 2 and label == 0  # the next valid sample (value 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once per file only
        ds[1]


def test_corrupt_image_raises_when_strict(tmp_path):
    root, bad = _with_corrupt(tmp_path)
    with pytest.raises(CorruptImageError) as info:  # the size/mode probe reads every header here
        build_classification_dataset(root, "train", strict=True)
    assert info.value.path == str(bad)
    ds = ImageFolderDataset(scan_image_folder(root)[0], ["a"], strict=True)
    assert ds[0][0].shape == (3, 5, 6)
    with pytest.raises(CorruptImageError) as info:
        ds[1]
    assert info.value.path == str(bad)
    with pytest.raises(CorruptImageError):
        ds.verify()


def test_verify_drops_corrupt_files(tmp_path):
    root, bad = _with_corrupt(tmp_path)
    ds = ImageFolderDataset(scan_image_folder(root)[0], ["a"])
    with pytest.warns(UserWarning, match="skipping corrupt image"):
        dropped = ds.verify()
    assert dropped == [str(bad)] and len(ds) == 2 and ds.targets == [0, 0]


def test_all_corrupt_raises(tmp_path):
    path = tmp_path / "x" / "a" / "0.jpg"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"nope")
    ds = ImageFolderDataset([(str(path), 0)], ["a"])
    with pytest.warns(UserWarning), pytest.raises(DatasetError, match="no decodable image"):
        ds[0]


def test_class_indices_round_trip_and_validation(tmp_path):
    path = write_class_indices(["b", "a", "ü"], tmp_path / "o")
    assert read_class_indices(path) == ["b", "a", "ü"]
    (tmp_path / "bad.json").write_text('{"a": 0, "b": 2}')
    with pytest.raises(DatasetError, match="bad.json"):
        read_class_indices(tmp_path / "bad.json")


def test_image_folder_with_transform(tmp_path):
    from cvzoo.data.augment.classify import classification_eval_transform

    root = _tree(tmp_path / "t", {"a": 1, "b": 1})
    tf = classification_eval_transform(32, channels=3)
    ds, info = build_classification_dataset(root, "train", transform=tf)
    image, label = ds[1]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32 and label == 1
    assert info.mean == (0.485, 0.456, 0.406) and ds.targets == [0, 1] and info.channels == 3


def test_mode_detection_mixed_and_forced(tmp_path):
    root = tmp_path / "m"
    _write(root / "a" / "0.png", mode="L")
    _write(root / "b" / "0.png", mode="L")
    info = build_classification_dataset(root, "train")[1]
    assert info.channels == 1 and info.mean == (0.449,) and info.std == (0.226,)
    assert build_classification_dataset(root, "train", mode="RGB")[0][0][0].shape == (3, 5, 6)
    _write(root / "b" / "1.png", value=9)  # b's first image is still grey
    assert build_classification_dataset(root, "train")[1].channels == 1
    _write(root / "c" / "0.png", value=9)  # an RGB class: the whole folder is read as RGB
    ds, info = build_classification_dataset(root, "train")
    assert info.channels == 3 and ds[0][0].shape == (3, 5, 6) and info.mean == (0.485, 0.456, 0.406)


def test_mode_is_the_majority_of_a_spread_sample_not_each_class_first_file(tmp_path):
    root = tmp_path / "m"
    for name in ("a", "b"):
        _write(root / name / "0.png", mode="L")  # a grey first file in every class
        for i in range(1, 4):
            _write(root / name / f"{i}.png", value=9)
    ds, info = build_classification_dataset(root, "train")
    assert info.channels == 3 and ds[1][0].shape == (3, 5, 6)
    assert info.native_side == 6


def test_probe_skips_a_corrupt_header_or_raises_when_strict(tmp_path):
    root = _tree(tmp_path / "p", {"a": 3})
    (root / "a" / "000.png").write_bytes(b"garbage")
    with pytest.warns(UserWarning, match=r"skipping corrupt image .*000\.png"):
        info = build_classification_dataset(root, "train")[1]
    assert info.native_side == 6 and info.channels == 3
    with pytest.raises(CorruptImageError, match=r"000\.png"):
        build_classification_dataset(root, "train", strict=True)
    for i in (1, 2):
        (root / "a" / f"{i:03d}.png").write_bytes(b"garbage")
    with pytest.warns(UserWarning), pytest.raises(DatasetError, match="none of the 3 probed images"):
        build_classification_dataset(root, "train")

