"""Closed-form initialisation of Zhang's planar calibration.

Z. Zhang, "A flexible new technique for camera calibration", PAMI 22(11), 2000. A board in the plane
``Z = 0`` is seen through ``H = lambda K [r1 r2 t]``. Because ``r1`` and ``r2`` are orthonormal, every
view gives two linear constraints on the symmetric ``B = K^-T K^-1`` (the image of the absolute conic):
``h1^T B h2 = 0`` and ``h1^T B h1 - h2^T B h2 = 0``. Stacked for all views they form ``V b = 0``, solved
by SVD; ``K`` follows from ``B`` by a Cholesky-like factorisation (Zhang's appendix B), then ``R, t`` of
each view from ``K^-1 H``. With zero skew (assumed, as OpenCV does) two tilted views suffice.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cvzoo.geometry.distortion import distort_with_jacobians
from cvzoo.geometry.errors import DegenerateViewsError
from cvzoo.geometry.rotation import rodrigues, rotation_to_rvec

# Smallest acceptable ratio sigma_{n-1} / sigma_1 of the normalised V system. Exactly fronto-parallel
# boards make it 0 (a 2-D or larger null space). Measured on synthetic 9x6 boards with 0.1 px noise:
# ~1.5e-3 for boards within 3 degrees of fronto-parallel, ~4e-3 at 3-5 degrees, ~2e-2 at 8-10 degrees,
# ~6e-2 at 15-20 degrees; the MRPT stereo-calib views (25-50 degrees) give ~0.22.
DEFAULT_MIN_CONDITION = 5e-3


def _image_normalization(image_size: tuple[int, int]) -> np.ndarray:
    """Affine ``T`` mapping pixels to roughly ``[-1, 1]``: centred, one isotropic scale.

    An isotropic scale and a shift keep ``T K`` upper triangular with zero skew, so the closed form can
    run in well-scaled coordinates and ``K = T^-1 K'`` afterwards.
    """
    width, height = image_size
    scale = 2.0 / (width + height)
    return np.array(
        [[scale, 0.0, -scale * width / 2.0], [0.0, scale, -scale * height / 2.0], [0.0, 0.0, 1.0]]
    )


def _constraint_row(H: np.ndarray, i: int, j: int) -> np.ndarray:
    """Zhang's ``v_ij``: ``h_i^T B h_j = v_ij . (B11, B12, B22, B13, B23, B33)``."""
    hi, hj = H[:, i], H[:, j]
    return np.array(
        [
            hi[0] * hj[0],
            hi[0] * hj[1] + hi[1] * hj[0],
            hi[1] * hj[1],
            hi[2] * hj[0] + hi[0] * hj[2],
            hi[2] * hj[1] + hi[1] * hj[2],
            hi[2] * hj[2],
        ]
    )


def board_tilts(homographies: Sequence[np.ndarray], image_size: tuple[int, int]) -> np.ndarray:
    """Rough angle (degrees) between each board's normal and the optical axis.

    Uses a nominal camera (focal length = image width + height over 2, centred principal point): only
    meant to tell the user which views are nearly parallel to the image plane.
    """
    width, height = image_size
    f = (width + height) / 2.0
    K0 = np.array([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]])
    tilts = []
    for H in homographies:
        rvec, _ = extrinsics_from_homography(H, K0)
        normal = rodrigues(rvec)[:, 2]
        tilts.append(np.degrees(np.arccos(min(1.0, abs(normal[2])))))
    return np.array(tilts)


