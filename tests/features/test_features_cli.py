"""`cvzoo features hog | sift | hog-faces`."""

from __future__ import annotations

import json

import cv2
import numpy as np
from PIL import Image
from skimage import data

from cvzoo.cli.main import main
from cvzoo.features import hog


def test_hog_command_writes_glyphs(tmp_path, capsys):
    image = data.astronaut()[:128, :96]
    path = tmp_path / "a.png"
    Image.fromarray(image).save(path)
    out = tmp_path / "vis" / "hog.png"
    assert main(["features", "hog", str(path), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert f"= {hog(image, channel_axis=-1).size} features" in text
    glyphs = np.asarray(Image.open(out))
    assert glyphs.shape == (128, 96) and glyphs.max() == 255
    # Not nearly black: the typical drawn glyph pixel is a visible grey (scaling by the maximum put the median
    # drawn pixel of this image at a few percent of white), and only ~1% of the drawn pixels saturate.
    drawn = glyphs[glyphs > 0]
    assert np.median(drawn) > 40 and (drawn == 255).mean() < 0.05


def test_hog_command_errors(tmp_path, capsys):
    assert main(["features", "hog", str(tmp_path / "missing.png")]) == 2
    assert "no such image" in capsys.readouterr().err
    tiny = tmp_path / "tiny.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tiny)
    assert main(["features", "hog", str(tiny), "--gray"]) == 2
    assert "too small" in capsys.readouterr().err


def test_sift_command_finds_the_warp(tmp_path, capsys):
    image = data.astronaut()[::2, ::2]
    h = np.array([[1.0, 0.05, 8.0], [-0.04, 1.0, 12.0], [0.0, 0.0, 1.0]])
    Image.fromarray(image).save(tmp_path / "a.png")
    Image.fromarray(cv2.warpPerspective(image, h, (256, 256))).save(tmp_path / "b.png")
    out = tmp_path / "m.png"
    assert main(["features", "sift", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "homography inliers" in text
    first_row = text.split("H =\n")[1].splitlines()[0].strip("[] ").split()
    np.testing.assert_allclose([float(v) for v in first_row], h[0], atol=0.5)
    assert np.asarray(Image.open(out)).shape == (256, 512, 3)


def test_hog_faces_command(capsys):
    assert main(["features", "hog-faces", "--json", "--seed", "1"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["test"] == 50 and result["test_accuracy"] >= 0.88
    assert main(["features", "hog-faces", "--test-fraction", "1.5"]) == 2
