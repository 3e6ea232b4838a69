"""Shared fixtures: the bundled MRPT chessboards and a synthetic calibration scene generator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cvzoo.data.bundled import asset_path
from cvzoo.geometry import chessboard_points, project_points, rodrigues, rotation_to_rvec

ASSETS = asset_path("chessboards")


@pytest.fixture(scope="session")
def assets() -> Path:
    return ASSETS


def _random_scene(seed: int, n_views: int = 6, tilt_deg=(15.0, 45.0), noise: float = 0.1, dist=None):
    """Random camera and board poses that keep a 9x6 board (3 cm squares) inside a 1280x960 image."""
    rng = np.random.default_rng(seed)
    width, height = 1280, 960
    f = rng.uniform(700, 1400)
    K = np.array(
        [
            [f, 0.0, width / 2 + rng.uniform(-40, 40)],
            [0.0, f * rng.uniform(0.97, 1.03), height / 2 + rng.uniform(-30, 30)],
            [0.0, 0.0, 1.0],
        ]
    )
    if dist is None:
        dist = np.array(
            [
                rng.uniform(-0.3, 0.1),
                rng.uniform(-0.05, 0.15),
                rng.uniform(-1e-3, 1e-3),
                rng.uniform(-1e-3, 1e-3),
                0.0,
            ]
        )
    board = chessboard_points((9, 6), 0.03)
    board[:, :2] -= board[:, :2].mean(axis=0)  # centred, still Z = 0
    objs, imgs = [], []
    for _ in range(n_views):
        for _attempt in range(200):
            axis = rng.normal(size=3)
            axis[2] = 0.0
            axis /= np.linalg.norm(axis)
            angle = np.radians(rng.uniform(*tilt_deg))
            R = rodrigues(axis * angle) @ rodrigues([0.0, 0.0, rng.uniform(-0.5, 0.5)])
            t = np.array([rng.uniform(-0.08, 0.08), rng.uniform(-0.06, 0.06), rng.uniform(0.35, 0.6)])
            pixels = project_points(board, rotation_to_rvec(R), t, K, dist)
            if pixels.min() > 10 and pixels[:, 0].max() < width - 10 and pixels[:, 1].max() < height - 10:
                break
        objs.append(board.copy())
        imgs.append(pixels + rng.normal(scale=noise, size=pixels.shape))
    return objs, imgs, (width, height), K, np.asarray(dist, dtype=np.float64)


@pytest.fixture(scope="session")
def random_scene():
    """``random_scene(seed, n_views=6, tilt_deg=(15, 45), noise=0.1, dist=None)`` -> objs, imgs, size, K, dist."""
    return _random_scene


@pytest.fixture(scope="session")
def mrpt_corners(assets):
    """Detected corners of the four left and four right MRPT views (computed once)."""
    from cvzoo.geometry import find_chessboard_corners

    out = {}
    for side in ("left", "right"):
        paths = sorted(str(p) for p in assets.glob(f"*_{side}.jpg"))
        out[side] = (paths, [find_chessboard_corners(p, (9, 6)) for p in paths])
    return out
