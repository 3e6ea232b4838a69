"""Detection datasets: canonical annotations + images -> letterboxed / mosaic-augmented training samples.

A sample is ``(image uint8 [3, S, S] tensor, target, meta)`` with ``target = {"boxes": float32 [N, 4]
xyxy in network-input pixels, "labels": int64 [N]}`` and ``meta = {"file", "image_id", "orig_size"
(H, W), "ratio" (rx, ry), "pad" (left, top)}`` so predictions map back to the original image.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from cvzoo.data import det_transforms as T
from cvzoo.data.images import CorruptImageError, load_image
from cvzoo.data.types import DatasetAnnotations, ImageAnnotation


class DetectionDataset(Dataset):
    """One split of a detection dataset.

    Args:
        annotations: the split, read by any format reader (``cvzoo.data.formats.detect``).
        img_size: square network input side (a multiple of 32).
        augment: training augmentation (mosaic, affine, HSV, flip, mixup) vs plain letterbox.
        hyp: augmentation settings (an ``AugmentConfig``-like object with mosaic, hsv_h/s/v, degrees,
            translate, affine_scale, shear, hflip and mixup attributes).
        strict: corrupt images raise instead of being skipped with a warning.
    """

    def __init__(self, annotations: DatasetAnnotations, img_size: int = 640, augment: bool = False,
                 hyp: Any = None, strict: bool = False) -> None:
        if img_size % 32:
            raise ValueError(f"img_size must be a multiple of 32 (the largest network stride), got {img_size}")
        self.annotations = annotations
        self.images: list[ImageAnnotation] = list(annotations.images)
        self.class_names = list(annotations.class_names)
        self.img_size = img_size
        self.augment = augment
        self.strict = strict
        self.hyp = hyp
        self.mosaic_enabled = bool(augment and hyp is not None and hyp.mosaic > 0)
        self.letterbox = T.LetterBox(img_size, scaleup=augment)
        if augment:
            self._build_augmentation()

    def _build_augmentation(self) -> None:
        hyp = self.hyp
        affine = T.RandomAffine(degrees=hyp.degrees, translate=hyp.translate, scale=hyp.affine_scale,
                                shear=hyp.shear)
        self.affine = affine
        self.mosaic = T.Mosaic(self.load_raw, self.img_size, p=hyp.mosaic, num_samples=len(self), affine=affine)
        self.mixup = T.MixUp(p=getattr(hyp, "mixup", 0.0), load_sample=self._load_mosaic, num_samples=len(self))
        self.colour = T.RandomHSV(hyp.hsv_h, hyp.hsv_s, hyp.hsv_v)
        self.flip = T.RandomHorizontalFlip(hyp.hflip)

    def __len__(self) -> int:
        return len(self.images)

    def set_mosaic(self, enabled: bool) -> None:
        """Turn mosaic off for the last epochs ("close mosaic", YOLOv8) so training ends on real layouts."""
        self.mosaic_enabled = enabled and self.augment

    # --- loading -----------------------------------------------------------------------------------
    def load_raw(self, index: int) -> T.Sample:
        """The original image (RGB uint8 [H, W, 3]) and its target in original pixels."""
        record = self.images[index]
        path = self.annotations.image_path(record)
        image = np.asarray(load_image(path, mode="RGB"))
        if image.shape[0] != record.height or image.shape[1] != record.width:
            if record.width and record.height:
                # Annotations record the size they were drawn on; rescale boxes to the real file.
                sx, sy = image.shape[1] / record.width, image.shape[0] / record.height
                boxes = record.boxes * np.float32([sx, sy, sx, sy])
            else:
                boxes = record.boxes
        else:
            boxes = record.boxes
        target = {"boxes": boxes.astype(np.float32).reshape(-1, 4), "labels": record.labels.astype(np.int64)}
        return image, target

    def _load_mosaic(self, index: int) -> T.Sample:
        return self.mosaic(*self.load_raw(index)) if self.mosaic_enabled else self._letterbox_affine(index)

    def _letterbox_affine(self, index: int) -> T.Sample:
        image, target, _, _ = self.letterbox.apply(*self.load_raw(index))
        return self.affine(image, target)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, Any]]:
        for attempt in range(len(self)):
            i = (index + attempt) % len(self)
            try:
                return self._get(i)
            except CorruptImageError as err:
                if self.strict:
                    raise
                warnings.warn(f"skipping corrupt image {err}", stacklevel=2)
        raise RuntimeError("every image of the dataset is unreadable")

    def _get(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, Any]]:
        record = self.images[index]
        if self.augment:
            image, target = self._load_mosaic(index)
            if self.mosaic_enabled and self.mixup.p > 0:
                image, target = self.mixup(image, target)
            image, target = self.colour(image, target)
            image, target = self.flip(image, target)
            ratio, pad = (1.0, 1.0), (0, 0)
            orig = image.shape[:2]
        else:
            raw, raw_target = self.load_raw(index)
            orig = raw.shape[:2]
            image, target, ratio, pad = self.letterbox.apply(raw, raw_target)
        meta = {"file": self.annotations.image_path(record), "image_id": record.image_id,
                "orig_size": tuple(int(v) for v in orig), "ratio": ratio, "pad": pad, "index": index}
        tensor = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
        return tensor, {"boxes": torch.from_numpy(target["boxes"]).float(),
                        "labels": torch.from_numpy(target["labels"]).long()}, meta

    def original_targets(self, index: int) -> dict[str, np.ndarray]:
        """Ground truth of image ``index`` in its original pixels (what metrics are computed on)."""
        record = self.images[index]
        return {"boxes": record.boxes, "labels": record.labels, "difficult": record.difficult,
                "iscrowd": record.iscrowd}


def collate_detection(samples: Sequence[tuple]) -> tuple[torch.Tensor, list[dict], list[dict]]:
    images, targets, metas = zip(*samples)
    return torch.stack(images), list(targets), list(metas)


def read_image_rgb(path: str | Path) -> np.ndarray:
    return np.asarray(load_image(path, mode="RGB"))
