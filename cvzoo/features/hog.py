"""Histogram of Oriented Gradients (Dalal & Triggs, "Histograms of Oriented Gradients for Human
Detection", CVPR 2005), vectorised in numpy.

The pipeline follows the paper's stages: optional gamma (square-root) compression, centred [-1, 0, 1]
gradients, per-cell histograms of unsigned (0-180 degree) orientations weighted by gradient magnitude,
then contrast normalisation over overlapping blocks of cells.

With the default ``interpolation="none"`` the output equals scikit-image's ``skimage.feature.hog`` (to
float rounding): every pixel votes its whole magnitude into the one bin whose half-open range
``[i * 180/n, (i + 1) * 180/n)`` holds its angle, cells are the ``H // ph x W // pw`` full tiles from
the top-left corner (the remainder rows/columns are ignored), and the cell sums are accumulated in
float32 and divided by the cell area, exactly as scikit-image's compiled histogram does.
``interpolation="trilinear"`` is the paper's voting scheme (bilinear between neighbouring bin
centres in angle and between the four nearest cell centres in space); it reduces aliasing but does
not match scikit-image.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["HOGInputError", "cell_histograms", "draw_hog_glyphs", "hog", "hog_visualize"]

BLOCK_NORMS = ("L1", "L1-sqrt", "L2", "L2-Hys")
INTERPOLATIONS = ("none", "trilinear")
# Regulariser of the block norms (the paper's epsilon); the same value scikit-image uses.
_EPS = 1e-5


class HOGInputError(ValueError):
    """Invalid image or parameters for HOG (the message names the offending shape/value)."""


def _pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int | np.integer) else tuple(value)
    if len(pair) != 2 or any(int(v) != v or v < 1 for v in pair):
        raise HOGInputError(f"{name} must be a positive int or a pair of positive ints, got {value!r}")
    return int(pair[0]), int(pair[1])


def _float_dtype(dtype: np.dtype) -> type:
    # Same promotion as scikit-image: half/single precision stay single, everything else is double.
    return np.float32 if dtype in (np.float16, np.float32) else np.float64


def _prepare(image: np.ndarray, channel_axis: int | None, transform_sqrt: bool) -> np.ndarray:
    """Validate and convert to float ``[H, W]`` or ``[H, W, C]`` (channels last)."""
    image = np.asarray(image)
    if image.dtype == bool or not np.issubdtype(image.dtype, np.number):
        raise HOGInputError(f"HOG expects a numeric image, got dtype {image.dtype}")
    image = np.atleast_2d(image)
    if channel_axis is not None:
        if not -image.ndim <= channel_axis < image.ndim:
            raise HOGInputError(f"channel_axis={channel_axis} is out of range for an image of shape {image.shape}")
        image = np.moveaxis(image, channel_axis, -1)
    spatial = image.ndim - (channel_axis is not None)
    if spatial != 2:
        raise HOGInputError(
            f"HOG needs an image with two spatial dimensions, got shape {image.shape}"
            + ("; pass channel_axis for a colour image" if channel_axis is None and image.ndim == 3 else "")
        )
    image = image.astype(_float_dtype(image.dtype), copy=False)
    if transform_sqrt:
        if np.any(image < 0):
            raise HOGInputError("transform_sqrt=True needs a non-negative image (it takes the square root)")
        image = np.sqrt(image)
    return image


def _gradients(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centred differences ``I[i+1] - I[i-1]`` (the paper's best mask, [-1, 0, 1], no smoothing).

    Border rows/columns get zero gradient. For a colour image each pixel keeps the gradient of the
    channel with the largest magnitude (the paper's "locally dominant colour channel").
    """
    g_row = np.zeros_like(image)
    g_col = np.zeros_like(image)
    g_row[1:-1] = image[2:] - image[:-2]
    g_col[:, 1:-1] = image[:, 2:] - image[:, :-2]
    if image.ndim == 3:
        best = np.hypot(g_row, g_col).argmax(axis=2)[..., None]
        g_row = np.take_along_axis(g_row, best, axis=2)[..., 0]
        g_col = np.take_along_axis(g_col, best, axis=2)[..., 0]
    return g_row.astype(np.float64), g_col.astype(np.float64)


