"""`cvzoo convert` and `cvzoo data check` through the real entry point."""

import json
import os

import numpy as np
from PIL import Image

from cvzoo.cli.main import main


def make_coco(root):
    os.makedirs(os.path.join(root, "annotations"))
    os.makedirs(os.path.join(root, "images", "val"))
    Image.new("RGB", (64, 48)).save(os.path.join(root, "images", "val", "p.jpg"))
    data = {"images": [{"id": 5, "file_name": "p.jpg", "width": 64, "height": 48}],
            "categories": [{"id": 3, "name": "car"}, {"id": 8, "name": "truck"}],
            "annotations": [{"id": 1, "image_id": 5, "category_id": 8, "bbox": [8, 4, 32, 24], "iscrowd": 0,
                             "area": 768}]}
    with open(os.path.join(root, "annotations", "instances_val.json"), "w") as f:
        json.dump(data, f)
    return root


def test_convert_coco_to_yolo_and_check(tmp_path, capsys):
    src = make_coco(str(tmp_path / "coco"))
    dst = str(tmp_path / "yolo")
    assert main(["convert", "--from", "coco", "--to", "yolo", src, dst, "--split", "val"]) == 0
    assert "converted 1 images, 1 boxes, 2 classes (val)" in capsys.readouterr().out
    with open(os.path.join(dst, "labels", "val", "p.txt")) as f:
        row = f.read().split()
    assert row[0] == "1"
    np.testing.assert_allclose([float(v) for v in row[1:]], [24 / 64, 16 / 48, 32 / 64, 24 / 48], atol=1e-6)
    assert os.path.isfile(os.path.join(dst, "images", "val", "p.jpg"))

    assert main(["data", "check", dst, "--plots", str(tmp_path / "plots")]) == 0
    out = capsys.readouterr().out
    assert "format: yolo" in out and "result: clean" in out and "truck  1" in out
    assert sorted(os.listdir(tmp_path / "plots")) == ["box_centers.png", "box_sizes.png", "class_counts.png"]


def test_check_exit_code_one_on_issues(tmp_path, capsys):
    src = make_coco(str(tmp_path / "coco"))
    path = os.path.join(src, "annotations", "instances_val.json")
    with open(path) as f:
        data = json.load(f)
    data["annotations"][0]["bbox"] = [50, 4, 32, 24]  # runs past the right edge
    with open(path, "w") as f:
        json.dump(data, f)
    assert main(["data", "check", path]) == 1
    out = capsys.readouterr().out
    assert "outside_image: 1" in out and "result: 1 issue(s) found" in out


def test_one_line_errors(tmp_path, capsys):
    assert main(["convert", "--to", "voc", str(tmp_path / "nothing"), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("cvzoo convert: error:") and "no such file or folder" in err and "\n" not in err
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [\n  {"id": 1,}\n]}')
    assert main(["convert", "--from", "coco", "--to", "yolo", str(bad), str(tmp_path / "y")]) == 2
    assert "malformed JSON at line 2" in capsys.readouterr().err
    assert main(["data", "check", str(tmp_path / "nothing")]) == 2
    assert "no such file or folder" in capsys.readouterr().err


def test_convert_never_overwrites(tmp_path, capsys):
    src = make_coco(str(tmp_path / "coco"))
    dst = str(tmp_path / "yolo")
    assert main(["convert", "--to", "yolo", src, dst, "--split", "val"]) == 0
    assert main(["convert", "--to", "yolo", src, dst, "--split", "val"]) == 2
    err = capsys.readouterr().err
    assert "labels/val/p.txt: already exists; writing" in err and "images/val/p.jpg there would overwrite it" in err

