import json

import numpy as np
import pytest

from cvzoo.cli.main import main
from cvzoo.geometry import CalibrationResult


def test_calibrate_command_writes_result_and_plots(assets, tmp_path, capsys):
    out = tmp_path / "calib.yaml"
    plots = tmp_path / "plots"
    code = main(
        [
            "calibrate",
            "--images",
            str(assets / "*_left.jpg"),
            "--pattern",
            "9x6",
            "--square",
            "0.025",
            "--out",
            str(out),
            "--plots",
            str(plots),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "RMS reprojection error" in printed and "views used: 4" in printed
    result = CalibrationResult.load(out)
    assert len(result.used_images) == 4 and result.square_size == 0.025
    assert result.rms < 0.3 and 700 < result.K[0, 0] < 1000
    # Translations are in metres: the board is tens of centimetres to a metre away.
    assert np.all((result.tvecs[:, 2] > 0.1) & (result.tvecs[:, 2] < 2.0))
    written = sorted(p.name for p in plots.iterdir())
    assert len([n for n in written if n.startswith("corners_")]) == 4 and "undistorted_sample.jpg" in written


def test_calibrate_command_json(assets, tmp_path, capsys):
    out = tmp_path / "calib.json"
    assert (
        main(["calibrate", "--images", str(assets / "*_right.jpg"), "--out", str(out), "--json", "--fix-k3"])
        == 0
    )
    printed = json.loads(capsys.readouterr().out)
    saved = json.loads(out.read_text())
    assert printed == saved
    assert saved["dist_coeffs"]["k3"] == 0.0 and len(saved["views"]) == 4


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--pattern", "9by6"], "--pattern must look like 9x6"),
        (["--pattern", "1x6"], "at least 2x2"),
        (["--square", "0"], "--square must be positive"),
        (["--pattern", "10x7"], "10x7 found in 0 of 4 images"),
    ],
)
def test_calibrate_command_errors(assets, tmp_path, capsys, argv, message):
    code = main(
        ["calibrate", "--images", str(assets / "*_left.jpg"), "--out", str(tmp_path / "c.yaml"), *argv]
    )
    assert code == 2
    assert message in capsys.readouterr().err


def test_calibrate_command_no_match(tmp_path, capsys):
    assert main(["calibrate", "--images", str(tmp_path / "*.jpg")]) == 2
    assert "nothing matches" in capsys.readouterr().err


def test_calibrate_command_stereo(assets, tmp_path, capsys):
    import yaml

    from cvzoo.geometry import stereo_calibrate

    out = tmp_path / "rig.yaml"
    code = main(["calibrate", "--images", str(assets / "*_left.jpg"), "--right-images", str(assets / "*_right.jpg"),
                 "--square", "0.025", "--out", str(out), "--plots", str(tmp_path / "plots")])
    assert code == 0
    printed = capsys.readouterr().out
    assert "pairs used: 4, rejected: 0" in printed and "stereo RMS reprojection error" in printed
    saved = yaml.safe_load(out.read_text())
    rig = stereo_calibrate(str(assets / "*_left.jpg"), str(assets / "*_right.jpg"), (9, 6), 0.025)
    np.testing.assert_allclose(saved["R"], rig.R, atol=1e-12)
    np.testing.assert_allclose(saved["T"], rig.T, atol=1e-12)
    assert saved["rms"] == pytest.approx(rig.rms) and saved["left"]["camera_matrix"] == rig.left.K.tolist()
    assert set(saved["rectification"]) == {"R1", "R2", "P1", "P2", "Q", "vertical"}
    assert len(list((tmp_path / "plots" / "left").glob("corners_*.jpg"))) == 4
    assert len(list((tmp_path / "plots" / "right").glob("corners_*.jpg"))) == 4
    # A right list of another length: a clear error, nothing written.
    bad = tmp_path / "bad.yaml"
    assert main(["calibrate", "--images", str(assets / "*_left.jpg"), "--right-images", str(assets / "0_right.jpg"),
                 "--out", str(bad)]) != 0
    assert "as many left as right images" in capsys.readouterr().err and not bad.exists()
