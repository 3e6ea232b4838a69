"""Camera calibration from a planar chessboard (Zhang 2000), end to end.

Pipeline: detect the inner corners of each image (OpenCV's detector + sub-pixel refinement), fit a
board-to-image homography per view (normalised DLT), solve the intrinsics in closed form, recover each
view's pose, estimate radial distortion linearly, then refine everything jointly with
Levenberg-Marquardt on the reprojection error (:mod:`cvzoo.geometry.refine`).
"""

from __future__ import annotations

import glob
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cvzoo.geometry._validate import as_points
from cvzoo.geometry.errors import CalibrationError, GeometryError
from cvzoo.geometry.homography import find_homography
from cvzoo.geometry.refine import NUM_INTRINSIC, refine_calibration, views_residuals_and_jacobians
from cvzoo.geometry.result import CalibrationResult
from cvzoo.geometry.zhang import (
    DEFAULT_MIN_CONDITION,
    extrinsics_from_homography,
    intrinsics_from_homographies,
    linear_radial_distortion,
)


def chessboard_points(pattern_size: tuple[int, int], square_size: float = 1.0) -> np.ndarray:
    """Board coordinates of the inner corners, in the order the detector returns them.

    Args:
        pattern_size: inner corners ``(columns, rows)``, e.g. ``(9, 6)``.
        square_size: side of a square, in the unit the translations should have.

    Returns:
        ``[columns * rows, 3]`` points ``(col * s, row * s, 0)``, row-major.
    """
    cols, rows = check_pattern_size(pattern_size)
    if not np.isfinite(square_size) or square_size <= 0:
        raise GeometryError(f"square_size must be positive, got {square_size}")
    grid = np.stack(np.meshgrid(np.arange(cols), np.arange(rows)), axis=-1).reshape(-1, 2)
    return np.concatenate([grid * float(square_size), np.zeros((len(grid), 1))], axis=1)


def check_pattern_size(pattern_size: Sequence[int]) -> tuple[int, int]:
    """``(columns, rows)`` of inner corners as ints; a GeometryError unless two values >= 2."""
    if len(pattern_size) != 2 or min(pattern_size) < 2:
        raise GeometryError(f"pattern_size must be (columns, rows) of inner corners >= 2, got {pattern_size}")
    return int(pattern_size[0]), int(pattern_size[1])


def find_chessboard_corners(
    image: np.ndarray | str | Path, pattern_size: tuple[int, int] = (9, 6), use_sb: bool = False
) -> np.ndarray | None:
    """Detect and sub-pixel refine the inner corners of a chessboard.

    Args:
        image: grey or BGR ``[H, W(, 3)]`` uint8 array, or a path to an image file.
        pattern_size: inner corners ``(columns, rows)``.
        use_sb: use OpenCV's sector-based detector (``findChessboardCornersSB``, already sub-pixel)
            instead of the classic one + ``cornerSubPix``.

    Returns:
        ``[columns * rows, 2]`` float64 pixel coordinates, or ``None`` if the full pattern is not found.
    """
    import cv2

    cols, rows = check_pattern_size(pattern_size)
    gray = read_gray(image) if isinstance(image, str | Path) else np.asarray(image)
    if gray.ndim == 3:
        gray = cv2.cvtColor(gray, cv2.COLOR_BGR2GRAY)
    if gray.ndim != 2 or gray.dtype != np.uint8:
        raise GeometryError(f"image must be a uint8 grey or BGR array, got {gray.dtype} {gray.shape}")
    if use_sb:
        found, corners = cv2.findChessboardCornersSB(gray, (cols, rows), flags=cv2.CALIB_CB_NORMALIZE_IMAGE)
        return corners.reshape(-1, 2).astype(np.float64) if found else None
    flags = cv2.CALIB_CB_ADAPTIVE_THRESH | cv2.CALIB_CB_NORMALIZE_IMAGE
    found, corners = cv2.findChessboardCorners(gray, (cols, rows), flags=flags)
    if not found:
        return None
    corners = corners.reshape(-1, 1, 2).astype(np.float32)
    # The refinement window must stay inside one square: half the smallest corner spacing, at most 11.
    grid = corners.reshape(rows, cols, 2)
    spacing = min(
        np.linalg.norm(np.diff(grid, axis=0), axis=-1).min(),
        np.linalg.norm(np.diff(grid, axis=1), axis=-1).min(),
    )
    half = int(np.clip(spacing / 2 - 1, 2, 11))
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 50, 1e-4)
    corners = cv2.cornerSubPix(gray, corners, (half, half), (-1, -1), criteria)
    return corners.reshape(-1, 2).astype(np.float64)


def list_images(spec: str | Sequence[str | Path]) -> list[str]:
    """A glob pattern -> its matches, sorted; a list of files -> their paths as strings, in order."""
    return sorted(glob.glob(spec)) if isinstance(spec, str) else [str(p) for p in spec]


