import cv2
import numpy as np
import pytest

from cvzoo.geometry import (
    CalibrationError,
    CalibrationResult,
    DegenerateViewsError,
    GeometryError,
    calibrate_camera,
    calibrate_from_points,
    chessboard_points,
    find_chessboard_corners,
)

FLAG_CASES = {
    "default": ({}, 0),
    "fix_k3": ({"fix_k3": True}, cv2.CALIB_FIX_K3),
    "zero_tangent+fix_k3": (
        {"zero_tangent": True, "fix_k3": True},
        cv2.CALIB_ZERO_TANGENT_DIST | cv2.CALIB_FIX_K3,
    ),
    "fix_principal_point": ({"fix_principal_point": True}, cv2.CALIB_FIX_PRINCIPAL_POINT),
    "fix_aspect_ratio": ({"fix_aspect_ratio": 1.0}, cv2.CALIB_FIX_ASPECT_RATIO),
}


def _opencv(objs, imgs, size, flags):
    rms, K, dist, _, _ = cv2.calibrateCamera(
        [o.astype(np.float32) for o in objs],
        [i.astype(np.float32).reshape(-1, 1, 2) for i in imgs],
        size,
        np.eye(3),
        np.zeros(5),
        flags=flags,
        criteria=(cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 200, 1e-15),
    )
    return rms, K, dist.ravel()


def _assert_matches_opencv(result, rms, K, dist):
    ours = result.K[[0, 1, 0, 1], [0, 1, 2, 2]]
    ref = K[[0, 1, 0, 1], [0, 1, 2, 2]]
    np.testing.assert_allclose(ours, ref, rtol=5e-3)  # the brief's 0.5 %
    assert abs(result.rms - rms) < 0.05
    # In practice both reach the same minimum far more closely.
    np.testing.assert_allclose(ours, ref, rtol=1e-5)
    assert abs(result.rms - rms) < 1e-5
    np.testing.assert_allclose(result.dist, dist, atol=1e-4)


@pytest.mark.parametrize("case", list(FLAG_CASES))
def test_synthetic_matches_opencv(random_scene, case):
    options, flags = FLAG_CASES[case]
    seed = list(FLAG_CASES).index(case)
    objs, imgs, size, K_true, _ = random_scene(seed, n_views=6, noise=0.1)
    result = calibrate_from_points(objs, imgs, size, **options)
    rms, K, dist = _opencv(objs, imgs, size, flags)
    _assert_matches_opencv(result, rms, K, dist)
    if "fix_principal_point" not in options and "fix_aspect_ratio" not in options:
        # The model holds the true camera: close to it, and the RMS at the noise level, which for
        # 0.1 px per coordinate is 0.1 sqrt(2) ~ 0.141 px per point less the fitted degrees of freedom.
        np.testing.assert_allclose(result.K[[0, 1], [0, 1]], K_true[[0, 1], [0, 1]], rtol=0.01)
        assert 0.11 < result.rms < 0.16
    if options.get("fix_k3"):
        assert result.dist[4] == 0.0
    if options.get("zero_tangent"):
        assert result.dist[2] == result.dist[3] == 0.0
    if options.get("fix_aspect_ratio"):
        assert result.K[0, 0] == pytest.approx(result.K[1, 1], rel=1e-12)
    if options.get("fix_principal_point"):
        assert tuple(result.K[:2, 2]) == ((size[0] - 1) / 2, (size[1] - 1) / 2)


def test_result_fields_are_consistent(random_scene):
    objs, imgs, size, _, _ = random_scene(11, n_views=4, noise=0.1)
    result = calibrate_from_points(objs, imgs, size, init_distortion="zero")
    assert result.rvecs.shape == (4, 3) and result.tvecs.shape == (4, 3)
    assert result.used_images == ["view 0", "view 1", "view 2", "view 3"]
    # rms = sqrt(sum of squared errors / number of points), per view the same within the view.
    errors = []
    for obj, img, r, t in zip(objs, imgs, result.rvecs, result.tvecs, strict=True):
        proj = cv2.projectPoints(obj, r, t, result.K, result.dist)[0].reshape(-1, 2)
        errors.append(np.sum((proj - img) ** 2, axis=1))
    np.testing.assert_allclose(result.rms, np.sqrt(np.concatenate(errors).mean()), rtol=1e-9)
    np.testing.assert_allclose(result.per_view_errors, [np.sqrt(e.mean()) for e in errors], rtol=1e-9)
    assert np.all(result.tvecs[:, 2] > 0)
    assert np.all(result.intrinsic_std[:4] > 0) and np.all(result.intrinsic_std[:4] < 0.02 * result.K[0, 0])


@pytest.mark.parametrize("side", ["left", "right"])
def test_mrpt_images_match_opencv(assets, mrpt_corners, side):
    paths, corners = mrpt_corners[side]
    assert all(c is not None and c.shape == (54, 2) for c in corners)
    result = calibrate_camera(str(assets / f"*_{side}.jpg"), (9, 6), square_size=1.0)
    assert result.used_images == paths and result.rejected_images == []
    assert result.image_size == (1024, 768) and result.pattern_size == (9, 6)
    board = chessboard_points((9, 6))
    rms, K, dist = _opencv([board] * 4, corners, (1024, 768), 0)
    _assert_matches_opencv(result, rms, K, dist)
    assert result.rms < 0.3


