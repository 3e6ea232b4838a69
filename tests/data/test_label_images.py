"""Instance label images -> COCO instances (``cvzoo data from-labels``): ids become objects with exact masks,
tiles split deterministically, deep images are rescaled, mismatched pairs are named; ``cvzoo data check``
checks each split of a COCO folder."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cvzoo.cli.main import main
from cvzoo.data.formats._common import AnnotationFormatError
from cvzoo.data.formats.coco import read_coco
from cvzoo.data.formats.label_images import (
    pair_label_images,
    tile_origins,
    to_uint8,
    write_label_image_dataset,
)
from cvzoo.ops.masks import rle_decode


def _label_map() -> np.ndarray:
    ids = np.zeros((64, 96), np.uint16)
    ids[4:14, 6:20] = 7        # inside tile (0, 0)
    ids[20:40, 40:56] = 300    # crosses the tile border at x = 48: one part in each of two tiles
    ids[50:52, 90:92] = 9      # 4 pixels: dropped with min_area 10
    return ids


def _write_pair(folder, name="cells", depth=np.uint16):
    folder.mkdir(parents=True, exist_ok=True)
    pixels = (np.arange(64 * 96).reshape(64, 96) % 1000).astype(depth)
    Image.fromarray(pixels).save(folder / f"{name}.tif")
    Image.fromarray(_label_map()).save(folder / f"{name}_mask.tif")
    return folder / f"{name}.tif", folder / f"{name}_mask.tif"


def test_every_id_becomes_an_object_with_its_exact_mask(tmp_path):
    image, labels = _write_pair(tmp_path / "src")
    out = write_label_image_dataset(pair_label_images([image], [labels]), tmp_path / "out", val_fraction=0.5,
                                    class_name="nucleus")
    train = read_coco(str(out / "annotations" / "instances_train.json"))
    assert train.class_names == ["nucleus"] and len(train.images) == 1  # the whole image (no tiles) -> train
    (annotation,) = train.images
    ids = _label_map()
    masks = [rle_decode(rle) for rle in annotation.rles]
    assert [m.sum() for m in masks] == [(ids == 7).sum(), (ids == 300).sum()]  # id 9 is under min_area
    np.testing.assert_array_equal(masks[1], ids == 300)
    np.testing.assert_allclose(annotation.boxes, [[6, 4, 20, 14], [40, 20, 56, 40]])
    saved = np.asarray(Image.open(out / "images" / "train" / "cells.png"))
    assert saved.dtype == np.uint8 and saved.shape == (64, 96)


def test_tiles_cut_objects_at_their_borders_and_split_in_a_fixed_pattern(tmp_path):
    image, labels = _write_pair(tmp_path / "src")
    out = write_label_image_dataset(pair_label_images([image], [labels]), tmp_path / "out", tile=48,
                                    val_fraction=0.5)
    assert tile_origins(64, 96, 48) == [(0, 0), (0, 48), (16, 0), (16, 48)]  # last row shifted back inside
    train = read_coco(str(out / "annotations" / "instances_train.json"))
    val = read_coco(str(out / "annotations" / "instances_val.json"))
    assert [i.file.split("/")[-1] for i in train.images] == ["cells_0_0.png", "cells_16_0.png"]
    assert [i.file.split("/")[-1] for i in val.images] == ["cells_0_48.png", "cells_16_48.png"]
    # Id 300 spans x 40..56: 8 columns in the left tiles, 8 in the right ones.
    left = train.images[0]
    assert sorted(int(a) for a in left.areas) == [10 * 14, 8 * 20]
    right = val.images[0]
    np.testing.assert_allclose(right.boxes, [[0, 20, 8, 40]])


def test_deep_images_are_scaled_between_percentiles_not_shifted():
    pixels = np.linspace(0, 235, 10_000).astype(np.uint16).reshape(100, 100)  # values of an 8-bit range in 16 bits
    scaled = to_uint8(pixels)
    assert scaled.max() == 255 and scaled.min() == 0  # a >> 8 shift would make it all 0
    assert to_uint8(np.full((4, 4), 7, np.uint8)).max() == 7  # 8-bit images pass unchanged


def test_pairs_from_folders_and_bad_pairs_are_named(tmp_path):
    _write_pair(tmp_path / "images", "a")
    (tmp_path / "labels").mkdir()
    (tmp_path / "images" / "a_mask.tif").rename(tmp_path / "labels" / "a.tif")
    pairs = pair_label_images([tmp_path / "images"], [tmp_path / "labels"])
    assert [(p.image.name, p.labels.name) for p in pairs] == [("a.tif", "a.tif")]
    with pytest.raises(AnnotationFormatError, match="2 images but 1 label images"):
        pair_label_images([tmp_path / "x.png", tmp_path / "y.png"], [tmp_path / "z.png"])
    small = tmp_path / "small.png"
    Image.fromarray(np.zeros((10, 12), np.uint8)).save(small)
    with pytest.raises(AnnotationFormatError, match=r"is 96x64 but its label image .*small.png is 12x10"):
        write_label_image_dataset(pair_label_images([tmp_path / "images" / "a.tif"], [small]), tmp_path / "o")
    colour = tmp_path / "colour.png"
    Image.fromarray(np.zeros((64, 96, 3), np.uint8)).save(colour)
    with pytest.raises(AnnotationFormatError, match="one channel of integer ids, got shape"):
        write_label_image_dataset(pair_label_images([tmp_path / "images" / "a.tif"], [colour]), tmp_path / "o2")


def test_cli_from_labels_then_check_every_split(tmp_path, capsys):
    image, labels = _write_pair(tmp_path / "src")
    out = tmp_path / "nuclei"
    assert main(["data", "from-labels", str(out), "--images", str(image), "--labels", str(labels), "--tile", "48",
                 "--class", "nucleus"]) == 0
    assert "wrote 1 image(s)" in capsys.readouterr().out
    assert main(["data", "check", str(out)]) == 0
    report = capsys.readouterr().out
    assert "== split: train" in report and "== split: val" in report and "nucleus" in report
    assert main(["data", "from-labels", str(out), "--images", str(image), "--labels", str(labels)]) != 0
    assert "exists" in capsys.readouterr().err
