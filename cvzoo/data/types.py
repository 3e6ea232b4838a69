"""Canonical annotation types: every format reader produces these, every writer consumes them.

Boxes are ``xyxy`` in absolute pixels (float32 ``[N, 4]``), labels 0-based int64 ``[N]``. Formats
convert at the edges (YOLO's normalised cxcywh, COCO's xywh and 1-based ids, VOC's 1-based pixels).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np


def _empty_boxes() -> np.ndarray:
    return np.zeros((0, 4), dtype=np.float32)


def _empty_labels() -> np.ndarray:
    return np.zeros((0,), dtype=np.int64)


def _empty_flags() -> np.ndarray:
    return np.zeros((0,), dtype=bool)


@dataclass
class ImageAnnotation:
    """Objects of one image.

    Attributes:
        file: image path (absolute, or relative to the dataset root given by ``Dataset.root``).
        width, height: image size in pixels.
        boxes: ``[N, 4]`` float32, xyxy, absolute pixels.
        labels: ``[N]`` int64, 0-based index into ``DatasetAnnotations.class_names``.
        difficult: ``[N]`` bool (VOC "difficult"; ignored by VOC AP).
        iscrowd: ``[N]`` bool (COCO crowd regions; ignored by COCO AP).
        polygons: per object a list of ``[K, 2]`` float32 xy polygons (absolute pixels), or None.
        masks: ``[N, H, W]`` uint8 instance masks, or None (RLE/polygons are rasterised on demand).
        image_id: a stable integer id (COCO image id; index otherwise).
        rles: per object a COCO RLE dict (``{"size": [H, W], "counts": str}``) or None, or None for
            all; kept so COCO -> COCO stays lossless without materialising ``[N, H, W]`` masks.
        areas: ``[N]`` float32 segment areas as the source gave them (COCO ``area``), or None.
        truncated: ``[N]`` bool (VOC "truncated"), or None.
        poses: per object the VOC pose string ("Unspecified", "Left", ...), or None.
    """

    file: str
    width: int
    height: int
    boxes: np.ndarray = field(default_factory=_empty_boxes)
    labels: np.ndarray = field(default_factory=_empty_labels)
    difficult: np.ndarray = field(default_factory=_empty_flags)
    iscrowd: np.ndarray = field(default_factory=_empty_flags)
    polygons: list[list[np.ndarray]] | None = None
    masks: np.ndarray | None = None
    image_id: int = 0
    rles: list[dict | None] | None = None
    areas: np.ndarray | None = None
    truncated: np.ndarray | None = None
    poses: list[str] | None = None

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        n = len(self.boxes)
        if len(self.labels) != n:
            raise ValueError(f"{self.file}: {n} boxes but {len(self.labels)} labels")
        self.difficult = (
            np.zeros(n, bool) if len(self.difficult) == 0 and n else np.asarray(self.difficult, bool)
        )
        self.iscrowd = np.zeros(n, bool) if len(self.iscrowd) == 0 and n else np.asarray(self.iscrowd, bool)

    def __len__(self) -> int:
        return len(self.boxes)


@dataclass
class DatasetAnnotations:
    """A whole annotated split: the class names and one ``ImageAnnotation`` per image.

    Attributes:
        class_names: label ``i`` is ``class_names[i]``.
        images: one entry per image (background images have zero boxes).
        root: folder that relative ``ImageAnnotation.file`` paths are relative to.
        category_ids: optional COCO category id of each label (``category_ids[i]`` for label ``i``), so
            non-contiguous ids survive a read -> write round trip; None means ``1..K``.
    """

    class_names: list[str]
    images: list[ImageAnnotation]
    root: str = ""
    category_ids: list[int] | None = None

    def __len__(self) -> int:
        return len(self.images)

    def image_path(self, image: ImageAnnotation) -> str:
        """The path of ``image.file`` resolved against ``root`` (unchanged when already absolute)."""
        if os.path.isabs(image.file) or not self.root:
            return image.file
        return os.path.join(self.root, image.file)
