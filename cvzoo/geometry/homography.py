"""Plane-to-image homographies by the normalised Direct Linear Transform.

Each correspondence ``x' ~ H x`` gives two linear equations in the nine entries of ``H``; the stacked
``[2N, 9]`` system is solved in the least-squares sense by the right singular vector of its smallest
singular value. Raw pixel coordinates (~1e3) make the system badly conditioned, so both point sets are
first translated to their centroid and scaled to a mean distance of sqrt(2) (Hartley, "In defense of
the eight-point algorithm", PAMI 1997; Hartley & Zisserman, alg. 4.2), and the result is denormalised.
"""

from __future__ import annotations

import numpy as np

from cvzoo.geometry._validate import as_points
from cvzoo.geometry.errors import GeometryError


def hartley_normalization(points: np.ndarray) -> np.ndarray:
    """Similarity ``T`` (``[3, 3]``) moving ``[N, 2]`` points to centroid 0, mean distance sqrt(2).

    Raises:
        GeometryError: all points coincide.
    """
    centroid = points.mean(axis=0)
    mean_dist = float(np.mean(np.linalg.norm(points - centroid, axis=1)))
    if mean_dist < 1e-12:
        raise GeometryError("points coincide: cannot normalise them")
    scale = np.sqrt(2.0) / mean_dist
    return np.array([[scale, 0.0, -scale * centroid[0]], [0.0, scale, -scale * centroid[1]], [0.0, 0.0, 1.0]])


def apply_homography(H: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map ``[N, 2]`` points through ``[3, 3]`` ``H`` (with the perspective division)."""
    pts = as_points(points, 2)
    mapped = pts @ H[:, :2].T + H[:, 2]
    return mapped[:, :2] / mapped[:, 2:3]


def find_homography(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Homography ``H`` with ``target ~ H source`` by normalised DLT (no outlier rejection).

    Args:
        source: ``[N, 2]`` points, e.g. the board's ``(X, Y)`` coordinates, ``N >= 4``.
        target: ``[N, 2]`` matching image points.

    Returns:
        ``[3, 3]`` homography scaled so that ``H[2, 2] = 1`` (or unit Frobenius norm if that entry is ~0).

    Raises:
        GeometryError: fewer than 4 correspondences, mismatched counts, or a degenerate configuration
            (e.g. collinear points) leaving the solution undetermined.
    """
    src = as_points(source, 2, "source points")
    dst = as_points(target, 2, "target points")
    if len(src) != len(dst):
        raise GeometryError(f"source and target must match: {len(src)} vs {len(dst)} points")
    if len(src) < 4:
        raise GeometryError(f"a homography needs at least 4 correspondences, got {len(src)}")
    T_src = hartley_normalization(src)
    T_dst = hartley_normalization(dst)
    s = src @ T_src[:2, :2].T + T_src[:2, 2]
    d = dst @ T_dst[:2, :2].T + T_dst[:2, 2]
    n = len(s)
    A = np.zeros((2 * n, 9))
    # From x' (h3 . x) - (h1 . x) = 0 and y' (h3 . x) - (h2 . x) = 0, with x = (X, Y, 1).
    A[0::2, 0:2] = -s
    A[0::2, 2] = -1.0
    A[0::2, 6:8] = d[:, :1] * s
    A[0::2, 8] = d[:, 0]
    A[1::2, 3:5] = -s
    A[1::2, 5] = -1.0
    A[1::2, 6:8] = d[:, 1:2] * s
    A[1::2, 8] = d[:, 1]
    # With exactly 4 points A is [8, 9]: full_matrices gives the null vector as the 9th row of V^T. With more,
    # the thin SVD has all 9 rows of V^T and skips the [2N, 2N] U nobody reads.
    _, sv, Vt = np.linalg.svd(A, full_matrices=len(A) < 9)
    # A unique solution needs rank 8 (a one-dimensional null space): the 8th singular value must be
    # clearly non-zero (collinear points leave a larger null space).
    if sv[7] < 1e-9 * sv[0]:
        raise GeometryError("homography is undetermined: the points are degenerate (collinear?)")
    Hn = Vt[-1].reshape(3, 3)
    H = np.linalg.inv(T_dst) @ Hn @ T_src
    if abs(H[2, 2]) > 1e-12 * np.linalg.norm(H):
        return H / H[2, 2]
    return H / np.linalg.norm(H)