def _hard_histograms(
    magnitude: np.ndarray, angle: np.ndarray, orientations: int, cell: tuple[int, int]
) -> np.ndarray:
    """Each pixel adds its magnitude to the bin containing its angle; returns ``[Hc, Wc, n]``."""
    cr, cc = cell
    ncr, ncc = magnitude.shape[0] // cr, magnitude.shape[1] // cc
    # Bin edges are computed in single precision (as in scikit-image's compiled loop); an angle lying
    # above the rounded last edge falls in no bin and is dropped, like there.
    edges = (np.float32(180.0 / orientations) * np.arange(orientations + 1, dtype=np.float32)).astype(np.float64)
    bins = np.searchsorted(edges, angle, side="right") - 1
    votes = np.where((bins >= 0) & (bins < orientations), magnitude, 0.0)
    bins = np.clip(bins, 0, orientations - 1)

    def tiles(a: np.ndarray) -> np.ndarray:  # [H, W] -> [cr, cc, Hc, Wc]: pixel offset first
        return a[: ncr * cr, : ncc * cc].reshape(ncr, cr, ncc, cc).transpose(1, 3, 0, 2)

    votes, bins = tiles(votes), tiles(bins)
    one_hot = np.arange(orientations) == bins[..., None]  # [cr, cc, Hc, Wc, n]
    # Sum the pixels of a cell in raster order with a float32 accumulator (adding in double, rounding
    # after each step): bit-for-bit the reference's arithmetic. Zero votes leave the sum unchanged.
    total = np.zeros((ncr, ncc, orientations), dtype=np.float32)
    for i in range(cr):
        for j in range(cc):
            total = (total + np.where(one_hot[i, j], votes[i, j, ..., None], 0.0)).astype(np.float32)
    return (total / np.float32(cr * cc)).astype(np.float64)


def _trilinear_histograms(
    magnitude: np.ndarray, angle: np.ndarray, orientations: int, cell: tuple[int, int]
) -> np.ndarray:
    """Dalal & Triggs' voting: bilinear in (row, col) between cell centres and linear in angle between
    bin centres (angles wrap at 180 degrees). Returns ``[Hc, Wc, n]`` normalised by the cell area."""
    cr, cc = cell
    ncr, ncc = magnitude.shape[0] // cr, magnitude.shape[1] // cc
    magnitude = magnitude[: ncr * cr, : ncc * cc]
    angle = angle[: ncr * cr, : ncc * cc]
    # Continuous coordinates in units of cells / bins, 0 at the first centre.
    y = (np.arange(ncr * cr) + 0.5) / cr - 0.5
    x = (np.arange(ncc * cc) + 0.5) / cc - 0.5
    b = angle / (180.0 / orientations) - 0.5
    y0, x0, b0 = np.floor(y).astype(int), np.floor(x).astype(int), np.floor(b).astype(int)
    wy, wx, wb = y - y0, x - x0, b - b0
    # One padding cell on each side absorbs votes of border pixels towards absent neighbours.
    hist = np.zeros((ncr + 2, ncc + 2, orientations))
    for dy, fy in ((0, 1 - wy), (1, wy)):
        for dx, fx in ((0, 1 - wx), (1, wx)):
            spatial = fy[:, None] * fx[None, :] * magnitude
            rows = np.broadcast_to((y0 + dy + 1)[:, None], spatial.shape)
            cols = np.broadcast_to((x0 + dx + 1)[None, :], spatial.shape)
            for db, fb in ((0, 1 - wb), (1, wb)):
                np.add.at(hist, (rows, cols, (b0 + db) % orientations), spatial * fb)
    return hist[1:-1, 1:-1] / (cr * cc)


def cell_histograms(
    image: np.ndarray,
    orientations: int = 9,
    pixels_per_cell: int | Sequence[int] = (8, 8),
    transform_sqrt: bool = False,
    channel_axis: int | None = None,
    interpolation: str = "none",
) -> np.ndarray:
    """Per-cell orientation histograms before block normalisation.

    Args:
        image: ``[H, W]`` grey image, or colour with ``channel_axis`` naming the channel axis.
        orientations: number of unsigned orientation bins over 0-180 degrees.
        pixels_per_cell: cell size ``(rows, cols)`` in pixels.
        transform_sqrt: square-root (gamma) compression of the image first.
        channel_axis: axis of the colour channels, ``None`` for a grey image.
        interpolation: ``"none"`` (scikit-image's hard voting) or ``"trilinear"`` (Dalal & Triggs).

    Returns:
        ``[H // rows, W // cols, orientations]`` float64 array: mean magnitude per bin and cell.
    """
    if int(orientations) != orientations or orientations < 1:
        raise HOGInputError(f"orientations must be a positive int, got {orientations!r}")
    if interpolation not in INTERPOLATIONS:
        raise HOGInputError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
    cell = _pair(pixels_per_cell, "pixels_per_cell")
    image = _prepare(image, channel_axis, transform_sqrt)
    if image.shape[0] < cell[0] or image.shape[1] < cell[1]:
        raise HOGInputError(f"image of shape {image.shape} is smaller than one cell {cell}")
    g_row, g_col = _gradients(image)
    magnitude = np.hypot(g_col, g_row)
    angle = np.rad2deg(np.arctan2(g_row, g_col)) % 180
    build = _hard_histograms if interpolation == "none" else _trilinear_histograms
    return build(magnitude, angle, int(orientations), cell)


