"""Recognise a detection dataset's format from a path and load it: the entry point tasks use.

Rules, in order (see docs/formats.md):
    ``*.yaml`` / ``*.yml`` file                         -> yolo (ultralytics dataset YAML)
    ``*.json`` file with ``"shapes"``                    -> labelme, with ``"images"`` -> coco
    folder with ``Annotations/``, ``VOC20xx/``, ``VOCdevkit/`` -> voc
    folder with ``annotations/*.json`` or a COCO ``*.json`` -> coco
    folder with a dataset YAML, ``labels/`` or ``classes.txt`` -> yolo
    folder with Labelme ``*.json`` files (searched recursively) -> labelme
"""

from __future__ import annotations

import glob
import os

from cvzoo.data.formats._common import AnnotationFormatError, Issue, MissingSplitError
from cvzoo.data.formats.coco import read_coco
from cvzoo.data.formats.image_folder import stratified_split
from cvzoo.data.formats.labelme import read_labelme
from cvzoo.data.formats.voc import find_voc_roots, is_flat_voc, read_voc
from cvzoo.data.formats.yolo import read_yolo
from cvzoo.data.types import DatasetAnnotations

FORMATS = ("voc", "coco", "yolo", "labelme")


def _json_kind(path: str) -> str | None:
    """'labelme', 'coco' or None from the first 64 KiB of a JSON file (COCO files can be huge)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            head = f.read(65536)
    except OSError:
        return None
    if '"shapes"' in head:
        return "labelme"
    if any(key in head for key in ('"images"', '"annotations"', '"categories"')):
        return "coco"
    return None


def _dataset_yamls(folder: str) -> list[str]:
    return sorted(glob.glob(os.path.join(folder, "*.yaml")) + glob.glob(os.path.join(folder, "*.yml")))


def detect_format(path: str) -> str:
    """The format name (one of ``FORMATS``) of a dataset file or folder.

    Raises:
        AnnotationFormatError: the path does not exist or matches no rule.
    """
    if os.path.isfile(path):
        lower = path.lower()
        if lower.endswith((".yaml", ".yml")):
            return "yolo"
        if lower.endswith(".json") and (kind := _json_kind(path)):
            return kind
        raise AnnotationFormatError(f"{path}: cannot tell the format of this file (expected .yaml or .json)")
    if not os.path.isdir(path):
        raise AnnotationFormatError(f"{path}: no such file or folder")
    try:
        find_voc_roots(path)
        return "voc"
    except AnnotationFormatError:
        pass
    if glob.glob(os.path.join(path, "annotations", "*.json")):
        return "coco"
    top_json = sorted(glob.glob(os.path.join(path, "*.json")))
    if top_json and _json_kind(top_json[0]) == "coco":
        return "coco"
    if _dataset_yamls(path) or os.path.isdir(os.path.join(path, "labels")) or os.path.isfile(
            os.path.join(path, "classes.txt")):
        return "yolo"
    for json_path in glob.iglob(os.path.join(path, "**", "*.json"), recursive=True):
        if _json_kind(json_path) == "labelme":
            return "labelme"
    if glob.glob(os.path.join(path, "*.txt")):
        return "yolo"  # labelImg-style folder without classes.txt
    raise AnnotationFormatError(f"{path}: no VOC, COCO, YOLO or Labelme layout recognised")


def find_coco_json(path: str, split: str | None) -> str:
    """The COCO annotation file for ``split`` in a folder (``annotations/instances_<split>*.json`` first)."""
    if os.path.isfile(path):
        return path
    candidates = sorted(glob.glob(os.path.join(path, "annotations", "*.json"))) + sorted(
        p for p in glob.glob(os.path.join(path, "*.json")) if _json_kind(p) == "coco")
    if split is not None:
        named = [p for p in candidates if os.path.basename(p).startswith(f"instances_{split}")]
        named = named or [p for p in candidates if split in os.path.basename(p)]
        if named:
            return named[0]
    if len(candidates) == 1:
        return candidates[0]
    raise AnnotationFormatError(
        f"{path}: cannot choose the COCO file for split {split!r} among {[os.path.basename(p) for p in candidates]}"
    )


def _labelme_split(
    path: str, split: str | None, class_names: list[str] | None, issues: list[Issue] | None,
    val_fraction: float, seed: int,
) -> DatasetAnnotations:
    """One split of a Labelme folder: ``<path>/<split>/`` when it exists, else a share of a flat folder.

    A flat folder (no split sub-folders) is one pool: ``train`` without ``val_fraction`` is all of it;
    with ``val_fraction`` the images are split as one class of ``stratified_split`` (the image-folder
    rule: ``round(n * val_fraction)`` images, at least one, to val, fixed by ``seed``). Asking a flat
    folder for ``val`` without ``val_fraction`` is a ``MissingSplitError``: reading the pool again
    would validate on the training images.
    """
    if split and os.path.isdir(os.path.join(path, split)):
        if val_fraction > 0:
            raise AnnotationFormatError(f"{path}: has a {split}/ folder; val_fraction applies to a flat Labelme "
                                        "folder only (set it to 0)")
        return read_labelme(os.path.join(path, split), class_names=class_names, issues=issues)
    return _share_of_pool(path, split, lambda: read_labelme(path, class_names=class_names, issues=issues),
                          val_fraction, seed, "Labelme", f"make train/ and {split}/ sub-folders")


def _share_of_pool(path: str, split: str | None, read_all, val_fraction: float, seed: int, kind: str,
                   alternative: str) -> DatasetAnnotations:
    """``split`` of a flat folder read whole by ``read_all()`` (see ``_labelme_split``): all of it for None or
    for ``train`` without ``val_fraction``, else the ``stratified_split`` share (classes from the pool)."""
    if split is None or (split == "train" and val_fraction <= 0):
        return read_all()
    if val_fraction <= 0 or split not in ("train", "val", "test"):
        raise MissingSplitError(
            f"{path}: flat {kind} folder has no {split!r} split; set data.val_fraction (e.g. 0.2) to hold out a "
            f"share of its images, or {alternative}"
        )
    dataset = read_all()
    train, val = stratified_split([(image.file, 0) for image in dataset.images], val_fraction, seed)
    keep = {file for file, _ in (train if split == "train" else val)}  # "test" is read as "val"
    dataset.images = [image for image in dataset.images if image.file in keep]
    return dataset


def load_detection_dataset(
    path: str, split: str | None = "train", format: str = "auto", class_names: list[str] | None = None,
    issues: list[Issue] | None = None, val_fraction: float = 0.0, seed: int = 0,
) -> DatasetAnnotations:
    """Load a detection split from an ultralytics YAML, a COCO JSON (or folder), a VOC folder or Labelme.

    Args:
        path: dataset YAML, COCO JSON, or a dataset folder.
        split: split name (VOC ImageSets, YAML key, COCO file name, Labelme sub-folder if it exists);
            None loads everything.
        format: ``"auto"`` or one of ``FORMATS``.
        class_names: fixed class list (VOC, YOLO and Labelme; COCO uses its categories).
        issues: None raises on recoverable problems; a list collects them instead (see ``check.py``).
        val_fraction: a flat Labelme or labelImg VOC folder (no splits): the share of its images held out
            as ``val`` (see ``_labelme_split``); other layouts name their splits and must leave it at 0.
        seed: seed of that split.

    Returns:
        DatasetAnnotations with canonical xyxy float32 boxes and 0-based labels.
    """
    fmt = detect_format(path) if format == "auto" else format
    if fmt not in FORMATS:
        raise AnnotationFormatError(f"unknown format {fmt!r}; expected one of {FORMATS} or 'auto'")
    if fmt == "labelme":
        return _labelme_split(path, split, class_names, issues, val_fraction, seed)
    if fmt == "voc" and is_flat_voc(path):  # labelImg: XML beside each image, no split files
        return _share_of_pool(path, split, lambda: read_voc(path, None, class_names=class_names, issues=issues),
                              val_fraction, seed, "VOC (labelImg)", "write ImageSets/Main/<split>.txt files")
    if val_fraction > 0:
        raise AnnotationFormatError(f"{path}: val_fraction splits a flat Labelme folder only; {fmt} datasets name "
                                    "their own splits (set it to 0)")
    if fmt == "voc":
        return read_voc(path, split, class_names=class_names, issues=issues)
    if fmt == "coco":
        return read_coco(find_coco_json(path, split), issues=issues)
    yamls = _dataset_yamls(path) if os.path.isdir(path) else []
    return read_yolo(yamls[0] if len(yamls) == 1 else path, split, class_names=class_names, issues=issues)
