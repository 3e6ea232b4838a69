import cv2
import numpy as np
import pytest

from cvzoo.geometry import GeometryError, rodrigues, rotation_to_rvec
from cvzoo.geometry.rotation import rodrigues_jacobian

# cv2.Rodrigues (matrix -> vector) rounds angles below ~1e-5 to 0 and switches formula near pi, so it is
# exact only in between; our own round trip is checked at the extremes instead.
ANGLES_ALL = [0.0, 1e-12, 1e-8, 1e-5, 1e-3, 0.3, 1.0, 2.0, 3.0, np.pi - 1e-3, np.pi - 1e-7, np.pi]
ANGLES_CV_EXACT = [1e-4, 1e-3, 0.3, 1.0, 2.0, 3.0, np.pi - 1e-3, np.pi - 1e-4]


def _axes(seed=0, n=5):
    rng = np.random.default_rng(seed)
    axes = rng.normal(size=(n, 3))
    return np.concatenate([axes / np.linalg.norm(axes, axis=1, keepdims=True), np.eye(3)])


@pytest.mark.parametrize("angle", ANGLES_ALL)
def test_rodrigues_matches_opencv(angle):
    for axis in _axes():
        r = axis * angle
        np.testing.assert_allclose(rodrigues(r), cv2.Rodrigues(r)[0], atol=1e-9, rtol=0)


@pytest.mark.parametrize("angle", ANGLES_CV_EXACT)
def test_rotation_to_rvec_matches_opencv(angle):
    for axis in _axes(1):
        R = cv2.Rodrigues(axis * angle)[0]
        np.testing.assert_allclose(rotation_to_rvec(R), cv2.Rodrigues(R)[0].ravel(), atol=1e-9, rtol=0)


@pytest.mark.parametrize("angle", ANGLES_ALL)
def test_round_trip_exact_near_zero_and_pi(angle):
    for axis in _axes(2):
        r = axis * angle
        back = rotation_to_rvec(rodrigues(r))
        if angle == np.pi:  # r and -r are the same rotation
            err = min(np.abs(back - r).max(), np.abs(back + r).max())
        else:
            err = np.abs(back - r).max()
        assert err < 1e-12, (angle, axis, back, r)
        assert np.linalg.norm(back) <= np.pi + 1e-12


def test_rotation_properties_and_errors():
    R = rodrigues([0.3, -0.2, 0.5])
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-15)
    assert np.isclose(np.linalg.det(R), 1.0)
    # 90 degrees about z maps x to y.
    np.testing.assert_allclose(rodrigues([0, 0, np.pi / 2]) @ [1, 0, 0], [0, 1, 0], atol=1e-15)
    with pytest.raises(GeometryError, match="3 elements"):
        rodrigues([1.0, 2.0])
    with pytest.raises(GeometryError, match="reflection"):
        rotation_to_rvec(np.diag([1.0, 1.0, -1.0]))
    with pytest.raises(GeometryError, match=r"\[3, 3\]"):
        rotation_to_rvec(np.eye(2))


@pytest.mark.parametrize("rvec", [[0.3, -0.2, 0.5], [0.0, 0.0, 0.0], [1e-10, 0.0, 0.0], [0.0, 3.1, 0.1]])
def test_rodrigues_jacobian_matches_finite_differences(rvec):
    rvec = np.asarray(rvec, dtype=float)
    X = np.array([0.4, -1.2, 2.0])
    W = rodrigues_jacobian(rvec)
    eps = 1e-6
    for i in range(3):
        d = np.zeros(3)
        d[i] = eps
        numeric = (rodrigues(rvec + d) @ X - rodrigues(rvec - d) @ X) / (2 * eps)
        np.testing.assert_allclose(np.cross(W[i], rodrigues(rvec) @ X), numeric, atol=1e-8)


def test_batched_rotations_and_jacobians_equal_the_single_ones():
    from cvzoo.geometry.refine import rotate_points_batch, rotation_derivatives
    from cvzoo.geometry.rotation import rodrigues_batch, rodrigues_jacobian, rodrigues_jacobian_batch

    rng = np.random.default_rng(0)
    rvecs = np.concatenate([rng.normal(0, 1.0, (4, 3)), [[1e-9, 0, 0], [0, 0, 0], [0, np.pi - 1e-6, 0]]])
    np.testing.assert_allclose(rodrigues_batch(rvecs), np.stack([rodrigues(r) for r in rvecs]), atol=1e-15)
    np.testing.assert_allclose(rodrigues_jacobian_batch(rvecs), np.stack([rodrigues_jacobian(r) for r in rvecs]),
                               atol=1e-12)
    point_sets = [rng.normal(0, 1, (n, 3)) for n in (3, 5, 1, 4, 2, 2, 6)]
    rotated, derivatives = rotate_points_batch(rvecs, point_sets)
    np.testing.assert_allclose(rotated, np.concatenate([p @ rodrigues(r).T for r, p in zip(rvecs, point_sets)]),
                               atol=1e-14)
    expected = np.concatenate([rotation_derivatives(r, p @ rodrigues(r).T) for r, p in zip(rvecs, point_sets)])
    np.testing.assert_allclose(derivatives, expected, atol=1e-12)
