"""Detection datasets: canonical annotations + images -> letterboxed / mosaic-augmented training samples,
or images at their own size for a detector that resizes them itself (``letterbox=False``, R-CNN).

A sample is ``(image uint8 [3, H, W] tensor, target, meta)`` with ``target = {"boxes": float32 [N, 4]
xyxy in network-input pixels, "labels": int64 [N]}`` and ``meta = {"file", "image_id", "orig_size"
(H, W), "ratio" (rx, ry), "pad" (left, top), "input_size" (H, W) of the sample's image}`` so predictions
map back to the original image and a padded batch knows each image's true size.

Rectangular validation (YOLOv5's ``rect``): with ``rect_batch_size`` the images are sorted by aspect
ratio and every run of ``rect_batch_size`` consecutive images is letterboxed to one ``[3, H, W]`` shape
whose long side is ``img_size`` and whose short side is as small as those images allow (a multiple of
the stride), so a batch of wide images is not padded to a square.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from cvzoo.data.augment import detect as T
from cvzoo.data.cache import ImageCache
from cvzoo.data.formats.masks import annotation_masks
from cvzoo.data.images import CorruptImageError, DatasetError
from cvzoo.data.types import DatasetAnnotations, ImageAnnotation

# SSD's zoom-out canvas: the ImageNet mean in 0..255 (torchvision's reference fills with (123, 117, 104)).
SSD_ZOOM_FILL = (123, 117, 104)


class ImageSizeMismatchError(DatasetError):
    """An image file whose size differs from the size its annotation records.

    Boxes are drawn in the annotated size; rescaling them to the file would guess (a resized copy?
    a stale or wrong width/height? EXIF rotation?) and misplace them when the guess is wrong.
    """

    def __init__(self, path: str, annotated: tuple[int, int], actual: tuple[int, int]) -> None:
        self.path, self.annotated, self.actual = path, annotated, actual
        super().__init__(f"{path}: annotated as {annotated[0]}x{annotated[1]} (width x height) but the image "
                         f"is {actual[0]}x{actual[1]}; `cvzoo data check` lists every such image")

    def __reduce__(self):  # picklable with its three arguments (DataLoader workers re-raise it)
        return (type(self), (self.path, self.annotated, self.actual))


class DetectionDataset(Dataset):
    """One split of a detection dataset.

    Args:
        annotations: the split, read by any format reader (``cvzoo.data.formats.auto``).
        img_size: network input side (a multiple of 32): the square's, or the long side of rect batches.
        augment: training augmentation (mosaic, affine, HSV, flip, mixup) vs plain letterbox.
        hyp: augmentation settings (a ``cvzoo.config.DetectAugment``-like object with mosaic, hsv_h/s/v,
            degrees, translate, affine_scale, shear, hflip and mixup attributes).
        strict: corrupt images, and images whose size differs from their annotation's
            (``ImageSizeMismatchError``), raise instead of being skipped with a warning.
        rect_batch_size: without augmentation, > 0 gives rectangular batches of this many images (the
            loader must use the same batch size, in order); the images are then sorted by aspect
            ratio, so index ``i`` is the ``i``-th image of that order. 0 = square letterbox.
        letterbox: False keeps every image at its own size (the detector resizes; ``img_size`` is then
            unused): training augmentation is then colour and flip only, since mosaic, the random
            affine and mixup are built on the letterboxed square.
        with_masks: targets also carry ``"masks"``: uint8 ``[N, H, W]`` instance masks in the sample's
            pixels, from the annotation's masks, RLEs or polygons (a box without any is filled).
            Needs ``letterbox=False``.
    """

    def __init__(self, annotations: DatasetAnnotations, img_size: int = 640, augment: bool = False,
                 hyp: Any = None, strict: bool = False, rect_batch_size: int = 0, letterbox: bool = True,
                 with_masks: bool = False) -> None:
        if with_masks and letterbox:
            raise ValueError("instance masks are served at the image's own size (letterbox=False)")
        self.with_masks = with_masks
        if letterbox and img_size % 32:
            raise ValueError(f"img_size must be a multiple of 32 (the largest network stride), got {img_size}")
        if letterbox and augment and hyp is not None:
            own_size = [name for name in ("photometric", "zoom_out", "iou_crop") if getattr(hyp, name, 0)]
            if own_size:
                raise ValueError(f"detect.augment.{own_size[0]} is SSD's augmentation of images at their own size, "
                                 "and this detector takes letterboxed squares; set it to 0")
        if not letterbox and augment and hyp is not None:
            square_only = [name for name in ("mosaic", "mixup", "degrees", "translate", "shear")
                           if getattr(hyp, name, 0)]
            if square_only:
                raise ValueError(
                    f"detect.augment.{square_only[0]} works on letterboxed squares, and this detector takes images "
                    f"at their own size; set detect.augment.{square_only[0]}=0 (this model's recipe does)")
        self.use_letterbox = letterbox
        self.annotations = annotations
        self.images: list[ImageAnnotation] = list(annotations.images)
        self.class_names = list(annotations.class_names)
        self.img_size = img_size
        self.augment = augment
        self.strict = strict
        self.hyp = hyp
        self.mosaic_enabled = bool(letterbox and augment and hyp is not None and hyp.mosaic > 0)
        # With a seed (the trainer's training set), each sample's augmentation is drawn from
        # (sample_seed, epoch, index): the same in any process, so resumed runs repeat it exactly.
        self.sample_seed: int | None = None
        # In shared memory: loading workers, which keep the copy of the dataset they started with, read the
        # epoch the trainer sets, so it needs no new workers each epoch (respawning them cost ~2.8 s an
        # epoch on 2 cores: benchmarks/bench_train_defaults.py, yolov8n, 256 scenes).
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        self.image_cache = ImageCache("RGB")  # data.cache: filled by the trainer (cvzoo.data.cache)
        self.letterbox = T.LetterBox(img_size, scaleup=augment)
        # Per-image letterbox shape (H, W) of rectangular batches; None = the square img_size.
        self.shapes: list[tuple[int, int]] | None = None
        if rect_batch_size > 0 and not augment and letterbox:
            self._build_rect_shapes(rect_batch_size)
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
        # SSD's preset, for images at their own size (torchvision's "ssd" order: photometric, zoom out, crop).
        self.ssd_preset = []
        if getattr(hyp, "photometric", 0.0) > 0:
            self.ssd_preset.append(T.RandomPhotometricDistort(p=hyp.photometric))
        if getattr(hyp, "zoom_out", 0.0) > 0:
            self.ssd_preset.append(T.RandomZoomOut(fill=SSD_ZOOM_FILL, p=hyp.zoom_out))
        if getattr(hyp, "iou_crop", 0.0) > 0:
            self.ssd_preset.append(T.RandomIoUCrop(p=hyp.iou_crop))

    def _build_rect_shapes(self, batch_size: int) -> None:
        # A stable sort keeps the order (and so `cvzoo val`'s numbers) deterministic.
        sizes = np.array([image_size(self.annotations, record) for record in self.images], dtype=np.float64)
        order = np.argsort(sizes[:, 0] / sizes[:, 1], kind="stable")
        self.images = [self.images[i] for i in order]
        batch_shapes = rect_batch_shapes(sizes[order], batch_size, self.img_size)
        self.shapes = [batch_shapes[i // batch_size] for i in range(len(self.images))]

    def __len__(self) -> int:
        return len(self.images)

    def image_paths(self) -> list[str]:
        """The image file of each index (what ``image_cache`` is filled with)."""
        return [self.annotations.image_path(record) for record in self.images]

    def set_mosaic(self, enabled: bool) -> bool:
        """Turn mosaic off for the last epochs ("close mosaic", YOLOv8) so training ends on real layouts.
        Returns whether that changed anything."""
        before = self.mosaic_enabled
        self.mosaic_enabled = enabled and self.augment and self.use_letterbox
        return self.mosaic_enabled != before

    # --- loading -----------------------------------------------------------------------------------
    def load_raw(self, index: int) -> T.Sample:
        """The original image (RGB uint8 [H, W, 3]) and its target in original pixels."""
        record = self.images[index]
        path = self.annotations.image_path(record)
        image = self.image_cache.array(path)
        actual = (image.shape[1], image.shape[0])
        # A size of 0 means the annotation does not know it; any other disagreement is reported.
        if record.width and record.height and actual != (record.width, record.height):
            raise ImageSizeMismatchError(path, (record.width, record.height), actual)
        target = {"boxes": record.boxes.astype(np.float32).reshape(-1, 4), "labels": record.labels.astype(np.int64)}
        if self.with_masks:
            # A record without a size (0) rasterises its polygons at the decoded image's size.
            sized = record if record.width and record.height else dataclasses.replace(record, width=actual[0],
                                                                                      height=actual[1])
            target["masks"] = annotation_masks(sized)
            if target["masks"].shape[1:] != image.shape[:2]:
                mask_height, mask_width = target["masks"].shape[1:]
                raise DatasetError(f"{path}: its instance masks are {mask_width}x{mask_height} (width x height) but "
                                   f"the image is {actual[0]}x{actual[1]}")
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
            except (CorruptImageError, ImageSizeMismatchError) as err:
                if self.strict:
                    raise
                what = "corrupt image" if isinstance(err, CorruptImageError) else "image"
                warnings.warn(f"skipping {what} {err}", stacklevel=2)
        raise RuntimeError("every image of the dataset is unreadable")

    @property
    def epoch(self) -> int:
        """The epoch of the samples' augmentation keys (``set_epoch``)."""
        return int(self._epoch)

    def set_epoch(self, epoch: int) -> None:
        """Sets the epoch of the samples' augmentation keys, for this process and its loading workers."""
        self._epoch.fill_(epoch)

    def _get(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, Any]]:
        if self.augment and self.sample_seed is not None:
            with T.sample_randomness(self.sample_seed, self.epoch, index):
                return self._get_sample(index)
        return self._get_sample(index)

    def _get_sample(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, Any]]:
        record = self.images[index]
        if not self.use_letterbox:
            image, target = self.load_raw(index)
            orig = image.shape[:2]
            if self.augment:
                for transform in self.ssd_preset:
                    image, target = transform(image, target)
                image, target = self.colour(image, target)
                image, target = self.flip(image, target)
            ratio, pad = (1.0, 1.0), (0, 0)
        elif self.augment:
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
            letterbox = self.letterbox if self.shapes is None else T.LetterBox(self.shapes[index], scaleup=False)
            image, target, ratio, pad = letterbox.apply(raw, raw_target)
        meta = {"file": self.annotations.image_path(record), "image_id": record.image_id,
                "orig_size": tuple(int(v) for v in orig), "ratio": ratio, "pad": pad, "index": index,
                "input_size": (int(image.shape[0]), int(image.shape[1]))}
        tensor = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
        out = {"boxes": torch.from_numpy(target["boxes"]).float(), "labels": torch.from_numpy(target["labels"]).long()}
        if "masks" in target:
            out["masks"] = torch.from_numpy(np.ascontiguousarray(target["masks"]))
        return tensor, out, meta

    def original_targets(self, index: int) -> dict[str, np.ndarray]:
        """Ground truth of image ``index`` in its original pixels (what metrics are computed on)."""
        record = self.images[index]
        return {"boxes": record.boxes, "labels": record.labels, "difficult": record.difficult,
                "iscrowd": record.iscrowd}


