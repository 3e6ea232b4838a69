"""Axis-angle (Rodrigues) rotation vectors and their rotation matrices.

A rotation vector ``r = theta * k`` (unit axis ``k``, angle ``theta`` in radians) maps to
``R = I + sin(theta) [k]x + (1 - cos(theta)) [k]x^2`` (Rodrigues' formula). The inverse reads the angle
from the trace and the axis from the skew part, except near ``theta = pi`` where the skew part vanishes
and the axis is read from the symmetric part ``(R + I) / 2 = k k^T`` instead.
"""

from __future__ import annotations

import numpy as np

from cvzoo.geometry.errors import GeometryError

# Below this angle the closed forms divide by ~0; their Taylor series are used instead.
_SMALL_ANGLE = 1e-8


def skew(vector: np.ndarray) -> np.ndarray:
    """Cross-product matrix ``[v]x`` such that ``[v]x @ w == cross(v, w)``.

    Args:
        vector: ``[3]``.

    Returns:
        ``[3, 3]`` skew-symmetric matrix.
    """
    x, y, z = np.asarray(vector, dtype=np.float64).reshape(3)
    return np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])


def _as_rvec(rvec: np.ndarray) -> np.ndarray:
    r = np.asarray(rvec, dtype=np.float64)
    if r.size != 3:
        raise GeometryError(f"rotation vector must have 3 elements, got shape {r.shape}")
    r = r.reshape(3)
    if not np.all(np.isfinite(r)):
        raise GeometryError(f"rotation vector is not finite: {r}")
    return r


def rodrigues(rvec: np.ndarray) -> np.ndarray:
    """Rotation matrix of an axis-angle vector (Rodrigues' formula).

    Args:
        rvec: ``[3]`` (any shape with 3 elements, e.g. OpenCV's ``[3, 1]``).

    Returns:
        ``[3, 3]`` rotation matrix (float64).
    """
    r = _as_rvec(rvec)
    theta = float(np.linalg.norm(r))
    K = skew(r)
    if theta < _SMALL_ANGLE:
        # sin(t)/t -> 1 - t^2/6 and (1 - cos t)/t^2 -> 1/2 - t^2/24, written in the unnormalised r.
        return np.eye(3) + (1.0 - theta**2 / 6.0) * K + (0.5 - theta**2 / 24.0) * (K @ K)
    return np.eye(3) + (np.sin(theta) / theta) * K + ((1.0 - np.cos(theta)) / theta**2) * (K @ K)


def skew_batch(vectors: np.ndarray) -> np.ndarray:
    """``[M, 3] -> [M, 3, 3]`` cross-product matrices (``skew`` of each row)."""
    x, y, z = vectors[:, 0], vectors[:, 1], vectors[:, 2]
    zero = np.zeros_like(x)
    return np.stack([np.stack([zero, -z, y], 1), np.stack([z, zero, -x], 1), np.stack([-y, x, zero], 1)], 1)


def rodrigues_batch(rvecs: np.ndarray) -> np.ndarray:
    """``[M, 3]`` axis-angle vectors -> ``[M, 3, 3]`` rotations: :func:`rodrigues` of each, in one pass (the
    calibration solvers need every view's rotation at every iteration)."""
    r = np.asarray(rvecs, dtype=np.float64).reshape(-1, 3)
    theta2 = (r * r).sum(1)
    theta = np.sqrt(theta2)
    small = theta < _SMALL_ANGLE
    safe = np.where(small, 1.0, theta)
    a = np.where(small, 1.0 - theta2 / 6.0, np.sin(safe) / safe)
    b = np.where(small, 0.5 - theta2 / 24.0, (1.0 - np.cos(safe)) / safe**2)
    K = skew_batch(r)
    return np.eye(3) + a[:, None, None] * K + b[:, None, None] * (K @ K)


