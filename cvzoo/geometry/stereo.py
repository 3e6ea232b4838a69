"""Stereo calibration and rectification of a two-camera rig.

**Calibration.** Each camera is calibrated on its own first (Zhang, :mod:`cvzoo.geometry.calibration`);
then, with both intrinsics held fixed (OpenCV's ``CALIB_FIX_INTRINSIC``), the rig's rotation ``R`` and
translation ``T`` (left camera frame -> right camera frame: ``X_r = R X_l + T``) are estimated from the
board poses seen by both cameras: the per-view estimates ``R_r R_l^T`` and ``t_r - R t_l`` give a
median start, and Levenberg-Marquardt (the loop of :mod:`cvzoo.geometry.refine`) refines ``(R, T)`` together with every view's left pose on the
reprojection error of both images (the right pose of a view is the left pose composed with the rig).
The essential and fundamental matrices follow: ``E = [T]_x R``, ``F = K_r^-T E K_l^-1``
(Hartley & Zisserman, 2004, sec. 9.6 and 9.2).

**Rectification** (Bouguet's method, as in the Caltech calibration toolbox and OpenCV's
``stereoRectify``): each camera turns by half of ``R`` (in opposite directions) so the two image planes
become parallel, then both turn by the rotation that brings the baseline onto the x axis (or the y axis
for a vertical rig). Corresponding points then lie on the same image row. Both rectified cameras share
the focal length (the smaller of the two ``fy``) and the principal point (the mean of the two image
centres), so the disparity of a point at infinity is zero; ``Q`` maps ``(x, y, disparity, 1)`` to
homogeneous 3-D points in the rectified left camera frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cvzoo.geometry._validate import as_dist_coeffs
from cvzoo.geometry.calibration import (
    calibrate_from_points,
    check_pattern_size,
    chessboard_points,
    detect_board_in_images,
    list_images,
)
from cvzoo.geometry.errors import CalibrationError
from cvzoo.geometry.refine import (
    boards_in_camera,
    camera_point_residuals,
    levenberg_marquardt,
    rotation_derivatives,
)
from cvzoo.geometry.result import CalibrationResult
from cvzoo.geometry.rotation import rodrigues, rotation_to_rvec, skew


@dataclass
class StereoCalibrationResult:
    """A calibrated stereo rig.

    Attributes:
        left, right: each camera's own calibration (:class:`CalibrationResult`, its views only).
        R: ``[3, 3]`` rotation left camera -> right camera.
        T: ``[3]`` translation left -> right (board units): ``X_right = R X_left + T``.
        E: ``[3, 3]`` essential matrix ``[T]_x R``.
        F: ``[3, 3]`` fundamental matrix ``K_r^-T E K_l^-1``, scaled so ``F[2, 2] = 1`` (OpenCV's scale).
        rms: root mean square reprojection error over the points of both images of the common views, in
            pixels (the value ``cv2.stereoCalibrate`` returns).
        per_view_errors: ``[M, 2]`` RMS error per common view, left and right.
        pairs: the image pairs used (left path, right path).
        rejected_pairs: pairs in which the board was not found in one image or both.
        iterations: Levenberg-Marquardt iterations of the rig refinement.
    """

    left: CalibrationResult
    right: CalibrationResult
    R: np.ndarray
    T: np.ndarray
    E: np.ndarray
    F: np.ndarray
    rms: float
    per_view_errors: np.ndarray
    pairs: list[tuple[str, str]] = field(default_factory=list)
    rejected_pairs: list[tuple[str, str]] = field(default_factory=list)
    iterations: int = 0

    @property
    def baseline(self) -> float:
        """Distance between the two optical centres (board units)."""
        return float(np.linalg.norm(self.T))

    def rectification(self) -> StereoRectification:
        """:func:`stereo_rectify` of this rig."""
        return stereo_rectify(self.left.K, self.right.K, self.R, self.T, self.left.image_size)

    def to_dict(self) -> dict:
        """Plain-Python representation (lists and floats) used by :meth:`save`: both cameras as
        :meth:`CalibrationResult.to_dict` writes them, the rig, and its rectification."""
        rect = self.rectification()

        def matrix(a: np.ndarray) -> list:
            return np.asarray(a, dtype=float).tolist()

        return {
            "left": self.left.to_dict(), "right": self.right.to_dict(), "R": matrix(self.R), "T": matrix(self.T),
            "E": matrix(self.E), "F": matrix(self.F), "rms": float(self.rms), "baseline": self.baseline,
            "per_view_errors": matrix(self.per_view_errors), "pairs": [list(p) for p in self.pairs],
            "rejected_pairs": [list(p) for p in self.rejected_pairs],
            "rectification": {"R1": matrix(rect.R1), "R2": matrix(rect.R2), "P1": matrix(rect.P1),
                              "P2": matrix(rect.P2), "Q": matrix(rect.Q), "vertical": rect.vertical},
        }

    def save(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` as JSON (``.json``) or YAML (any other suffix)."""
        import json

        import yaml

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = self.to_dict()
        path.write_text(json.dumps(data, indent=2) + "\n" if path.suffix.lower() == ".json"
                        else yaml.safe_dump(data, sort_keys=False))
        return path


@dataclass
class StereoRectification:
    """Output of :func:`stereo_rectify`.

    Attributes:
        R1, R2: ``[3, 3]`` rotations taking each camera's frame to its rectified frame.
        P1, P2: ``[3, 4]`` projection matrices of the rectified cameras in the rectified left frame;
            ``P2[0, 3] = f * Tx`` (``Tx`` the baseline along x, negative when the right camera is to the
            right), or ``P2[1, 3] = f * Ty`` for a vertical rig.
        Q: ``[4, 4]`` disparity-to-depth matrix: ``Q @ (x, y, d, 1)`` is the homogeneous 3-D point.
        vertical: the rig is vertical (baseline mostly along y); rows become columns.
    """

    R1: np.ndarray
    R2: np.ndarray
    P1: np.ndarray
    P2: np.ndarray
    Q: np.ndarray
    vertical: bool


# ----------------------------------------------------------------------------------- the rig's pose
def compose_pose(rig_rvec: np.ndarray, rig_t: np.ndarray, rvec: np.ndarray, tvec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The right camera's board pose from the left camera's and the rig: ``(R R_l, R t_l + T)``."""
    R = rodrigues(rig_rvec)
    return rotation_to_rvec(R @ rodrigues(rvec)), R @ tvec + rig_t


def _initial_rig(left_poses: np.ndarray, right_poses: np.ndarray) -> np.ndarray:
    """Median of the per-view rig estimates ``R_r R_l^T`` (as rotation vectors) and ``t_r - R t_l``."""
    rvecs, tvecs = [], []
    for left, right in zip(left_poses, right_poses):
        R = rodrigues(right[:3]) @ rodrigues(left[:3]).T
        rvecs.append(rotation_to_rvec(R))
        tvecs.append(right[3:] - R @ left[3:])
    return np.concatenate([np.median(rvecs, axis=0), np.median(tvecs, axis=0)])


def _rig_normal_equations(
    x: np.ndarray,
    object_points: Sequence[np.ndarray],
    left_points: Sequence[np.ndarray],
    right_points: Sequence[np.ndarray],
    left_intrinsics: np.ndarray,
    right_intrinsics: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
    """``J^T J``, ``J^T r``, ``sum r^2 / 2`` and ``r`` of the rig problem, with the analytic Jacobian.

    Unknowns ``x = (rig rvec, rig t, (rvec_i, t_i) per view)``; the intrinsics stay fixed. A view's left
    residuals depend on its pose only; its right residuals, of ``Xc = R_rig (R_i X + t_i) + t_rig``, on its
    pose and the rig. ``J^T J`` is assembled block by block (the rig block, the rig-view blocks, one diagonal
    block per view) without forming ``J``. Residuals are ordered left, right per view.
    """
    count = len(object_points)
    rig_r, rig_t, poses = x[:3], x[3:6], x[6:].reshape(count, 6)
    R_rig = rodrigues(rig_r)
    in_left, d_left_d_pose = boards_in_camera(poses, object_points)
    r_left, _, d_left = camera_point_residuals(left_intrinsics, in_left, np.concatenate(left_points))
    J_left = (d_left @ d_left_d_pose).reshape(-1, 6)
    in_right_rotated = in_left @ R_rig.T
    r_right, _, d_camera = camera_point_residuals(right_intrinsics, in_right_rotated + rig_t, np.concatenate(right_points))
    # d(Xc)/d(rig rvec) by the rotation derivative, d(Xc)/d(rig t) = I; d(Xc)/d(view pose) = R_rig d(X_left)/d(pose).
    J_rig = np.concatenate([d_camera @ rotation_derivatives(rig_r, in_right_rotated), d_camera], 2).reshape(-1, 6)
    J_right = (d_camera @ R_rig @ d_left_d_pose).reshape(-1, 6)
    bounds = np.cumsum([0] + [2 * len(board) for board in object_points])
    rows = [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]
    size = 6 + 6 * count
    JtJ, Jtr = np.zeros((size, size)), np.zeros(size)
    JtJ[:6, :6] = J_rig.T @ J_rig
    Jtr[:6] = J_rig.T @ r_right
    parts = []
    for i, view in enumerate(rows):
        block = slice(6 + 6 * i, 12 + 6 * i)
        JtJ[:6, block] = J_rig[view].T @ J_right[view]
        JtJ[block, :6] = JtJ[:6, block].T
        JtJ[block, block] = J_left[view].T @ J_left[view] + J_right[view].T @ J_right[view]
        Jtr[block] = J_left[view].T @ r_left[view] + J_right[view].T @ r_right[view]
        parts += [r_left[view], r_right[view]]
    r = np.concatenate(parts)
    return JtJ, Jtr, 0.5 * float(r @ r), r


def stereo_calibrate_from_points(
    object_points: Sequence[np.ndarray],
    left_points: Sequence[np.ndarray],
    right_points: Sequence[np.ndarray],
    left: CalibrationResult,
    right: CalibrationResult,
    left_poses: np.ndarray | None = None,
    right_poses: np.ndarray | None = None,
    max_iter: int = 100,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """Estimate the rig ``(R, T)`` from common views with both cameras' intrinsics fixed.

    Args:
        object_points: ``M`` arrays ``[N_i, 3]`` board points of the common views.
        left_points, right_points: ``M`` arrays ``[N_i, 2]`` of their observations in each image.
        left, right: the cameras' calibrations (``K`` and ``dist`` are used and kept).
        left_poses, right_poses: ``[M, 6]`` ``(rvec, tvec)`` starting poses of the common views in each
            camera (from the cameras' calibrations); ``None`` starts from the identity rig and the left
            calibration's poses (only for synthetic tests with good starts).
        max_iter: Levenberg-Marquardt iteration cap.

    Returns:
        ``(R, T, left_poses [M, 6], residuals, iterations)``; ``residuals`` is a list of ``M`` arrays
        ``[2, N_i, 2]`` (projected - observed; left then right image).
    """
    count = len(object_points)
    if not (count == len(left_points) == len(right_points)) or count == 0:
        raise CalibrationError(
            f"stereo calibration needs the same number (> 0) of board views and left/right observations, got "
            f"{count}, {len(left_points)}, {len(right_points)}")
    if left_poses is None:
        left_poses = np.concatenate([left.rvecs, left.tvecs], axis=1)[:count]
    start = _initial_rig(left_poses, right_poses) if right_poses is not None else np.zeros(6)

    def unpack(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return x[:3], x[3:6], x[6:].reshape(count, 6)

    boards = [np.asarray(board, dtype=np.float64) for board in object_points]
    seen_left = [np.asarray(points, dtype=np.float64) for points in left_points]
    seen_right = [np.asarray(points, dtype=np.float64) for points in right_points]
    intrinsics = [np.concatenate([camera.K[[0, 1, 0, 1], [0, 1, 2, 2]], as_dist_coeffs(camera.dist)])
                  for camera in (left, right)]
    solution = levenberg_marquardt(
        lambda x: _rig_normal_equations(x, boards, seen_left, seen_right, *intrinsics),
        np.concatenate([start, np.asarray(left_poses).reshape(-1)]), max_iter=max_iter)
    rig_r, rig_t, poses = unpack(solution.params)
    flat, per_view, start_index = solution.extra, [], 0
    for board in object_points:
        size = 4 * len(board)
        per_view.append(flat[start_index:start_index + size].reshape(2, len(board), 2))
        start_index += size
    return rodrigues(rig_r), rig_t, poses, per_view, solution.iterations


def essential_and_fundamental(R: np.ndarray, T: np.ndarray, K_left: np.ndarray, K_right: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``E = [T]_x R`` and ``F = K_r^-T E K_l^-1`` scaled to ``F[2, 2] = 1``: ``x_r^T F x_l = 0``."""
    E = skew(np.asarray(T, dtype=np.float64)) @ R
    F = np.linalg.inv(K_right).T @ E @ np.linalg.inv(K_left)
    return E, F / F[2, 2]


def stereo_calibrate(
    left_images: str | Sequence[str | Path],
    right_images: str | Sequence[str | Path],
    pattern_size: tuple[int, int] = (9, 6),
    square_size: float = 1.0,
    *,
    min_views: int = 3,
    use_sb: bool = False,
    **options,
) -> StereoCalibrationResult:
    """Calibrate a stereo rig from chessboard image pairs.

    Args:
        left_images, right_images: glob patterns or lists of files; the ``i``-th left and right images
            (in sorted order for a pattern) are one simultaneous pair.
        pattern_size: inner corners ``(columns, rows)``.
        square_size: side of one square (the unit of ``T``).
        min_views: fewest pairs in which both images show the board.
        use_sb: OpenCV's sector-based corner detector.
        **options: flags of :func:`~cvzoo.geometry.calibration.calibrate_from_points` for both cameras.

    Raises:
        CalibrationError: different numbers of left and right images, unreadable images, or the board in
            both images of fewer than ``min_views`` pairs (the message names the pairs where it was not).
    """
    left_paths, right_paths = list_images(left_images), list_images(right_images)
    if len(left_paths) != len(right_paths) or not left_paths:
        raise CalibrationError(f"stereo calibration needs as many left as right images (pairs), got "
                               f"{len(left_paths)} left ({left_images!r}) and {len(right_paths)} right "
                               f"({right_images!r})")
    pattern = check_pattern_size(pattern_size)
    left_size, left_corners = detect_board_in_images(left_paths, pattern, use_sb=use_sb)
    right_size, right_corners = detect_board_in_images(right_paths, pattern, use_sb=use_sb)
    in_both = [a is not None and b is not None for a, b in zip(left_corners, right_corners)]
    pairs = list(zip(left_paths, right_paths))
    used = [pair for pair, ok in zip(pairs, in_both) if ok]
    rejected = [pair for pair, ok in zip(pairs, in_both) if not ok]
    left_found = [c for c, ok in zip(left_corners, in_both) if ok]
    right_found = [c for c, ok in zip(right_corners, in_both) if ok]
    if len(used) < min_views:
        raise CalibrationError(
            f"chessboard {pattern[0]}x{pattern[1]} found in both images of {len(used)} of {len(left_paths)} pairs, "
            f"need at least {min_views}; not in: {', '.join(f'{a} + {b}' for a, b in rejected) or '-'}")
    board = chessboard_points(pattern, square_size)
    boards = [board] * len(used)
    left = calibrate_from_points(boards, left_found, left_size, view_names=[a for a, _ in used], **options)
    right = calibrate_from_points(boards, right_found, right_size, view_names=[b for _, b in used], **options)
    for camera in (left, right):
        camera.pattern_size, camera.square_size = pattern, float(square_size)
    left_poses = np.concatenate([left.rvecs, left.tvecs], axis=1)
    right_poses = np.concatenate([right.rvecs, right.tvecs], axis=1)
    R, T, _, per_view, iterations = stereo_calibrate_from_points(
        boards, left_found, right_found, left, right, left_poses, right_poses)
    E, F = essential_and_fundamental(R, T, left.K, right.K)
    squared = np.stack([(view**2).sum(-1) for view in per_view])  # [M, 2, N] squared pixel errors
    return StereoCalibrationResult(
        left=left, right=right, R=R, T=T, E=E, F=F, rms=float(np.sqrt(squared.mean())),
        per_view_errors=np.sqrt(squared.mean(-1)), pairs=used, rejected_pairs=rejected, iterations=iterations)


# ---------------------------------------------------------------------------------- rectification
def stereo_rectify(
    K_left: np.ndarray, K_right: np.ndarray, R: np.ndarray, T: np.ndarray, image_size: tuple[int, int]
) -> StereoRectification:
    """Bouguet's rectification of a calibrated rig (``X_right = R X_left + T``).

    ``R1`` and ``R2`` are the rotations ``cv2.stereoRectify`` returns (tested equal). The new camera
    matrices are this function's own simple choice -- focal length ``min(fy_left, fy_right)``, principal
    point the image centre ``((w - 1) / 2, (h - 1) / 2)`` for both -- where OpenCV also scales them
    to keep the valid pixels (its ``alpha``), so ``P1``/``P2`` differ from OpenCV's by that choice.
    """
    om = rotation_to_rvec(np.asarray(R, dtype=np.float64))
    half = rodrigues(-0.5 * om)  # each camera turns half way, in opposite directions
    t = half @ np.asarray(T, dtype=np.float64)
    axis = 0 if abs(t[0]) > abs(t[1]) else 1  # horizontal or vertical rig
    target = np.zeros(3)
    target[axis] = 1.0 if t[axis] > 0 else -1.0
    # The rotation that turns the half-way baseline t onto the axis: about t x target, by their angle.
    w = np.cross(t, target)
    norm_w = np.linalg.norm(w)
    if norm_w > 0:
        w *= np.arccos(np.clip(abs(t[axis]) / np.linalg.norm(t), -1.0, 1.0)) / norm_w
    align = rodrigues(w)
    R1, R2 = align @ half.T, align @ half
    focal = min(float(K_left[1, 1]), float(K_right[1, 1]))
    cx, cy = (image_size[0] - 1) / 2.0, (image_size[1] - 1) / 2.0
    P1 = np.array([[focal, 0.0, cx, 0.0], [0.0, focal, cy, 0.0], [0.0, 0.0, 1.0, 0.0]])
    P2 = P1.copy()
    baseline = float((R2 @ np.asarray(T, dtype=np.float64))[axis])
    P2[axis, 3] = focal * baseline
    Q = np.zeros((4, 4))
    Q[0, 0] = Q[1, 1] = 1.0
    Q[0, 3], Q[1, 3], Q[2, 3] = -cx, -cy, focal
    Q[3, 2] = -1.0 / baseline  # both principal points equal: no (c_left - c_right) term
    return StereoRectification(R1=R1, R2=R2, P1=P1, P2=P2, Q=Q, vertical=axis == 1)


def rectify_points(pixels: np.ndarray, K: np.ndarray, dist: np.ndarray, R_rect: np.ndarray, P: np.ndarray) -> np.ndarray:
    """Pixels of one camera -> pixels of its rectified camera (undistort, rotate by ``R_rect``, project by
    ``P``): the ``cv2.undistortPoints(pixels, K, dist, R=R_rect, P=P)`` equivalent."""
    from cvzoo.geometry.distortion import undistort_points

    xy = undistort_points(np.asarray(pixels, dtype=np.float64), K, dist, normalized=True)
    rays = np.concatenate([xy, np.ones((len(xy), 1))], axis=1) @ np.asarray(R_rect).T
    projected = rays @ np.asarray(P)[:, :3].T
    return projected[:, :2] / projected[:, 2:3]


__all__ = [
    "StereoCalibrationResult",
    "StereoRectification",
    "compose_pose",
    "essential_and_fundamental",
    "rectify_points",
    "stereo_calibrate",
    "stereo_calibrate_from_points",
    "stereo_rectify",
]
