"""Segmentation data: the five layouts on tiny generated folders, every bad-input path, joint transforms."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from cvzoo.data.datasets.segmentation import (
    SegmentationDataset,
    SegmentationEvalTransform,
    SegmentationTrainTransform,
    detect_layout,
    load_segmentation_split,
    pad_collate,
    read_mask,
)
from cvzoo.data.images import DatasetError, MissingDataError
from cvzoo.ops import masks as rle_ops

# Many small ops: one compute thread (see tests/conftest.py).
pytestmark = pytest.mark.usefixtures("one_thread")


def _image(path, width, height, seed=0):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(path)


def _index_png(path, array):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.asarray(array, np.uint8)).save(path)  # mode "L": values are the classes


def _folders(root, classes="background\ncat\ndog\n", n=4, size=(12, 10)):
    """images/ + masks/ with ``n`` samples of ``size`` (width, height); mask value = column band."""
    width, height = size
    for i in range(n):
        _image(f"{root}/images/s{i}.png", width, height, seed=i)
        mask = np.zeros((height, width), np.uint8)
        mask[:, 4:8], mask[:, 8:] = 1, 2
        _index_png(f"{root}/masks/s{i}.png", mask)
    (root / "classes.txt").write_text(classes)
    return root


# ---------------------------------------------------------------------------------------------- layouts
def test_voc_layout_from_the_synthetic_writer(voc_scenes):
    assert detect_layout(str(voc_scenes)) == "voc"
    train = load_segmentation_split(str(voc_scenes), "train")
    val = load_segmentation_split(str(voc_scenes), "val", class_names=train.class_names)
    assert train.class_names == ["background", "trouser", "bag"] and len(train.samples) == 120
    assert len(val.samples) == 30
    image, mask = SegmentationDataset(train)[0]
    assert image.dtype == torch.uint8 and image.shape == (3, 64, 64)
    assert mask.dtype == torch.int64 and mask.shape == (64, 64)
    assert set(mask.unique().tolist()) <= {0, 1, 2, 255} and (mask > 0).any()
    with pytest.raises(DatasetError, match="differ from the expected"):
        load_segmentation_split(str(voc_scenes), "val", class_names=["background", "x"])


def test_images_masks_layout_with_fraction_split(tmp_path):
    root = _folders(tmp_path, n=10)
    assert detect_layout(str(root)) == "folders"
    train = load_segmentation_split(str(root), "train", val_fraction=0.3, seed=1)
    val = load_segmentation_split(str(root), "val", val_fraction=0.3, seed=1)
    assert len(train.samples) == 7 and len(val.samples) == 3
    assert not {s.image for s in train.samples} & {s.image for s in val.samples}
    _, mask = SegmentationDataset(val)[0]
    assert mask[:, 5].tolist() == [1] * 10 and mask[:, 9].tolist() == [2] * 10
    with pytest.raises(MissingDataError, match="no 'val' sub-folder"):
        load_segmentation_split(str(root), "val")


def test_coco_polygons_rle_and_crowd(tmp_path):
    for name in ("a.jpg", "b.jpg"):
        _image(str(tmp_path / "images" / name), 20, 16)
    square = np.zeros((16, 20), np.uint8)
    square[2:6, 12:18] = 1
    crowd = np.zeros((16, 20), np.uint8)
    crowd[10:14, 0:4] = 1
    data = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 20, "height": 16},
                   {"id": 2, "file_name": "b.jpg", "width": 20, "height": 16}],
        "categories": [{"id": 7, "name": "dog"}, {"id": 3, "name": "cat"}],
        "annotations": [
            # a big polygon (cat) with a smaller dog polygon on top of it
            {"id": 1, "image_id": 1, "category_id": 3, "bbox": [0, 0, 10, 10], "iscrowd": 0,
             "segmentation": [[0, 0, 9, 0, 9, 9, 0, 9]]},
            {"id": 2, "image_id": 1, "category_id": 7, "bbox": [2, 2, 3, 3], "iscrowd": 0,
             "segmentation": [[2, 2, 4, 2, 4, 4, 2, 4]]},
            {"id": 3, "image_id": 1, "category_id": 7, "bbox": [12, 2, 6, 4], "iscrowd": 0,
             "segmentation": rle_ops.rle_encode(square.astype("uint8"))},
            {"id": 4, "image_id": 1, "category_id": 3, "bbox": [0, 10, 4, 4], "iscrowd": 1,
             "segmentation": rle_ops.rle_encode(crowd.astype("uint8"), compressed=False)},
        ],
    }
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "instances_train.json").write_text(json.dumps(data))
    assert detect_layout(str(tmp_path)) == "coco"
    source = load_segmentation_split(str(tmp_path), "train")
    assert source.class_names == ["background", "cat", "dog"]  # category ids 3 < 7
    dataset = SegmentationDataset(source)
    _, mask = dataset[[os.path.basename(s.image) for s in source.samples].index("a.jpg")]
    assert mask[8, 8] == 1 and mask[3, 3] == 2  # the small dog stays on top of the large cat
    assert mask[3, 14] == 2 and mask[12, 1] == 255 and mask[15, 19] == 0
    _, empty = dataset[[os.path.basename(s.image) for s in source.samples].index("b.jpg")]
    assert int(empty.sum()) == 0  # an image without annotations is all background
    with pytest.raises(MissingDataError, match="split 'val'"):
        load_segmentation_split(str(tmp_path), "val")


def test_labelme_folder(tmp_path):
    _image(str(tmp_path / "a.png"), 20, 16)
    shapes = [
        {"label": "_background_", "shape_type": "polygon", "points": [[0, 0], [19, 0], [19, 15], [0, 15]]},
        {"label": "road", "shape_type": "polygon", "points": [[0, 10], [19, 10], [19, 15], [0, 15]]},
        {"label": "car", "shape_type": "rectangle", "points": [[2, 2], [6, 5]]},
    ]
    record = {"imagePath": "a.png", "imageHeight": 16, "imageWidth": 20, "shapes": shapes}
    (tmp_path / "a.json").write_text(json.dumps(record))
    assert detect_layout(str(tmp_path)) == "labelme"
    source = load_segmentation_split(str(tmp_path), "train")
    assert source.class_names == ["background", "car", "road"]
    _, mask = SegmentationDataset(source)[0]
    assert mask[12, 5] == 2 and mask[3, 4] == 1 and mask[7, 15] == 0


def test_yolo_segment_yaml(tmp_path):
    for split in ("train", "val"):
        _image(str(tmp_path / "images" / split / "a.jpg"), 20, 10)
        (tmp_path / "labels" / split).mkdir(parents=True)
        (tmp_path / "labels" / split / "a.txt").write_text("1 0.5 0.0 0.95 0.0 0.95 0.9 0.5 0.9\n")
    (tmp_path / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/val\nnames: [person, boat]\n")
    source = load_segmentation_split(str(tmp_path / "data.yaml"), "val")
    assert source.layout == "yolo" and source.class_names == ["background", "person", "boat"]
    _, mask = SegmentationDataset(source)[0]
    assert mask[4, 15] == 2 and mask[4, 3] == 0


# -------------------------------------------------------------------------------------------- bad input
def test_mask_size_differs_from_image(tmp_path):
    root = _folders(tmp_path, n=2)
    _index_png(f"{root}/masks/s1.png", np.zeros((9, 12)))
    dataset = SegmentationDataset(load_segmentation_split(str(root), "train"))
    with pytest.raises(DatasetError, match=r"masks/s1\.png is 12x9 but image .*images/s1\.png is 12x10"):
        dataset[1]


def test_values_outside_the_class_list(tmp_path):
    root = _folders(tmp_path, classes="background\ncat\n", n=1)  # masks hold 0, 1 and 2
    source = load_segmentation_split(str(root), "train")
    with pytest.raises(DatasetError, match=r"s0\.png: mask values \[2\] are not classes 0\.\.1"):
        SegmentationDataset(source)[0]
    _, mask = SegmentationDataset(source, ignore_unknown=True)[0]
    assert set(mask.unique().tolist()) == {0, 1, 255}


def test_rgb_colour_masks_need_a_palette(tmp_path):
    root = _folders(tmp_path, n=1)
    colours = np.array([[0, 0, 0], [200, 0, 0], [0, 200, 0]], np.uint8)
    index = np.array(Image.open(root / "masks" / "s0.png"))
    Image.fromarray(colours[index]).save(root / "masks" / "s0.png")
    with pytest.raises(DatasetError, match="RGB colour mask"):
        SegmentationDataset(load_segmentation_split(str(root), "train"))[0]
    (root / "classes.txt").write_text("background 0 0 0\ncat 200 0 0\ndog 0 200 0\n")
    _, mask = SegmentationDataset(load_segmentation_split(str(root), "train"))[0]
    np.testing.assert_array_equal(mask.numpy(), index)
    Image.fromarray(np.full((10, 12, 3), 77, np.uint8)).save(root / "masks" / "s0.png")
    with pytest.raises(DatasetError, match="not classes 0..2"):
        read_mask(str(root / "masks" / "s0.png"), 3, colours)


def test_binary_and_16_bit_masks(tmp_path):
    """1-bit ("1") masks hold 0/1 and 16-bit ("I;16") TIFF/PNG masks their values, as class indices."""
    binary = np.zeros((6, 8), bool)
    binary[1:4, 2:6] = True
    Image.fromarray(binary).save(tmp_path / "bin.png")
    assert Image.open(tmp_path / "bin.png").mode == "1"
    np.testing.assert_array_equal(read_mask(str(tmp_path / "bin.png"), 2), binary.astype(np.int64))
    for suffix in ("png", "tif"):
        Image.fromarray(binary.astype(np.uint16) * 2).save(tmp_path / f"wide.{suffix}")
        assert Image.open(tmp_path / f"wide.{suffix}").mode.startswith("I;16")
        np.testing.assert_array_equal(read_mask(str(tmp_path / f"wide.{suffix}"), 3), binary * 2)
    with pytest.raises(DatasetError, match=r"wide\.tif: mask values \[2\] are not classes 0\.\.1"):
        read_mask(str(tmp_path / "wide.tif"), 2)


def test_two_class_masks_saved_as_0_255_are_warned_about(tmp_path):
    mask = np.zeros((6, 8), np.uint8)
    mask[2:4, 2:5] = 255
    _index_png(f"{tmp_path}/m.png", mask)
    with pytest.warns(UserWarning, match="hold 0 and 255 but no 1.*save binary masks as 0/1"):
        values = read_mask(str(tmp_path / "m.png"), 2)
    assert set(np.unique(values).tolist()) == {0, 255}  # the rule stands: 255 = ignore
    mask[0, 0] = 1  # a real foreground pixel next to void: no warning
    _index_png(f"{tmp_path}/m.png", mask)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_mask(str(tmp_path / "m.png"), 2)
        read_mask(str(tmp_path / "m.png"), 3)


def test_images_without_masks(tmp_path):
    root = _folders(tmp_path, n=3)
    os.remove(root / "masks" / "s2.png")
    with pytest.raises(DatasetError, match=r"1 image\(s\) have no mask: .*s2\.png"):
        load_segmentation_split(str(root), "train")
    with pytest.warns(UserWarning, match=r"skipping 1 image\(s\) without a mask: .*s2\.png"):
        source = load_segmentation_split(str(root), "train", allow_missing_masks=True)
    assert len(source.samples) == 2 and source.skipped[0].endswith("s2.png")


def test_empty_validation_split(voc_scenes, tmp_path):
    import shutil

    copy = tmp_path / "voc"
    shutil.copytree(voc_scenes, copy)
    (copy / "ImageSets" / "Segmentation" / "val.txt").write_text("\n")
    with pytest.raises(DatasetError, match=r"val\.txt: the 'val' split lists no images"):
        load_segmentation_split(str(copy), "val")
    root = _folders(tmp_path / "f", n=2)
    (root / "images" / "val").mkdir()
    with pytest.raises(DatasetError, match="the 'val' split has no images"):
        load_segmentation_split(str(root), "val")
    with pytest.raises(DatasetError, match="no segmentation layout"):
        detect_layout(str(tmp_path / "f" / "images"))


# ------------------------------------------------------------------------------------------ transforms
def _striped():
    """Image whose red channel encodes the class map (class * 100), so alignment can be checked."""
    mask = torch.zeros(40, 50, dtype=torch.int64)
    mask[:, 10:20], mask[5:15, 30:] = 1, 2
    image = torch.stack([mask * 100, torch.full_like(mask, 50), torch.zeros_like(mask)]).to(torch.uint8)
    return image, mask


def test_train_transform_keeps_image_and_mask_aligned():
    torch.manual_seed(0)
    image, mask = _striped()
    transform = SegmentationTrainTransform(32, scale=(1.25, 1.25), hflip=1.0, mean=(0, 0, 0), std=(1, 1, 1))
    for _ in range(5):
        out, out_mask = transform(image, mask)
        assert out.shape == (3, 32, 32) and out_mask.shape == (32, 32) and out.dtype == torch.float32
        red = out[0] * 255
        # Away from label edges (bilinear vs nearest), the red channel still encodes the class.
        agree = (red - out_mask * 100).abs() < 1
        assert agree.float().mean() > 0.85


def test_train_transform_vertical_flip():
    image, mask = _striped()
    flip = SegmentationTrainTransform(0, scale=(1.0, 1.0), hflip=0.0, vflip=1.0, mean=(0, 0, 0), std=(1, 1, 1))
    out, out_mask = flip(image, mask)
    torch.testing.assert_close(out_mask, mask.flip(0))
    torch.testing.assert_close(out, image.flip(1).float() / 255)
    keep = SegmentationTrainTransform(0, scale=(1.0, 1.0), hflip=0.0, vflip=0.0, mean=(0, 0, 0), std=(1, 1, 1))
    torch.testing.assert_close(keep(image, mask)[1], mask)
    with pytest.raises(ValueError, match="vflip is a probability"):
        SegmentationTrainTransform(32, vflip=1.5)


def test_train_transform_pads_masks_with_ignore():
    torch.manual_seed(0)
    image, mask = _striped()
    out, out_mask = SegmentationTrainTransform(64, scale=(0.5, 0.5), hflip=0.0)(image, mask)
    assert out.shape == (3, 64, 64)
    assert (out_mask[32:, :] == 255).all() and (out_mask[:, 40:] == 255).all()
    assert (out[:, 40:, 50:] == 0).all()
    with pytest.raises(ValueError, match="scale"):
        SegmentationTrainTransform(32, scale=(2.0, 1.0))


def test_eval_transform_and_pad_collate():
    image, mask = _striped()
    small, kept = SegmentationEvalTransform(short_side=20)(image, mask)
    assert small.shape == (3, 20, 25) and kept.shape == (40, 50)
    other = (torch.zeros(3, 30, 20), torch.zeros(30, 20, dtype=torch.int64))
    images, masks, sizes = pad_collate([(small, kept), other])
    assert images.shape == (2, 3, 30, 25) and masks.shape == (2, 40, 50)
    assert sizes.tolist() == [[20, 25, 40, 50], [30, 20, 30, 20]]
    assert (masks[1, 30:] == 255).all() and (masks[1, :, 20:] == 255).all() and (images[0, :, 20:] == 0).all()