def _normalize_blocks(blocks: np.ndarray, method: str) -> np.ndarray:
    """Normalise ``[..., br, bc, n]`` blocks over their last three axes (Dalal & Triggs, sec. 6.4)."""
    axes = (-3, -2, -1)
    if method in ("L1", "L1-sqrt"):
        out = blocks / (np.abs(blocks).sum(axis=axes, keepdims=True) + _EPS)
        return np.sqrt(out) if method == "L1-sqrt" else out
    out = blocks / np.sqrt((blocks**2).sum(axis=axes, keepdims=True) + _EPS**2)
    if method == "L2-Hys":
        # Lowe-style clipping: cap each entry at 0.2 so a few strong edges cannot dominate, renormalise.
        out = np.minimum(out, 0.2)
        out = out / np.sqrt((out**2).sum(axis=axes, keepdims=True) + _EPS**2)
    return out


def hog(
    image: np.ndarray,
    orientations: int = 9,
    pixels_per_cell: int | Sequence[int] = (8, 8),
    cells_per_block: int | Sequence[int] = (2, 2),
    block_norm: str = "L2-Hys",
    transform_sqrt: bool = False,
    feature_vector: bool = True,
    channel_axis: int | None = None,
    interpolation: str = "none",
) -> np.ndarray:
    """HOG descriptor of an image (arguments mean what they mean in ``skimage.feature.hog``).

    A 64x128 pedestrian window with the paper's setting (9 bins, 8x8 cells, 2x2 blocks, stride one
    cell) has 7 x 15 blocks x 36 values = 3780 features.

    Args:
        image: ``[H, W]`` grey image, or colour with ``channel_axis`` naming the channel axis.
        orientations: number of unsigned orientation bins over 0-180 degrees.
        pixels_per_cell: cell size ``(rows, cols)`` in pixels.
        cells_per_block: block size ``(rows, cols)`` in cells; blocks slide by one cell.
        block_norm: ``"L1"``, ``"L1-sqrt"``, ``"L2"`` or ``"L2-Hys"`` (L2, clip at 0.2, L2 again).
        transform_sqrt: square-root (gamma) compression of the image first.
        feature_vector: flatten the result to 1-D.
        channel_axis: axis of the colour channels, ``None`` for a grey image.
        interpolation: ``"none"`` matches scikit-image; ``"trilinear"`` is the paper's vote
            interpolation (does not match scikit-image).

    Returns:
        ``[n_blocks_row, n_blocks_col, block_rows, block_cols, orientations]`` array, or its
        flattening; float32 for float16/float32 input, float64 otherwise.

    Raises:
        HOGInputError: bad shape, parameters, or an image smaller than one block.
    """
    if block_norm not in BLOCK_NORMS:
        raise HOGInputError(f"block_norm must be one of {BLOCK_NORMS}, got {block_norm!r}")
    block = _pair(cells_per_block, "cells_per_block")
    cell = _pair(pixels_per_cell, "pixels_per_cell")
    out_dtype = _float_dtype(np.asarray(image).dtype)
    shape = np.shape(image)
    hist = cell_histograms(image, orientations, cell, transform_sqrt, channel_axis, interpolation)
    n_rows, n_cols = hist.shape[0] - block[0] + 1, hist.shape[1] - block[1] + 1
    if n_rows <= 0 or n_cols <= 0:
        raise HOGInputError(
            f"image of shape {shape} is too small for {block} cells of {cell} pixels per block: "
            f"it needs at least {block[0] * cell[0]} rows and {block[1] * cell[1]} columns"
        )
    # [Hc, Wc, n] -> every block_rows x block_cols window: [Hb, Wb, n, br, bc] -> [Hb, Wb, br, bc, n].
    windows = np.lib.stride_tricks.sliding_window_view(hist, block, axis=(0, 1))
    blocks = _normalize_blocks(windows.transpose(0, 1, 3, 4, 2), block_norm).astype(out_dtype)
    return blocks.ravel() if feature_vector else blocks