def intrinsics_from_homographies(
    homographies: Sequence[np.ndarray],
    image_size: tuple[int, int],
    min_condition: float = DEFAULT_MIN_CONDITION,
    view_names: Sequence[str] | None = None,
) -> np.ndarray:
    """Closed-form zero-skew camera matrix from board-to-image homographies (Zhang 2000, sec. 3.1).

    Args:
        homographies: ``[3, 3]`` each, board ``(X, Y, 1)`` -> pixels, at least two views.
        image_size: ``(width, height)``, used to condition the system.
        min_condition: smallest accepted ``sigma_{n-1} / sigma_1`` of the normalised ``V``.
        view_names: names for the error message (image paths); defaults to view indices.

    Returns:
        ``[3, 3]`` camera matrix ``K``.

    Raises:
        DegenerateViewsError: the views do not determine ``K`` (e.g. boards parallel to the image plane,
            or fewer than two views) or the solution is not a valid camera (``B`` not positive definite);
            the message lists each view's approximate tilt.
    """
    names = list(view_names) if view_names is not None else [f"view {i}" for i in range(len(homographies))]
    if len(homographies) < 2:
        raise DegenerateViewsError(
            f"the closed-form calibration needs at least 2 views, got {len(homographies)}: {names}"
        )
    T = _image_normalization(image_size)
    rows = []
    for H in homographies:
        Hn = T @ H
        # Each view's two equations get equal weight whatever the board units: scale so |h1|+|h2| = 2.
        Hn = Hn / (0.5 * (np.linalg.norm(Hn[:, 0]) + np.linalg.norm(Hn[:, 1])))
        rows.append(_constraint_row(Hn, 0, 1))
        rows.append(_constraint_row(Hn, 0, 0) - _constraint_row(Hn, 1, 1))
    # Zero skew: B12 = 0, drop its column; unknowns (B11, B22, B13, B23, B33).
    V = np.delete(np.array(rows), 1, axis=1)
    _, sv, Vt = np.linalg.svd(V, full_matrices=True)
    condition = sv[3] / sv[0] if len(sv) >= 4 else 0.0
    if condition < min_condition:
        raise _degenerate(
            f"closed-form system ill-conditioned, sigma ratio {condition:.2e} < {min_condition:.0e}",
            homographies,
            image_size,
            names,
        )
    B11, B22, B13, B23, B33 = Vt[-1]
    if B11 < 0:
        B11, B22, B13, B23, B33 = -B11, -B22, -B13, -B23, -B33
    # Zhang's appendix B with B12 = 0. B must be positive definite and the scale lambda positive;
    # noise on nearly degenerate views breaks that first.
    cy = -B23 / B22 if B22 > 0 else 0.0
    lam = B33 - (B13 * B13 + cy * (-B11 * B23)) / B11 if B11 > 0 else -1.0
    if B11 <= 0 or B22 <= 0 or lam <= 0:
        raise _degenerate(
            "closed-form solution is not a camera (B not positive definite)", homographies, image_size, names
        )
    fx = np.sqrt(lam / B11)
    fy = np.sqrt(lam / B22)
    cx = -B13 * fx * fx / lam
    K_normalized = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    return np.linalg.inv(T) @ K_normalized


def _degenerate(
    reason: str, homographies: Sequence[np.ndarray], image_size: tuple[int, int], names: Sequence[str]
) -> DegenerateViewsError:
    tilts = board_tilts(homographies, image_size)
    detail = ", ".join(f"{n}: {a:.1f} deg" for n, a in zip(names, tilts, strict=True))
    return DegenerateViewsError(
        f"the views do not constrain the intrinsics ({reason}); the boards look nearly parallel to the "
        f"image plane or the poses are too alike. Approximate board tilt per view: {detail}. "
        "Add views with the board tilted by 20-45 degrees in different directions."
    )


def extrinsics_from_homography(H: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Board pose from its homography and ``K`` (Zhang 2000, sec. 3.1 and appendix C).

    ``K^-1 H = lambda [r1 r2 t]``: the scale comes from ``|r1| = 1`` (averaged with ``|r2| = 1``), its sign
    puts the board in front of the camera (``t_z > 0``), ``r3 = r1 x r2``, and noise is removed by taking
    the closest rotation in the Frobenius norm (``U V^T`` of the SVD).

    Returns:
        ``(rvec [3], tvec [3])``.
    """
    M = np.linalg.solve(K, H)
    scale = 2.0 / (np.linalg.norm(M[:, 0]) + np.linalg.norm(M[:, 1]))
    if M[2, 2] * scale < 0:
        scale = -scale
    r1, r2, t = scale * M[:, 0], scale * M[:, 1], scale * M[:, 2]
    Q = np.stack([r1, r2, np.cross(r1, r2)], axis=1)
    U, _, Vt = np.linalg.svd(Q)
    R = U @ np.diag([1.0, 1.0, np.linalg.det(U @ Vt)]) @ Vt
    return rotation_to_rvec(R), t


def linear_radial_distortion(
    object_points: Sequence[np.ndarray],
    image_points: Sequence[np.ndarray],
    K: np.ndarray,
    rvecs: np.ndarray,
    tvecs: np.ndarray,
) -> np.ndarray:
    """Least-squares ``(k1, k2)`` given the other parameters (Zhang 2000, sec. 3.3, eq. 13).

    With ideal pixels ``(u, v)`` and normalised ``(x, y)`` of the model, the observed pixels satisfy
    ``u_obs - u = (u - cx)(k1 r^2 + k2 r^4)`` (likewise for ``v``): linear in ``k1, k2``.

    Returns:
        ``[5]`` coefficients ``(k1, k2, 0, 0, 0)``.
    """
    rows, rhs = [], []
    for X, uv_obs, rvec, tvec in zip(object_points, image_points, rvecs, tvecs, strict=True):
        Xc = X @ rodrigues(rvec).T + tvec
        xy = Xc[:, :2] / Xc[:, 2:3]
        uv = distort_with_jacobians(xy, np.zeros(5))[0] @ K[:2, :2].T + K[:2, 2]
        r2 = np.sum(xy * xy, axis=1)
        for axis in range(2):
            offset = uv[:, axis] - K[axis, 2]
            rows.append(np.stack([offset * r2, offset * r2 * r2], axis=1))
            rhs.append(uv_obs[:, axis] - uv[:, axis])
    k, *_ = np.linalg.lstsq(np.concatenate(rows), np.concatenate(rhs), rcond=None)
    return np.array([k[0], k[1], 0.0, 0.0, 0.0])
