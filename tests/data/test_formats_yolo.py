"""YOLO labels and dataset YAMLs: path rule, parsing, background images, error paths, writing."""

import os

import numpy as np
import pytest
import yaml
from PIL import Image

from cvzoo.data.formats._common import AnnotationFormatError
from cvzoo.data.formats.yolo import (
    label_path_for,
    parse_label_file,
    read_yolo,
    read_yolo_yaml,
    write_yolo,
)


def make_yolo(root, split="train", labels=None, size=(100, 50)):
    """images/<split>/{a,b,c}.jpg; labels for the names given in ``labels``."""
    labels = labels if labels is not None else {"a": "0 0.5 0.5 0.2 0.4\n1 0.25 0.25 0.1 0.1\n", "b": ""}
    os.makedirs(os.path.join(root, "images", split), exist_ok=True)
    os.makedirs(os.path.join(root, "labels", split), exist_ok=True)
    for name in ("a", "b", "c"):
        Image.new("RGB", size).save(os.path.join(root, "images", split, f"{name}.jpg"))
    for name, text in labels.items():
        with open(os.path.join(root, "labels", split, f"{name}.txt"), "w") as f:
            f.write(text)
    return root


def write_yaml(path, data):
    with open(path, "w") as f:
        yaml.safe_dump(data, f)
    return str(path)


def test_label_path_rule():
    assert label_path_for("/d/images/train/x.jpg") == "/d/labels/train/x.txt"
    # Only the last /images/ changes.
    assert label_path_for("/images/set/images/val/a.b.png") == "/images/set/labels/val/a.b.txt"
    assert label_path_for("/d/imgs/x.jpeg") == "/d/imgs/x.txt"  # labelImg: next to the image


def test_read_folder_with_yaml(tmp_path):
    root = make_yolo(str(tmp_path))
    cfg = write_yaml(tmp_path / "data.yaml", {"path": ".", "train": "images/train", "names": {0: "cat", 1: "dog"}})
    ds = read_yolo(cfg, "train")
    assert ds.class_names == ["cat", "dog"] and len(ds) == 3
    a, b, c = ds.images
    np.testing.assert_allclose(a.boxes, [[40, 15, 60, 35], [20, 10, 30, 15]], atol=1e-5)
    assert a.labels.tolist() == [0, 1]
    assert len(b) == 0 and len(c) == 0  # empty label file and missing label file: background
    assert os.path.isfile(ds.image_path(a)) and ds.root == root


def test_yaml_variants(tmp_path):
    make_yolo(str(tmp_path / "ds"))
    listing = tmp_path / "ds" / "subset.txt"
    listing.write_text("./images/train/a.jpg\nimages/train/b.jpg\n")
    cfg = write_yaml(tmp_path / "ds" / "d.yaml", {"train": ["subset.txt", "images/train"], "val": "subset.txt",
                                                 "names": ["cat", "dog"], "nc": 2})
    spec = read_yolo_yaml(cfg)
    assert spec.splits == {"train": ["subset.txt", "images/train"], "val": ["subset.txt"]}
    assert len(read_yolo(cfg, "train")) == 3  # duplicates across sources removed
    assert [os.path.basename(i.file) for i in read_yolo(cfg, "val").images] == ["a.jpg", "b.jpg"]
    assert len(read_yolo(cfg, None)) == 3
    # An absolute 'path' that no longer exists falls back to the YAML's folder (moved dataset).
    cfg = write_yaml(tmp_path / "ds" / "moved.yaml", {"path": "/nonexistent/ds", "val": "subset.txt", "nc": 2})
    ds = read_yolo(cfg, "val")
    assert ds.class_names == ["class0", "class1"] and len(ds) == 2
    with pytest.raises(AnnotationFormatError, match="no split 'test'"):
        read_yolo(cfg, "test")


@pytest.mark.parametrize("data, message", [
    ({"names": ["a", "b"], "nc": 3}, "nc=3 but 'names' has 2 entries"),
    ({"names": {0: "a", 2: "b"}}, r"ids must be 0..1, got \[0, 2\]"),
    ({"train": "x"}, "'names'"),
])
def test_bad_yaml(tmp_path, data, message):
    with pytest.raises(AnnotationFormatError, match=message):
        read_yolo_yaml(write_yaml(tmp_path / "d.yaml", data))


def test_malformed_yaml_names_line(tmp_path):
    path = tmp_path / "d.yaml"
    path.write_text("names: [a, b]\ntrain: [oops\n")
    with pytest.raises(AnnotationFormatError, match=r"d\.yaml: malformed YAML at line \d+"):
        read_yolo_yaml(str(path))


