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


def _joined(strings: Sequence[str | bytes]) -> tuple[bytes, np.ndarray]:
    """All strings as one ASCII byte string, and the length of each."""
    if all(type(s) is str for s in strings):
        try:
            # One encode of the joined text is much faster than one per string.
            return "".join(strings).encode("ascii"), np.fromiter(map(len, strings), np.int64, len(strings))
        except UnicodeEncodeError:
            pass  # the per-string path names the culprit
    raw = _as_bytes(strings)
    return b"".join(raw), np.fromiter(map(len, raw), dtype=np.int64, count=len(raw))


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
    blob, lengths = _joined(strings)
    char_offsets = np.r_[0, np.cumsum(lengths)]
    chars = np.frombuffer(blob, dtype=np.uint8)
    if chars.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(lengths.size + 1, dtype=np.int64)

    def owner_of(position: int) -> int:
        return int(np.searchsorted(char_offsets, position, side="right") - 1)

    groups = chars - np.uint8(_FIRST_CHAR)  # wraps below '0', so one comparison checks both ends
    bad = np.flatnonzero(groups > _LAST_CHAR - _FIRST_CHAR)
    if bad.size:
        i = owner_of(int(bad[0]))
        col = int(bad[0] - char_offsets[i])
        raise MaskFormatError(
            f"RLE counts string has an invalid character {chr(chars[bad[0]])!r} at position {col} "
            f"(allowed: '0'..'o')", i)
    ends = np.flatnonzero((groups & 0x20) == 0)  # no continuation bit: a number ends here
    nonempty = np.flatnonzero(lengths > 0)
    unfinished = (groups[char_offsets[1:][nonempty] - 1] & 0x20) != 0
    if unfinished.any():
        i = int(nonempty[np.argmax(unfinished)])
        raise MaskFormatError("RLE counts string ends in the middle of a number (truncated or corrupt)", i)
    starts = np.empty_like(ends)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    num_groups = ends - starts + 1
    longest = int(num_groups.max())
    if longest > _MAX_GROUPS:
        i = owner_of(int(starts[np.argmax(num_groups > _MAX_GROUPS)]))
        raise MaskFormatError(f"RLE counts string has a number longer than {_MAX_GROUPS} characters", i)
    values = (groups[starts] & 0x1F).astype(np.int64)
    # Most numbers are one character; add the higher groups only where they exist.
    for k in range(1, longest):
        longer = np.flatnonzero(num_groups > k)
        values[longer] += (groups[starts[longer] + k] & 0x1F).astype(np.int64) << (5 * k)
    # Two's complement: bit 0x10 of the last group is the sign of the 5n-bit number.
    values -= ((groups[ends] >> 4) & 1).astype(np.int64) << (5 * num_groups)

    offsets = np.searchsorted(ends, char_offsets, side="left")
    # Undo the differences: run i > 2 is stored minus run i - 2, so runs are running sums along
    # the odd and the even positions. With S the stride-2 running sum over all strings,
    # run i = S[i] - S[two before the first odd (even) run of i's string]; runs 0 are taken as stored.
    running = np.empty_like(values)
    running[0::2] = np.cumsum(values[0::2])
    running[1::2] = np.cumsum(values[1::2])
    padded = np.r_[0, running]  # padded[j + 1] = S[j], padded[0] = S[-1] = 0
    per_string = np.diff(offsets)
    # Which stored base applies to a run depends on its parity inside its string.
    global_odd = np.zeros(values.size, dtype=bool)
    global_odd[1::2] = True
    local_odd = global_odd ^ np.repeat((offsets[:-1] & 1).astype(bool), per_string)
    base_odd = np.repeat(padded[offsets[:-1]], per_string)
    base_even = np.repeat(padded[np.minimum(offsets[:-1] + 1, values.size)], per_string)
    counts = running - np.where(local_odd, base_odd, base_even)
    first = offsets[:-1][lengths > 0]
    counts[first] = values[first]
    bad_run = (counts < 0) | (counts > 0xFFFFFFFF)
    if bad_run.any():
        i = int(np.searchsorted(offsets, np.argmax(bad_run), side="right") - 1)
        raise MaskFormatError(f"RLE counts string decodes to an invalid run length {int(counts[bad_run][0])}", i)
    return counts, offsets