def rodrigues_jacobian_batch(rvecs: np.ndarray, rotations: np.ndarray | None = None) -> np.ndarray:
    """:func:`rodrigues_jacobian` of each row of ``[M, 3]`` -> ``[M, 3, 3]`` (row ``i`` of each is ``w_i``)."""
    r = np.asarray(rvecs, dtype=np.float64).reshape(-1, 3)
    R = rodrigues_batch(r) if rotations is None else rotations
    theta2 = (r * r).sum(1)
    small = theta2 < _SMALL_ANGLE**2
    W = (r[:, :, None] * r[:, None, :] + np.swapaxes(skew_batch(r) @ (np.eye(3) - R), 1, 2)) / np.where(
        small, 1.0, theta2)[:, None, None]
    W[small] = np.eye(3)
    return W


def rotation_to_rvec(R: np.ndarray) -> np.ndarray:
    """Axis-angle vector of a rotation matrix (inverse of :func:`rodrigues`), angle in ``[0, pi]``.

    The input is first projected on SO(3) by SVD, so a slightly non-orthonormal matrix (from a
    numerical estimate) is accepted.

    Args:
        R: ``[3, 3]`` rotation matrix.

    Returns:
        ``[3]`` rotation vector.

    Raises:
        GeometryError: ``R`` is not 3x3, not finite, or a reflection (determinant < 0).
    """
    R = np.asarray(R, dtype=np.float64)
    if R.shape != (3, 3) or not np.all(np.isfinite(R)):
        raise GeometryError(f"rotation matrix must be a finite [3, 3] array, got shape {R.shape}")
    U, _, Vt = np.linalg.svd(R)
    R = U @ Vt
    if np.linalg.det(R) < 0:
        raise GeometryError("matrix is a reflection (det < 0), not a rotation")
    # 2 sin(theta) k = vee(R - R^T); cos(theta) = (trace - 1) / 2.
    axis_sin = 0.5 * np.array([R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1]])
    s = float(np.linalg.norm(axis_sin))
    c = float(np.clip((np.trace(R) - 1.0) / 2.0, -1.0, 1.0))
    theta = float(np.arctan2(s, c))
    if s < _SMALL_ANGLE and c > 0:
        # theta ~ 0: R ~ I + [r]x, so r ~ vee(R - R^T) / 2 to second order.
        return axis_sin
    if c > -0.5:
        return axis_sin * (theta / s)
    # Near pi, sin(theta) -> 0 and the skew part loses the axis. Since R = c I + s [k]x + (1-c) k k^T,
    # the symmetric part gives k k^T exactly; take its largest column, sign fixed by the skew part.
    B = (0.5 * (R + R.T) - c * np.eye(3)) / (1.0 - c)
    i = int(np.argmax(np.diag(B)))
    k = B[:, i] / np.sqrt(B[i, i])
    k /= np.linalg.norm(k)
    if s > 0 and np.dot(k, axis_sin) < 0:
        k = -k
    return k * theta


def rodrigues_jacobian(rvec: np.ndarray) -> np.ndarray:
    """Derivative of the rotated vector ``R(r) X`` with respect to ``r``, as three skew generators.

    Uses the compact form of Gallego & Yezzi, "A compact formula for the derivative of a 3-D rotation in
    exponential coordinates" (JMIV 2015): ``dR/dr_i = [w_i]x R`` with
    ``w_i = (r_i r + r x ((I - R) e_i)) / |r|^2``, which has no singularity except ``r = 0``
    (where ``w_i = e_i``). Hence ``d(R X)/dr_i = w_i x (R X)``.

    Args:
        rvec: ``[3]``.

    Returns:
        ``[3, 3]`` matrix whose row ``i`` is ``w_i``.
    """
    r = _as_rvec(rvec)
    theta2 = float(r @ r)
    if theta2 < _SMALL_ANGLE**2:
        return np.eye(3)
    R = rodrigues(r)
    I_minus_R = np.eye(3) - R
    # Row i: (r_i r + r x ((I - R) e_i)) / |r|^2; the cross products are the columns of [r]x (I - R).
    return (np.outer(r, r) + (skew(r) @ I_minus_R).T) / theta2