def detect_board_in_images(
    paths: Sequence[str], pattern_size: tuple[int, int], use_sb: bool = False
) -> tuple[tuple[int, int], list[np.ndarray | None]]:
    """The common ``(width, height)`` of one camera's images and the board's corners in each (``None``
    where it is not found).

    Raises:
        CalibrationError: an image cannot be read, or its size differs from the first image's (one
            calibration needs one camera mode).
    """
    image_size, found = None, []
    for path in paths:
        gray = read_gray(path)
        size = (gray.shape[1], gray.shape[0])
        if image_size is None:
            image_size = size
        elif size != image_size:
            raise CalibrationError(
                f"{path}: image size {size[0]}x{size[1]} differs from {image_size[0]}x{image_size[1]} "
                f"of {paths[0]}; one calibration needs one camera mode"
            )
        found.append(find_chessboard_corners(gray, pattern_size, use_sb=use_sb))
    return image_size, found


def read_gray(path: str | Path) -> np.ndarray:
    """An image file as 8-bit greyscale; a CalibrationError naming the file if it cannot be read."""
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise CalibrationError(f"{path}: cannot read image (missing file or unsupported format)")
    return image


def calibrate_from_points(
    object_points: Sequence[np.ndarray],
    image_points: Sequence[np.ndarray],
    image_size: tuple[int, int],
    *,
    fix_k3: bool = False,
    zero_tangent: bool = False,
    fix_principal_point: bool = False,
    fix_aspect_ratio: float | None = None,
    init_distortion: str = "linear",
    min_condition: float = DEFAULT_MIN_CONDITION,
    view_names: Sequence[str] | None = None,
    max_iter: int = 200,
) -> CalibrationResult:
    """Calibrate from known planar target points and their observations.

    Args:
        object_points: ``M`` arrays ``[N_i, 3]`` of target points with ``Z = 0`` (a planar board).
        image_points: ``M`` arrays ``[N_i, 2]`` of the observed pixels, same order.
        image_size: ``(width, height)``.
        fix_k3: keep ``k3 = 0`` (OpenCV ``CALIB_FIX_K3``).
        zero_tangent: keep ``p1 = p2 = 0`` (``CALIB_ZERO_TANGENT_DIST``).
        fix_principal_point: keep ``(cx, cy)`` at the image centre ``((w-1)/2, (h-1)/2)``
            (``CALIB_FIX_PRINCIPAL_POINT``).
        fix_aspect_ratio: if given, hold ``fx / fy`` at this value (``CALIB_FIX_ASPECT_RATIO``).
        init_distortion: ``"linear"`` (Zhang's least squares for k1, k2) or ``"zero"`` (as OpenCV).
        min_condition: conditioning threshold of the closed-form system (see
            :func:`~cvzoo.geometry.zhang.intrinsics_from_homographies`).
        view_names: names used in messages and the result; defaults to ``view 0``, ``view 1``, ...
        max_iter: Levenberg-Marquardt iteration cap.

    Returns:
        A :class:`~cvzoo.geometry.result.CalibrationResult` (``rejected_images`` empty).

    Raises:
        CalibrationError: mismatched inputs, a non-planar target, too few points.
        DegenerateViewsError: views that do not determine the intrinsics.
    """
    if len(object_points) != len(image_points):
        raise CalibrationError(
            f"{len(object_points)} object point sets but {len(image_points)} image point sets"
        )
    if init_distortion not in ("linear", "zero"):
        raise GeometryError(f"init_distortion must be 'linear' or 'zero', got {init_distortion!r}")
    names = list(view_names) if view_names is not None else [f"view {i}" for i in range(len(object_points))]
    width, height = (int(s) for s in image_size)
    if width <= 0 or height <= 0:
        raise GeometryError(f"image_size must be positive (width, height), got {image_size}")
    objs, imgs = [], []
    for name, obj, img in zip(names, object_points, image_points, strict=True):
        obj = as_points(obj, 3, f"{name}: object points")
        img = as_points(img, 2, f"{name}: image points")
        if len(obj) != len(img) or len(obj) < 4:
            raise CalibrationError(
                f"{name}: need >= 4 matching points, got {len(obj)} object / {len(img)} image"
            )
        extent = np.ptp(obj[:, :2], axis=0).max()
        if np.abs(obj[:, 2]).max() > 1e-9 * max(extent, 1.0):
            raise CalibrationError(f"{name}: object points must lie in the plane Z = 0 (planar target)")
        objs.append(obj)
        imgs.append(img)

    homographies = [find_homography(obj[:, :2], img) for obj, img in zip(objs, imgs, strict=True)]
    K = intrinsics_from_homographies(homographies, (width, height), min_condition, names)
    if fix_principal_point:
        K[0, 2], K[1, 2] = (width - 1) / 2.0, (height - 1) / 2.0
    if fix_aspect_ratio is not None:
        if not fix_aspect_ratio > 0:
            raise GeometryError(f"fix_aspect_ratio must be positive, got {fix_aspect_ratio}")
        focal = 0.5 * (K[0, 0] + K[1, 1] * fix_aspect_ratio)
        K[0, 0], K[1, 1] = focal, focal / fix_aspect_ratio
    poses = np.array([np.concatenate(extrinsics_from_homography(H, K)) for H in homographies])

    intrinsics = np.concatenate([[K[0, 0], K[1, 1], K[0, 2], K[1, 2]], np.zeros(5)])
    if init_distortion == "linear":
        linear = intrinsics.copy()
        linear[4:] = linear_radial_distortion(objs, imgs, K, poses[:, :3], poses[:, 3:])
        if _total_cost(linear, poses, objs, imgs) < _total_cost(intrinsics, poses, objs, imgs):
            intrinsics = linear

    fixed = []
    if fix_k3:
        fixed.append("k3")
    if zero_tangent:
        fixed += ["p1", "p2"]
    if fix_principal_point:
        fixed += ["cx", "cy"]
    refined = refine_calibration(
        intrinsics,
        poses,
        objs,
        imgs,
        fixed=fixed,
        fix_aspect_ratio=fix_aspect_ratio is not None,
        max_iter=max_iter,
    )
    sq_errors = [np.sum(r * r) for r in refined.residuals]
    counts = [len(r) for r in refined.residuals]
    fx, fy, cx, cy = refined.intrinsics[:4]
    return CalibrationResult(
        K=np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]]),
        dist=refined.intrinsics[4:NUM_INTRINSIC].copy(),
        rvecs=refined.poses[:, :3].copy(),
        tvecs=refined.poses[:, 3:].copy(),
        rms=float(np.sqrt(sum(sq_errors) / sum(counts))),
        per_view_errors=np.sqrt(np.array(sq_errors) / np.array(counts)),
        image_size=(width, height),
        used_images=names,
        intrinsic_std=refined.intrinsic_std,
        options={
            "fix_k3": fix_k3,
            "zero_tangent": zero_tangent,
            "fix_principal_point": fix_principal_point,
            "fix_aspect_ratio": fix_aspect_ratio,
            "init_distortion": init_distortion,
            "converged": refined.converged,
        },
        iterations=refined.iterations,
    )


