import cv2
import numpy as np
import pytest

from cvzoo.geometry import (
    GeometryError,
    distort_normalized,
    undistort_image,
    undistort_map,
    undistort_normalized,
    undistort_points,
)
from cvzoo.geometry.distortion import distort_with_jacobians

K = np.array([[820.0, 0.0, 330.0], [0.0, 800.0, 250.0], [0.0, 0.0, 1.0]])
DISTS = [
    np.array([-0.35, 0.15, 1e-3, -2e-3, -0.03]),  # barrel, five coefficients
    np.array([0.12, -0.05, -5e-4, 1e-3]),  # pincushion, four
    np.array([-0.25, 0.08]),  # radial only
    np.array([-0.2]),  # one coefficient
]
SIZE = (640, 480)


def _grid(step=16):
    u, v = np.meshgrid(np.arange(0, SIZE[0], step, dtype=float), np.arange(0, SIZE[1], step, dtype=float))
    return np.stack([u.ravel(), v.ravel()], axis=1)


def test_distort_by_hand():
    # r^2 = 0.25 for (0.3, 0.4): radial = 1 + 0.1 * 0.25; tangential terms written out.
    k1, p1, p2 = 0.1, 0.01, 0.02
    x, y = 0.3, 0.4
    xd = x * 1.025 + 2 * p1 * x * y + p2 * (0.25 + 2 * x * x)
    yd = y * 1.025 + p1 * (0.25 + 2 * y * y) + 2 * p2 * x * y
    np.testing.assert_allclose(distort_normalized([[x, y]], [k1, 0, p1, p2]), [[xd, yd]], rtol=1e-14)


def test_distortion_jacobian_matches_finite_differences():
    rng = np.random.default_rng(0)
    xy = rng.uniform(-0.5, 0.5, size=(20, 2))
    coeffs = DISTS[0]
    _, d_xy, d_coeffs = distort_with_jacobians(xy, coeffs)
    eps = 1e-7
    for j in range(2):
        step = np.zeros(2)
        step[j] = eps
        numeric = (distort_normalized(xy + step, coeffs) - distort_normalized(xy - step, coeffs)) / (2 * eps)
        np.testing.assert_allclose(d_xy[:, :, j], numeric, atol=1e-8)
    for j in range(5):
        step = np.zeros(5)
        step[j] = eps
        numeric = (distort_normalized(xy, coeffs + step) - distort_normalized(xy, coeffs - step)) / (2 * eps)
        np.testing.assert_allclose(d_coeffs[:, :, j], numeric, atol=1e-8)


@pytest.mark.parametrize("dist", DISTS, ids=["k5", "k4", "k2", "k1"])
def test_undistort_points_matches_opencv_and_redistorts(dist):
    pixels = _grid()
    ours = undistort_points(pixels, K, dist)
    assert np.all(np.isfinite(ours))
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 200, 1e-15)
    padded = np.zeros(5)
    padded[: len(dist)] = dist  # OpenCV takes 4 or more coefficients
    ref = cv2.undistortPoints(pixels.reshape(-1, 1, 2), K, padded, P=K, criteria=criteria).reshape(-1, 2)
    np.testing.assert_allclose(ours, ref, atol=1e-6, rtol=0)
    # Re-distorting the result lands back on the observed pixels.
    xy = undistort_points(pixels, K, dist, normalized=True)
    back = distort_normalized(xy, dist) @ K[:2, :2].T + K[:2, 2]
    assert np.abs(back - pixels).max() < 1e-6
    np.testing.assert_allclose(xy @ K[:2, :2].T + K[:2, 2], ours, atol=1e-9)


def test_undistort_normalized_strong_barrel_converges_or_flags():
    dist = np.array([-0.5, 0.0])
    # Inside the invertible field (r_d below the maximum of r (1 + k1 r^2) = 0.5443 at r = 0.8165).
    inside = np.array([[0.2, 0.1], [0.4, -0.2], [0.0, 0.5]])
    xy = undistort_normalized(inside, dist)
    np.testing.assert_allclose(distort_normalized(xy, dist), inside, atol=1e-12)
    # Beyond it no undistorted point exists: NaN, not a silent wrong value.
    assert np.all(np.isnan(undistort_normalized([[0.7, 0.0]], dist)))


def test_new_camera_matrix_for_points():
    new_K = K.copy()
    new_K[:2] *= 0.5
    new_K[2, 2] = 1.0
    xy = undistort_points(_grid(64), K, DISTS[0], normalized=True)
    np.testing.assert_allclose(
        undistort_points(_grid(64), K, DISTS[0], new_K=new_K), xy @ new_K[:2, :2].T + new_K[:2, 2], atol=1e-12
    )


@pytest.mark.parametrize("dist", DISTS[:2], ids=["k5", "k4"])
def test_undistort_map_matches_opencv(dist):
    new_K = np.array([[600.0, 0.0, 320.0], [0.0, 610.0, 240.0], [0.0, 0.0, 1.0]])
    for target in (None, new_K):
        map_x, map_y = undistort_map(K, dist, SIZE, target)
        ref_x, ref_y = cv2.initUndistortRectifyMap(
            K, dist, None, K if target is None else target, SIZE, cv2.CV_32FC1
        )
        assert map_x.shape == (480, 640) and map_x.dtype == np.float32
        assert np.abs(map_x - ref_x).max() < 1e-3 and np.abs(map_y - ref_y).max() < 1e-3


def test_undistort_image_matches_opencv(assets):
    image = cv2.imread(str(assets / "0_left.jpg"))
    K_real = np.array([[835.8, 0.0, 523.7], [0.0, 838.3, 401.0], [0.0, 0.0, 1.0]])
    dist = np.array([-0.3635, 0.2254, 2.3e-4, -8.8e-4, -0.1176])
    ours = undistort_image(image, K_real, dist)
    ref = cv2.undistort(image, K_real, dist)
    assert ours.shape == image.shape and ours.dtype == image.dtype
    diff = np.abs(ours.astype(float) - ref.astype(float))
    # cv2.undistort uses fixed-point maps (1/32 px); the float table differs by interpolation round-off.
    assert diff.mean() < 0.5, diff.mean()
    # And it is not a no-op: the image really changed.
    assert np.abs(ours.astype(float) - image.astype(float)).mean() > 5


def test_distortion_bad_input():
    with pytest.raises(GeometryError, match="0, 1, 2, 4 or 5"):
        distort_normalized([[0.1, 0.2]], [0.1, 0.2, 0.3])
    with pytest.raises(GeometryError, match="non-finite"):
        distort_normalized([[0.1, 0.2]], [np.nan])
    with pytest.raises(GeometryError, match=r"\[N, 2\]"):
        undistort_points(np.zeros((5, 3)), K, None)
    with pytest.raises(GeometryError, match="positive"):
        undistort_map(K, None, (0, 10))
    with pytest.raises(GeometryError, match="image must be"):
        undistort_image(np.zeros((4,), np.uint8), K, None)
