"""``cvzoo calibrate``: intrinsics, distortion and board poses from chessboard photographs; with
``--right-images``, a stereo rig (both cameras, R, T, E, F and the rectification)."""

from __future__ import annotations

import argparse
import glob
import json
from pathlib import Path

from cvzoo.cli.main import CliError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "calibrate",
        help="calibrate a camera from chessboard images (Zhang's method)",
        description="Detect a chessboard in each image, estimate the camera matrix, Brown-Conrady "
        "distortion (k1, k2, p1, p2, k3) and per-view poses, and write them to a YAML or JSON file.",
    )
    parser.add_argument(
        "--images",
        required=True,
        nargs="+",
        help="image files or glob patterns (quote them), e.g. 'calib/*.jpg'",
    )
    parser.add_argument(
        "--right-images",
        nargs="+",
        help="stereo: the right camera's images (files or globs); the i-th of each list (sorted) is one pair, "
        "and --images are the left camera's",
    )
    parser.add_argument("--pattern", default="9x6", help="inner corners COLSxROWS (default: 9x6)")
    parser.add_argument(
        "--square",
        type=float,
        default=1.0,
        help="square side in your unit; translations come out in it (default: 1.0)",
    )
    parser.add_argument(
        "--out",
        default="calibration.yaml",
        help="result file; .json writes JSON, anything else YAML (default: calibration.yaml)",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON instead of a summary")
    parser.add_argument(
        "--plots", metavar="DIR", help="write detected-corner pictures and an undistorted sample to DIR"
    )
    parser.add_argument("--fix-k3", action="store_true", help="keep k3 = 0")
    parser.add_argument("--zero-tangent", action="store_true", help="keep p1 = p2 = 0")
    parser.add_argument(
        "--fix-principal-point", action="store_true", help="keep (cx, cy) at the image centre"
    )
    parser.add_argument("--sb", action="store_true", help="use OpenCV's sector-based corner detector")
    parser.add_argument(
        "--min-views", type=int, default=3, help="fewest images with a detected board (default: 3)"
    )
    parser.set_defaults(func=run)


def _parse_pattern(text: str) -> tuple[int, int]:
    try:
        cols, rows = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise CliError(f"--pattern must look like 9x6 (inner corners COLSxROWS), got {text!r}") from None
    if cols < 2 or rows < 2:
        raise CliError(f"--pattern needs at least 2x2 inner corners, got {text!r}")
    return cols, rows


def _expand(patterns: list[str]) -> list[str]:
    paths: list[str] = []
    for pattern in patterns:
        matches = sorted(glob.glob(pattern))
        if not matches:
            raise CliError(f"--images: nothing matches {pattern!r}")
        paths.extend(m for m in matches if m not in paths)
    return paths


def run(args: argparse.Namespace) -> int:
    from cvzoo.geometry import GeometryError, calibrate_camera

    pattern = _parse_pattern(args.pattern)
    if not args.square > 0:
        raise CliError(f"--square must be positive, got {args.square}")
    paths = _expand(args.images)
    if args.right_images:
        return _run_stereo(args, paths, _expand(args.right_images), pattern)
    try:
        result = calibrate_camera(
            paths,
            pattern,
            args.square,
            min_views=args.min_views,
            use_sb=args.sb,
            fix_k3=args.fix_k3,
            zero_tangent=args.zero_tangent,
            fix_principal_point=args.fix_principal_point,
        )
        out = result.save(args.out)
    except GeometryError as err:
        raise CliError(str(err)) from None
    if args.plots:
        _write_plots(result, Path(args.plots))
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        _print_summary(result, out, args.plots)
    return 0


def _run_stereo(args: argparse.Namespace, left: list[str], right: list[str], pattern: tuple[int, int]) -> int:
    from cvzoo.geometry import GeometryError, stereo_calibrate

    try:
        rig = stereo_calibrate(
            left, right, pattern, args.square, min_views=args.min_views, use_sb=args.sb, fix_k3=args.fix_k3,
            zero_tangent=args.zero_tangent, fix_principal_point=args.fix_principal_point,
        )
        out = rig.save(args.out)
    except GeometryError as err:
        raise CliError(str(err)) from None
    if args.plots:
        _write_plots(rig.left, Path(args.plots) / "left")
        _write_plots(rig.right, Path(args.plots) / "right")
    if args.json:
        print(json.dumps(rig.to_dict(), indent=2))
        return 0
    print(f"pairs used: {len(rig.pairs)}, rejected: {len(rig.rejected_pairs)}"
          + "".join(f"\n  not in both: {a} + {b}" for a, b in rig.rejected_pairs))
    for side, camera in (("left", rig.left), ("right", rig.right)):
        K = camera.K
        print(f"{side:5s} fx={K[0, 0]:.4f} fy={K[1, 1]:.4f} cx={K[0, 2]:.4f} cy={K[1, 2]:.4f} RMS {camera.rms:.4f} px")
    print(f"T = ({rig.T[0]:.6f}, {rig.T[1]:.6f}, {rig.T[2]:.6f}), baseline {rig.baseline:.6f}; "
          f"stereo RMS reprojection error: {rig.rms:.4f} px")
    print(f"wrote {out} (both cameras, R, T, E, F, rectification R1 R2 P1 P2 Q)"
          + (f" and plots to {args.plots}" if args.plots else ""))
    return 0


def _print_summary(result, out: Path, plots: str | None) -> None:
    K, d = result.K, result.dist
    print(
        f"views used: {len(result.used_images)}, rejected: {len(result.rejected_images)}"
        + (f" ({', '.join(result.rejected_images)})" if result.rejected_images else "")
    )
    print(f"fx={K[0, 0]:.4f} fy={K[1, 1]:.4f} cx={K[0, 2]:.4f} cy={K[1, 2]:.4f}")
    print(f"k1={d[0]:.6f} k2={d[1]:.6f} p1={d[2]:.6f} p2={d[3]:.6f} k3={d[4]:.6f}")
    for name, err in zip(result.used_images, result.per_view_errors, strict=True):
        print(f"  {name}: {err:.4f} px")
    print(f"RMS reprojection error: {result.rms:.4f} px")
    print(f"wrote {out}" + (f" and plots to {plots}" if plots else ""))


def _write_plots(result, folder: Path) -> None:
    """Detected corners (green) with their reprojections (red) per view, and an undistorted sample."""
    import cv2
    import numpy as np

    from cvzoo.geometry import chessboard_points, find_chessboard_corners, project_points, undistort_image

    folder.mkdir(parents=True, exist_ok=True)
    board = chessboard_points(result.pattern_size, result.square_size)
    for index, (name, rvec, tvec) in enumerate(
        zip(result.used_images, result.rvecs, result.tvecs, strict=True)
    ):
        image = cv2.imread(name, cv2.IMREAD_COLOR)
        corners = find_chessboard_corners(image, result.pattern_size)
        reprojected = project_points(board, rvec, tvec, result.K, result.dist)
        if corners is not None:
            cv2.polylines(image, [np.round(corners).astype(np.int32)], False, (0, 200, 0), 1, cv2.LINE_AA)
            for u, v in corners:
                cv2.circle(image, (round(u), round(v)), 5, (0, 200, 0), 1, cv2.LINE_AA)
        for u, v in reprojected:
            cv2.drawMarker(image, (round(u), round(v)), (0, 0, 255), cv2.MARKER_CROSS, 8, 1)
        label = f"{Path(name).name}: {result.per_view_errors[index]:.3f} px"
        cv2.putText(image, label, (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (0, 0, 255), 2, cv2.LINE_AA)
        cv2.imwrite(str(folder / f"corners_{index:02d}_{Path(name).stem}.jpg"), image)
    sample = cv2.imread(result.used_images[0], cv2.IMREAD_COLOR)
    side_by_side = np.concatenate([sample, undistort_image(sample, result.K, result.dist)], axis=1)
    cv2.imwrite(str(folder / "undistorted_sample.jpg"), side_by_side)
