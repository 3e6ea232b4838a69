"""Input checks shared by the geometry modules: arrays become float64 of a known shape or raise."""

from __future__ import annotations

import numpy as np

from cvzoo.geometry.errors import GeometryError

# Brown-Conrady coefficient counts accepted, in OpenCV order (k1, k2, p1, p2, k3):
# none, k1, k1 k2, k1 k2 p1 p2, or all five.
_DIST_LENGTHS = (0, 1, 2, 4, 5)


def as_points(points: np.ndarray, dim: int, name: str = "points") -> np.ndarray:
    """Return ``points`` as a float64 ``[N, dim]`` array (OpenCV's ``[N, 1, dim]`` is accepted).

    Raises:
        GeometryError: wrong trailing dimension or non-finite values.
    """
    arr = np.asarray(points, dtype=np.float64)
    if arr.ndim == 1 and arr.shape[0] == dim:
        arr = arr[None, :]
    if arr.ndim == 3 and arr.shape[1] == 1:
        arr = arr[:, 0, :]
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise GeometryError(f"{name} must have shape [N, {dim}], got {tuple(np.shape(points))}")
    if not np.all(np.isfinite(arr)):
        raise GeometryError(f"{name} contain non-finite values")
    return arr


def as_camera_matrix(K: np.ndarray, name: str = "K") -> np.ndarray:
    """Return ``K`` as a float64 ``[3, 3]`` upper-triangular camera matrix with positive focal lengths."""
    arr = np.asarray(K, dtype=np.float64)
    if arr.shape != (3, 3) or not np.all(np.isfinite(arr)):
        raise GeometryError(f"{name} must be a finite [3, 3] camera matrix, got shape {arr.shape}")
    if arr[0, 0] <= 0 or arr[1, 1] <= 0:
        raise GeometryError(f"{name} must have positive focal lengths, got fx={arr[0, 0]}, fy={arr[1, 1]}")
    if arr[1, 0] != 0 or arr[2, 0] != 0 or arr[2, 1] != 0 or arr[2, 2] != 1:
        raise GeometryError(f"{name} must be upper triangular with K[2, 2] = 1, got\n{arr}")
    return arr


def as_dist_coeffs(dist: np.ndarray | None, name: str = "dist") -> np.ndarray:
    """Return Brown-Conrady coefficients padded to ``[5]`` = ``(k1, k2, p1, p2, k3)``.

    Raises:
        GeometryError: a count other than 0, 1, 2, 4 or 5, or non-finite values.
    """
    if dist is None:
        return np.zeros(5)
    arr = np.asarray(dist, dtype=np.float64).reshape(-1)
    if arr.size not in _DIST_LENGTHS:
        raise GeometryError(
            f"{name} must hold 0, 1, 2, 4 or 5 coefficients (k1, k2, p1, p2, k3), got {arr.size}"
        )
    if not np.all(np.isfinite(arr)):
        raise GeometryError(f"{name} contains non-finite values: {arr}")
    out = np.zeros(5)
    out[: arr.size] = arr
    return out