def _line_pixels(r0: int, c0: int, r1: int, c1: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer pixels of the segment (r0, c0)-(r1, c1): one per step along its major axis."""
    steps = max(abs(r1 - r0), abs(c1 - c0))
    t = np.linspace(0.0, 1.0, steps + 1)
    # Round half away from zero relative to the start so the segment is symmetric about its centre.
    rr = r0 + np.sign(r1 - r0) * np.floor(np.abs(r1 - r0) * t + 0.5)
    cc = c0 + np.sign(c1 - c0) * np.floor(np.abs(c1 - c0) * t + 0.5)
    return rr.astype(int), cc.astype(int)


def draw_hog_glyphs(
    histograms: np.ndarray, pixels_per_cell: int | Sequence[int], image_shape: Sequence[int]
) -> np.ndarray:
    """Render cell histograms as star glyphs, one line segment per orientation bin.

    Each segment passes through the cell centre, perpendicular to its bin's mid angle (so it lies
    along the edge that produced the gradient), with brightness equal to the bin value.

    Args:
        histograms: ``[Hc, Wc, n]`` cell histograms (from :func:`cell_histograms`).
        pixels_per_cell: cell size ``(rows, cols)`` used to compute them.
        image_shape: ``(H, W, ...)`` of the source image; the output has shape ``(H, W)``.

    Returns:
        ``[H, W]`` float64 image.
    """
    histograms = np.asarray(histograms, dtype=np.float64)
    if histograms.ndim != 3:
        raise HOGInputError(f"histograms must be [rows, cols, bins], got shape {histograms.shape}")
    cr, cc = _pair(pixels_per_cell, "pixels_per_cell")
    height, width = int(image_shape[0]), int(image_shape[1])
    ncr, ncc, n = histograms.shape
    if ncr * cr > height or ncc * cc > width:
        raise HOGInputError(f"{ncr}x{ncc} cells of {cr}x{cc} pixels do not fit an image of shape {tuple(image_shape)}")
    # Glyph half-length and bin mid angles as in scikit-image's visualisation.
    radius = min(cr, cc) // 2 - 1
    mids = np.pi * (np.arange(n) + 0.5) / n
    canvas = np.zeros((height, width))
    centre_r = np.arange(ncr) * cr + cr // 2
    centre_c = np.arange(ncc) * cc + cc // 2
    for o in range(n):
        d_row, d_col = radius * np.sin(mids[o]), radius * np.cos(mids[o])
        # Endpoints are truncated in absolute coordinates, int(centre + d), so that round-off near an
        # integer decides the same pixel as scikit-image does; cells sharing the resulting template
        # (relative to their centre) are stamped together.
        r_ends = np.floor(np.stack([centre_r - d_col, centre_r + d_col], 1)).astype(int) - centre_r[:, None]
        c_ends = np.floor(np.stack([centre_c + d_row, centre_c - d_row], 1)).astype(int) - centre_c[:, None]
        for r_key in np.unique(r_ends, axis=0):
            row_cells = np.flatnonzero((r_ends == r_key).all(axis=1))
            for c_key in np.unique(c_ends, axis=0):
                col_cells = np.flatnonzero((c_ends == c_key).all(axis=1))
                rr, cc_ = _line_pixels(r_key[0], c_key[0], r_key[1], c_key[1])
                rows = centre_r[row_cells, None, None] + rr
                cols = centre_c[None, col_cells, None] + cc_
                values = histograms[row_cells[:, None], col_cells[None, :], o][..., None]
                rows, cols, values = np.broadcast_arrays(rows, cols, values)
                np.add.at(canvas, (rows.ravel(), cols.ravel()), values.ravel())
    return canvas


def hog_visualize(
    image: np.ndarray,
    orientations: int = 9,
    pixels_per_cell: int | Sequence[int] = (8, 8),
    transform_sqrt: bool = False,
    channel_axis: int | None = None,
    interpolation: str = "none",
) -> np.ndarray:
    """Glyph picture of an image's cell histograms (what ``skimage.feature.hog(visualize=True)`` draws).

    Returns:
        ``[H, W]`` float64 image; rescale (e.g. divide by its max) before saving.
    """
    hist = cell_histograms(image, orientations, pixels_per_cell, transform_sqrt, channel_axis, interpolation)
    shape = list(np.shape(np.atleast_2d(image)))
    if channel_axis is not None:
        del shape[channel_axis]
    return draw_hog_glyphs(hist, pixels_per_cell, shape)
