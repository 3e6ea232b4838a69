"""The pinhole camera: world -> camera -> normalised plane -> (distortion) -> pixels, and back.

A world point ``X_w`` is moved into the camera frame by the extrinsics, ``X_c = R X_w + t``; the pinhole
divides by depth to reach the normalised plane ``z = 1``, ``(x, y) = (X_c / Z_c, Y_c / Z_c)``; lens
distortion bends ``(x, y)`` (see :mod:`cvzoo.geometry.distortion`); the intrinsics ``K`` scale and shift
to pixels, ``[u, v, 1]^T = K [x_d, y_d, 1]^T`` with

    K = [[fx, s,  cx],
         [0,  fy, cy],
         [0,  0,  1 ]]

(Hartley & Zisserman, "Multiple View Geometry", 2nd ed., ch. 6). Dividing by depth loses it: a pixel
back-projects to a ray, and only a known depth picks the point on it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cvzoo.geometry._validate import as_camera_matrix, as_dist_coeffs, as_points
from cvzoo.geometry.distortion import _normalized_to_pixels, _pixels_to_normalized, distort_with_jacobians
from cvzoo.geometry.errors import GeometryError
from cvzoo.geometry.rotation import rodrigues, rotation_to_rvec


@dataclass(frozen=True)
class CameraIntrinsics:
    """Pinhole intrinsics in pixels: focal lengths, principal point and skew."""

    fx: float
    fy: float
    cx: float
    cy: float
    skew: float = 0.0

    def __post_init__(self) -> None:
        values = (self.fx, self.fy, self.cx, self.cy, self.skew)
        if not all(np.isfinite(values)):
            raise GeometryError(f"intrinsics must be finite, got {values}")
        if self.fx <= 0 or self.fy <= 0:
            raise GeometryError(f"focal lengths must be positive, got fx={self.fx}, fy={self.fy}")

    @property
    def K(self) -> np.ndarray:
        """``[3, 3]`` camera matrix."""
        return np.array([[self.fx, self.skew, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @classmethod
    def from_matrix(cls, K: np.ndarray) -> CameraIntrinsics:
        """Build from a ``[3, 3]`` upper-triangular camera matrix."""
        K = as_camera_matrix(K)
        return cls(float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2]), float(K[0, 1]))


@dataclass(frozen=True)
class Extrinsics:
    """World-to-camera rigid motion ``X_c = R X_w + t``.

    Attributes:
        R: ``[3, 3]`` rotation matrix.
        t: ``[3]`` translation (the world origin in camera coordinates).
    """

    R: np.ndarray
    t: np.ndarray

    def __post_init__(self) -> None:
        R = np.asarray(self.R, dtype=np.float64)
        t = np.asarray(self.t, dtype=np.float64).reshape(-1)
        if R.shape != (3, 3) or t.shape != (3,):
            raise GeometryError(f"Extrinsics needs R [3, 3] and t [3], got {R.shape} and {t.shape}")
        if not np.allclose(R @ R.T, np.eye(3), atol=1e-6) or np.linalg.det(R) <= 0:
            raise GeometryError("Extrinsics.R is not a rotation matrix (R R^T != I or det <= 0)")
        object.__setattr__(self, "R", R)
        object.__setattr__(self, "t", t)

    @classmethod
    def from_rvec(cls, rvec: np.ndarray, tvec: np.ndarray) -> Extrinsics:
        """Build from an axis-angle rotation vector and a translation."""
        return cls(rodrigues(rvec), np.asarray(tvec, dtype=np.float64).reshape(-1))

    @property
    def rvec(self) -> np.ndarray:
        """``[3]`` axis-angle vector of ``R``."""
        return rotation_to_rvec(self.R)

    @property
    def center(self) -> np.ndarray:
        """``[3]`` camera centre in world coordinates, ``-R^T t``."""
        return -self.R.T @ self.t

    def transform(self, points_world: np.ndarray) -> np.ndarray:
        """World ``[N, 3]`` -> camera ``[N, 3]``."""
        return as_points(points_world, 3, "world points") @ self.R.T + self.t


def camera_to_normalized(points_camera: np.ndarray) -> np.ndarray:
    """Perspective division: camera ``[N, 3]`` -> normalised plane ``[N, 2]``.

    Raises:
        GeometryError: a point has depth ``Z <= 0`` (behind or on the camera plane).
    """
    pts = as_points(points_camera, 3, "camera points")
    if np.any(pts[:, 2] <= 0):
        bad = np.flatnonzero(pts[:, 2] <= 0)
        raise GeometryError(f"{bad.size} point(s) at or behind the camera (Z <= 0), first index {bad[0]}")
    return pts[:, :2] / pts[:, 2:3]


def normalized_to_pixels(xy: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Normalised ``[N, 2]`` -> pixels ``[N, 2]`` through ``K`` (skew included)."""
    return _normalized_to_pixels(as_points(xy, 2, "normalised points"), as_camera_matrix(K))


