"""Brown-Conrady lens distortion on the normalised image plane, and its inverse.

Coefficients follow OpenCV's order ``(k1, k2, p1, p2, k3)``; shorter vectors are the reduced models
(``k1``; ``k1, k2``; ``k1, k2, p1, p2``). For an undistorted normalised point ``(x, y)`` with
``r^2 = x^2 + y^2`` (Brown, "Decentering distortion of lenses", 1966; Conrady 1919):

    radial = 1 + k1 r^2 + k2 r^4 + k3 r^6
    x_d = x radial + 2 p1 x y + p2 (r^2 + 2 x^2)
    y_d = y radial + p1 (r^2 + 2 y^2) + 2 p2 x y

The model maps ideal to distorted points in closed form; the inverse has none and is solved by Newton's
method per point. Images are undistorted the other way round: each output pixel is sent through the
forward model to find where to sample the input (a remap table), which needs no inversion at all.
"""

from __future__ import annotations

import numpy as np

from cvzoo.geometry._validate import as_camera_matrix, as_dist_coeffs, as_points
from cvzoo.geometry.errors import GeometryError


def distort_with_jacobians(xy: np.ndarray, dist: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distort normalised points and return the derivatives the solvers need.

    Args:
        xy: ``[N, 2]`` undistorted normalised points.
        dist: ``[5]`` coefficients ``(k1, k2, p1, p2, k3)`` (already padded).

    Returns:
        ``(xy_d [N, 2], d_xy [N, 2, 2], d_coeffs [N, 2, 5])``: distorted points, their Jacobian with
        respect to ``(x, y)`` and with respect to ``(k1, k2, p1, p2, k3)``.
    """
    k1, k2, p1, p2, k3 = dist
    x, y = xy[:, 0], xy[:, 1]
    r2 = x * x + y * y
    radial = 1.0 + r2 * (k1 + r2 * (k2 + r2 * k3))
    # d(radial)/d(r^2); d(r^2)/dx = 2x.
    dradial = k1 + r2 * (2.0 * k2 + 3.0 * k3 * r2)
    xy_prod = x * y
    xd = x * radial + 2.0 * p1 * xy_prod + p2 * (r2 + 2.0 * x * x)
    yd = y * radial + p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * xy_prod

    d_xy = np.empty((len(x), 2, 2))
    cross = 2.0 * xy_prod * dradial + 2.0 * p1 * x + 2.0 * p2 * y
    d_xy[:, 0, 0] = radial + 2.0 * x * x * dradial + 2.0 * p1 * y + 6.0 * p2 * x
    d_xy[:, 0, 1] = cross
    d_xy[:, 1, 0] = cross
    d_xy[:, 1, 1] = radial + 2.0 * y * y * dradial + 6.0 * p1 * y + 2.0 * p2 * x

    r4 = r2 * r2
    d_coeffs = np.empty((len(x), 2, 5))
    d_coeffs[:, 0] = np.stack([x * r2, x * r4, 2.0 * xy_prod, r2 + 2.0 * x * x, x * r4 * r2], axis=1)
    d_coeffs[:, 1] = np.stack([y * r2, y * r4, r2 + 2.0 * y * y, 2.0 * xy_prod, y * r4 * r2], axis=1)
    return np.stack([xd, yd], axis=1), d_xy, d_coeffs


def distort_normalized(xy: np.ndarray, dist: np.ndarray | None) -> np.ndarray:
    """Apply Brown-Conrady distortion to normalised image points.

    Args:
        xy: ``[N, 2]`` ideal (undistorted) points on the normalised plane ``z = 1``.
        dist: 0, 1, 2, 4 or 5 coefficients ``(k1, k2, p1, p2, k3)``; ``None`` means no distortion.

    Returns:
        ``[N, 2]`` distorted normalised points.
    """
    pts = as_points(xy, 2, "normalised points")
    return distort_with_jacobians(pts, as_dist_coeffs(dist))[0]


def undistort_normalized(
    xy_distorted: np.ndarray, dist: np.ndarray | None, max_iter: int = 30, tol: float = 1e-13
) -> np.ndarray:
    """Invert :func:`distort_normalized` by Newton's method, one 2x2 system per point.

    Newton converges quadratically from the distorted point itself wherever the model is locally
    invertible (its 2x2 Jacobian non-singular), which is the physically valid field of view. Steps that
    do not reduce the residual are halved, so strong barrel distortion near the edge does not overshoot.

    Args:
        xy_distorted: ``[N, 2]`` distorted normalised points.
        dist: distortion coefficients (see :func:`distort_normalized`).
        max_iter: Newton iterations at most.
        tol: stop when every residual ``|distort(x) - x_d|`` is below this (normalised units).

    Returns:
        ``[N, 2]`` undistorted normalised points; rows that did not converge (outside the region where
        the model can be inverted) are NaN.
    """
    target = as_points(xy_distorted, 2, "distorted points")
    coeffs = as_dist_coeffs(dist)
    if not np.any(coeffs):
        return target.copy()
    xy = target.copy()
    residual_xy, jac, _ = distort_with_jacobians(xy, coeffs)
    residual_xy -= target
    residual = np.linalg.norm(residual_xy, axis=1)
    frozen = np.zeros(len(xy), dtype=bool)  # no step reduces the residual any more
    for _ in range(max_iter):
        idx = np.flatnonzero((residual > tol) & ~frozen)
        if idx.size == 0:
            break
        j = jac[idx]
        det = j[:, 0, 0] * j[:, 1, 1] - j[:, 0, 1] * j[:, 1, 0]
        det = np.where(np.abs(det) < 1e-300, np.nan, det)  # singular Jacobian: NaN step, never accepted
        rx, ry = residual_xy[idx, 0], residual_xy[idx, 1]
        step = np.stack(
            [(j[:, 1, 1] * rx - j[:, 0, 1] * ry) / det, (j[:, 0, 0] * ry - j[:, 1, 0] * rx) / det], 1
        )
        scale = np.ones(idx.size)
        for _halving in range(10):
            candidate = xy[idx] - scale[:, None] * step
            cand_res_xy, cand_jac, _ = distort_with_jacobians(candidate, coeffs)
            cand_res_xy -= target[idx]
            cand_res = np.linalg.norm(cand_res_xy, axis=1)
            improved = cand_res < residual[idx]
            if np.all(improved):
                break
            scale[~improved] *= 0.5
        ok = idx[improved]
        xy[ok] = candidate[improved]
        residual_xy[ok] = cand_res_xy[improved]
        residual[ok] = cand_res[improved]
        jac[ok] = cand_jac[improved]
        frozen[idx[~improved]] = True
    # Accept points within 1000 tol (round-off can stall Newton just above tol); the rest did not converge.
    xy[~(residual <= 1e3 * tol)] = np.nan
    return xy


def _pixels_to_normalized(pixels: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Invert ``u = fx x + s y + cx, v = fy y + cy``: ``[N, 2]`` pixels -> ``[N, 2]`` normalised."""
    y = (pixels[:, 1] - K[1, 2]) / K[1, 1]
    x = (pixels[:, 0] - K[0, 2] - K[0, 1] * y) / K[0, 0]
    return np.stack([x, y], axis=1)


def _normalized_to_pixels(xy: np.ndarray, K: np.ndarray) -> np.ndarray:
    u = K[0, 0] * xy[:, 0] + K[0, 1] * xy[:, 1] + K[0, 2]
    v = K[1, 1] * xy[:, 1] + K[1, 2]
    return np.stack([u, v], axis=1)


def undistort_points(
    pixels: np.ndarray,
    K: np.ndarray,
    dist: np.ndarray | None,
    new_K: np.ndarray | None = None,
    normalized: bool = False,
    max_iter: int = 30,
    tol: float = 1e-13,
) -> np.ndarray:
    """Remove lens distortion from observed pixel coordinates.

    Unlike ``cv2.undistortPoints`` (which returns normalised coordinates unless given ``P``), the result
    is in pixels of ``new_K`` (default: ``K`` itself), or normalised with ``normalized=True``.

    Args:
        pixels: ``[N, 2]`` distorted pixel coordinates (``[N, 1, 2]`` accepted).
        K: ``[3, 3]`` camera matrix of the distorted image.
        dist: distortion coefficients ``(k1, k2, p1, p2, k3)`` or a reduced model.
        new_K: ``[3, 3]`` camera matrix of the output pixels; ``None`` keeps ``K``.
        normalized: return points on the normalised plane instead of pixels.
        max_iter: Newton iterations at most (see :func:`undistort_normalized`).
        tol: residual tolerance in normalised units (1e-13 is ~1e-10 px at f = 1000).

    Returns:
        ``[N, 2]`` undistorted points; NaN rows where the model cannot be inverted.
    """
    pts = as_points(pixels, 2, "pixels")
    K = as_camera_matrix(K)
    xy = undistort_normalized(_pixels_to_normalized(pts, K), dist, max_iter=max_iter, tol=tol)
    if normalized:
        return xy
    return _normalized_to_pixels(xy, K if new_K is None else as_camera_matrix(new_K, "new_K"))


def undistort_map(
    K: np.ndarray,
    dist: np.ndarray | None,
    image_size: tuple[int, int],
    new_K: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Remap table of an undistorted image (the ``initUndistortRectifyMap`` equivalent, ``R = I``).

    For each pixel ``(u, v)`` of the output image (camera ``new_K``, no distortion), the table holds the
    position in the distorted input image that sees the same ray: back-project with ``new_K``, distort,
    project with ``K``.

    Args:
        K: ``[3, 3]`` camera matrix of the distorted input.
        dist: distortion coefficients.
        image_size: output ``(width, height)``.
        new_K: camera matrix of the output image; ``None`` keeps ``K``.

    Returns:
        ``(map_x, map_y)``, float32 ``[H, W]`` each, ready for ``cv2.remap``.
    """
    K = as_camera_matrix(K)
    target_K = K if new_K is None else as_camera_matrix(new_K, "new_K")
    width, height = (int(s) for s in image_size)
    if width <= 0 or height <= 0:
        raise GeometryError(f"image_size must be positive (width, height), got {image_size}")
    u, v = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    ideal = _pixels_to_normalized(np.stack([u.ravel(), v.ravel()], axis=1), target_K)
    distorted = distort_with_jacobians(ideal, as_dist_coeffs(dist))[0]
    source = _normalized_to_pixels(distorted, K)
    map_x = source[:, 0].reshape(height, width).astype(np.float32)
    map_y = source[:, 1].reshape(height, width).astype(np.float32)
    return map_x, map_y


def undistort_image(
    image: np.ndarray,
    K: np.ndarray,
    dist: np.ndarray | None,
    new_K: np.ndarray | None = None,
) -> np.ndarray:
    """Undistort an image by bilinear resampling through :func:`undistort_map`.

    Args:
        image: ``[H, W]`` or ``[H, W, C]`` array (any dtype ``cv2.remap`` accepts).
        K: ``[3, 3]`` camera matrix of ``image``.
        dist: distortion coefficients.
        new_K: camera matrix of the result; ``None`` keeps ``K``.

    Returns:
        Array of the input's shape and dtype; pixels that see outside the input are 0.
    """
    import cv2  # lazy: keep `import cvzoo.geometry` cheap

    img = np.asarray(image)
    if img.ndim not in (2, 3) or img.shape[0] == 0 or img.shape[1] == 0:
        raise GeometryError(f"image must be [H, W] or [H, W, C], got shape {img.shape}")
    map_x, map_y = undistort_map(K, dist, (img.shape[1], img.shape[0]), new_K)
    return cv2.remap(img, map_x, map_y, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