def test_class_id_out_of_range_names_file_line_id_nc(tmp_path):
    path = tmp_path / "x.txt"
    path.write_text("0 0.5 0.5 0.1 0.1\n\n3 0.5 0.5 0.1 0.1\n")
    with pytest.raises(AnnotationFormatError, match=r"x\.txt:3: class id 3 >= nc=2"):
        parse_label_file(str(path), 100, 100, num_classes=2)
    issues = []
    boxes, labels, _ = parse_label_file(str(path), 100, 100, num_classes=2, issues=issues)
    assert labels.tolist() == [0] and (issues[0].kind, issues[0].line) == ("unknown_class", 3)


@pytest.mark.parametrize("row, message", [
    ("0 0.5 0.5 0.1", "got 4 values"),
    ("0 0.5 0.5 0.1 0.1 0.2", "got 6 values"),
    ("a 0.5 0.5 0.1 0.1", "non-numeric"),
    ("1.5 0.5 0.5 0.1 0.1", "not a non-negative integer"),
    ("-1 0.5 0.5 0.1 0.1", "not a non-negative integer"),
    ("nan 0.5 0.5 0.1 0.1", "not a non-negative integer"),
])
def test_malformed_rows(tmp_path, row, message):
    path = tmp_path / "x.txt"
    path.write_text(f"0 0.5 0.5 0.1 0.1\n{row}\n")
    with pytest.raises(AnnotationFormatError, match=rf"x\.txt:2: .*{message}"):
        parse_label_file(str(path), 10, 10, num_classes=5)


@pytest.mark.parametrize("row", ["0 nan 0.5 0.1 0.1", "0 0.5 0.5 inf 0.1", "1 0.1 0.2 0.5 -inf 0.5 0.6"])
def test_non_finite_coordinates_name_file_and_line(tmp_path, row):
    path = tmp_path / "x.txt"
    path.write_text(f"0 0.5 0.5 0.1 0.1\n{row}\n")
    with pytest.raises(AnnotationFormatError, match=r"x\.txt:2: non-finite coordinate in"):
        parse_label_file(str(path), 10, 10, num_classes=5)
    issues = []
    _, labels, _ = parse_label_file(str(path), 10, 10, num_classes=5, issues=issues)
    assert labels.tolist() == [0] and [(i.kind, i.line) for i in issues] == [("non_finite", 2)]


def test_polygon_rows_and_raw_out_of_range_boxes(tmp_path):
    path = tmp_path / "x.txt"
    path.write_text("1 0.1 0.2 0.5 0.2 0.5 0.6\n0 1.1 0.5 0.4 0.2\n")
    boxes, labels, polygons = parse_label_file(str(path), 200, 100, num_classes=2)
    np.testing.assert_allclose(boxes[0], [20, 20, 100, 60], atol=1e-4)
    np.testing.assert_allclose(boxes[1], [180, 40, 260, 60], atol=1e-4)  # kept raw, outside the image
    assert polygons[0][0].shape == (3, 2) and polygons[1] == []


def test_labelimg_folder_with_classes_txt(tmp_path):
    Image.new("RGB", (10, 10)).save(tmp_path / "p.jpg")
    (tmp_path / "p.txt").write_text("1 0.5 0.5 0.2 0.2\n")
    (tmp_path / "classes.txt").write_text("cat\ndog\n")
    ds = read_yolo(str(tmp_path), "train")
    assert ds.class_names == ["cat", "dog"] and ds.images[0].labels.tolist() == [1]
    (tmp_path / "classes.txt").unlink()
    assert read_yolo(str(tmp_path), "train").class_names == ["0", "1"]  # ids found, no names


def test_write_read_round_trip(tmp_path):
    root = make_yolo(str(tmp_path / "src"))
    write_yaml(tmp_path / "src" / "data.yaml", {"train": "images/train", "names": ["cat", "dog"]})
    ds = read_yolo(str(tmp_path / "src" / "data.yaml"), "train")
    out = str(tmp_path / "out")
    yaml_path = write_yolo(ds, out, split="val")
    write_yolo(ds, out, split="train")  # merges into the same data.yaml
    with open(yaml_path) as f:
        spec = yaml.safe_load(f)
    assert spec["val"] == "images/val" and spec["train"] == "images/train" and spec["names"] == {0: "cat", 1: "dog"}
    back = read_yolo(yaml_path, "val")
    assert [os.path.basename(i.file) for i in back.images] == ["a.jpg", "b.jpg", "c.jpg"]
    for x, y in zip(ds.images, back.images):
        np.testing.assert_allclose(x.boxes, y.boxes, atol=1e-3)
    with open(os.path.join(out, "labels", "val", "a.txt")) as f:
        assert f.read().splitlines()[0] == "0 0.500000 0.500000 0.200000 0.400000"
    assert os.path.getsize(os.path.join(out, "labels", "val", "c.txt")) == 0
    assert root
