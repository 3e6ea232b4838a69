"""ImageFolder-style classification layouts: one sub-folder per class, images anywhere below it.

Two layouts are understood::

    root/train/<class>/**/<image>      root/<class>/**/<image>
    root/val/<class>/**/<image>        (one tree, split into train/val by ``val_fraction``)

Class order is the sorted folder names of the training tree, so indices do not depend on the file
system's listing order. Hidden files and folders (leading ".") are ignored. Images are recognised by
extension (``cvzoo.data.images.IMAGE_EXTENSIONS``, case-insensitive); other files are skipped.
Symbolic links are followed, but each image is listed once: a link to a file or folder that the
scan lists at its own place anyway (a non-hidden place inside the scanned root) is skipped, every
real folder is walked once (link loops end), and a file reached twice within a class counts once.
The split of one tree is stratified per class and fixed by ``seed``: the same folder and seed give
the same split on every machine.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from cvzoo.data.images import IMAGE_EXTENSIONS, DatasetError, MissingDataError, is_image_file

# Names accepted for the validation folder of a train/val layout, in order of preference.
VAL_DIR_NAMES: tuple[str, ...] = ("val", "valid", "validation", "test")
CLASS_INDICES_FILE = "class_indices.json"

Sample = tuple[str, int]


def find_classes(root: str | Path) -> list[str]:
    """Sorted names of the (non-hidden) sub-folders of ``root``.

    Raises:
        DatasetError: ``root`` does not exist, is not a folder, or has no class sub-folders.
    """
    root = Path(root)
    if not root.is_dir():
        raise MissingDataError(f"{root}: image folder does not exist or is not a directory")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DatasetError(f"{root}: no class sub-folders found (expected {root}/<class_name>/<image>)")
    return classes


def _shown_in_tree(path: str, tree: str) -> bool:
    """True when the real location of ``path`` is listed by the scan of ``tree`` (a real path): a
    non-hidden folder inside it, or a non-hidden file inside one of its class folders.

    A link to such a place would list its images a second time (under the link's class when the
    link sits in another class folder).
    """
    real = os.path.realpath(path)
    parts = os.path.relpath(real, tree).split(os.sep)
    if parts[0] == ".." or any(p.startswith(".") and p != "." for p in parts):
        return False
    return os.path.isdir(real) or len(parts) >= 2  # a loose file in the root belongs to no class


def _follow(path: str, tree: str, seen: set[tuple[int, int]]) -> bool:
    """Whether the walk should enter the sub-folder ``path``; records it in ``seen`` when it does."""
    if os.path.islink(path) and _shown_in_tree(path, tree):
        return False
    try:
        st = os.stat(path)
    except OSError:  # a link to nothing: there is nothing to list
        return False
    key = (st.st_dev, st.st_ino)
    if key in seen:  # a loop, or a second link to the same folder
        return False
    seen.add(key)
    return True


def _images_under(folder: Path, tree: str) -> list[str]:
    """Image paths below ``folder``, each real file once.

    Links are followed, except those whose target is inside ``tree`` (the real path of the folder
    being scanned) and not hidden there: that target is listed at its own place already. Every real
    folder is walked once, so link loops end, and a file reached twice (two links to one file, or a
    linked folder holding it) is listed once, at the first path met in sorted order.
    """
    files: list[str] = []
    top = os.stat(folder)  # the class folder itself is taken as it is, link or not
    seen_dirs = {(top.st_dev, top.st_ino)}
    seen_files: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = [
            d for d in sorted(dirnames) if not d.startswith(".") and _follow(os.path.join(dirpath, d), tree, seen_dirs)
        ]
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            if name.startswith(".") or not is_image_file(name):
                continue
            if os.path.islink(path) and _shown_in_tree(path, tree):
                continue
            real = os.path.realpath(path)
            if real not in seen_files:
                seen_files.add(real)
                files.append(path)
    return files


def scan_image_folder(root: str | Path, classes: list[str] | None = None) -> tuple[list[Sample], list[str]]:
    """List ``(path, class_index)`` for every image under ``root/<class>/``.

    Args:
        root: the folder whose sub-folders are classes.
        classes: class names fixing the index order (e.g. those of the train tree when scanning val);
            None reads them from ``root``. Folders of ``root`` not in ``classes`` raise.

    Returns:
        ``(samples, classes)``; samples sorted by class, then path.

    Raises:
        DatasetError: a missing/empty root, a class folder with no images, or (with ``classes``
            given) a folder naming an unknown class. Messages name the folder.
    """
    root = Path(root)
    found = find_classes(root)
    if classes is None:
        classes = found
    else:
        unknown = sorted(set(found) - set(classes))
        if unknown:
            raise DatasetError(f"{root}: class folders {unknown} are not among the training classes {classes}")
    samples: list[Sample] = []
    tree = os.path.realpath(root)
    for index, name in enumerate(classes):
        folder = root / name
        if not folder.is_dir():
            continue  # a validation tree may lack a class; the index order still comes from `classes`
        files = _images_under(folder, tree)
        if not files:
            raise DatasetError(
                f"{folder}: class folder has no images (extensions: {', '.join(IMAGE_EXTENSIONS)})"
            )
        samples.extend((f, index) for f in files)
    return samples, list(classes)


def stratified_split(samples: list[Sample], val_fraction: float, seed: int = 0) -> tuple[list[Sample], list[Sample]]:
    """Split samples into train/val, the same fraction of every class, reproducibly.

    Each class with ``n >= 2`` images gives ``max(1, round(n * val_fraction))`` images to val (but
    always keeps one for train); a class with one image stays in train. The per-class shuffle uses
    ``numpy.random.default_rng([seed, class_index])``, so adding a class does not reshuffle the others.

    Args:
        samples: ``(path, class_index)`` pairs.
        val_fraction: in ``(0, 1)``.
        seed: the split's seed.

    Returns:
        ``(train, val)`` sample lists, each sorted by class then path.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    by_class: dict[int, list[Sample]] = {}
    for sample in sorted(samples, key=lambda s: (s[1], s[0])):
        by_class.setdefault(sample[1], []).append(sample)
    train: list[Sample] = []
    val: list[Sample] = []
    for label, items in by_class.items():
        n = len(items)
        n_val = min(max(1, round(n * val_fraction)), n - 1) if n >= 2 else 0
        order = np.random.default_rng([seed, label]).permutation(n)
        val_idx = set(order[:n_val].tolist())
        for i, item in enumerate(items):
            (val if i in val_idx else train).append(item)
    return train, val


