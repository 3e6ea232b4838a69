"""The synthetic scene generator and its YOLO / VOC-segmentation writers."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest
import yaml
from PIL import Image

from cvzoo.data import synthetic
from cvzoo.data.synthetic import (
    SceneConfig,
    SyntheticConfigError,
    SyntheticScenes,
    class_names,
    generate_dataset,
    generate_scene,
    scene_rng,
    semantic_map,
    voc_palette,
    write_voc_segmentation,
    write_yolo_dataset,
)

SMALL = SceneConfig(image_size=(96, 128), objects_per_image=(2, 5), scale_range=(0.2, 0.5))


def test_same_seed_gives_byte_identical_scenes():
    a_images, a = generate_dataset(4, SMALL, seed=7)
    b_images, b = generate_dataset(4, SMALL, seed=7)
    c_images, _ = generate_dataset(4, SMALL, seed=8)
    for x, y in zip(a_images, b_images):
        assert x.tobytes() == y.tobytes()
    for x, y in zip(a.images, b.images):
        assert x.boxes.tobytes() == y.boxes.tobytes() and x.labels.tobytes() == y.labels.tobytes()
        assert x.masks.tobytes() == y.masks.tobytes()
    assert any(x.tobytes() != y.tobytes() for x, y in zip(a_images, c_images))
    # Scene i does not depend on the scenes before it.
    np.testing.assert_array_equal(SyntheticScenes(10, SMALL, seed=7)[3][0], a_images[3])


def test_annotation_contract_and_tight_boxes_of_visible_pixels():
    images, anns = generate_dataset(8, SMALL, seed=1)
    assert anns.class_names == class_names(SMALL) and len(anns.class_names) == 10
    total = 0
    for image, ann in zip(images, anns.images):
        assert image.shape == (96, 128, 3) and image.dtype == np.uint8
        assert ann.boxes.dtype == np.float32 and ann.labels.dtype == np.int64
        assert ann.masks.shape == (len(ann), 96, 128) and ann.masks.dtype == np.uint8
        assert (ann.masks.sum(axis=0) <= 1).all()  # occlusion resolved: visible pixels belong to one object
        for box, mask in zip(ann.boxes, ann.masks):
            rows, cols = np.nonzero(mask)
            np.testing.assert_array_equal(box, [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1])
        assert ((ann.labels >= 0) & (ann.labels < 10)).all()
        total += len(ann)
    assert total >= 8 * 2 * 0.8  # objects are rarely skipped at these overlap limits


def test_masks_cover_exactly_the_object_pixels_on_a_plain_background():
    config = SceneConfig(image_size=(80, 80), background="plain", objects_per_image=(3, 3), scale_range=(0.3, 0.5))
    for i in range(4):
        image, ann = generate_scene(scene_rng(0, "train", i), config)
        union = ann.masks.any(axis=0)
        background = image[~union]
        assert (background == background[0]).all()  # nothing drawn outside the masks
        # Inside the masks the object colour replaced the background (almost) everywhere.
        assert (image[union] != background[0]).any(axis=1).mean() > 0.97


def _max_pairwise_iou(boxes: np.ndarray) -> float:
    best = 0.0
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            wh = np.clip(np.minimum(boxes[i, 2:], boxes[j, 2:]) - np.maximum(boxes[i, :2], boxes[j, :2]), 0, None)
            inter = wh.prod()
            union = np.prod(boxes[i, 2:] - boxes[i, :2]) + np.prod(boxes[j, 2:] - boxes[j, :2]) - inter
            best = max(best, inter / union)
    return best


def test_max_overlap_controls_object_overlap():
    crowded = dict(image_size=(64, 64), objects_per_image=(5, 5), scale_range=(0.3, 0.6))
    _, apart = generate_dataset(6, SceneConfig(max_overlap=0.0, **crowded), seed=2)
    assert all(_max_pairwise_iou(a.boxes) == 0 for a in apart.images)
    _, piled = generate_dataset(6, SceneConfig(max_overlap=1.0, min_visible=0.0, **crowded), seed=2)
    assert max(_max_pairwise_iou(a.boxes) for a in piled.images) > 0.3


def test_class_subset_relabels_and_splits_use_disjoint_items():
    config = SceneConfig(classes=["sneaker", "bag", 0])
    assert class_names(config) == ["sneaker", "bag", "t-shirt_top"]
    _, anns = generate_dataset(5, config, seed=0, split="val")
    assert set(np.concatenate([a.labels for a in anns.images]).tolist()) <= {0, 1, 2}
    train_items, train_labels = synthetic._items("train", config.class_ids)
    val_items, _ = synthetic._items("val", config.class_ids)
    assert len(train_items) == 300 and len(val_items) == 60 and set(train_labels.tolist()) == {0, 1, 2}
    train_set = {x.tobytes() for x in train_items}
    assert not any(x.tobytes() in train_set for x in val_items)


def test_size_range_draws_sizes_within_bounds():
    config = SceneConfig(size_range=(64, 160), objects_per_image=(1, 2))
    shapes = {generate_scene(scene_rng(0, "train", i), config)[0].shape[:2] for i in range(6)}
    assert len(shapes) > 1 and all(64 <= h <= 160 and 64 <= w <= 160 for h, w in shapes)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"scale_range": (0.5, 0.1)}, "scale_range"),
        ({"classes": ["sneaker", "unicorn"]}, "unicorn"),
        ({"classes": [3, 3]}, "duplicates"),
        ({"image_size": (16, 320)}, "image_size"),
        ({"background": "marble"}, "background"),
        ({"objects_per_image": (3, 1)}, "objects_per_image"),
    ],
)
def test_bad_config_raises(kwargs, match):
    with pytest.raises(SyntheticConfigError, match=match):
        SceneConfig(**kwargs)


def test_bad_split_raises():
    with pytest.raises(SyntheticConfigError, match="split"):
        generate_dataset(1, SMALL, split="test")


def test_write_yolo_dataset_round_trips_boxes(tmp_path):
    yaml_path = write_yolo_dataset(tmp_path / "yolo", 3, 2, SMALL, seed=4)
    data = yaml.safe_load(yaml_path.read_text())
    assert data["train"] == "images/train" and data["val"] == "images/val" and data["nc"] == 10
    assert data["names"][7] == "sneaker" and data["path"] == str((tmp_path / "yolo").resolve())
    assert len(list((tmp_path / "yolo/images/train").glob("*.jpg"))) == 3
    _, anns = generate_dataset(2, SMALL, seed=4, split="val")
    for i, ann in enumerate(anns.images):
        rows = np.loadtxt(tmp_path / f"yolo/labels/val/{i:06d}.txt", ndmin=2)
        np.testing.assert_array_equal(rows[:, 0], ann.labels)
        cx, cy, w, h = rows[:, 1:].T * [[128], [96], [128], [96]]
        np.testing.assert_allclose(np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1), ann.boxes,
                                   atol=1e-3)
        assert Image.open(tmp_path / f"yolo/images/val/{i:06d}.jpg").size == (128, 96)


def test_write_voc_segmentation_layout_and_class_maps(tmp_path):
    root = write_voc_segmentation(tmp_path / "voc", 2, 2, SMALL, seed=5, boundary_width=1)
    assert (root / "ImageSets/Segmentation/val.txt").read_text().split() == ["val_000000", "val_000001"]
    assert (root / "class_names.txt").read_text().split()[:2] == ["background", "t-shirt_top"]
    _, anns = generate_dataset(2, SMALL, seed=5, split="train")
    for i, ann in enumerate(anns.images):
        png = Image.open(root / f"SegmentationClass/train_{i:06d}.png")
        assert png.mode == "P" and png.getpalette()[3:6] == [128, 0, 0]
        classes = np.array(png)
        np.testing.assert_array_equal(classes, semantic_map(ann, boundary_width=1))
        assert set(np.unique(classes)) <= set(range(11)) | {255} and (classes == 255).any()
        instances = np.array(Image.open(root / f"SegmentationObject/train_{i:06d}.png"))
        assert instances.max() == 255 and set(np.unique(instances)) - {255} <= set(range(len(ann) + 1))
        # Without a band the class map is exactly label + 1 on each mask, 0 elsewhere.
        plain = semantic_map(ann)
        for mask, label in zip(ann.masks, ann.labels):
            assert (plain[mask > 0] == label + 1).all()
        assert (plain[~ann.masks.any(axis=0)] == 0).all()
        # The detection XML carries the same boxes and class names.
        xml = ET.parse(root / f"Annotations/train_{i:06d}.xml").getroot()
        names = [o.findtext("name") for o in xml.iter("object")]
        assert names == [class_names(SMALL)[k] for k in ann.labels]
        boxes = [[float(o.find("bndbox").findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")]
                 for o in xml.iter("object")]
        np.testing.assert_array_equal(np.array(boxes, np.float32).reshape(-1, 4), ann.boxes)
    assert (root / "ImageSets/Main/train.txt").read_text() == (root / "ImageSets/Segmentation/train.txt").read_text()


def test_voc_palette_known_entries():
    palette = voc_palette()
    assert palette[0].tolist() == [0, 0, 0] and palette[1].tolist() == [128, 0, 0]
    assert palette[2].tolist() == [0, 128, 0] and palette[15].tolist() == [192, 128, 128]
    assert palette[255].tolist() == [224, 224, 192]


def test_synthetic_scenes_dataset_samples():
    dataset = SyntheticScenes(5, SMALL, seed=3, with_masks=False)
    image, target = dataset[-1]
    assert len(dataset) == 5 and set(target) == {"boxes", "labels"}
    np.testing.assert_array_equal(image, dataset[4][0])
    with pytest.raises(IndexError):
        dataset[5]
