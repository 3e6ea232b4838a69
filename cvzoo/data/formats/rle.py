"""COCO run-length encoding (RLE) of binary masks, in numpy.

A COCO RLE walks the ``[H, W]`` mask in column-major (Fortran) order and stores alternating run
lengths, starting with a run of zeros (possibly of length 0). ``{"size": [H, W], "counts": [...]}``
is the *uncompressed* form; the *compressed* form stores ``counts`` as an ASCII string: each count
(after the third, minus the count two places before it, which is small for smooth shapes) is cut into
5-bit groups, low first; a group gets bit 0x20 when more follow, the last group's bit 0x10 carries
the sign, and every group is offset by 48 so that it is a printable character.
"""

from __future__ import annotations

import numpy as np

from cvzoo.data.formats._common import AnnotationFormatError


def encode_counts(mask: np.ndarray) -> list[int]:
    """Run lengths of a ``[H, W]`` binary mask in column-major order, starting with zeros."""
    flat = np.asarray(mask).astype(bool).ravel(order="F")
    if flat.size == 0:
        return []
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    counts = np.diff(np.concatenate([[0], change, [flat.size]]))
    if flat[0]:
        counts = np.concatenate([[0], counts])
    return counts.astype(np.int64).tolist()


def compress_counts(counts: list[int]) -> str:
    """The COCO compressed-string form of uncompressed run lengths."""
    chars = []
    for i, count in enumerate(counts):
        x = int(count) - int(counts[i - 2]) if i > 2 else int(count)
        more = True
        while more:
            group = x & 0x1F
            x >>= 5  # arithmetic shift: negative deltas end at -1
            more = x != -1 if group & 0x10 else x != 0
            if more:
                group |= 0x20
            chars.append(chr(group + 48))
    return "".join(chars)


def decompress_counts(text: str | bytes) -> list[int]:
    """Inverse of :func:`compress_counts`."""
    data = text.encode("ascii") if isinstance(text, str) else bytes(text)
    counts: list[int] = []
    pos = 0
    while pos < len(data):
        x, shift, more = 0, 0, True
        while more:
            if pos >= len(data):
                raise AnnotationFormatError("RLE string ends inside a count")
            group = data[pos] - 48
            x |= (group & 0x1F) << shift
            more = bool(group & 0x20)
            pos += 1
            shift += 5
            if not more and group & 0x10:
                x |= -1 << shift  # sign-extend
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def encode(mask: np.ndarray, compressed: bool = True) -> dict:
    """COCO RLE of a ``[H, W]`` binary mask: ``{"size": [H, W], "counts": str | list[int]}``."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"encode expects a [H, W] mask, got shape {list(mask.shape)}")
    counts = encode_counts(mask)
    return {"size": [int(mask.shape[0]), int(mask.shape[1])],
            "counts": compress_counts(counts) if compressed else counts}


def _counts_of(rle: dict) -> tuple[int, int, np.ndarray]:
    try:
        height, width = (int(v) for v in rle["size"])
        counts = rle["counts"]
    except (KeyError, TypeError, ValueError) as err:
        raise AnnotationFormatError(f"RLE must be {{'size': [H, W], 'counts': ...}}, got {rle!r:.80}") from err
    if isinstance(counts, (str, bytes)):
        counts = decompress_counts(counts)
    counts = np.asarray(counts, dtype=np.int64)
    if (counts < 0).any() or counts.sum() != height * width:
        raise AnnotationFormatError(
            f"RLE counts sum to {int(counts.sum())} but size {height}x{width} has {height * width} pixels"
        )
    return height, width, counts


def decode(rle: dict) -> np.ndarray:
    """``[H, W]`` uint8 mask of a COCO RLE (compressed or uncompressed)."""
    height, width, counts = _counts_of(rle)
    values = np.arange(len(counts)) % 2  # runs alternate 0, 1, 0, ...
    flat = np.repeat(values.astype(np.uint8), counts)
    return flat.reshape((height, width), order="F")


def area(rle: dict) -> int:
    """Number of foreground pixels, without decoding: the sum of the odd-position runs."""
    return int(_counts_of(rle)[2][1::2].sum())


def to_bbox(rle: dict) -> np.ndarray:
    """Tight box of the foreground as COCO xywh float32 ``[4]`` (zeros for an empty mask)."""
    mask = decode(rle)
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return np.zeros(4, np.float32)
    x0, y0 = xs.min(), ys.min()
    return np.array([x0, y0, xs.max() + 1 - x0, ys.max() + 1 - y0], np.float32)


def merge(rles: list[dict]) -> dict:
    """Union of several RLEs of the same size, compressed."""
    if not rles:
        raise ValueError("merge needs at least one RLE")
    union = decode(rles[0]).astype(bool)
    for rle in rles[1:]:
        union |= decode(rle).astype(bool)
    return encode(union)