def _total_cost(intrinsics: np.ndarray, poses: np.ndarray, objs: list, imgs: list) -> float:
    if not len(poses) == len(objs) == len(imgs):
        raise ValueError(f"{len(poses)} poses for {len(objs)} boards and {len(imgs)} image point sets")
    return float(np.sum(views_residuals_and_jacobians(intrinsics, poses, objs, imgs)[0] ** 2))


def calibrate_camera(
    image_paths: str | Sequence[str | Path],
    pattern_size: tuple[int, int] = (9, 6),
    square_size: float = 1.0,
    *,
    min_views: int = 3,
    use_sb: bool = False,
    **options,
) -> CalibrationResult:
    """Calibrate a camera from chessboard photographs.

    Args:
        image_paths: a glob pattern (``"calib/*.jpg"``) or a list of image files, all the same size.
        pattern_size: inner corners ``(columns, rows)`` of the board.
        square_size: side of one square (sets the unit of the translations).
        min_views: fewest images in which the board must be found.
        use_sb: use OpenCV's sector-based corner detector.
        **options: flags of :func:`calibrate_from_points` (``fix_k3``, ``zero_tangent``, ...).

    Returns:
        A :class:`~cvzoo.geometry.result.CalibrationResult` listing used and rejected images.

    Raises:
        CalibrationError: no images, an unreadable image, images of different sizes, or the board found
            in fewer than ``min_views`` images (the message names the images where it was not found).
        DegenerateViewsError: the detected views do not determine the intrinsics.
    """
    paths = list_images(image_paths)
    if not paths:
        raise CalibrationError(f"no images to calibrate from (pattern or list: {image_paths!r})")
    board = chessboard_points(pattern_size, square_size)
    image_size, found = detect_board_in_images(paths, pattern_size, use_sb=use_sb)
    used = [path for path, corners in zip(paths, found) if corners is not None]
    rejected = [path for path, corners in zip(paths, found) if corners is None]
    detections = [corners for corners in found if corners is not None]
    if len(used) < min_views:
        cols, rows = check_pattern_size(pattern_size)
        raise CalibrationError(
            f"chessboard {cols}x{rows} found in {len(used)} of {len(paths)} images, need at least "
            f"{min_views}; not found in: {', '.join(rejected) or '-'}"
        )
    result = calibrate_from_points([board] * len(used), detections, image_size, view_names=used, **options)
    result.rejected_images = rejected
    result.pattern_size = check_pattern_size(pattern_size)
    result.square_size = float(square_size)
    return result