def test_square_size_scales_translations_only(mrpt_corners):
    _, corners = mrpt_corners["left"]
    unit = calibrate_from_points([chessboard_points((9, 6), 1.0)] * 4, corners, (1024, 768))
    metric = calibrate_from_points([chessboard_points((9, 6), 0.025)] * 4, corners, (1024, 768))
    np.testing.assert_allclose(metric.K, unit.K, rtol=1e-7)
    np.testing.assert_allclose(metric.tvecs, unit.tvecs * 0.025, rtol=1e-6)


def test_fronto_parallel_views_are_reported(random_scene):
    objs, imgs, size, _, _ = random_scene(1, n_views=6, tilt_deg=(0.0, 0.5), noise=0.1)
    with pytest.raises(DegenerateViewsError, match=r"parallel to the image plane.*view 0: \d+\.\d deg"):
        calibrate_from_points(objs, imgs, size)
    # A single view cannot determine the intrinsics either.
    with pytest.raises(DegenerateViewsError, match="at least 2 views"):
        calibrate_from_points(objs[:1], imgs[:1], size)
    # Tilted views of the same scene generator pass.
    objs, imgs, size, _, _ = random_scene(1, n_views=6, tilt_deg=(20.0, 40.0), noise=0.1)
    assert calibrate_from_points(objs, imgs, size).rms < 0.15


def test_pattern_not_found_names_images(assets, tmp_path):
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((768, 1024), 128, np.uint8))
    paths = [str(assets / "0_left.jpg"), str(assets / "1_left.jpg"), str(blank)]
    with pytest.raises(CalibrationError, match=r"found in 2 of 3 images.*not found in: .*blank\.png"):
        calibrate_camera(paths, (9, 6))
    # Wrong pattern size: never found, every image named.
    with pytest.raises(CalibrationError, match=r"10x7 found in 0 of 2.*0_left\.jpg, .*1_left\.jpg"):
        calibrate_camera(paths[:2], (10, 7))
    assert find_chessboard_corners(blank, (9, 6)) is None


def test_rejected_images_are_listed(assets, tmp_path):
    blank = tmp_path / "zz_blank.png"
    cv2.imwrite(str(blank), np.full((768, 1024), 128, np.uint8))
    paths = [str(p) for p in sorted(assets.glob("*_right.jpg"))] + [str(blank)]
    result = calibrate_camera(paths, (9, 6))
    assert result.rejected_images == [str(blank)] and len(result.used_images) == 4


def test_calibrate_camera_bad_input(assets, tmp_path):
    with pytest.raises(CalibrationError, match="no images"):
        calibrate_camera(str(tmp_path / "*.jpg"))
    with pytest.raises(CalibrationError, match="missing.jpg: cannot read"):
        calibrate_camera([str(assets / "0_left.jpg"), str(tmp_path / "missing.jpg")])
    small = tmp_path / "small.png"
    cv2.imwrite(str(small), np.zeros((100, 120), np.uint8))
    with pytest.raises(CalibrationError, match=r"small\.png: image size 120x100 differs"):
        calibrate_camera([str(assets / "0_left.jpg"), str(small)])
    with pytest.raises(GeometryError, match="pattern_size"):
        chessboard_points((1, 6))
    board = chessboard_points((9, 6))
    with pytest.raises(CalibrationError, match="plane Z = 0"):
        calibrate_from_points(
            [board + [0, 0, 0.5] * np.arange(54)[:, None] / 54] * 3, [board[:, :2]] * 3, (640, 480)
        )
    with pytest.raises(CalibrationError, match="view 1: need >= 4"):
        calibrate_from_points([board, board[:3]], [board[:, :2], board[:3, :2]], (640, 480))


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_save_load_round_trip(mrpt_corners, tmp_path, suffix):
    paths, corners = mrpt_corners["left"]
    result = calibrate_from_points(
        [chessboard_points((9, 6), 0.025)] * 4, corners, (1024, 768), view_names=paths, fix_k3=True
    )
    path = result.save(tmp_path / f"calib{suffix}")
    loaded = CalibrationResult.load(path)
    np.testing.assert_array_equal(loaded.K, result.K)
    np.testing.assert_array_equal(loaded.dist, result.dist)
    np.testing.assert_array_equal(loaded.rvecs, result.rvecs)
    np.testing.assert_array_equal(loaded.tvecs, result.tvecs)
    np.testing.assert_array_equal(loaded.per_view_errors, result.per_view_errors)
    assert loaded.rms == result.rms and loaded.used_images == paths and loaded.options["fix_k3"] is True
    assert loaded.image_size == (1024, 768)


def test_load_errors(tmp_path):
    with pytest.raises(GeometryError, match="not found"):
        CalibrationResult.load(tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("camera_matrix: [1, 2]\n")
    with pytest.raises(GeometryError, match="bad.yaml: not a cvzoo calibration file"):
        CalibrationResult.load(bad)
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(GeometryError, match="broken.json: cannot parse"):
        CalibrationResult.load(broken)