def pixels_to_normalized(pixels: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Pixels ``[N, 2]`` -> normalised ``[N, 2]`` through ``K^-1`` (no distortion removed)."""
    return _pixels_to_normalized(as_points(pixels, 2, "pixels"), as_camera_matrix(K))


def project_points(
    points_world: np.ndarray,
    rvec: np.ndarray,
    tvec: np.ndarray,
    K: np.ndarray,
    dist: np.ndarray | None = None,
) -> np.ndarray:
    """Project world points to pixels (the ``cv2.projectPoints`` equivalent).

    Args:
        points_world: ``[N, 3]`` points in the world frame.
        rvec: ``[3]`` axis-angle rotation world -> camera.
        tvec: ``[3]`` translation world -> camera.
        K: ``[3, 3]`` camera matrix.
        dist: distortion ``(k1, k2, p1, p2, k3)`` or a reduced model; ``None`` for an ideal pinhole.

    Returns:
        ``[N, 2]`` pixel coordinates.
    """
    extr = Extrinsics.from_rvec(rvec, tvec)
    xy = camera_to_normalized(extr.transform(points_world))
    xy_d = distort_with_jacobians(xy, as_dist_coeffs(dist))[0]
    return _normalized_to_pixels(xy_d, as_camera_matrix(K))


def back_project(pixels: np.ndarray, K: np.ndarray, depth: float | np.ndarray | None = None) -> np.ndarray:
    """Lift pixels back into 3-D camera coordinates (no distortion: undistort the pixels first).

    Projection forgets depth, so a pixel only fixes a ray through the camera centre. Without ``depth``
    the ray directions are returned, normalised to unit length; with ``depth`` (``Z``, scalar or
    ``[N]``) the points ``Z * (x, y, 1)`` on those rays, which project back onto the same pixels for any
    positive depth -- the depth ambiguity of a single view.

    Args:
        pixels: ``[N, 2]`` pixel coordinates.
        K: ``[3, 3]`` camera matrix.
        depth: ``None``, a scalar or ``[N]`` positive depths along the optical axis.

    Returns:
        ``[N, 3]`` unit ray directions, or camera-frame points at the given depths.
    """
    xy = pixels_to_normalized(pixels, K)
    rays = np.concatenate([xy, np.ones((len(xy), 1))], axis=1)
    if depth is None:
        return rays / np.linalg.norm(rays, axis=1, keepdims=True)
    z = np.asarray(depth, dtype=np.float64)
    if z.ndim > 1 or (z.ndim == 1 and z.shape[0] != len(xy)):
        raise GeometryError(f"depth must be a scalar or [N={len(xy)}], got shape {z.shape}")
    if np.any(~np.isfinite(z)) or np.any(z <= 0):
        raise GeometryError("depth must be finite and positive")
    return rays * (z[:, None] if z.ndim == 1 else z)
