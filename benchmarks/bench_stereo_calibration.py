"""Stereo calibration time from the same corners: cvzoo vs OpenCV (issue #21's figure).

    .venv/bin/python benchmarks/bench_stereo_calibration.py [--pairs 14] [--repeats 5]

Both sides start from the same detected (or generated) corners and do the same work: calibrate each camera
(Zhang + Levenberg-Marquardt), then the rig with the intrinsics held (``cv2.calibrateCamera`` x 2 +
``cv2.stereoCalibrate(CALIB_FIX_INTRINSIC)``). Two corner sets: ``--pairs`` synthetic pairs of a 9x6
board seen by a rig with distortion (0.2 px noise), and the four real MRPT pairs bundled in cvzoo/data/assets/chessboards.
Printed: the median time of each side over alternating repeats, the ratio, and the rig's agreement
(rms, |T| and the rotation between the two answers).
"""

from __future__ import annotations

import argparse

import cv2
import numpy as np
from _timing import alternate, median, median_ratio

from cvzoo.data.bundled import asset_path
from cvzoo.geometry import calibrate_from_points, chessboard_points, find_chessboard_corners, project_points
from cvzoo.geometry.stereo import stereo_calibrate_from_points

ASSETS = asset_path("chessboards")


def synthetic_pairs(count: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    board = chessboard_points((9, 6), 1.0)
    K_left = np.array([[820.0, 0, 512], [0, 815, 384], [0, 0, 1]])
    K_right = np.array([[800.0, 0, 500], [0, 798, 390], [0, 0, 1]])
    dist_left, dist_right = np.array([-0.25, 0.08, 1e-3, -5e-4, 0.0]), np.array([-0.2, 0.05, -8e-4, 6e-4, 0.0])
    rig_r, rig_t = np.array([0.01, -0.03, 0.004]), np.array([-6.0, 0.1, 0.2])
    left, right = [], []
    from cvzoo.geometry.stereo import compose_pose

    while len(left) < count:
        rvec = rng.normal(0, 0.35, 3)
        tvec = np.array([rng.uniform(-5, 1), rng.uniform(-4, 0), rng.uniform(18, 30)])
        a = project_points(board, rvec, tvec, K_left, dist_left) + rng.normal(0, 0.2, (len(board), 2))
        r2, t2 = compose_pose(rig_r, rig_t, rvec, tvec)
        b = project_points(board, r2, t2, K_right, dist_right) + rng.normal(0, 0.2, (len(board), 2))
        if all(((p >= 0) & (p < [1024, 768])).all() for p in (a, b)):
            left.append(a)
            right.append(b)
    return board, left, right, (1024, 768)


def real_pairs():
    board = chessboard_points((9, 6), 1.0)
    left = [find_chessboard_corners(str(p), (9, 6)) for p in sorted(ASSETS.glob("*_left.jpg"))]
    right = [find_chessboard_corners(str(p), (9, 6)) for p in sorted(ASSETS.glob("*_right.jpg"))]
    return board, left, right, (1024, 768)


def run_cvzoo(board, left, right, size):
    boards = [board] * len(left)
    cams = [calibrate_from_points(boards, points, size) for points in (left, right)]
    poses = [np.concatenate([c.rvecs, c.tvecs], axis=1) for c in cams]
    R, T, _, per_view, _ = stereo_calibrate_from_points(boards, left, right, *cams, *poses)
    rms = float(np.sqrt(np.mean(np.concatenate([(v ** 2).sum(-1).ravel() for v in per_view]))))
    return R, T, rms


def run_opencv(board, left, right, size):
    boards = [board.astype(np.float32)] * len(left)
    pts = [[p.astype(np.float32) for p in side] for side in (left, right)]
    cams = [cv2.calibrateCamera(boards, side, size, None, None)[1:3] for side in pts]
    criteria = (cv2.TERM_CRITERIA_COUNT + cv2.TERM_CRITERIA_EPS, 100, 1e-12)
    rms, *_, R, T, _, _ = cv2.stereoCalibrate(boards, pts[0], pts[1], *cams[0], *cams[1], size,
                                              flags=cv2.CALIB_FIX_INTRINSIC, criteria=criteria)
    return R, T.ravel(), rms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=14)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="OpenCV threads (cv2.setNumThreads)")
    args = parser.parse_args()
    cv2.setNumThreads(args.threads)
    for name, data in ((f"{args.pairs} synthetic pairs", synthetic_pairs(args.pairs)), ("4 MRPT pairs", real_pairs())):
        answers = {}

        def timed(side, fn, data=data, answers=answers):
            def go():
                answers[side] = fn(*data)
            return go

        times = alternate({"cvzoo": timed("cvzoo", run_cvzoo), "opencv": timed("opencv", run_opencv)},
                          repeats=args.repeats, warmup=1)
        (R1, T1, rms1), (R2, T2, rms2) = answers["cvzoo"], answers["opencv"]
        angle = np.degrees(np.arccos(np.clip((np.trace(R1 @ R2.T) - 1) / 2, -1, 1)))
        print(f"{name}: cvzoo {median(times['cvzoo']):.3f} s, OpenCV {median(times['opencv']):.3f} s, "
              f"ratio {median_ratio(times['cvzoo'], times['opencv']):.2f}x; rms {rms1:.4f} vs {rms2:.4f} px, "
              f"|T| {np.linalg.norm(T1):.4f} vs {np.linalg.norm(T2):.4f}, rotation apart {angle:.2e} deg")


if __name__ == "__main__":
    main()
