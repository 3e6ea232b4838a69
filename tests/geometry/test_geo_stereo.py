"""Stereo calibration and rectification: synthetic rigs (exact answers) and OpenCV on the MRPT pairs."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from cvzoo.geometry import (
    CalibrationError,
    CalibrationResult,
    chessboard_points,
    project_points,
    rodrigues,
    stereo_calibrate,
    stereo_calibrate_from_points,
    stereo_rectify,
)
from cvzoo.geometry.stereo import compose_pose, essential_and_fundamental, rectify_points


def _camera(K, dist, size=(1280, 960)) -> CalibrationResult:
    return CalibrationResult(K=K, dist=np.asarray(dist, float), rvecs=np.zeros((0, 3)), tvecs=np.zeros((0, 3)),
                             rms=0.0, per_view_errors=np.zeros(0), image_size=size)


def _synthetic_rig(random_scene, T, seed=3):
    """A left camera (intrinsics from the calibration scene generator), five board poses in front of it,
    and a right camera ``X_r = R X_l + T``; pixels of both are exact projections of the same poses."""
    _, _, size, K_left, dist_left = random_scene(seed, n_views=1, noise=0.0)
    rng = np.random.default_rng(seed)
    K_right = K_left.copy()
    K_right[0, 0] *= 1.02
    K_right[1, 1] *= 1.01
    K_right[0, 2] += 7.0
    dist_right = np.array([-0.12, 0.05, 4e-4, -2e-4, 0.0])
    rig_rvec = np.array([0.01, -0.03, 0.005])
    board = chessboard_points((9, 6), 0.03)
    board[:, :2] -= board[:, :2].mean(axis=0)
    objs, poses, left_pixels, right_pixels = [], [], [], []
    for _ in range(5):
        axis = np.r_[rng.normal(size=2), 0.0]
        rvec = axis / np.linalg.norm(axis) * np.radians(rng.uniform(15, 40))
        tvec = np.array([rng.uniform(-0.04, 0.04), rng.uniform(-0.03, 0.03), rng.uniform(0.45, 0.6)])
        objs.append(board)
        poses.append(np.r_[rvec, tvec])
        left_pixels.append(project_points(board, rvec, tvec, K_left, dist_left))
        right_r, right_t = compose_pose(rig_rvec, np.asarray(T, float), rvec, tvec)
        right_pixels.append(project_points(board, right_r, right_t, K_right, dist_right))
    left, right = _camera(K_left, dist_left, size), _camera(K_right, dist_right, size)
    return objs, left_pixels, right_pixels, left, right, np.array(poses), rodrigues(rig_rvec), rng


def test_synthetic_rig_is_recovered_exactly(random_scene):
    T = np.array([-0.12, 0.003, 0.002])
    objs, left_px, right_px, left, right, poses, R_true, rng = _synthetic_rig(random_scene, T)
    # Start from perturbed poses in both cameras, as two separate calibrations would give.
    right_start = []
    for pose in poses:
        r, t = compose_pose(cv2.Rodrigues(R_true)[0].ravel(), T, pose[:3], pose[3:])
        right_start.append(np.concatenate([r, t]))
    noisy = lambda p: p + rng.normal(scale=[2e-3] * 3 + [2e-3] * 3, size=p.shape)  # noqa: E731
    R, T_est, _, residuals, _ = stereo_calibrate_from_points(
        objs, left_px, right_px, left, right, noisy(poses), noisy(np.array(right_start)))
    np.testing.assert_allclose(R, R_true, atol=1e-9)
    np.testing.assert_allclose(T_est, T, atol=1e-9)
    assert max(np.abs(r).max() for r in residuals) < 1e-7  # pixels


def test_essential_and_fundamental_satisfy_the_epipolar_constraint(random_scene):
    T = np.array([-0.12, 0.003, 0.002])
    objs, _, _, left, right, poses, R, _ = _synthetic_rig(random_scene, T)
    E, F = essential_and_fundamental(R, T, left.K, right.K)
    # Ideal (undistorted) projections of the same points in both cameras: x_r^T F x_l = 0.
    board, pose = objs[0], poses[0]
    right_r, right_t = compose_pose(cv2.Rodrigues(R)[0].ravel(), T, pose[:3], pose[3:])
    xl = np.c_[project_points(board, pose[:3], pose[3:], left.K), np.ones(len(board))]
    xr = np.c_[project_points(board, right_r, right_t, right.K), np.ones(len(board))]
    assert np.abs(np.einsum("ni,ij,nj->n", xr, F, xl)).max() < 1e-9
    assert F[2, 2] == pytest.approx(1.0)
    np.testing.assert_allclose(E, np.cross(T, R.T).T, atol=1e-15)  # [T]x R, column by column


@pytest.mark.parametrize("T", [[-0.12, 0.003, 0.002], [0.002, 0.1, -0.004]], ids=["horizontal", "vertical"])
def test_rectification_aligns_rows_and_matches_opencv_rotations(random_scene, T):
    T = np.asarray(T, float)
    objs, left_px, right_px, left, right, poses, R, _ = _synthetic_rig(random_scene, T)
    rect = stereo_rectify(left.K, right.K, R, T, left.image_size)
    R1, R2, P1, P2, Q, _, _ = cv2.stereoRectify(left.K, left.dist, right.K, right.dist, left.image_size, R,
                                               T.reshape(3, 1))
    np.testing.assert_allclose(rect.R1, R1, atol=1e-12)
    np.testing.assert_allclose(rect.R2, R2, atol=1e-12)
    assert rect.vertical == (abs(T[1]) > abs(T[0]))
    axis = 1 if rect.vertical else 0
    # OpenCV's P2 carries the same baseline: P2[axis, 3] / f.
    assert rect.P2[axis, 3] / rect.P2[0, 0] == pytest.approx(P2[axis, 3] / P2[0, 0], rel=1e-12)
    for pixels_left, pixels_right in zip(left_px, right_px):
        a = rectify_points(pixels_left, left.K, left.dist, rect.R1, rect.P1)
        b = rectify_points(pixels_right, right.K, right.dist, rect.R2, rect.P2)
        assert np.abs(a[:, 1 - axis] - b[:, 1 - axis]).max() < 1e-6  # same row (column for vertical rigs)
        expected = cv2.undistortPoints(pixels_left.reshape(-1, 1, 2), left.K, left.dist, R=rect.R1, P=rect.P1)
        np.testing.assert_allclose(a, expected.reshape(-1, 2), atol=1e-6)
    if not rect.vertical:
        # Q turns (x, y, disparity) back into the point, in the rectified left camera frame.
        board, pixels_left, pixels_right, pose = objs[0], left_px[0], right_px[0], poses[0]
        a = rectify_points(pixels_left, left.K, left.dist, rect.R1, rect.P1)
        b = rectify_points(pixels_right, right.K, right.dist, rect.R2, rect.P2)
        homogeneous = np.c_[a, a[:, 0] - b[:, 0], np.ones(len(a))] @ rect.Q.T
        points = homogeneous[:, :3] / homogeneous[:, 3:]
        truth = (board @ rodrigues(pose[:3]).T + pose[3:]) @ rect.R1.T
        np.testing.assert_allclose(points, truth, atol=1e-6)


def test_mrpt_pairs_match_opencv_stereo_calibrate(assets):
    left_paths = sorted(str(p) for p in assets.glob("*_left.jpg"))
    right_paths = sorted(str(p) for p in assets.glob("*_right.jpg"))
    result = stereo_calibrate(left_paths, right_paths, (9, 6), 1.0)
    assert len(result.pairs) == 4 and result.rejected_pairs == []
    # OpenCV on the same corners, with the same (cvzoo-calibrated) intrinsics held fixed.
    from cvzoo.geometry import find_chessboard_corners

    board = chessboard_points((9, 6), 1.0).astype(np.float32)
    corners = {side: [find_chessboard_corners(p, (9, 6)).astype(np.float32) for p in paths]
               for side, paths in (("left", left_paths), ("right", right_paths))}
    criteria = (cv2.TERM_CRITERIA_COUNT + cv2.TERM_CRITERIA_EPS, 200, 1e-12)
    rms, *_, R, T, E, F = cv2.stereoCalibrate(
        [board] * 4, corners["left"], corners["right"], result.left.K, result.left.dist, result.right.K,
        result.right.dist, result.left.image_size, flags=cv2.CALIB_FIX_INTRINSIC, criteria=criteria)
    assert result.rms == pytest.approx(rms, abs=1e-9)
    np.testing.assert_allclose(result.R, R, atol=1e-7)
    np.testing.assert_allclose(result.T, T.ravel(), atol=1e-6)  # baseline ~3.5 squares
    np.testing.assert_allclose(result.E, E, atol=1e-6)
    np.testing.assert_allclose(result.F, F / F[2, 2], rtol=1e-5, atol=1e-9)
    assert result.per_view_errors.shape == (4, 2)
    assert result.baseline == pytest.approx(np.linalg.norm(T), rel=1e-7)


def test_stereo_bad_input_names_the_pairs(assets, tmp_path):
    left_paths = sorted(str(p) for p in assets.glob("*_left.jpg"))
    right_paths = sorted(str(p) for p in assets.glob("*_right.jpg"))
    with pytest.raises(CalibrationError, match="as many left as right images.*4 left.*3 right"):
        stereo_calibrate(left_paths, right_paths[:3])
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((768, 1024), 128, np.uint8))
    with pytest.raises(CalibrationError, match=r"both images of 3 of 4 pairs, need at least 4; not in: .*3_left\.jpg \+ .*blank\.png"):
        stereo_calibrate(left_paths, [*right_paths[:3], str(blank)], min_views=4)
    small = tmp_path / "small.png"
    cv2.imwrite(str(small), np.zeros((100, 120), np.uint8))
    with pytest.raises(CalibrationError, match=r"small\.png: image size 120x100 differs from .* of .*0_right\.jpg"):
        stereo_calibrate(left_paths, [*right_paths[:3], str(small)])
    result = stereo_calibrate(left_paths, [*right_paths[:3], str(blank)])  # 3 pairs are enough by default
    assert result.rejected_pairs == [(left_paths[3], str(blank))] and len(result.pairs) == 3


def test_the_rig_jacobian_is_the_derivative_of_the_residuals():
    """The analytic ``J^T J`` / ``J^T r`` of the rig problem against central differences of its residuals, and
    the right residuals against projecting through the composed pose."""
    from cvzoo.geometry.stereo import _rig_normal_equations

    rng = np.random.default_rng(0)
    board = chessboard_points((6, 4), 0.03)
    left = np.array([800.0, 790, 320, 240, -0.2, 0.05, 1e-3, -1e-3, 0.01])
    right = left * 1.01
    views = 3
    x = np.concatenate([[0.01, -0.02, 0.005, -0.1, 0.002, 0.001]] + [
        np.concatenate([rng.normal(0, 0.2, 3), [-0.05, -0.03, 0.5 + 0.1 * i]]) for i in range(views)])
    seen_left = [rng.normal(320, 50, (len(board), 2)) for _ in range(views)]
    seen_right = [rng.normal(320, 50, (len(board), 2)) for _ in range(views)]

    def residuals(params):
        return _rig_normal_equations(params, [board] * views, seen_left, seen_right, left, right)[3]

    JtJ, Jtr, cost, r = _rig_normal_equations(x, [board] * views, seen_left, seen_right, left, right)
    J = np.empty((len(r), len(x)))
    for i in range(len(x)):
        step = np.zeros_like(x)
        step[i] = 1e-6 * max(1.0, abs(x[i]))
        J[:, i] = (residuals(x + step) - residuals(x - step)) / (2 * step[i])
    np.testing.assert_allclose(JtJ, J.T @ J, rtol=0, atol=1e-8 * np.abs(JtJ).max())
    np.testing.assert_allclose(Jtr, J.T @ r, rtol=0, atol=1e-8 * np.abs(Jtr).max())
    assert cost == pytest.approx(0.5 * r @ r)
    rvec, tvec = compose_pose(x[:3], x[3:6], x[6:9], x[9:12])
    K = np.array([[right[0], 0, right[2]], [0, right[1], right[3]], [0, 0, 1]])
    expected = project_points(board, rvec, tvec, K, right[4:]) - seen_right[0]
    np.testing.assert_allclose(r[2 * len(board):4 * len(board)], expected.reshape(-1), atol=1e-9)
