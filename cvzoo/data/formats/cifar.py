"""CIFAR-10 "python version" batches (Krizhevsky, "Learning Multiple Layers of Features from Tiny
Images", 2009; https://www.cs.toronto.edu/~kriz/cifar.html).

The archive unpacks to ``cifar-10-batches-py/`` with ``data_batch_1`` .. ``data_batch_5`` (train),
``test_batch`` and ``batches.meta``. Each batch is a pickled dict with *bytes* keys: ``b"data"`` a
``[10000, 3072]`` uint8 array (1024 red, then green, then blue values of a 32x32 image, row-major)
and ``b"labels"`` a list of ints; ``batches.meta`` holds ``b"label_names"``.

Pickle can run code on load, so batches are read with an unpickler that only accepts the numpy
array-reconstruction globals these files contain; anything else raises ``CifarFormatError``.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from cvzoo.data.images import DatasetError, MissingDataError

TRAIN_BATCHES: tuple[str, ...] = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCHES: tuple[str, ...] = ("test_batch",)
META_FILE = "batches.meta"
_SPLIT_BATCHES = {"train": TRAIN_BATCHES, "val": TEST_BATCHES, "test": TEST_BATCHES}
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    # Python 3 writes bytes into protocol-2 pickles as _codecs.encode(text, "latin1").
    ("_codecs", "encode"),
}


class CifarFormatError(DatasetError):
    """A CIFAR batch file that is missing keys, has the wrong shape, or holds unexpected objects."""


class _ArrayOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR batch")
        return super().find_class(module, name)


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            obj = _ArrayOnlyUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise CifarFormatError(f"{path}: not a readable CIFAR pickle ({exc})") from exc
    if not isinstance(obj, dict):
        raise CifarFormatError(f"{path}: expected a pickled dict, got {type(obj).__name__}")
    return obj


def cifar_root(root: str | Path) -> Path | None:
    """The folder holding CIFAR-10 batches: ``root`` or ``root/cifar-10-batches-py``; None if neither."""
    root = Path(root)
    for folder in (root, root / "cifar-10-batches-py"):
        if any((folder / name).is_file() for name in (META_FILE, *TRAIN_BATCHES, *TEST_BATCHES)):
            return folder
    return None


def load_cifar10_classes(root: str | Path) -> list[str]:
    """Class names from ``batches.meta`` (``b"label_names"``), in label order."""
    folder = cifar_root(root) or Path(root)
    path = folder / META_FILE
    if not path.is_file():
        raise MissingDataError(f"{folder}: missing {META_FILE} (CIFAR-10 class names)")
    meta = _unpickle(path)
    names = meta.get(b"label_names", meta.get("label_names"))
    if not names:
        raise CifarFormatError(f"{path}: no 'label_names' key")
    return [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names]


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    batch = _unpickle(path)
    data = batch.get(b"data", batch.get("data"))
    labels = batch.get(b"labels", batch.get("labels"))
    if data is None or labels is None:
        raise CifarFormatError(f"{path}: expected keys b'data' and b'labels', found {sorted(map(str, batch))}")
    data = np.asarray(data)
    labels = np.asarray(labels, dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise CifarFormatError(f"{path}: data must be uint8 [N, 3072], got {data.dtype} {list(data.shape)}")
    if labels.shape != (data.shape[0],):
        raise CifarFormatError(f"{path}: {data.shape[0]} images but {labels.size} labels")
    return data.reshape(-1, 3, 32, 32), labels


def load_cifar10_split(root: str | Path, split: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Load the train (5 batches) or val/test (``test_batch``) split.

    Args:
        root: ``cifar-10-batches-py`` or its parent.
        split: "train", or "val"/"test".

    Returns:
        ``images`` uint8 ``[N, 3, 32, 32]`` (CHW, RGB), ``labels`` int64 ``[N]``, class names.

    Raises:
        DatasetError: unknown split.
        MissingDataError: any batch file of the split (or ``batches.meta``) is missing; the message
            lists every missing file.
        CifarFormatError: a batch that is not a CIFAR dict of the right shape.
    """
    if split not in _SPLIT_BATCHES:
        raise DatasetError(f"unknown split {split!r}; expected one of {sorted(_SPLIT_BATCHES)}")
    folder = cifar_root(root) or Path(root)
    names = _SPLIT_BATCHES[split]
    missing = [n for n in (*names, META_FILE) if not (folder / n).is_file()]
    if missing:
        raise MissingDataError(f"{folder}: CIFAR-10 split {split!r} is missing {', '.join(missing)}")
    classes = load_cifar10_classes(folder)
    parts = [_read_batch(folder / n) for n in names]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    if len(labels) and (labels.min() < 0 or labels.max() >= len(classes)):
        raise CifarFormatError(
            f"{folder}: labels span [{labels.min()}, {labels.max()}] but {META_FILE} names {len(classes)} classes"
        )
    return images, labels, classes