def image_size(annotations: DatasetAnnotations, record: ImageAnnotation) -> tuple[int, int]:
    """``(height, width)`` of an image: the annotation's, else the file header's (no decoding), else 1 x 1."""
    if record.width > 0 and record.height > 0:
        return record.height, record.width
    from PIL import Image

    try:
        with Image.open(annotations.image_path(record)) as img:
            width, height = img.size
    except OSError:  # unreadable: a square slot; __getitem__ reports (or skips) the file later
        return 1, 1
    return height, width


def rect_batch_shapes(sizes: np.ndarray, batch_size: int, img_size: int, stride: int = 32) -> list[tuple[int, int]]:
    """Letterbox shape ``(H, W)`` of each batch of ``batch_size`` consecutive images (YOLOv5's rect batches).

    Each image needs ``img_size`` on its long side and its short side scaled by the same factor; a batch
    takes the largest need along each axis, rounded up to a multiple of ``stride`` so the network's
    feature maps stay whole. With the images sorted by aspect ratio the batches are all-landscape
    (``(h, img_size)``), all-portrait (``(img_size, w)``) or, where the order crosses 1, square.

    Args:
        sizes: ``[N, 2]`` image ``(height, width)``, in dataset order.
        batch_size: images per batch (the validation loader's batch size).
        img_size: long side of every shape (a multiple of ``stride``).
        stride: the network's largest stride.
    """
    sizes = np.asarray(sizes, dtype=np.float64).reshape(-1, 2)
    scale = img_size / sizes.max(axis=1, keepdims=True)
    needed = np.maximum(np.round(sizes * scale), 1)  # what LetterBox makes of the image at this scale
    shapes = []
    for start in range(0, len(sizes), batch_size):
        height, width = needed[start : start + batch_size].max(axis=0)
        shapes.append((int(math.ceil(height / stride)) * stride, int(math.ceil(width / stride)) * stride))
    return shapes


def collate_detection(samples: Sequence[tuple], fill: int = 114) -> tuple[torch.Tensor, list[dict], list[dict]]:
    """Stack ``(image, target, meta)`` samples; images of different shapes are padded to the largest.

    Shapes differ when a DDP rank's strided share of rectangular validation batches mixes two batch
    shapes. The padding (``fill``, the letterbox grey) goes to the bottom and right, so boxes and the
    ``pad``/``ratio`` metadata, measured from the top-left corner, stay exact.
    """
    images, targets, metas = zip(*samples)
    height = max(image.shape[-2] for image in images)
    width = max(image.shape[-1] for image in images)
    if all(image.shape[-2:] == (height, width) for image in images):
        return torch.stack(images), list(targets), list(metas)
    batch = images[0].new_full((len(images), images[0].shape[0], height, width), fill)
    for slot, image in zip(batch, images):
        slot[:, : image.shape[-2], : image.shape[-1]] = image
    return batch, list(targets), list(metas)

