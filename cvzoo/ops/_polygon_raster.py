"""Polygon rasterisation of the COCO API (``rleFrPoly``), for many polygons at once.

The COCO API does not fill pixels whose centre is inside the polygon; it traces the boundary on a
grid five times finer than the image, keeps the points where the traced line crosses a pixel-column
centre, rounds each of them to a pixel-row boundary and then toggles the mask at these boundaries
(column-major, as the run-length encoding is). The masks of COCO's polygon annotations and their
``area`` fields were made this way, so an evaluator must rasterise exactly like it. Every step below
reproduces one of the reference's, with the same integer truncations (C casts truncate towards zero)
and the same floating-point expressions, so that the output is the same run lengths bit for bit.

All polygons are processed together as flat arrays; the boundary points of large sets are handled in
chunks of about ``_CHUNK_POINTS`` points to bound the memory.
"""

from __future__ import annotations

import numpy as np

from cvzoo.ops._checks import MaskFormatError
from cvzoo.ops._rle_codec import local_index, segment_ids

_SCALE = 5.0
_INT_MIN = -(2**31)
_CHUNK_POINTS = 2_000_000


def _boundary_points(
    x: np.ndarray, y: np.ndarray, nxt: np.ndarray, vertex_poly: np.ndarray, heights: np.ndarray, widths: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Toggle positions (column-major pixel index) of the polygons whose vertices are given.

    Args:
        x, y: ``[V]`` vertices on the fine grid (already scaled and truncated).
        nxt: ``[V]`` index of the next vertex of the same polygon (the last one wraps to the first).
        vertex_poly: ``[V]`` polygon of each vertex (non-decreasing).
        heights, widths: per polygon.

    Returns:
        ``(poly, position)``: one entry per boundary point, grouped by polygon.
    """
    xs, ys, xe, ye = x, y, x[nxt], y[nxt]
    dx, dy = np.abs(xe - xs), np.abs(ys - ye)
    along_x = dx >= dy
    # Every edge is walked from its lower end along its longer axis (the reference swaps the ends).
    flip = (along_x & (xs > xe)) | (~along_x & (ys > ye))
    xs, xe = np.where(flip, xe, xs), np.where(flip, xs, xe)
    ys, ye = np.where(flip, ye, ys), np.where(flip, ys, ye)
    steps = np.where(along_x, dx, dy)
    # Degenerate edges (both ends on one fine-grid point) divide 0 by 0 in the reference and cast the
    # NaN to INT_MIN; give them slope 0 here and patch their single point afterwards.
    degenerate = steps == 0
    rise = np.where(along_x, ye - ys, xe - xs).astype(np.float64)
    slope = rise / np.where(degenerate, 1, steps)
    npts = steps + 1
    d = np.arange(int(npts.sum())) - np.repeat(np.cumsum(npts) - npts, npts)
    t = np.where(np.repeat(flip, npts), np.repeat(steps, npts) - d, d)
    on_x = np.repeat(along_x, npts)
    # Along the walked axis the coordinate steps by one; across it, it is rounded from the line.
    walked = t + np.repeat(np.where(along_x, xs, ys), npts)
    across = np.trunc(np.repeat(np.where(along_x, ys, xs).astype(np.float64), npts) + np.repeat(slope, npts) * t
                      + 0.5).astype(np.int64)
    across[np.repeat(degenerate, npts)] = _INT_MIN
    u = np.where(on_x, walked, across)
    v = np.where(on_x, across, walked)
    poly = np.repeat(vertex_poly, npts)

    # Points where the traced line moves to another fine column; keep those on a pixel-column centre.
    moved = np.flatnonzero((poly[1:] == poly[:-1]) & (u[1:] != u[:-1])) + 1
    poly = poly[moved]
    uj, up = u[moved], u[moved - 1]
    xd = (np.where(uj < up, uj, uj - 1).astype(np.float64) + 0.5) / _SCALE - 0.5
    w_last = np.where(widths > 0, widths - 1, 2.0**64 - 1).astype(np.float64)[poly]
    keep = (np.floor(xd) == xd) & (xd >= 0) & (xd <= w_last)
    poly, xd = poly[keep], xd[keep]
    yd = (np.minimum(v[moved], v[moved - 1])[keep].astype(np.float64) + 0.5) / _SCALE - 0.5
    h = heights[poly].astype(np.float64)
    yd = np.ceil(np.where(yd < 0, 0.0, np.where(yd > h, h, yd)))
    return poly, xd.astype(np.int64) * heights[poly] + yd.astype(np.int64)


def _runs_from_toggles(
    poly: np.ndarray, position: np.ndarray, num_polys: int, heights: np.ndarray, widths: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Run lengths from toggle positions, with the reference's treatment of repeated positions."""
    # The end of the image closes the last run of every polygon.
    poly = np.r_[poly, np.arange(num_polys)]
    position = np.r_[position, heights * widths]
    span = int(position.max()) + 1 if position.size else 1
    key = np.sort(poly * span + position)
    poly, position = key // span, key % span
    first = np.r_[True, poly[1:] != poly[:-1]]
    runs = np.where(first, position, position - np.r_[0, position[:-1]])
    # A zero-length run (two toggles at one place) is dropped and the run after it joins the run
    # before it; the reference scans left to right, so in a stretch of zeros only every other one
    # does this, and the run after the stretch joins the previous one iff the stretch is odd.
    zero = (runs == 0) & ~first
    stretch_start = np.flatnonzero(zero & ~np.r_[False, zero[:-1]])
    stretch_end = np.flatnonzero(zero & ~np.r_[zero[1:], False]) + 1
    joins = stretch_end[((stretch_end - stretch_start) % 2 == 1) & (stretch_end < runs.size)]
    joins = joins[~first[joins]]
    kept = first | ~zero
    kept[joins] = False
    starts = np.flatnonzero(kept)
    counts = np.add.reduceat(runs, starts)
    offsets = np.r_[0, np.cumsum(np.bincount(poly[starts], minlength=num_polys))]
    return counts, offsets


def rasterize_polygons(
    polygons: list[np.ndarray], heights: np.ndarray, widths: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Run lengths of polygons rasterised like ``pycocotools.mask.frPyObjects`` (one RLE per polygon).

    Args:
        polygons: flat float64 ``[x0, y0, x1, y1, ...]`` arrays; an odd trailing value is ignored.
        heights, widths: ``[P]`` image size of each polygon.

    Returns:
        ``(counts, offsets)`` as in :mod:`cvzoo.ops._rle_codec`.

    Raises:
        MaskFormatError: a coordinate is not finite or too large for the reference's 32-bit grid.
    """
    num = len(polygons)
    if num == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(1, dtype=np.int64)
    heights = np.asarray(heights, dtype=np.int64).reshape(num)
    widths = np.asarray(widths, dtype=np.int64).reshape(num)
    num_points = np.array([p.size // 2 for p in polygons], dtype=np.int64)
    coords = np.concatenate([p[: 2 * n] for p, n in zip(polygons, num_points.tolist())] + [np.zeros(0)])
    scaled = _SCALE * coords + 0.5
    bad = ~np.isfinite(scaled) | (np.abs(scaled) >= 2.0**31)
    if bad.any():
        offsets = np.r_[0, np.cumsum(2 * num_points)]
        i = int(np.searchsorted(offsets, np.flatnonzero(bad)[0], side="right") - 1)
        raise MaskFormatError(f"polygon coordinate {float(coords[bad][0])} is not finite or beyond +-4e8", i)
    grid = np.trunc(scaled).astype(np.int64).reshape(-1, 2)
    vertex_offsets = np.r_[0, np.cumsum(num_points)]
    vertex_poly = segment_ids(vertex_offsets)
    nxt = np.arange(vertex_poly.size) + 1
    last = local_index(vertex_offsets) == num_points[vertex_poly] - 1
    nxt[last] = vertex_offsets[:-1][vertex_poly[last]]
    x, y = grid[:, 0], grid[:, 1]
    edge_points = np.maximum(np.abs(x[nxt] - x), np.abs(y[nxt] - y)) + 1
    points_per_poly = np.bincount(vertex_poly, weights=edge_points, minlength=num)

    polys, positions = [], []
    lo = 0
    cumulative = np.cumsum(points_per_poly)
    while lo < num:
        # Whole polygons per chunk, at least one.
        hi = max(lo + 1, int(np.searchsorted(cumulative, cumulative[lo] - points_per_poly[lo] + _CHUNK_POINTS)))
        hi = min(hi, num)
        v0, v1 = int(vertex_offsets[lo]), int(vertex_offsets[hi])
        p, pos = _boundary_points(x[v0:v1], y[v0:v1], nxt[v0:v1] - v0, vertex_poly[v0:v1], heights, widths)
        polys.append(p)
        positions.append(pos)
        lo = hi
    poly = np.concatenate(polys + [np.zeros(0, np.int64)])
    position = np.concatenate(positions + [np.zeros(0, np.int64)])
    return _runs_from_toggles(poly, position, num, heights, widths)
