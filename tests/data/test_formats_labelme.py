"""Labelme JSON folders: rectangles, polygons, circles, skipped shapes and error paths."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from cvzoo.data.formats._common import AnnotationFormatError, MissingSplitError
from cvzoo.data.formats.auto import load_detection_dataset
from cvzoo.data.formats.labelme import read_labelme


def labelme_file(folder, name, shapes, size=(80, 60)):
    Image.new("RGB", size).save(os.path.join(folder, f"{name}.jpg"))
    data = {"version": "5.4.1", "flags": {}, "shapes": shapes, "imagePath": f"{name}.jpg", "imageData": None,
            "imageHeight": size[1], "imageWidth": size[0]}
    path = os.path.join(folder, f"{name}.json")
    with open(path, "w") as f:
        json.dump(data, f, indent=2)
    return path


def shape(label, kind, points):
    return {"label": label, "points": points, "group_id": None, "shape_type": kind, "flags": {}}


def test_read_folder(tmp_path):
    labelme_file(str(tmp_path), "one", [
        shape("dog", "rectangle", [[30, 40], [10, 5]]),  # corners in any order
        shape("cat", "polygon", [[1, 2], [20, 2], [10, 30]]),
        shape("cat", "point", [[5, 5]]),  # no area: skipped
        shape("ball", "circle", [[40, 30], [43, 34]]),
    ])
    os.makedirs(tmp_path / "sub")
    labelme_file(str(tmp_path / "sub"), "two", [])
    ds = read_labelme(str(tmp_path))
    assert ds.class_names == ["ball", "cat", "dog"] and len(ds) == 2
    one, two = ds.images
    np.testing.assert_allclose(one.boxes, [[10, 5, 30, 40], [1, 2, 20, 30], [35, 25, 45, 35]])
    assert one.labels.tolist() == [2, 1, 0]
    assert one.polygons[1][0].shape == (3, 2) and one.polygons[0] == []
    assert len(two) == 0 and os.path.isfile(ds.image_path(two)) and two.file == os.path.join("sub", "two.jpg")
    assert (one.width, one.height) == (80, 60)


def test_given_classes_and_unknown_label(tmp_path):
    labelme_file(str(tmp_path), "one", [shape("dog", "rectangle", [[1, 1], [5, 5]])])
    assert read_labelme(str(tmp_path), class_names=["cat", "dog"]).images[0].labels.tolist() == [1]
    with pytest.raises(AnnotationFormatError, match=r"one\.json: label 'dog' is not in \['cat'\]"):
        read_labelme(str(tmp_path), class_names=["cat"])


@pytest.mark.parametrize("bad_shape, message", [
    (shape("dog", "mask", [[1, 1], [2, 2]]), r"shape 0 \('dog', mask\) with 2 points is not supported"),
    (shape("dog", "rectangle", [[1, 1]]), "with 1 points is not supported"),
    ({"label": "dog", "shape_type": "polygon"}, "has no valid 'points'"),
])
def test_bad_shapes(tmp_path, bad_shape, message):
    labelme_file(str(tmp_path), "one", [bad_shape])
    with pytest.raises(AnnotationFormatError, match=message):
        read_labelme(str(tmp_path))


def test_non_finite_point_names_file_and_shape(tmp_path):
    labelme_file(str(tmp_path), "one", [shape("dog", "rectangle", [[1, 1], [5, 5]]),
                                        shape("cat", "polygon", [[1, 2], [float("nan"), 2], [10, 30]])])
    with pytest.raises(AnnotationFormatError, match=r"one\.json: shape 1 \('cat', polygon\) has a non-finite point"):
        read_labelme(str(tmp_path))
    issues = []
    ds = read_labelme(str(tmp_path), class_names=["cat", "dog"], issues=issues)
    assert ds.images[0].labels.tolist() == [1] and [i.kind for i in issues] == ["non_finite"]


def test_malformed_and_incomplete_json(tmp_path):
    path = labelme_file(str(tmp_path), "one", [])
    with open(path) as f:
        lines = f.read().splitlines()
    lines[2] = lines[2] + ","  # trailing comma after a value on line 3
    with open(path, "w") as f:
        f.write("\n".join(lines))
    with pytest.raises(AnnotationFormatError, match=r"one\.json: malformed JSON at line \d+"):
        read_labelme(str(tmp_path))
    with open(path, "w") as f:
        json.dump({"shapes": [], "imagePath": "one.jpg"}, f)
    with pytest.raises(AnnotationFormatError, match="no 'imageHeight'"):
        read_labelme(path)


def test_flat_folder_never_validates_on_its_training_images(tmp_path):
    for i in range(10):
        labelme_file(str(tmp_path), f"im{i}", [shape("dog" if i % 2 else "cat", "rectangle", [[1, 1], [5, 5]])])
    with pytest.raises(MissingSplitError, match="flat Labelme folder has no 'val' split; set data.val_fraction"):
        load_detection_dataset(str(tmp_path), "val")
    assert len(load_detection_dataset(str(tmp_path), "train")) == 10  # all of it is training data
    train = load_detection_dataset(str(tmp_path), "train", val_fraction=0.2, seed=1)
    val = load_detection_dataset(str(tmp_path), "val", val_fraction=0.2, seed=1)
    files = [i.file for i in val.images]
    assert len(train) == 8 and len(val) == 2 and not {i.file for i in train.images} & set(files)
    assert train.class_names == val.class_names == ["cat", "dog"]  # from the whole pool
    assert [i.file for i in load_detection_dataset(str(tmp_path), "val", val_fraction=0.2, seed=1).images] == files
    assert [i.file for i in load_detection_dataset(str(tmp_path), "test", val_fraction=0.2, seed=1).images] == files


def test_val_fraction_is_refused_where_splits_are_named(tmp_path):
    os.makedirs(tmp_path / "train")
    labelme_file(str(tmp_path / "train"), "a", [])
    with pytest.raises(AnnotationFormatError, match="has a train/ folder; val_fraction applies to a flat Labelme"):
        load_detection_dataset(str(tmp_path), "train", val_fraction=0.2)
    (tmp_path / "classes.txt").write_text("dog\n")
    with pytest.raises(AnnotationFormatError, match="val_fraction splits a flat Labelme folder only; yolo"):
        load_detection_dataset(str(tmp_path), "train", format="yolo", val_fraction=0.2)

