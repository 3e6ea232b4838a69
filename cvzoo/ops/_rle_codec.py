"""The COCO API's compressed RLE counts strings, encoded and decoded for many masks in one pass.

The format (the COCO mask API's ``rleToString`` / ``rleFrString``): from the fourth run on, each run
length is written as its difference to the run two places back (runs alternate between zeros and
ones, so neighbouring runs of the same value are similar and the difference is small). Every number
is cut into 5-bit groups, least significant first, in two's complement; one character carries one
group in its low 5 bits, bit 0x20 says that another group follows, and 48 is added so that every
character is printable (``'0'`` .. ``'o'``). In the last group of a number bit 0x10 is the sign.

Everything here works on flat arrays (all masks' runs concatenated, ``offsets`` giving where each
mask's runs start), so that decoding the results of a whole evaluation is a handful of NumPy calls
instead of a Python loop per mask.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cvzoo.ops._checks import MaskFormatError

_FIRST_CHAR = 48  # '0'
_LAST_CHAR = _FIRST_CHAR + 63  # 'o'
# A difference of two 32-bit run lengths needs at most 34 bits: 7 groups of 5.
_MAX_GROUPS = 7


def segment_ids(offsets: np.ndarray) -> np.ndarray:
    """``[C]`` index of the segment each element belongs to, for CSR-style ``offsets [N+1]``."""
    return np.repeat(np.arange(offsets.size - 1), np.diff(offsets))


def local_index(offsets: np.ndarray) -> np.ndarray:
    """``[C]`` position of each element inside its segment."""
    lengths = np.diff(offsets)
    return np.arange(int(offsets[-1])) - np.repeat(offsets[:-1], lengths)


def segmented_cumsum(values: np.ndarray, seg: np.ndarray) -> np.ndarray:
    """Inclusive cumulative sum of ``values`` restarting wherever the non-decreasing ``seg`` changes."""
    csum = np.cumsum(values)
    if csum.size == 0:
        return csum
    starts = np.flatnonzero(np.r_[True, seg[1:] != seg[:-1]])
    base = csum[starts] - values[starts]
    return csum - np.repeat(base, np.diff(np.r_[starts, csum.size]))


def encode_counts(counts: np.ndarray, offsets: np.ndarray) -> list[str]:
    """Compressed strings of many RLEs.

    Args:
        counts: ``[C]`` int64 run lengths of all masks, concatenated.
        offsets: ``[N+1]`` int64, mask ``i`` owns ``counts[offsets[i]:offsets[i+1]]``.

    Returns:
        ``N`` strings, equal to the COCO API's ``rleToString`` output.
    """
    counts = np.asarray(counts, dtype=np.int64)
    values = counts.copy()
    delta = np.flatnonzero(local_index(offsets) > 2)
    values[delta] -= counts[delta - 2]
    # Groups needed: the smallest n with -2**(5n-1) <= value < 2**(5n-1) (two's complement in 5n bits),
    # which is exactly where the reference's "more groups follow" test stops.
    groups = np.ones(values.size, dtype=np.int64)
    for n in range(1, _MAX_GROUPS):
        limit = 1 << (5 * n - 1)
        groups += (values >= limit) | (values < -limit)
    owner = np.repeat(np.arange(values.size), groups)
    first = np.cumsum(groups) - groups
    k = np.arange(owner.size) - np.repeat(first, groups)
    chars = (values[owner] >> (5 * k)) & 0x1F
    chars |= (k < groups[owner] - 1).astype(np.int64) << 5
    chars += _FIRST_CHAR
    text = chars.astype(np.uint8).tobytes().decode("ascii")
    char_offsets = np.r_[0, np.cumsum(groups)][offsets].tolist()
    return [text[char_offsets[i] : char_offsets[i + 1]] for i in range(len(char_offsets) - 1)]


def _as_bytes(strings: Sequence[str | bytes]) -> list[bytes]:
    out = []
    for i, s in enumerate(strings):
        if isinstance(s, bytes):
            out.append(s)
        elif isinstance(s, str):
            try:
                out.append(s.encode("ascii"))
            except UnicodeEncodeError:
                raise MaskFormatError(f"RLE counts string has a non-ASCII character: {s!r:.60}", i) from None
        else:
            raise MaskFormatError(f"RLE counts must be a str, bytes or a list of ints, got {type(s).__name__}", i)
    return out


def decode_counts(strings: Sequence[str | bytes]) -> tuple[np.ndarray, np.ndarray]:
    """Run lengths of many compressed RLE strings (the inverse of :func:`encode_counts`).

    Args:
        strings: compressed counts, ``str`` or ``bytes``.

    Returns:
        ``(counts [C] int64, offsets [N+1] int64)``.

    Raises:
        MaskFormatError: with ``index`` set to the first bad string, when a character is outside
            ``'0'``..``'o'``, a string ends in the middle of a number, a number is too long, or a
            run length comes out negative or above 2**32 - 1.
    """
    raw = _as_bytes(strings)
    lengths = np.fromiter(map(len, raw), dtype=np.int64, count=len(raw))
    char_offsets = np.r_[0, np.cumsum(lengths)]
    chars = np.frombuffer(b"".join(raw), dtype=np.uint8).astype(np.int64)
    if chars.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(len(raw) + 1, dtype=np.int64)

    def owner_of(position: int) -> int:
        return int(np.searchsorted(char_offsets, position, side="right") - 1)

    bad = np.flatnonzero((chars < _FIRST_CHAR) | (chars > _LAST_CHAR))
    if bad.size:
        i = owner_of(int(bad[0]))
        col = int(bad[0] - char_offsets[i])
        raise MaskFormatError(
            f"RLE counts string has an invalid character {chr(chars[bad[0]])!r} at position {col} "
            f"(allowed: '0'..'o')", i)
    groups = chars - _FIRST_CHAR
    last = (groups & 0x20) == 0  # no continuation bit: the number ends here
    nonempty = lengths > 0
    unfinished = nonempty & ~last[np.maximum(char_offsets[1:] - 1, 0)]
    if unfinished.any():
        i = int(np.flatnonzero(unfinished)[0])
        raise MaskFormatError("RLE counts string ends in the middle of a number (truncated or corrupt)", i)
    starts = np.flatnonzero(np.r_[True, last[:-1]])
    num_groups = np.diff(np.r_[starts, chars.size])
    if num_groups.size and num_groups.max() > _MAX_GROUPS:
        i = owner_of(int(starts[np.argmax(num_groups > _MAX_GROUPS)]))
        raise MaskFormatError(f"RLE counts string has a number longer than {_MAX_GROUPS} characters", i)
    k = np.arange(chars.size) - np.repeat(starts, num_groups)
    values = np.add.reduceat((groups & 0x1F) << (5 * k), starts)
    negative = (groups[last] & 0x10) != 0
    values[negative] -= np.int64(1) << (5 * num_groups[negative])

    offsets = np.r_[0, np.cumsum(last)][char_offsets]
    # Undo the differences: odd runs are a running sum from run 1, even runs from run 2 (run 0 alone).
    local = local_index(offsets)
    owner = segment_ids(offsets)
    counts = values.copy()
    for chain in ((local % 2 == 1), (local % 2 == 0) & (local >= 2)):
        counts[chain] = segmented_cumsum(values[chain], owner[chain])
    bad_run = (counts < 0) | (counts > 0xFFFFFFFF)
    if bad_run.any():
        i = int(owner[np.argmax(bad_run)])
        raise MaskFormatError(f"RLE counts string decodes to an invalid run length {int(counts[bad_run][0])}", i)
    return counts, offsets
