"""MNIST-style idx files (LeCun et al., "The MNIST database", http://yann.lecun.com/exdb/mnist/).

An idx file is a 4-byte magic number ``00 00 TT DD`` (``TT`` = element type, ``DD`` = number of
dimensions), then ``DD`` big-endian uint32 sizes, then the elements in C order, big-endian. MNIST,
Fashion-MNIST, KMNIST and EMNIST all ship as ``{train,t10k}-{images-idx3,labels-idx1}-ubyte``,
usually gzip-compressed. Files are recognised as gzip by their content (``1f 8b``), not their name.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from cvzoo.data.images import DatasetError, MissingDataError

# Element type code -> big-endian numpy dtype (the idx specification's table).
_IDX_TYPES: dict[int, str] = {
    0x08: "u1",
    0x09: "i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}
_GZIP_MAGIC = b"\x1f\x8b"
# File-name prefixes of the two standard splits; "val" and "test" both mean the t10k files.
_SPLIT_PREFIX = {"train": "train", "val": "t10k", "test": "t10k"}


class IdxFormatError(DatasetError):
    """An idx file whose header or size does not follow the format."""


def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise IdxFormatError(f"{path}: cannot read idx file ({exc})") from exc
    if raw[:2] == _GZIP_MAGIC:
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise IdxFormatError(f"{path}: corrupt gzip stream ({exc})") from exc
    return raw


def read_idx(path: str | Path) -> np.ndarray:
    """Read one idx file (raw or gzip) into a native-endian numpy array.

    Args:
        path: the file.

    Returns:
        Array with the file's shape, e.g. ``[N, 28, 28]`` uint8 for images, ``[N]`` uint8 for labels.

    Raises:
        IdxFormatError: bad magic number, unknown type code, or a data size that does not match the
            header; the message names the file.
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise IdxFormatError(f"{path}: {len(data)} bytes, too short for an idx header")
    if data[0] != 0 or data[1] != 0:
        raise IdxFormatError(
            f"{path}: bad idx magic number 0x{data[:4].hex()} (expected 0x0000TTDD); not an idx file"
        )
    type_code, ndim = data[2], data[3]
    if type_code not in _IDX_TYPES:
        raise IdxFormatError(f"{path}: unknown idx element type 0x{type_code:02x} in magic 0x{data[:4].hex()}")
    if ndim == 0:
        raise IdxFormatError(f"{path}: idx header declares 0 dimensions")
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise IdxFormatError(f"{path}: truncated header ({len(data)} bytes, {header_len} needed)")
    shape = tuple(int(v) for v in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_TYPES[type_code])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    actual = len(data) - header_len
    if actual != expected:
        raise IdxFormatError(
            f"{path}: header says shape {shape} ({expected} bytes of data) but the file holds {actual} bytes"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header_len).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=True)


def _find_one(root: Path, stem: str) -> Path | None:
    # The original MNIST archive names use "-idx3-ubyte"; some mirrors unpack to ".idx3-ubyte".
    candidates = [stem, stem.replace("-idx", ".idx")]
    for name in candidates:
        for suffix in ("", ".gz"):
            path = root / f"{name}{suffix}"
            if path.is_file():
                return path
    return None


def idx_root(root: str | Path) -> Path | None:
    """The folder holding idx files under ``root`` (``root`` or torchvision's ``root/raw``), or None."""
    root = Path(root)
    for folder in (root, root / "raw"):
        if _find_one(folder, "train-images-idx3-ubyte") or _find_one(folder, "t10k-images-idx3-ubyte"):
            return folder
    return None


def find_idx_files(root: str | Path, split: str) -> tuple[Path, Path]:
    """Locate ``(images, labels)`` idx files of ``split`` ("train", or "val"/"test" = t10k) in ``root``.

    Raises:
        DatasetError: unknown split. MissingDataError: a file of the pair is missing (the message lists
            what was looked for).
    """
    if split not in _SPLIT_PREFIX:
        raise DatasetError(f"unknown split {split!r}; expected one of {sorted(_SPLIT_PREFIX)}")
    folder = idx_root(root) or Path(root)
    prefix = _SPLIT_PREFIX[split]
    found = []
    for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"):
        path = _find_one(folder, f"{prefix}-{kind}")
        if path is None:
            raise MissingDataError(
                f"{folder}: missing {prefix}-{kind}[.gz] (or {prefix}-{kind.replace('-idx', '.idx')}[.gz]) "
                f"for split {split!r}"
            )
        found.append(path)
    return found[0], found[1]


def load_idx_split(root: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Load one split of an MNIST-style folder.

    Args:
        root: folder with the idx files (or its parent in torchvision's ``raw/`` layout).
        split: "train", or "val"/"test" for the t10k files.

    Returns:
        ``images`` uint8 ``[N, H, W]`` and ``labels`` int64 ``[N]``.

    Raises:
        IdxFormatError: a malformed file, images that are not 3-D uint8, labels that are not 1-D
            integers, or image and label counts that differ.
    """
    images_path, labels_path = find_idx_files(root, split)
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise IdxFormatError(f"{images_path}: expected uint8 images [N, H, W], got {images.dtype} {images.shape}")
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise IdxFormatError(f"{labels_path}: expected integer labels [N], got {labels.dtype} {labels.shape}")
    if len(images) != len(labels):
        raise IdxFormatError(
            f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels"
        )
    if len(labels) and labels.min() < 0:
        raise IdxFormatError(f"{labels_path}: negative label {int(labels.min())}")
    return images, labels.astype(np.int64)
