import cv2
import numpy as np
import pytest

from cvzoo.geometry import GeometryError, apply_homography, find_homography
from cvzoo.geometry.homography import hartley_normalization


def test_exact_homography_recovered():
    rng = np.random.default_rng(0)
    H_true = np.array([[1.2, 0.1, 300.0], [-0.05, 0.9, 200.0], [1e-4, -2e-4, 1.0]])
    src = rng.uniform(0, 500, size=(30, 2))
    dst = apply_homography(H_true, src)
    np.testing.assert_allclose(find_homography(src, dst), H_true, rtol=1e-8, atol=1e-10)
    # Exactly four points determine it too.
    np.testing.assert_allclose(find_homography(src[:4], dst[:4]), H_true, rtol=1e-7, atol=1e-9)


def test_noisy_homography_close_to_opencv_dlt():
    rng = np.random.default_rng(1)
    H_true = np.array([[800.0, 30.0, 500.0], [-20.0, 780.0, 380.0], [0.05, 0.02, 1.0]])
    src = np.stack(np.meshgrid(np.arange(9), np.arange(6)), -1).reshape(-1, 2) * 0.03
    dst = apply_homography(H_true, src) + rng.normal(scale=0.1, size=(54, 2))
    H = find_homography(src, dst)
    ref, _ = cv2.findHomography(src, dst, 0)  # least squares (DLT + refinement), no RANSAC
    # Both fit the data to the noise level, and agree on where the points go.
    assert np.abs(apply_homography(H, src) - dst).max() < 0.5
    np.testing.assert_allclose(apply_homography(H, src), apply_homography(ref, src), atol=0.05)


def test_hartley_normalization_statistics():
    pts = np.random.default_rng(2).uniform(100, 900, size=(40, 2))
    T = hartley_normalization(pts)
    normed = apply_homography(T, pts)
    np.testing.assert_allclose(normed.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(normed, axis=1).mean(), np.sqrt(2))


def test_homography_bad_input():
    with pytest.raises(GeometryError, match="at least 4"):
        find_homography(np.zeros((3, 2)), np.zeros((3, 2)))
    with pytest.raises(GeometryError, match="must match"):
        find_homography(np.zeros((5, 2)), np.zeros((4, 2)))
    line = np.stack([np.arange(6.0), 2 * np.arange(6.0)], axis=1)
    with pytest.raises(GeometryError, match="degenerate"):
        find_homography(line, line * 3 + 1)
