"""``cvzoo data synth`` writes the generated scenes the README's examples train on, in each layout."""

from __future__ import annotations

import json

import pytest

from cvzoo.cli.main import main


@pytest.mark.parametrize("fmt, marker", [("yolo", "data.yaml"), ("coco", "annotations/instances_val.json"),
                                         ("voc", "SegmentationObject")])
def test_synth_writes_each_layout(tmp_path, fmt, marker, capsys):
    out = tmp_path / fmt
    assert main(["data", "synth", str(out), "--format", fmt, "--train", "2", "--val", "1", "--size", "48", "64"]) == 0
    assert (out / marker).exists() and "wrote 2 train + 1 val scenes" in capsys.readouterr().out
    if fmt == "coco":
        annotations = json.loads((out / "annotations" / "instances_train.json").read_text())["annotations"]
        assert annotations and all("counts" in a["segmentation"] for a in annotations)


def test_synth_refuses_an_existing_folder_and_bad_sizes(tmp_path, capsys):
    assert main(["data", "synth", str(tmp_path), "--train", "1", "--val", "1"]) != 0
    assert "exists" in capsys.readouterr().err
    assert main(["data", "synth", str(tmp_path / "new"), "--size", "16"]) != 0
    assert "at least 32 px" in capsys.readouterr().err
