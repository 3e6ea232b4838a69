"""validate_annotations and check_dataset: every issue kind, repairs, statistics and plots."""

import os

import numpy as np
import pytest
import yaml
from PIL import Image

from cvzoo.data.check import check_dataset, plot_report, validate_annotations
from cvzoo.data.types import DatasetAnnotations, ImageAnnotation


def dirty_dataset():
    boxes = [
        [10, 10, 50, 40],    # fine
        [10, 10, 50, 40],    # duplicate of the first
        [-5, 20, 30, 60],    # negative x and below the bottom (H = 50)
        [40, 30, 20, 45],    # inverted
        [5, 5, 5, 25],       # zero width
        [0, 0, 10, 10],      # unknown class (label 7)
        [120, 60, 140, 80],  # entirely outside
    ]
    labels = [0, 0, 1, 1, 0, 7, 1]
    return DatasetAnnotations(["a", "b"], [ImageAnnotation("x.jpg", 100, 50, boxes=boxes, labels=labels)])


def test_validate_flags_every_kind():
    issues = validate_annotations(dirty_dataset())
    kinds = [i.kind for i in issues]
    assert kinds.count("duplicate_box") == 1 and kinds.count("inverted_box") == 1
    assert kinds.count("zero_area") == 1 and kinds.count("unknown_class") == 1
    assert kinds.count("outside_image") == 2
    assert any("class id 7 but nc=2" in i.message for i in issues)
    assert any("(-5, 20, 30, 60) exceeds the 100x50 image" in i.message for i in issues)
    assert validate_annotations(DatasetAnnotations(["a"], [ImageAnnotation("y.jpg", 10, 10, [[0, 0, 10, 10]], [0])])) == []


def test_validate_clip_and_drop():
    ds = dirty_dataset()
    validate_annotations(ds, clip=True)
    # Clipping moves the partial box inside and removes boxes without area (outside, inverted, zero).
    np.testing.assert_array_equal(ds.images[0].boxes, [[10, 10, 50, 40], [10, 10, 50, 40], [0, 20, 30, 50],
                                                        [0, 0, 10, 10]])
    ds = dirty_dataset()
    validate_annotations(ds, drop=True)
    assert ds.images[0].labels.tolist() == [0, 1, 1]  # the first, the negative one and the outside one
    ds = dirty_dataset()
    validate_annotations(ds, clip=True, drop=True)
    assert ds.images[0].boxes.tolist() == [[10, 10, 50, 40], [0, 20, 30, 50]]
    assert len(ds.images[0].difficult) == 2


def make_dirty_yolo(root):
    for split in ("train", "val"):
        os.makedirs(os.path.join(root, "images", split))
        os.makedirs(os.path.join(root, "labels", split))
    for name in ("a", "b", "c"):
        Image.new("RGB", (100, 50)).save(os.path.join(root, "images", "train", f"{name}.jpg"))
    Image.new("RGB", (100, 50)).save(os.path.join(root, "images", "val", "v.jpg"))
    rows = {
        "train/a": "0 0.5 0.5 0.2 0.4\n0 0.5 0.5 0.2 0.4\n1 0.95 0.5 0.2 0.2\n5 0.5 0.5 0.1 0.1\n",
        "train/b": "",              # empty label file
        "train/orphan": "0 0.5 0.5 0.1 0.1\n",  # no image
        "val/v": "1 0.5 0.5 0 0.2\nbad row\n",
    }
    for name, text in rows.items():
        with open(os.path.join(root, "labels", f"{name}.txt"), "w") as f:
            f.write(text)
    with open(os.path.join(root, "data.yaml"), "w") as f:
        yaml.safe_dump({"train": "images/train", "val": ["images/val", "missing.txt"], "names": ["cat", "dog"]}, f)
    with open(os.path.join(root, "missing.txt"), "w") as f:
        f.write("images/val/gone.jpg\n")
    return os.path.join(root, "data.yaml")


