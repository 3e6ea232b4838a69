"""SIFT matching and RANSAC homographies, checked against OpenCV's matcher and known warps."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage import data

from cvzoo.features import (
    SiftInputError,
    detect_and_describe,
    draw_matches,
    estimate_homography,
    match_descriptors,
    ransac_homography,
)
from cvzoo.features.sift import _apply

H_TRUE = np.array([[0.9, 0.1, 20.0], [-0.05, 1.05, 10.0], [1e-4, -5e-5, 1.0]])


def _project(h, pts):
    homog = np.c_[pts, np.ones(len(pts))] @ h.T
    return homog[:, :2] / homog[:, 2:]


def _descriptor_sets(seed=0):
    rng = np.random.default_rng(seed)
    d2 = rng.random((300, 128)).astype(np.float32) * 100
    # 120 queries are noisy copies of train rows (good matches), 80 are unrelated.
    picks = rng.choice(300, 120, replace=False)
    near = d2[picks] + rng.normal(0, rng.uniform(1, 40, (120, 1)), (120, 128)).astype(np.float32)
    d1 = np.concatenate([near, rng.random((80, 128)).astype(np.float32) * 100])
    return d1, d2


def test_ratio_test_matches_opencv_knn():
    d1, d2 = _descriptor_sets()
    ours = match_descriptors(d1, d2, ratio=0.75)
    knn = cv2.BFMatcher(cv2.NORM_L2).knnMatch(d1, d2, k=2)
    ref = sorted((a.queryIdx, a.trainIdx) for a, b in knn if a.distance < 0.75 * b.distance)
    assert 0 < len(ref) < len(d1)
    assert [tuple(p) for p in ours.indices.tolist()] == ref
    dist = {(a.queryIdx, a.trainIdx): a.distance for a, _ in knn}
    np.testing.assert_allclose(ours.distances, [dist[p] for p in ref], rtol=1e-4)


def test_cross_check_matches_opencv():
    d1, d2 = _descriptor_sets(1)
    ours = match_descriptors(d1, d2, ratio=None, cross_check=True)
    ref = sorted((m.queryIdx, m.trainIdx) for m in cv2.BFMatcher(cv2.NORM_L2, crossCheck=True).match(d1, d2))
    assert [tuple(p) for p in ours.indices.tolist()] == ref
    both = match_descriptors(d1, d2, ratio=0.75, cross_check=True)
    assert set(map(tuple, both.indices.tolist())) <= set(ref)


def test_matching_edge_cases():
    d = np.random.default_rng(0).random((5, 16)).astype(np.float32)
    single = match_descriptors(d, d[:1])  # no second neighbour: the ratio test cannot reject
    assert single.indices.shape == (5, 2) and np.all(single.indices[:, 1] == 0)
    assert match_descriptors(d[:0], d).indices.shape == (0, 2)
    with pytest.raises(SiftInputError, match="descriptors"):
        match_descriptors(d, d[:, :8])
    with pytest.raises(SiftInputError, match="ratio"):
        match_descriptors(d, d, ratio=1.5)


def test_dlt_is_exact_on_clean_points():
    pts = np.random.default_rng(2).uniform(0, 400, (12, 2))
    h = estimate_homography(pts, _project(H_TRUE, pts))
    np.testing.assert_allclose(h, H_TRUE, rtol=1e-6, atol=1e-8)
    minimal = estimate_homography(pts[:4], _project(H_TRUE, pts[:4]))
    np.testing.assert_allclose(minimal, H_TRUE, rtol=1e-6, atol=1e-8)


def test_ransac_recovers_homography_and_inlier_set():
    rng = np.random.default_rng(3)
    p1 = rng.uniform(0, 500, (300, 2))
    p2 = _project(H_TRUE, p1) + rng.normal(0, 0.3, (300, 2))
    outlier = rng.random(300) < 0.4
    p2[outlier] = rng.uniform(0, 500, (outlier.sum(), 2))
    # Keep only outliers that are really far from the model so the true inlier set is unambiguous.
    far = np.linalg.norm(p2 - _project(H_TRUE, p1), axis=1) > 10
    keep = ~outlier | far
    p1, p2, outlier = p1[keep], p2[keep], outlier[keep]
    h, inliers = ransac_homography(p1, p2, threshold=3.0, seed=0)
    np.testing.assert_array_equal(inliers, ~outlier)
    grid = np.array([[0, 0], [500, 0], [0, 500], [500, 500], [250, 250]], float)
    assert np.abs(_apply(h, grid) - _project(H_TRUE, grid)).max() < 1.0
    h2, inliers2 = ransac_homography(p1, p2, threshold=3.0, seed=0)
    np.testing.assert_array_equal(h, h2)  # seeded: reproducible


def test_ransac_input_errors():
    pts = np.zeros((3, 2))
    with pytest.raises(SiftInputError, match="at least 4"):
        ransac_homography(pts, pts)
    with pytest.raises(SiftInputError, match=r"\[N, 2\]"):
        ransac_homography(np.zeros((5, 3)), np.zeros((5, 3)))
    with pytest.raises(SiftInputError, match="no homography"):
        ransac_homography(np.ones((6, 2)), np.ones((6, 2)))  # every sample is degenerate


@pytest.fixture(scope="module")
def warped_pair():
    image = data.astronaut()
    h = np.array([[0.95, 0.08, 15.0], [-0.06, 0.97, 25.0], [5e-5, 3e-5, 1.0]])
    return image, cv2.warpPerspective(image, h, (512, 512)), h


def test_astronaut_warp_is_recovered(warped_pair):
    image, warped, h_true = warped_pair
    f1, f2 = detect_and_describe(image), detect_and_describe(warped)
    assert f1.descriptors.shape == (len(f1), 128) and f1.points.shape == (len(f1), 2)
    matches = match_descriptors(f1.descriptors, f2.descriptors)
    h, inliers = ransac_homography(f1.points[matches.indices[:, 0]], f2.points[matches.indices[:, 1]])
    assert inliers.sum() > 200
    corners = np.array([[0, 0], [511, 0], [0, 511], [511, 511]], float)
    assert np.abs(_apply(h, corners) - _apply(h_true, corners)).max() < 2.0
    canvas = draw_matches(image, warped, f1.points, f2.points, matches.indices, inliers)
    assert canvas.shape == (512, 1024, 3) and canvas.dtype == np.uint8
    plain = draw_matches(image, warped, f1.points, f2.points, matches.indices[:0])
    assert np.any(canvas != plain)  # lines were drawn


def test_detect_accepts_grey_and_float_and_limits_count():
    grey = data.camera().astype(np.float64) / 255
    features = detect_and_describe(grey, max_features=50)
    assert 0 < len(features) <= 60  # OpenCV may keep a few ties at the response cut-off
    with pytest.raises(SiftInputError, match="shape"):
        detect_and_describe(np.zeros((4, 4, 4, 4)))
