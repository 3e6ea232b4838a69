"""HOG against scikit-image's reference implementation, plus the paper's own numbers."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import data
from skimage.feature import hog as sk_hog

from cvzoo.features import HOGInputError, cell_histograms, hog, hog_visualize

RNG = np.random.default_rng(0)

CASES = [
    ("camera_window", data.camera()[100:228, 200:264], {}),
    ("camera_L1", data.camera()[:96, :160], {"block_norm": "L1", "orientations": 8}),
    ("astronaut_rgb", data.astronaut()[60:220, 150:310], {"channel_axis": -1}),
    ("coffee_float32", data.coffee()[:100, :150].astype(np.float32) / 255,
     {"channel_axis": 2, "orientations": 7, "pixels_per_cell": (5, 6), "cells_per_block": (3, 2)}),
    ("coffee_sqrt_l1sqrt", data.coffee()[100:180, 200:330],
     {"channel_axis": -1, "transform_sqrt": True, "block_norm": "L1-sqrt", "pixels_per_cell": (6, 6)}),
    ("random_odd", RNG.random((61, 47)),
     {"orientations": 6, "pixels_per_cell": (7, 5), "block_norm": "L1-sqrt", "transform_sqrt": True}),
    ("random_channels_first", RNG.random((3, 40, 40)), {"channel_axis": 0, "block_norm": "L2", "orientations": 12}),
    ("random_uint8_grid", RNG.integers(0, 255, (64, 64)).astype(np.uint8),
     {"orientations": 8, "pixels_per_cell": (4, 4), "cells_per_block": (3, 3), "feature_vector": False}),
]


@pytest.mark.parametrize("name,image,kwargs", CASES, ids=[c[0] for c in CASES])
def test_matches_skimage(name, image, kwargs):
    kwargs = {"cells_per_block": (2, 2), **kwargs}
    ours = hog(image, **kwargs)
    ref = sk_hog(image, **kwargs)
    assert ours.shape == ref.shape
    assert ours.dtype == ref.dtype
    np.testing.assert_allclose(ours, ref, atol=1e-6, rtol=0)


def test_pedestrian_window_has_3780_features():
    # Dalal & Triggs' 64x128 window: 7 x 15 blocks of 2x2 cells x 9 bins.
    window = data.astronaut()[:128, 200:264]
    assert hog(window, channel_axis=-1).shape == (3780,)
    assert hog(window, channel_axis=-1, feature_vector=False).shape == (15, 7, 2, 2, 9)


def test_l2hys_blocks_are_clipped_and_unit_norm():
    blocks = hog(data.camera()[:64, :64], feature_vector=False)
    norms = np.sqrt((blocks**2).sum(axis=(2, 3, 4)))
    np.testing.assert_allclose(norms, 1.0, atol=1e-3)
    # After renormalisation the clipped entries can exceed 0.2 only slightly.
    assert blocks.max() < 0.35


def _ramp(size: int = 48) -> np.ndarray:
    return np.tile(np.arange(size, dtype=float), (size, 1))  # gradient along columns: angle 0 deg


def test_hard_votes_put_a_horizontal_gradient_in_bin_zero():
    hist = cell_histograms(_ramp(), orientations=9, pixels_per_cell=8)
    interior = hist[:, 1:-1]
    assert np.all(interior[..., 0] > 0)
    assert np.all(interior[..., 1:] == 0)


def test_trilinear_splits_a_bin_edge_angle_between_wrapped_bins():
    # Angle 0 sits half-way between the centres of bin 8 (170 deg) and bin 0 (10 deg, wrapping).
    hist = cell_histograms(_ramp(), orientations=9, pixels_per_cell=8, interpolation="trilinear")
    interior = hist[1:-1, 1:-1]
    np.testing.assert_allclose(interior[..., 0], interior[..., 8])
    assert np.all(interior[..., 1:8] == 0)


def test_trilinear_conserves_the_vote_mass():
    yy, xx = np.mgrid[:64, :64]
    blob = np.exp(-((yy - 32.0) ** 2 + (xx - 30.0) ** 2) / 60.0)  # gradients vanish near the border
    hist = cell_histograms(blob, pixels_per_cell=8, interpolation="trilinear")
    g_row = np.zeros_like(blob)
    g_col = np.zeros_like(blob)
    g_row[1:-1] = blob[2:] - blob[:-2]
    g_col[:, 1:-1] = blob[:, 2:] - blob[:, :-2]
    np.testing.assert_allclose(hist.sum() * 64, np.hypot(g_row, g_col).sum(), rtol=1e-6)


def test_trilinear_differs_from_skimage_but_is_more_shift_stable():
    image = data.camera()[100:260, 100:260].astype(float)
    hard = hog(image)
    tri = hog(image, interpolation="trilinear")
    assert hard.shape == tri.shape
    assert np.abs(hard - tri).max() > 1e-2
    shifted = image[1:, 1:]
    crop = (slice(None, 152), slice(None, 152))
    change_hard = np.abs(hog(image[crop]) - hog(shifted[crop])).mean()
    change_tri = np.abs(hog(image[crop], interpolation="trilinear")
                        - hog(shifted[crop], interpolation="trilinear")).mean()
    assert change_tri < change_hard


@pytest.mark.parametrize("cell,orientations", [((8, 8), 9), ((5, 7), 13), ((16, 16), 8)])
def test_visualisation_matches_skimage(cell, orientations):
    image = data.camera()[:128, :128]
    _, ref = sk_hog(image, orientations=orientations, pixels_per_cell=cell, visualize=True)
    ours = hog_visualize(image, orientations=orientations, pixels_per_cell=cell)
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, atol=1e-4)


def test_visualisation_of_colour_image_has_spatial_shape():
    assert hog_visualize(data.astronaut()[:64, :80], channel_axis=-1).shape == (64, 80)


@pytest.mark.parametrize(
    "image,kwargs,match",
    [
        (np.zeros((32, 32, 3)), {}, "channel_axis"),
        (np.zeros((8, 40)), {}, "too small"),
        (np.zeros((32, 32)), {"block_norm": "L3"}, "block_norm"),
        (-np.ones((32, 32)), {"transform_sqrt": True}, "non-negative"),
        (np.zeros((32, 32)), {"pixels_per_cell": (0, 8)}, "pixels_per_cell"),
        (np.zeros((32, 32)), {"interpolation": "cubic"}, "interpolation"),
        (np.zeros((32, 32)), {"channel_axis": 3}, "channel_axis"),
        (np.array([["a"]]), {}, "numeric"),
    ],
)
def test_bad_input_raises(image, kwargs, match):
    with pytest.raises(HOGInputError, match=match):
        hog(image, **kwargs)