def test_check_dirty_yolo(tmp_path):
    report = check_dataset(make_dirty_yolo(str(tmp_path)))
    assert report.format == "yolo" and not report.ok and report.num_images == 4
    kinds = sorted(i.kind for i in report.issues)
    assert kinds == ["duplicate_box", "malformed_line", "missing_image", "orphan_label_file", "outside_image",
                     "unknown_class", "zero_area"]
    notes = sorted(i.kind for i in report.notes)
    assert notes == ["empty_label_file", "missing_label_file"]
    assert report.class_counts() == {"cat": 2, "dog": 2}
    text = report.to_text()
    for needle in ("images: 4   boxes: 4   classes: 2", "orphan_label_file: 1", "class id 5 >= nc=2",
                   "result: 7 issue(s) found", "cat  2", "COCO size buckets: small 4"):
        assert needle in text
    unknown = next(i for i in report.issues if i.kind == "unknown_class")
    assert unknown.line == 4 and unknown.file.endswith("a.txt")
    paths = plot_report(report, str(tmp_path / "plots"))
    assert [os.path.basename(p) for p in paths] == ["class_counts.png", "box_centers.png", "box_sizes.png"]
    for path in paths:
        with Image.open(path) as im:
            assert im.size[0] > 100 and im.size[1] > 100


def test_check_clean_voc_and_unreadable(tmp_path):
    root = tmp_path / "VOC2007"
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / sub).mkdir(parents=True)
    (root / "Annotations" / "1.xml").write_text(
        "<annotation><size><width>40</width><height>30</height></size><object><name>cat</name>"
        "<bndbox><xmin>1</xmin><ymin>2</ymin><xmax>40</xmax><ymax>30</ymax></bndbox></object></annotation>")
    Image.new("RGB", (40, 30)).save(root / "JPEGImages" / "1.jpg")
    report = check_dataset(str(tmp_path))
    assert report.ok and report.format == "voc" and "result: clean" in report.to_text()
    np.testing.assert_allclose(report.box_wh, [[39, 28]])
    np.testing.assert_allclose(report.box_centers, [[20.5 / 40, 16 / 30]])
    (root / "JPEGImages" / "1.jpg").unlink()
    assert [i.kind for i in check_dataset(str(tmp_path)).issues] == ["missing_image"]
    (root / "Annotations" / "1.xml").write_text("<annotation>")
    report = check_dataset(str(tmp_path), format="voc")
    assert [i.kind for i in report.issues] == ["unreadable"] and "malformed XML" in report.issues[0].message


def test_non_finite_coordinates_are_issues_not_clean(tmp_path):
    from cvzoo.data.formats._common import AnnotationFormatError
    from cvzoo.data.formats.auto import load_detection_dataset

    root = tmp_path / "y"
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        Image.new("RGB", (100, 50)).save(root / "images" / split / "a.jpg")
        (root / "labels" / split / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n0 nan 0.5 0.2 0.2\n")
    (root / "data.yaml").write_text(yaml.safe_dump({"train": "images/train", "val": "images/val", "names": ["cat"]}))
    report = check_dataset(str(root))
    assert [(i.kind, i.line) for i in report.issues] == [("non_finite", 2), ("non_finite", 2)]
    assert "non_finite: 2" in report.to_text() and not report.ok
    # Training reads with issues=None: an error naming the file and line, not a silently dropped box.
    with pytest.raises(AnnotationFormatError, match=r"labels/train/a\.txt:2: non-finite coordinate"):
        load_detection_dataset(str(root), "train")
    # Annotations built in code meet the same check in validate_annotations (which the task runs).
    built = DatasetAnnotations(["a"], [ImageAnnotation("z.jpg", 10, 10, [[0, 0, 5, float("nan")]], [0])])
    assert [i.kind for i in validate_annotations(built, clip=True, drop=True)] == ["non_finite"]
    assert len(built.images[0]) == 0


@pytest.mark.parametrize("max_per_kind", [1, 3])
def test_report_truncates_examples(max_per_kind):
    from cvzoo.data.check import CheckReport
    from cvzoo.data.formats._common import Issue

    report = CheckReport(path="p", format="coco", issues=[Issue("missing_image", f"{i}.jpg", "gone") for i in range(3)])
    text = report.to_text(max_per_kind=max_per_kind)
    assert text.count("[missing_image]") == max_per_kind
    assert ("... and 2 more" in text) == (max_per_kind == 1)


def test_outside_tolerance_absorbs_rounding_only():
    image = ImageAnnotation("z.jpg", 500, 375, boxes=[[103, 215, 500.00003, 375.0004], [0, 0, 500.1, 10]],
                            labels=[0, 0])
    issues = validate_annotations(DatasetAnnotations(["a"], [image]))
    assert [(i.kind, i.message.split()[1]) for i in issues] == [("outside_image", "1")]
