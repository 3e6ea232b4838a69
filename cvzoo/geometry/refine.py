"""Levenberg-Marquardt refinement of all calibration parameters on the reprojection error.

Zhang (2000, sec. 3.2) refines the closed-form estimate by minimising ``sum |m_ij - m(K, d, R_i, t_i,
M_j)|^2`` over the intrinsics ``(fx, fy, cx, cy)``, the distortion ``(k1, k2, p1, p2, k3)`` and every view's
``(rvec, tvec)``. The Jacobian is analytic (chain rule through the pinhole and Brown-Conrady models; the
rotation derivative from Gallego & Yezzi 2015). It is sparse by blocks -- a view's residuals depend only
on the intrinsics and that view's pose -- so ``J^T J`` is assembled block by block without forming ``J``.
Damping follows Marquardt (scaled by ``diag(J^T J)``) with Nielsen's update of the damping factor
(Madsen, Nielsen & Tingleff, "Methods for non-linear least squares problems", 2004, sec. 3.2).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cvzoo.geometry.distortion import distort_with_jacobians
from cvzoo.geometry.rotation import (
    rodrigues,
    rodrigues_batch,
    rodrigues_jacobian,
    rodrigues_jacobian_batch,
    skew,
    skew_batch,
)

# Order of the intrinsic parameters in the optimisation vector.
INTRINSIC_NAMES = ("fx", "fy", "cx", "cy", "k1", "k2", "p1", "p2", "k3")
NUM_INTRINSIC = len(INTRINSIC_NAMES)
POSE_SIZE = 6


def camera_point_residuals(
    intrinsics: np.ndarray, camera_points: np.ndarray, image_points: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Residuals of points given in the camera's frame, with their Jacobians.

    Args:
        intrinsics: ``[9]`` ``(fx, fy, cx, cy, k1, k2, p1, p2, k3)``.
        camera_points: ``[N, 3]`` points in the camera frame (``Xc = R X + t``).
        image_points: ``[N, 2]`` observed pixels.

    Returns:
        ``(residuals [2N], d_intrinsics [2N, 9], d_camera_points [N, 2, 3])``, residuals = projected -
        observed, interleaved ``(u0, v0, u1, v1, ...)``.
    """
    fx, fy, cx, cy = intrinsics[:4]
    inv_z = 1.0 / camera_points[:, 2]
    xy = camera_points[:, :2] * inv_z[:, None]
    xy_d, d_xy, d_coeffs = distort_with_jacobians(xy, intrinsics[4:])
    n = len(xy)
    proj = np.stack([fx * xy_d[:, 0] + cx, fy * xy_d[:, 1] + cy], axis=1)
    residuals = (proj - image_points).reshape(-1)

    focal = np.array([fx, fy])
    d_int = np.zeros((n, 2, NUM_INTRINSIC))
    d_int[:, 0, 0] = xy_d[:, 0]
    d_int[:, 1, 1] = xy_d[:, 1]
    d_int[:, 0, 2] = 1.0
    d_int[:, 1, 3] = 1.0
    d_int[:, :, 4:] = focal[None, :, None] * d_coeffs

    # d(x, y)/d(Xc): perspective division.
    d_persp = np.zeros((n, 2, 3))
    d_persp[:, 0, 0] = inv_z
    d_persp[:, 1, 1] = inv_z
    d_persp[:, :, 2] = -xy * inv_z[:, None]
    d_pixel_d_xy = focal[None, :, None] * d_xy  # diag(fx, fy) @ d(x_d)/d(x)
    return residuals, d_int.reshape(2 * n, NUM_INTRINSIC), d_pixel_d_xy @ d_persp


def rotation_derivatives(rvec: np.ndarray, rotated: np.ndarray) -> np.ndarray:
    """``[N, 3, 3]``: column ``k`` is ``d(R X)/d(rvec_k) = w_k x (R X)`` for ``rotated = R X`` (Gallego &
    Yezzi 2015, with ``w_k`` the rows of ``rodrigues_jacobian``)."""
    generators = np.stack([skew(w) for w in rodrigues_jacobian(rvec)])  # [3, 3, 3]: [w_k]x
    return np.einsum("kij,nj->nik", generators, rotated)


