"""Format-to-format conversion: read any of voc|coco|yolo|labelme, write voc|coco|yolo, copy images.

Conversions are lossless where both formats can hold the information: boxes (YOLO keeps 6 decimals of
the normalised values), difficult/truncated/pose (VOC -> VOC), iscrowd, area, polygons and RLEs
(COCO -> COCO), category ids (COCO -> COCO, kept in ``category_ids``). What a target format cannot
store is dropped: YOLO has no difficult/crowd flags, VOC detection XML no masks.
"""

from __future__ import annotations

import os

from cvzoo.data.formats._common import AnnotationFormatError
from cvzoo.data.formats.auto import detect_format, load_detection_dataset
from cvzoo.data.formats.coco import write_coco
from cvzoo.data.formats.voc import write_voc
from cvzoo.data.formats.yolo import write_yolo
from cvzoo.data.types import DatasetAnnotations

SOURCE_FORMATS = ("voc", "coco", "yolo", "labelme")
TARGET_FORMATS = ("voc", "coco", "yolo")


def coco_paths(dst: str, split: str) -> tuple[str, str]:
    """``(json path, image folder)`` for COCO output: ``dst/annotations/instances_<split>.json`` and
    ``dst/images/<split>``; a ``dst`` ending in ``.json`` is the file itself, images in ``images/<split>``
    next to it."""
    if dst.lower().endswith(".json"):
        return dst, os.path.join(os.path.dirname(os.path.abspath(dst)), "images", split)
    return os.path.join(dst, "annotations", f"instances_{split}.json"), os.path.join(dst, "images", split)


def write_dataset(dataset: DatasetAnnotations, dst: str, format: str, split: str = "train", copy: bool = True) -> str:
    """Write ``dataset`` as ``format`` under ``dst``; returns the main file or folder written.

    Layouts: voc -> ``dst/{Annotations,JPEGImages,ImageSets/Main}``; coco -> see :func:`coco_paths`;
    yolo -> ``dst/{images,labels}/<split>`` + ``dst/data.yaml``.
    """
    if format == "voc":
        write_voc(dataset, dst, split=split, copy=copy)
        return dst
    if format == "coco":
        json_path, image_dir = coco_paths(dst, split)
        write_coco(dataset, json_path, image_dir=image_dir, copy=copy)
        return json_path
    if format == "yolo":
        return write_yolo(dataset, dst, split=split, copy=copy)
    raise AnnotationFormatError(f"cannot write format {format!r}; expected one of {TARGET_FORMATS}")


def convert_dataset(
    src: str, src_format: str, dst: str, dst_format: str, split: str = "train",
    class_names: list[str] | None = None, copy: bool = True,
) -> DatasetAnnotations:
    """Convert one split between formats.

    Args:
        src: source dataset (anything :func:`load_detection_dataset` accepts).
        src_format: ``"auto"`` or one of ``SOURCE_FORMATS``.
        dst: output folder (or ``.json`` file for COCO).
        dst_format: one of ``TARGET_FORMATS``.
        split: split to read, and the split name written. A flat Labelme folder (no ``<split>/``
            sub-folder) has no splits: all of it is converted, written as ``split``.
        class_names: fixed class list for the source (VOC/YOLO/Labelme).
        copy: copy the images into the output layout.

    Returns:
        The dataset that was written.
    """
    if src_format != "auto" and src_format not in SOURCE_FORMATS:
        raise AnnotationFormatError(f"unknown source format {src_format!r}; expected one of {SOURCE_FORMATS}")
    if dst_format not in TARGET_FORMATS:
        raise AnnotationFormatError(f"unknown target format {dst_format!r}; expected one of {TARGET_FORMATS}")
    fmt = detect_format(src) if src_format == "auto" else src_format
    flat_labelme = fmt == "labelme" and not os.path.isdir(os.path.join(src, split))
    dataset = load_detection_dataset(src, None if flat_labelme else split, format=fmt, class_names=class_names)
    write_dataset(dataset, dst, dst_format, split=split, copy=copy)
    return dataset