def find_val_dir(root: str | Path) -> Path | None:
    """``root/<val|valid|validation|test>`` when ``root/train`` exists beside it, else None."""
    root = Path(root)
    if not (root / "train").is_dir():
        return None
    for name in VAL_DIR_NAMES:
        if (root / name).is_dir():
            return root / name
    return None


def image_folder_split(
    root: str | Path, split: str, val_fraction: float = 0.0, seed: int = 0
) -> tuple[list[Sample], list[str]]:
    """Samples and classes of one split of an image-folder dataset, whichever layout it uses.

    Args:
        root: a ``train/`` + ``val/`` root, or a single class tree.
        split: "train" or "val" ("test" is read as "val").
        val_fraction: for a single tree, the stratified fraction held out as val; ignored (must be 0
            or unset) when ``root`` has ``train/`` and ``val/``.
        seed: seed of the stratified split.

    Raises:
        DatasetError: unknown split, and all errors of ``scan_image_folder``.
        MissingDataError: ``val`` asked of a single tree with ``val_fraction == 0``, or a ``train/``
            folder without a val folder beside it.
    """
    if split not in ("train", "val", "test"):
        raise DatasetError(f"unknown split {split!r}; expected 'train' or 'val'")
    root = Path(root)
    if (root / "train").is_dir():
        val_dir = find_val_dir(root)
        if val_dir is None:
            raise MissingDataError(f"{root}: has train/ but no {'/, '.join(VAL_DIR_NAMES)}/ folder beside it")
        classes = find_classes(root / "train")
        if split == "train":
            return scan_image_folder(root / "train", classes)
        return scan_image_folder(val_dir, classes)
    samples, classes = scan_image_folder(root)
    if val_fraction <= 0.0:
        if split == "train":
            return samples, classes
        raise MissingDataError(f"{root}: no train/ and val/ folders; pass val_fraction > 0 to hold out a val split")
    train, val = stratified_split(samples, val_fraction, seed)
    return (train if split == "train" else val), classes


def write_class_indices(classes: list[str], out_dir: str | Path) -> Path:
    """Write ``{class_name: index}`` as ``out_dir/class_indices.json``; returns the file path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / CLASS_INDICES_FILE
    path.write_text(json.dumps({name: i for i, name in enumerate(classes)}, indent=2, ensure_ascii=False) + "\n")
    return path


def read_class_indices(path: str | Path) -> list[str]:
    """Class names in index order from a ``class_indices.json`` written by ``write_class_indices``.

    Raises:
        DatasetError: the file is not a JSON object of names to the indices ``0..K-1``.
    """
    path = Path(path)
    try:
        mapping = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read class indices ({exc})") from exc
    valid = isinstance(mapping, dict) and all(isinstance(v, int) for v in mapping.values())
    if not valid or sorted(mapping.values()) != list(range(len(mapping))):
        raise DatasetError(f"{path}: expected {{class_name: index}} with indices 0..K-1")
    return [name for name, _ in sorted(mapping.items(), key=lambda kv: kv[1])]