def view_residuals_and_jacobians(
    intrinsics: np.ndarray, pose: np.ndarray, object_points: np.ndarray, image_points: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Residuals of one view and their Jacobians.

    Args:
        intrinsics: ``[9]`` ``(fx, fy, cx, cy, k1, k2, p1, p2, k3)``.
        pose: ``[6]`` ``(rvec, tvec)``.
        object_points: ``[N, 3]`` board points.
        image_points: ``[N, 2]`` observed pixels.

    Returns:
        ``(residuals [2N], d_intrinsics [2N, 9], d_pose [2N, 6])``, residuals = projected - observed,
        interleaved ``(u0, v0, u1, v1, ...)``.
    """
    rvec, tvec = pose[:3], pose[3:]
    rotated = object_points @ rodrigues(rvec).T
    residuals, d_int, d_camera = camera_point_residuals(intrinsics, rotated + tvec, image_points)
    # d(Xc)/d(rvec) by the rotation derivative; d(Xc)/d(tvec) = I.
    d_Xc = np.concatenate([rotation_derivatives(rvec, rotated), np.broadcast_to(np.eye(3), (len(rotated), 3, 3))], 2)
    d_pose = d_camera @ d_Xc
    return residuals, d_int, d_pose.reshape(-1, POSE_SIZE)


@dataclass
class RefineResult:
    """Output of :func:`refine_calibration`.

    Attributes:
        intrinsics: ``[9]`` refined ``(fx, fy, cx, cy, k1, k2, p1, p2, k3)``.
        poses: ``[M, 6]`` refined ``(rvec, tvec)`` per view.
        residuals: ``[M]`` list of ``[N_i, 2]`` final residuals (projected - observed).
        iterations: LM iterations run.
        converged: a stopping test (not the iteration cap) ended the loop.
        intrinsic_std: ``[9]`` standard deviations from the Gauss-Newton covariance (0 for fixed).
    """

    intrinsics: np.ndarray
    poses: np.ndarray
    residuals: list[np.ndarray]
    iterations: int
    converged: bool
    intrinsic_std: np.ndarray


def views_residuals_and_jacobians(
    intrinsics: np.ndarray, poses: np.ndarray, object_points: Sequence[np.ndarray], image_points: Sequence[np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[slice]]:
    """:func:`view_residuals_and_jacobians` for every view at once (one projection of all the points).

    Returns:
        ``(residuals [2P], d_intrinsics [2P, 9], d_poses [2P, 6], rows)`` over the ``P`` points of all views in
        order; ``rows[i]`` is view ``i``'s slice of the ``2P`` rows (its pose block of ``d_poses``).
    """
    camera, d_camera_d_pose = boards_in_camera(poses, object_points)
    residuals, d_int, d_camera = camera_point_residuals(intrinsics, camera, np.concatenate(image_points))
    d_poses = (d_camera @ d_camera_d_pose).reshape(-1, POSE_SIZE)
    bounds = np.cumsum([0] + [2 * len(points) for points in object_points])
    return residuals, d_int, d_poses, [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]


def boards_in_camera(poses: np.ndarray, object_points: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Every view's board points in the camera frame, ``Xc = R_i X + t_i``, and ``d(Xc)/d(pose_i)``.

    Returns:
        ``(camera [P, 3], d_camera_d_pose [P, 3, 6])`` over the ``P`` points of all views in order (the
        rotation columns by :func:`rotate_points_batch`, the translation columns the identity).
    """
    poses = np.asarray(poses, dtype=np.float64).reshape(-1, POSE_SIZE)
    rotated, d_rotation = rotate_points_batch(poses[:, :3], object_points)
    view_of_point = np.repeat(np.arange(len(poses)), [len(points) for points in object_points])
    identity = np.broadcast_to(np.eye(3), (len(rotated), 3, 3))
    return rotated + poses[view_of_point, 3:], np.concatenate([d_rotation, identity], axis=2)


def rotate_points_batch(rvecs: np.ndarray, point_sets: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Every set's points rotated by its own rotation vector, and the derivatives of that.

    Args:
        rvecs: ``[M, 3]``, one per point set.
        point_sets: ``M`` arrays ``[N_i, 3]``.

    Returns:
        ``(rotated [P, 3], d_rotated [P, 3, 3])`` over the ``P`` points in order; ``d_rotated[n, :, k] =
        w_k x (R X_n)`` as in :func:`rotation_derivatives`.
    """
    counts = [len(points) for points in point_sets]
    R = rodrigues_batch(rvecs)
    view_of_point = np.repeat(np.arange(len(counts)), counts)
    points = np.concatenate([np.asarray(p, dtype=np.float64) for p in point_sets])
    rotated = np.einsum("nij,nj->ni", R[view_of_point], points)
    generators = skew_batch(rodrigues_jacobian_batch(rvecs, R).reshape(-1, 3)).reshape(len(counts), 3, 3, 3)
    return rotated, np.einsum("nkij,nj->nik", generators[view_of_point], rotated)


def _normal_equations(
    intrinsics: np.ndarray,
    poses: np.ndarray,
    object_points: Sequence[np.ndarray],
    image_points: Sequence[np.ndarray],
    aspect: float | None,
) -> tuple[np.ndarray, np.ndarray, float, list[np.ndarray]]:
    """Full ``J^T J``, ``J^T r``, cost ``sum r^2 / 2`` and per-view residuals at the given parameters."""
    m = len(poses)
    size = NUM_INTRINSIC + POSE_SIZE * m
    JtJ = np.zeros((size, size))
    Jtr = np.zeros(size)
    r, J_int, J_pose, rows = views_residuals_and_jacobians(intrinsics, poses, object_points, image_points)
    if aspect is not None:
        # fy = fx / aspect is tied to fx: fold the fy column into fx.
        J_int[:, 0] += J_int[:, 1] / aspect
        J_int[:, 1] = 0.0
    JtJ[:NUM_INTRINSIC, :NUM_INTRINSIC] = J_int.T @ J_int
    Jtr[:NUM_INTRINSIC] = J_int.T @ r
    for i, view in enumerate(rows):
        sl = slice(NUM_INTRINSIC + POSE_SIZE * i, NUM_INTRINSIC + POSE_SIZE * (i + 1))
        cross = J_int[view].T @ J_pose[view]
        JtJ[:NUM_INTRINSIC, sl] = cross
        JtJ[sl, :NUM_INTRINSIC] = cross.T
        JtJ[sl, sl] = J_pose[view].T @ J_pose[view]
        Jtr[sl] = J_pose[view].T @ r[view]
    return JtJ, Jtr, 0.5 * float(r @ r), [r[view].reshape(-1, 2) for view in rows]


@dataclass
class LMSolution:
    """Output of :func:`levenberg_marquardt`: the parameters, ``J^T J``, the cost ``sum r^2 / 2`` and the
    ``extra`` output of the normal-equation function at them, the iterations and whether a stopping test
    (not the cap) ended the loop."""

    params: np.ndarray
    JtJ: np.ndarray
    cost: float
    extra: Any
    iterations: int
    converged: bool


def levenberg_marquardt(
    normal_equations: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, float, Any]],
    params: np.ndarray,
    free: np.ndarray | None = None,
    max_iter: int = 200,
    tol: float = 1e-14,
) -> LMSolution:
    """Minimise ``sum r^2 / 2`` with Levenberg-Marquardt: Marquardt's damping scaled by ``diag(J^T J)``
    and Nielsen's update of the damping factor (Madsen, Nielsen & Tingleff 2004, sec. 3.2).

    Args:
        normal_equations: ``params -> (J^T J, J^T r, cost, extra)``; ``extra`` (e.g. the residuals) is
            handed back for the final parameters.
        params: starting parameters.
        free: boolean mask of the parameters to optimise (the others keep their values); all by default.
        max_iter: iteration cap.
        tol: stop when the relative cost decrease or the relative step falls below this.
    """
    params = np.asarray(params, dtype=np.float64).copy()
    free = np.ones(len(params), dtype=bool) if free is None else free
    JtJ, Jtr, cost, extra = normal_equations(params)
    mu = 1e-3 * float(np.max(np.diag(JtJ)[free]))
    nu = 2.0
    converged = False
    iterations = 0
    while iterations < max_iter:
        iterations += 1
        A = JtJ[np.ix_(free, free)]
        g = Jtr[free]
        if np.max(np.abs(g)) < 1e-14 * max(1.0, cost):
            converged = True
            break
        # Marquardt scaling, floored so that a parameter with a tiny curvature still gets damped.
        diag = np.maximum(np.diag(A), 1e-12 * np.max(np.diag(A)))
        try:
            step = np.linalg.solve(A + mu * np.diag(diag), -g)
        except np.linalg.LinAlgError:
            mu *= nu
            nu *= 2.0
            continue
        candidate = params.copy()
        candidate[free] += step
        new = normal_equations(candidate)
        predicted = -(step @ g) - 0.5 * step @ A @ step
        actual = cost - new[2]
        if actual > 0 and predicted > 0:
            rho = actual / predicted
            params = candidate
            JtJ, Jtr, cost, extra = new
            mu *= max(1.0 / 3.0, 1.0 - (2.0 * rho - 1.0) ** 3)
            nu = 2.0
            small_step = np.linalg.norm(step) < tol * (np.linalg.norm(params[free]) + tol)
            if actual < tol * cost or small_step:
                converged = True
                break
        else:
            mu *= nu
            nu *= 2.0
            if mu > 1e30:  # no descent possible at machine precision: at a minimum
                converged = True
                break
    return LMSolution(params=params, JtJ=JtJ, cost=cost, extra=extra, iterations=iterations, converged=converged)


def refine_calibration(
    intrinsics: np.ndarray,
    poses: np.ndarray,
    object_points: Sequence[np.ndarray],
    image_points: Sequence[np.ndarray],
    fixed: Sequence[str] = (),
    fix_aspect_ratio: bool = False,
    max_iter: int = 200,
    tol: float = 1e-14,
) -> RefineResult:
    """Minimise the total squared reprojection error with Levenberg-Marquardt.

    Args:
        intrinsics: ``[9]`` initial ``(fx, fy, cx, cy, k1, k2, p1, p2, k3)``; fixed entries keep these values.
        poses: ``[M, 6]`` initial ``(rvec, tvec)`` per view.
        object_points: ``M`` arrays ``[N_i, 3]``.
        image_points: ``M`` arrays ``[N_i, 2]``.
        fixed: names from :data:`INTRINSIC_NAMES` held constant.
        fix_aspect_ratio: keep ``fx / fy`` at its initial value (``fy`` follows ``fx``).
        max_iter: iteration cap.
        tol: stop when the relative cost decrease or the relative step falls below this.

    Returns:
        A :class:`RefineResult`.
    """
    unknown = set(fixed) - set(INTRINSIC_NAMES)
    if unknown:
        raise ValueError(f"unknown parameters to fix: {sorted(unknown)}; choose from {INTRINSIC_NAMES}")
    intrinsics = np.asarray(intrinsics, dtype=np.float64).copy()
    poses = np.asarray(poses, dtype=np.float64).copy()
    aspect = float(intrinsics[0] / intrinsics[1]) if fix_aspect_ratio else None
    free = np.ones(NUM_INTRINSIC + POSE_SIZE * len(poses), dtype=bool)
    for name in fixed:
        free[INTRINSIC_NAMES.index(name)] = False
    if aspect is not None:
        free[1] = False

    def unpack(vector: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        intr = vector[:NUM_INTRINSIC].copy()
        if aspect is not None:
            intr[1] = intr[0] / aspect
        return intr, vector[NUM_INTRINSIC:].reshape(-1, POSE_SIZE)

    params = np.concatenate([intrinsics, poses.reshape(-1)])
    solution = levenberg_marquardt(
        lambda vector: _normal_equations(*unpack(vector), object_points, image_points, aspect),
        params, free, max_iter=max_iter, tol=tol)
    params, JtJ, cost, residuals = solution.params, solution.JtJ, solution.cost, solution.extra
    iterations, converged = solution.iterations, solution.converged
    intr, final_poses = unpack(params)
    return RefineResult(
        intrinsics=intr,
        poses=final_poses.copy(),
        residuals=residuals,
        iterations=iterations,
        converged=converged,
        intrinsic_std=_intrinsic_std(JtJ, free, cost, aspect, sum(2 * len(p) for p in image_points)),
    )


def _intrinsic_std(
    JtJ: np.ndarray, free: np.ndarray, cost: float, aspect: float | None, num_residuals: int
) -> np.ndarray:
    """Standard deviations of the intrinsics: ``sigma^2 (J^T J)^-1`` with ``sigma^2 = |r|^2 / (m - n)``."""
    dof = num_residuals - int(free.sum())
    if dof <= 0:
        return np.full(NUM_INTRINSIC, np.nan)
    try:
        cov = np.linalg.inv(JtJ[np.ix_(free, free)]) * (2.0 * cost / dof)
    except np.linalg.LinAlgError:
        return np.full(NUM_INTRINSIC, np.nan)
    std = np.zeros(NUM_INTRINSIC)
    for k, pos in enumerate(np.flatnonzero(free)):
        if pos < NUM_INTRINSIC:
            std[pos] = np.sqrt(max(cov[k, k], 0.0))
    if aspect is not None:
        std[1] = std[0] / aspect
    return std
