import cv2
import numpy as np
import pytest

from cvzoo.geometry import (
    CameraIntrinsics,
    Extrinsics,
    GeometryError,
    back_project,
    camera_to_normalized,
    normalized_to_pixels,
    pixels_to_normalized,
    project_points,
    rodrigues,
)


def _random_camera(rng):
    f = rng.uniform(300, 2000)
    K = CameraIntrinsics(f, f * rng.uniform(0.9, 1.1), rng.uniform(200, 800), rng.uniform(150, 600)).K
    dist = np.array(
        [
            rng.uniform(-0.4, 0.2),
            rng.uniform(-0.1, 0.3),
            rng.uniform(-2e-3, 2e-3),
            rng.uniform(-2e-3, 2e-3),
            rng.uniform(-0.05, 0.05),
        ]
    )
    return K, dist


@pytest.mark.parametrize("seed", range(10))
def test_project_points_matches_opencv(seed):
    rng = np.random.default_rng(seed)
    K, dist = _random_camera(rng)
    X = rng.uniform(-1, 1, size=(200, 3)) + [0, 0, 4]
    rvec, tvec = rng.normal(scale=0.4, size=3), rng.normal(scale=0.3, size=3)
    for d in (dist, dist[:4], dist[:2], dist[:1], None):
        ours = project_points(X, rvec, tvec, K, d)
        # OpenCV only takes 4 or more coefficients: pad the reduced models with zeros.
        padded = np.zeros(5)
        if d is not None:
            padded[: len(d)] = d
        ref = cv2.projectPoints(X, rvec, tvec, K, padded)[0].reshape(-1, 2)
        assert ours.shape == (200, 2)
        np.testing.assert_allclose(ours, ref, atol=1e-6, rtol=0)


def test_projection_chain_by_hand():
    # X_c = R X + t; x = X_c / Z; u = fx x + s y + cx.
    intr = CameraIntrinsics(fx=500.0, fy=400.0, cx=320.0, cy=240.0, skew=2.0)
    extr = Extrinsics(np.eye(3), [0.0, 0.0, 2.0])
    Xc = extr.transform([[0.2, -0.4, 2.0]])
    np.testing.assert_allclose(Xc, [[0.2, -0.4, 4.0]])
    xy = camera_to_normalized(Xc)
    np.testing.assert_allclose(xy, [[0.05, -0.1]])
    np.testing.assert_allclose(
        normalized_to_pixels(xy, intr.K), [[500 * 0.05 + 2 * -0.1 + 320, 400 * -0.1 + 240]]
    )
    np.testing.assert_allclose(pixels_to_normalized(normalized_to_pixels(xy, intr.K), intr.K), xy, atol=1e-15)
    np.testing.assert_allclose(
        project_points([[0.2, -0.4, 2.0]], [0, 0, 0], [0, 0, 2], intr.K), [[344.8, 200.0]]
    )
    assert CameraIntrinsics.from_matrix(intr.K) == intr


def test_extrinsics_center_and_rvec():
    rvec = np.array([0.1, 0.7, -0.3])
    extr = Extrinsics.from_rvec(rvec, [1.0, 2.0, 3.0])
    np.testing.assert_allclose(extr.rvec, rvec, atol=1e-14)
    # The camera centre maps to the camera-frame origin.
    np.testing.assert_allclose(extr.transform(extr.center), [[0, 0, 0]], atol=1e-14)


def test_back_project_depth_ambiguity():
    rng = np.random.default_rng(3)
    K = CameraIntrinsics(800, 790, 320, 240, skew=1.5).K
    X = rng.uniform(-1, 1, size=(50, 3)) + [0, 0, 5]
    pixels = project_points(X, np.zeros(3), np.zeros(3), K)
    rays = back_project(pixels, K)
    np.testing.assert_allclose(np.linalg.norm(rays, axis=1), 1.0)
    # The ray is parallel to the true point ...
    np.testing.assert_allclose(np.cross(rays, X), 0.0, atol=1e-12)
    # ... the true depth recovers the point, and any other depth projects to the same pixel.
    np.testing.assert_allclose(back_project(pixels, K, X[:, 2]), X, atol=1e-12)
    for depth in (0.5, 7.0, 1000.0):
        other = back_project(pixels, K, depth)
        np.testing.assert_allclose(other[:, 2], depth)
        np.testing.assert_allclose(project_points(other, np.zeros(3), np.zeros(3), K), pixels, atol=1e-9)


def test_camera_bad_input():
    with pytest.raises(GeometryError, match="positive"):
        CameraIntrinsics(-1.0, 1.0, 0.0, 0.0)
    with pytest.raises(GeometryError, match="rotation"):
        Extrinsics(np.ones((3, 3)), np.zeros(3))
    with pytest.raises(GeometryError, match="behind the camera"):
        project_points([[0, 0, -1.0]], np.zeros(3), np.zeros(3), np.eye(3))
    with pytest.raises(GeometryError, match=r"\[N, 3\]"):
        project_points(np.zeros((4, 2)), np.zeros(3), np.zeros(3), np.eye(3))
    with pytest.raises(GeometryError, match="K must be"):
        project_points(np.ones((1, 3)), np.zeros(3), np.zeros(3), np.eye(2))
    with pytest.raises(GeometryError, match="depth"):
        back_project(np.zeros((3, 2)), np.eye(3), depth=[1.0, 2.0])
    with pytest.raises(GeometryError, match="positive"):
        back_project(np.zeros((3, 2)), np.eye(3), depth=0.0)
    assert rodrigues(np.zeros((3, 1))).shape == (3, 3)  # OpenCV's column vectors are accepted
