"""Box- and mask-aware augmentation for detection and instance segmentation (YOLO and SSD recipes).

The sample type used by every transform here::

    Sample = (image, target)
    image:  np.ndarray uint8 [H, W, 3], RGB
    target: {"boxes":  np.ndarray float32 [N, 4], xyxy, absolute pixels (pixel (c, r) covers [c, c+1)),
             "labels": np.ndarray int64 [N], 0-based,
             "masks":  np.ndarray uint8 [N, H, W]          (optional, instance masks),
             "difficult"/"iscrowd": np.ndarray bool [N]  (optional, carried along)}

A transform is a callable ``(image, target) -> (image, target)``; it never modifies its inputs. Masks
follow every geometric transform; an object whose box becomes degenerate is dropped together with its
label, mask and flags. Warps use OpenCV on whole arrays (no per-pixel Python) because this runs in
DataLoader workers. ``to_tensors`` and ``V2Adapter`` bridge to ``torchvision.transforms.v2``
(``tv_tensors.BoundingBoxes`` XYXY + ``tv_tensors.Mask``) so any v2 transform can join a pipeline.

Randomness: each random transform owns a ``numpy.random.Generator``. With ``seed=None`` it is seeded
lazily from torch's global RNG in each process, so ``torch.manual_seed`` makes a pipeline reproducible
and every DataLoader worker (which torch seeds differently) draws a different stream. With an explicit
``seed`` the main process replays exactly that stream; a worker mixes in its torch seed.
Inside ``sample_randomness(seed, epoch, index)`` (a training dataset's ``__getitem__``) every transform
draws instead from a generator of that key and of its own class: a sample's augmentation is then the same
in any process and whatever was loaded before it, so a run resumed in the middle of an epoch, or with
another worker count, draws what the uninterrupted run drew.
"""

from __future__ import annotations

import math
import os
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from cvzoo.ops.boxes import box_iou

Target = dict[str, np.ndarray]
Sample = tuple[np.ndarray, Target]
PER_OBJECT_KEYS = ("boxes", "labels", "masks", "difficult", "iscrowd")


class SampleError(ValueError):
    """A sample whose image/target arrays do not have the documented shapes and dtypes."""


def check_sample(image: np.ndarray, target: Target) -> None:
    """Raise ``SampleError`` naming the key and shape if ``(image, target)`` breaks the sample contract."""
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise SampleError(f"image must be uint8 [H, W, 3], got {getattr(image, 'dtype', type(image))} "
                          f"{getattr(image, 'shape', '')}")
    boxes = target.get("boxes")
    if boxes is None or boxes.ndim != 2 or boxes.shape[1] != 4:
        raise SampleError(f"target['boxes'] must be [N, 4] xyxy, got {None if boxes is None else boxes.shape}")
    n = len(boxes)
    for key in PER_OBJECT_KEYS[1:]:
        if key in target and len(target[key]) != n:
            raise SampleError(f"target[{key!r}] has {len(target[key])} entries for {n} boxes")
    masks = target.get("masks")
    if masks is not None and masks.shape[1:] != image.shape[:2]:
        raise SampleError(f"target['masks'] is {masks.shape}, expected [{n}, {image.shape[0]}, {image.shape[1]}]")


def _select(target: Target, keep: np.ndarray) -> Target:
    """The target restricted to objects ``keep`` (bool mask); no copy when all are kept."""
    if keep.dtype == bool and keep.all():
        return dict(target)
    return {k: (v[keep] if k in PER_OBJECT_KEYS else v) for k, v in target.items()}


def _regions(boxes: np.ndarray, height: int, width: int, margin: int = 0) -> np.ndarray:
    """Integer pixel regions ``[N, 4]`` (x0, y0, x1, y1) covering xyxy ``boxes`` plus ``margin``, clipped."""
    lo = np.floor(boxes[:, :2]) - margin
    hi = np.ceil(boxes[:, 2:]) + margin
    regions = np.concatenate([lo, hi], axis=1)
    return np.clip(regions, 0, [width, height, width, height]).astype(np.int64)


def boxes_from_masks(masks: np.ndarray, regions: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Tight xyxy boxes of ``[N, H, W]`` masks -> (boxes float32 ``[N, 4]``, non-empty bool ``[N]``).

    Args:
        masks: ``[N, H, W]`` uint8/bool.
        regions: optional int ``[N, 4]`` (x0, y0, x1, y1) known to contain each mask; only that part is
            scanned, so the cost follows the object size instead of the image size.
    """
    n = len(masks)
    boxes, valid = np.zeros((n, 4), np.float32), np.zeros(n, bool)
    for i, mask in enumerate(masks):
        x0, y0 = (0, 0) if regions is None else regions[i, :2]
        if regions is not None:
            mask = mask[regions[i, 1]:regions[i, 3], regions[i, 0]:regions[i, 2]]
        cols = np.flatnonzero(mask.any(axis=0))
        if len(cols):
            rows = np.flatnonzero(mask.any(axis=1))
            boxes[i] = (x0 + cols[0], y0 + rows[0], x0 + cols[-1] + 1, y0 + rows[-1] + 1)
            valid[i] = True
    return boxes, valid


def box_candidates(before: np.ndarray, after: np.ndarray, wh_thr: float = 2.0, ar_thr: float = 100.0,
                   area_thr: float = 0.1) -> np.ndarray:
    """YOLOv5's filter of boxes worth keeping after a warp: bool ``[N]``.

    ``before`` are the original boxes already multiplied by the warp's scale (``[N, 4]`` xyxy); a box
    survives if it is wider and taller than ``wh_thr`` pixels, kept more than ``area_thr`` of its scaled
    area (not mostly pushed out of the image) and its aspect ratio stays below ``ar_thr``.
    """
    w1, h1 = before[:, 2] - before[:, 0], before[:, 3] - before[:, 1]
    w2, h2 = after[:, 2] - after[:, 0], after[:, 3] - after[:, 1]
    aspect = np.maximum(w2 / (h2 + 1e-16), h2 / (w2 + 1e-16))
    return (w2 > wh_thr) & (h2 > wh_thr) & (w2 * h2 / (w1 * h1 + 1e-16) > area_thr) & (aspect < ar_thr)


_SAMPLE_KEY: tuple[int, ...] | None = None  # set by sample_randomness, one sample at a time
_SAMPLE_COUNT = 0  # entries into sample_randomness: a transform's keyed generator restarts with each


@contextmanager
def sample_randomness(seed: int, epoch: int, index: int) -> Iterator[None]:
    """Within: every transform draws from a generator keyed by ``(seed, epoch, index)`` and its class
    (see the module docstring), not from its own stream; the generators start afresh at every entry, so
    loading a sample twice gives the same draws."""
    global _SAMPLE_KEY, _SAMPLE_COUNT
    saved, _SAMPLE_KEY = _SAMPLE_KEY, (int(seed), int(epoch), int(index))
    _SAMPLE_COUNT += 1
    try:
        yield
    finally:
        _SAMPLE_KEY = saved


class _Random:
    """Owns a numpy Generator that is re-seeded per process (see the module docstring)."""

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed
        self._home_pid = os.getpid()
        self._rng: np.random.Generator | None = None
        self._rng_key: tuple[int, int] | None = None
        self._sample_rng: tuple[int, np.random.Generator] | None = None

    @property
    def rng(self) -> np.random.Generator:
        if _SAMPLE_KEY is not None:
            if self._sample_rng is None or self._sample_rng[0] != _SAMPLE_COUNT:
                # The class name keeps the transforms of one sample apart (crc32: the same in every process).
                stream = zlib.crc32(type(self).__name__.encode())
                self._sample_rng = (_SAMPLE_COUNT, np.random.default_rng([*_SAMPLE_KEY, stream]))
            return self._sample_rng[1]
        key = (os.getpid(), torch.initial_seed())
        if self._rng is None or key != self._rng_key:
            if self.seed is not None and key[0] == self._home_pid:
                self._rng = np.random.default_rng(self.seed)
            elif self.seed is not None:
                self._rng = np.random.default_rng([self.seed, key[1] % 2**63])
            else:
                self._rng = np.random.default_rng(int(torch.randint(0, 2**62, ()).item()))
            self._rng_key = key
        return self._rng


class Compose:
    """Apply transforms in order; checks the sample contract once on entry."""

    def __init__(self, transforms: Sequence[Callable[[np.ndarray, Target], Sample]]) -> None:
        self.transforms = list(transforms)

    def __call__(self, image: np.ndarray, target: Target) -> Sample:
        check_sample(image, target)
        for transform in self.transforms:
            image, target = transform(image, target)
        return image, target

    def __repr__(self) -> str:
        return "Compose(" + ", ".join(repr(t) for t in self.transforms) + ")"


# ------------------------------------------------------------------------------------------------ flips
def hflip(image: np.ndarray, target: Target) -> Sample:
    """Mirror left-right: ``x -> W - x`` (so ``[x1, x2] -> [W - x2, W - x1]``)."""
    import cv2

    width = image.shape[1]
    target = dict(target)
    target["boxes"] = target["boxes"][:, [2, 1, 0, 3]] * np.float32([-1, 1, -1, 1]) + np.float32([width, 0, width, 0])
    if "masks" in target:
        target["masks"] = np.ascontiguousarray(target["masks"][:, :, ::-1])
    return cv2.flip(image, 1), target  # SIMD copy; numpy's reversed-stride copy is several times slower


def vflip(image: np.ndarray, target: Target) -> Sample:
    """Mirror top-bottom: ``y -> H - y``."""
    import cv2

    height = image.shape[0]
    target = dict(target)
    target["boxes"] = target["boxes"][:, [0, 3, 2, 1]] * np.float32([1, -1, 1, -1]) + np.float32([0, height, 0, height])
    if "masks" in target:
        target["masks"] = np.ascontiguousarray(target["masks"][:, ::-1])
    return cv2.flip(image, 0), target


class RandomHorizontalFlip(_Random):
    """``hflip`` with probability ``p``."""

    def __init__(self, p: float = 0.5, seed: int | None = None) -> None:
        super().__init__(seed)
        self.p = p

    def __call__(self, image: np.ndarray, target: Target) -> Sample:
        return hflip(image, target) if self.rng.uniform() < self.p else (image, target)


class RandomVerticalFlip(RandomHorizontalFlip):
    """``vflip`` with probability ``p``."""

    def __call__(self, image: np.ndarray, target: Target) -> Sample:
        return vflip(image, target) if self.rng.uniform() < self.p else (image, target)


# -------------------------------------------------------------------------------------------- letterbox
def _as_hw(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int | np.integer):
        return int(size), int(size)
    if len(size) != 2:
        raise ValueError(f"size must be an int or (height, width), got {size!r}")
    return int(size[0]), int(size[1])


def _resize_sample(image: np.ndarray, target: Target | None, new_w: int, new_h: int) -> tuple[np.ndarray, Target | None]:
    """Resize image (bilinear), boxes (exact per-axis scale) and masks (nearest) to ``new_w x new_h``."""
    import cv2

    height, width = image.shape[:2]
    if (new_h, new_w) == (height, width):
        return image, target
    image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    if target is not None:
        target = dict(target)
        scale = np.float32([new_w / width, new_h / height] * 2)
        target["boxes"] = target["boxes"] * scale
        if "masks" in target:
            scale_matrix = np.diag([new_w / width, new_h / height, 1.0])
            target["masks"] = _warp_masks(target["masks"], scale_matrix, (new_h, new_w), target["boxes"])
    return image, target


class LetterBox:
    """Resize keeping the aspect ratio, then pad to ``size`` (YOLO's inference-time resize).

    Args:
        size: target ``(height, width)`` or an int for a square.
        stride: with ``auto=True`` the padding is reduced to the smallest multiple of ``stride``
            (rectangular inference: less padding, same network strides).
        auto: see ``stride``.
        fill: grey level of the padding (114, YOLO's choice: the ImageNet mean in 0-255, roughly).
        scaleup: allow enlarging small images (False: only shrink, as at YOLO validation).
    """

    def __init__(self, size: int | Sequence[int], stride: int = 32, auto: bool = False, fill: int = 114,
                 scaleup: bool = True) -> None:
        self.size, self.stride, self.auto, self.fill, self.scaleup = _as_hw(size), stride, auto, fill, scaleup

    def apply(self, image: np.ndarray, target: Target | None = None):
        """Letterbox ``image`` (and ``target`` if given).

        Returns:
            ``(image, target, ratio, pad)``: ``ratio = (rx, ry)`` the exact per-axis scale of the
            resized content, ``pad = (left, top)`` the offset of its top-left corner in pixels; map
            predictions back with ``scale_boxes_back(boxes, ratio, pad, original_size)``.
        """
        import cv2

        height, width = image.shape[:2]
        out_h, out_w = self.size
        r = min(out_h / height, out_w / width)
        if not self.scaleup:
            r = min(r, 1.0)
        new_w, new_h = max(1, round(width * r)), max(1, round(height * r))
        image, target = _resize_sample(image, target, new_w, new_h)
        pad_w, pad_h = out_w - new_w, out_h - new_h
        if self.auto:
            pad_w, pad_h = pad_w % self.stride, pad_h % self.stride
        left, top = pad_w // 2, pad_h // 2
        image = cv2.copyMakeBorder(image, top, pad_h - top, left, pad_w - left, cv2.BORDER_CONSTANT,
                                   value=(self.fill,) * 3)
        if target is not None:
            target = dict(target)
            target["boxes"] = target["boxes"] + np.float32([left, top, left, top])
            if "masks" in target:
                target["masks"] = np.pad(target["masks"], ((0, 0), (top, pad_h - top), (left, pad_w - left)))
        return image, target, (new_w / width, new_h / height), (left, top)

    def __call__(self, image: np.ndarray, target: Target) -> Sample:
        image, target, _, _ = self.apply(image, target)
        return image, target

    def __repr__(self) -> str:
        return f"LetterBox(size={self.size}, stride={self.stride}, auto={self.auto}, fill={self.fill})"


def scale_boxes_back(boxes: np.ndarray | torch.Tensor, ratio: float | Sequence[float], pad: Sequence[float],
                     orig_size: Sequence[int]) -> np.ndarray | torch.Tensor:
    """Map xyxy boxes ``[N, 4]`` predicted on a letterboxed image back to the original image.

    Args:
        boxes: ``[N, 4]`` xyxy on the letterboxed image (numpy or torch).
        ratio: the ``(rx, ry)`` (or one float) returned by ``LetterBox.apply``.
        pad: ``(left, top)`` returned by ``LetterBox.apply``.
        orig_size: ``(height, width)`` of the original image; boxes are clipped to it.
    """
    rx, ry = (ratio, ratio) if isinstance(ratio, int | float) else ratio
    height, width = orig_size
    offset, gain, upper = [pad[0], pad[1]] * 2, [rx, ry] * 2, [width, height, width, height]
    if isinstance(boxes, torch.Tensor):
        out = (boxes - boxes.new_tensor(offset)) / boxes.new_tensor(gain)
        return torch.minimum(out.clamp(min=0), out.new_tensor(upper))
    out = (boxes - np.asarray(offset, boxes.dtype)) / np.asarray(gain, boxes.dtype)
    return np.clip(out, 0, np.asarray(upper, out.dtype))


# ----------------------------------------------------------------------------------------------- warps
def _cv_matrix(matrix: np.ndarray) -> np.ndarray:
    """``matrix`` on continuous coordinates (pixel c spans [c, c + 1), the box convention) -> the same
    map in OpenCV's convention, where pixel centres are integers: ``T(-1/2) @ matrix @ T(+1/2)``.
    Without this a 90 degree rotation would move the image one pixel away from its boxes."""
    to_cv, from_cv = np.eye(3), np.eye(3)
    to_cv[:2, 2], from_cv[:2, 2] = -0.5, 0.5
    return to_cv @ matrix @ from_cv


def _warp_masks(masks: np.ndarray, matrix: np.ndarray, out_hw: tuple[int, int], boxes_out: np.ndarray) -> np.ndarray:
    """Warp ``[N, H, W]`` masks with a 3x3 continuous-coordinate ``matrix``, nearest neighbour.

    ``boxes_out`` (xyxy ``[N, 4]``) must enclose each warped mask (the warped box of an object does);
    only that region, plus a 2 px margin, is warped per mask, so the cost follows the object sizes.
    """
    import cv2

    out_h, out_w = out_hw
    out = np.zeros((len(masks), out_h, out_w), np.uint8)
    cv_matrix = _cv_matrix(np.asarray(matrix, np.float64))
    perspective = not np.allclose(cv_matrix[2], [0, 0, 1])
    for i, (x0, y0, x1, y1) in enumerate(_regions(boxes_out, out_h, out_w, margin=2)):
        if x1 <= x0 or y1 <= y0:
            continue
        shift = np.array([[1, 0, -x0], [0, 1, -y0], [0, 0, 1]], np.float64)  # region origin -> (0, 0)
        local = shift @ cv_matrix
        src = np.ascontiguousarray(masks[i]) if masks.dtype == np.uint8 else masks[i].astype(np.uint8)
        if perspective:
            out[i, y0:y1, x0:x1] = cv2.warpPerspective(src, local, (x1 - x0, y1 - y0), flags=cv2.INTER_NEAREST)
        else:
            out[i, y0:y1, x0:x1] = cv2.warpAffine(src, local[:2], (x1 - x0, y1 - y0), flags=cv2.INTER_NEAREST)
    return out


def _warp_boxes(boxes: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Enclosing xyxy boxes ``[N, 4]`` of the 4 warped corners of each box (unclipped)."""
    corners = boxes[:, [0, 1, 2, 1, 2, 3, 0, 3]].reshape(-1, 2).astype(np.float64)  # [4N, 2]
    xyw = np.concatenate([corners, np.ones((len(corners), 1))], axis=1) @ matrix.T
    xy = (xyw[:, :2] / xyw[:, 2:3]).reshape(-1, 4, 2)
    return np.concatenate([xy.min(axis=1), xy.max(axis=1)], axis=1).astype(np.float32).reshape(-1, 4)


def warp_sample(image: np.ndarray, target: Target, matrix: np.ndarray, out_size: Sequence[int] | None = None,
                fill: int = 114, scale: float | None = None) -> Sample:
    """Warp a sample with a 3x3 ``matrix`` (affine if its last row is ``[0, 0, 1]``, else perspective).

    Boxes: from the warped masks when present (tight), else the enclosing box of the 4 warped corners;
    then clipped to the output and filtered with ``box_candidates`` (``scale`` = the warp's scale,
    default ``sqrt(|det|)`` of the linear part).

    Args:
        image: uint8 ``[H, W, 3]``.
        target: see the module docstring; boxes xyxy absolute.
        matrix: ``[3, 3]`` mapping input coordinates to output ones, in the box convention (the
            top-left corner of the image is (0, 0), the centre of pixel (c, r) is (c + 0.5, r + 0.5)).
        out_size: ``(height, width)`` of the output (default: the input's).
        fill: border grey level.
        scale: the scale used by the area filter.
    """
    import cv2

    matrix = np.asarray(matrix, np.float64)
    out_h, out_w = _as_hw(out_size) if out_size is not None else image.shape[:2]
    cv_matrix = _cv_matrix(matrix)
    if np.allclose(matrix[2], [0, 0, 1]):
        image = cv2.warpAffine(image, cv_matrix[:2], (out_w, out_h), flags=cv2.INTER_LINEAR,
                               borderValue=(fill,) * 3)
    else:
        image = cv2.warpPerspective(image, cv_matrix, (out_w, out_h), flags=cv2.INTER_LINEAR,
                                    borderValue=(fill,) * 3)
    boxes = target["boxes"]
    target = dict(target)
    new_boxes = np.clip(_warp_boxes(boxes, matrix), 0, np.float32([out_w, out_h, out_w, out_h]))
    if "masks" in target:
        target["masks"] = _warp_masks(target["masks"], matrix, (out_h, out_w), new_boxes)
        new_boxes, _ = boxes_from_masks(target["masks"], _regions(new_boxes, out_h, out_w, margin=2))
    if scale is None:
        scale = math.sqrt(abs(np.linalg.det(matrix[:2, :2])))
    keep = box_candidates(boxes * np.float32(scale), new_boxes)
    target["boxes"] = new_boxes
    return image, _select(target, keep)


class RandomAffine(_Random):
    """YOLOv5's ``random_perspective``: rotation, scale, shear, translation and perspective in one warp.

    The matrix is ``M = T @ S @ R @ P @ C``: ``C`` moves the input centre to the origin, ``P`` adds a
    perspective term, ``R`` rotates by ``U(-degrees, degrees)`` and scales by ``U(1-scale, 1+scale)``,
    ``S`` shears by ``U(-shear, shear)`` degrees on each axis, ``T`` puts the centre at
    ``U(0.5 - translate, 0.5 + translate)`` of the output size. One interpolation instead of five.

    Args:
        degrees, translate, scale, shear, perspective: ranges as above (YOLOv5 hyp names).
        output_size: ``(height, width)`` of the result (default: the input's). ``Mosaic`` uses half
            its canvas, which is YOLOv5's ``border = -size // 2``.
        fill: border grey level.
    """

    def __init__(self, degrees: float = 0.0, translate: float = 0.1, scale: float = 0.5, shear: float = 0.0,
                 perspective: float = 0.0, output_size: int | Sequence[int] | None = None, fill: int = 114,
                 seed: int | None = None) -> None:
        super().__init__(seed)
        self.degrees, self.translate, self.scale, self.shear = degrees, translate, scale, shear
        self.perspective, self.fill = perspective, fill
        self.output_size = None if output_size is None else _as_hw(output_size)

    def get_matrix(self, in_hw: Sequence[int], out_hw: Sequence[int]) -> tuple[np.ndarray, float]:
        """Draw a ``[3, 3]`` matrix for an input of ``in_hw`` and output ``out_hw``; also return its scale."""
        import cv2

        rng = self.rng
        center = np.eye(3)
        center[0, 2], center[1, 2] = -in_hw[1] / 2, -in_hw[0] / 2
        persp = np.eye(3)
        persp[2, 0], persp[2, 1] = rng.uniform(-self.perspective, self.perspective, 2)
        rot = np.eye(3)
        scale = rng.uniform(1 - self.scale, 1 + self.scale)
        rot[:2] = cv2.getRotationMatrix2D((0, 0), rng.uniform(-self.degrees, self.degrees), scale)
        shear = np.eye(3)
        shear[0, 1], shear[1, 0] = np.tan(np.radians(rng.uniform(-self.shear, self.shear, 2)))
        trans = np.eye(3)
        trans[0, 2] = rng.uniform(0.5 - self.translate, 0.5 + self.translate) * out_hw[1]
        trans[1, 2] = rng.uniform(0.5 - self.translate, 0.5 + self.translate) * out_hw[0]
        return trans @ shear @ rot @ persp @ center, scale

    def transform(self, image: np.ndarray, target: Target, output_size: Sequence[int] | None = None) -> Sample:
        """Apply a random warp producing ``output_size`` (default ``self.output_size`` or the input's)."""
        out_hw = _as_hw(output_size) if output_size is not None else self.output_size or image.shape[:2]
        matrix, scale = self.get_matrix(image.shape[:2], out_hw)
        return warp_sample(image, target, matrix, out_hw, self.fill, scale)

    def __call__(self, image: np.ndarray, target: Target) -> Sample:
        return self.transform(image, target)


# ------------------------------------------------------------------------------------------------ colour
class RandomHSV(_Random):
    """Random hue shift and saturation/value gains (YOLOv5's ``augment_hsv`` ranges), via 3 LUTs.

    Hue moves by ``U(-h, h)`` of the colour circle (YOLOv5 multiplies the hue instead, which moves
    reds near 0 less than violets near 180); saturation and value are multiplied by ``1 + U(-s, s)``
    and ``1 + U(-v, v)``. Geometry is untouched.
    """

    def __init__(self, h: float = 0.015, s: float = 0.7, v: float = 0.4, p: float = 1.0, seed: int | None = None):
        super().__init__(seed)
        self.h, self.s, self.v, self.p = h, s, v, p

    def __call__(self, image: np.ndarray, target: Target) -> Sample:
        import cv2

        rng = self.rng
        if rng.uniform() >= self.p or not (self.h or self.s or self.v):
            return image, target
        dh, gs, gv = rng.uniform(-1, 1, 3) * [self.h, self.s, self.v] + [0, 1, 1]
        x = np.arange(256, dtype=np.float32)
        lut_h = np.mod(x + dh * 180, 180).astype(np.uint8)  # OpenCV's 8-bit hue is in [0, 180)
        lut_s = np.clip(x * gs, 0, 255).astype(np.uint8)
        lut_v = np.clip(x * gv, 0, 255).astype(np.uint8)
        hue, sat, val = cv2.split(cv2.cvtColor(image, cv2.COLOR_RGB2HSV))
        hsv = cv2.merge((cv2.LUT(hue, lut_h), cv2.LUT(sat, lut_s), cv2.LUT(val, lut_v)))
        return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB), target


# ----------------------------------------------------------------------------------------------- SSD
def crop_sample(image: np.ndarray, target: Target, left: int, top: int, width: int, height: int) -> Sample:
    """Crop ``[left, left + width) x [top, top + height)``: boxes clipped and shifted, empty ones dropped."""
    target = dict(target)
    boxes = target["boxes"] - np.float32([left, top, left, top])
    target["boxes"] = np.clip(boxes, 0, np.float32([width, height, width, height]))
    if "masks" in target:
        target["masks"] = np.ascontiguousarray(target["masks"][:, top:top + height, left:left + width])
    b = target["boxes"]
    keep = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
    return np.ascontiguousarray(image[top:top + height, left:left + width]), _select(target, keep)


class RandomIoUCrop(_Random):
    """SSD's patch sampling (Liu et al., 2016, sec. 2.2): crop so some object overlaps it enough.

    Draw a minimum IoU from ``options`` (None = keep the whole image), then up to ``trials`` patches
    with sides in ``[min_scale, max_scale]`` of the image and aspect in ``[min_aspect, max_aspect]``.
    A patch is accepted if at least one object has its centre inside it and some such object
    overlaps it with IoU >= the drawn minimum; objects whose centre is outside are dropped and the
    others clipped to it (the SSD rule, also torchvision's ``RandomIoUCrop``). An image without
    objects gets a random patch (torchvision's leaves it whole). As torchvision's, a box's centre must lie
    strictly inside the patch and the aspect ratio is that of the whole-pixel patch. ``p`` < 1 runs the
    sampler on that share of the images only.
    """

    def __init__(self, min_scale: float = 0.3, max_scale: float = 1.0, min_aspect: float = 0.5,
                 max_aspect: float = 2.0, options: Sequence[float | None] = (None, 0.0, 0.1, 0.3, 0.5, 0.7, 0.9),
                 trials: int = 40, seed: int | None = None, p: float = 1.0) -> None:
        super().__init__(seed)
        self.min_scale, self.max_scale, self.min_aspect, self.max_aspect = min_scale, max_scale, min_aspect, max_aspect
        self.options, self.trials, self.p = list(options), trials, p

    def __call__(self, image: np.ndarray, target: Target) -> Sample:
        rng = self.rng
        if self.p < 1.0 and rng.uniform() >= self.p:
            return image, target
        height, width = image.shape[:2]
        boxes = target["boxes"]
        for _ in range(50):  # SSD keeps drawing; bounded here so a pathological sample cannot hang a worker
            min_iou = self.options[int(rng.integers(len(self.options)))]
            if min_iou is None:
                return image, target
            for _ in range(self.trials):
                sw, sh = rng.uniform(self.min_scale, self.max_scale, 2)
                cw, ch = int(sw * width), int(sh * height)
                if cw < 1 or ch < 1 or not self.min_aspect <= cw / ch <= self.max_aspect:
                    continue
                left, top = int(rng.uniform() * (width - cw)), int(rng.uniform() * (height - ch))
                patch = np.float32([left, top, left + cw, top + ch])
                if len(boxes) == 0:
                    return crop_sample(image, target, left, top, cw, ch)
                centres = (boxes[:, :2] + boxes[:, 2:]) / 2
                inside = (centres > patch[:2]).all(axis=1) & (centres < patch[2:]).all(axis=1)
                if not inside.any():
                    continue
                overlap = box_iou(torch.from_numpy(patch[None]), torch.from_numpy(boxes[inside]))
                if float(overlap.max()) < min_iou:
                    continue
                return crop_sample(image, _select(target, inside), left, top, cw, ch)
        return image, target


class RandomZoomOut(_Random):
    """SSD's "zoom out" (expansion): put the image on a ``U(*side_range)`` times larger canvas.

    Small objects become smaller, which SSD needs for its small-object recall. ``fill`` is a grey
    level or an RGB triple (SSD uses the dataset mean).
    """

    def __init__(self, fill: int | Sequence[int] = 114, side_range: tuple[float, float] = (1.0, 4.0),
                 p: float = 0.5, seed: int | None = None) -> None:
        super().__init__(seed)
        if side_range[0] < 1 or side_range[0] > side_range[1]:
            raise ValueError(f"side_range must be 1 <= min <= max, got {side_range}")
        self.fill, self.side_range, self.p = fill, side_range, p

    def __call__(self, image: np.ndarray, target: Target) -> Sample:
        rng = self.rng
        if rng.uniform() >= self.p:
            return image, target
        height, width = image.shape[:2]
        ratio = rng.uniform(*self.side_range)
        canvas_h, canvas_w = int(height * ratio), int(width * ratio)
        left, top = int(rng.uniform() * (canvas_w - width)), int(rng.uniform() * (canvas_h - height))
        canvas = np.empty((canvas_h, canvas_w, 3), np.uint8)
        canvas[...] = np.asarray(self.fill, np.uint8)
        canvas[top:top + height, left:left + width] = image
        target = dict(target)
        target["boxes"] = target["boxes"] + np.float32([left, top, left, top])
        if "masks" in target:
            masks = np.zeros((len(target["masks"]), canvas_h, canvas_w), np.uint8)
            masks[:, top:top + height, left:left + width] = target["masks"]
            target["masks"] = masks
        return canvas, target


class RandomPhotometricDistort(_Random):
    """SSD's photometric distortions (Liu et al. 2016; Howard 2013): each of brightness, contrast,
    saturation and hue jitter and a channel permutation applied with probability ``p``, contrast before or
    after saturation and hue at random (torchvision's ``RandomPhotometricDistort`` semantics and kernels).

    Args:
        brightness, contrast, saturation: ranges of the multiplicative factors.
        hue: range of the hue shift, a fraction of the colour circle.
        p: probability of each distortion.
    """

    def __init__(self, brightness: tuple[float, float] = (0.875, 1.125), contrast: tuple[float, float] = (0.5, 1.5),
                 saturation: tuple[float, float] = (0.5, 1.5), hue: tuple[float, float] = (-0.05, 0.05),
                 p: float = 0.5, seed: int | None = None) -> None:
        super().__init__(seed)
        if not -0.5 <= hue[0] <= hue[1] <= 0.5:
            raise ValueError(f"hue must be a range inside [-0.5, 0.5], got {hue}")
        self.brightness, self.contrast, self.saturation, self.hue, self.p = brightness, contrast, saturation, hue, p

    def params(self) -> dict[str, Any]:
        """One draw: each factor or None (not applied), ``contrast_before`` and a channel permutation or None."""
        rng = self.rng
        drawn: dict[str, Any] = {}
        for key, bounds in (("brightness", self.brightness), ("contrast", self.contrast),
                            ("saturation", self.saturation), ("hue", self.hue)):
            drawn[key] = float(rng.uniform(*bounds)) if rng.uniform() < self.p else None
        drawn["contrast_before"] = bool(rng.uniform() < 0.5)
        drawn["permutation"] = rng.permutation(3).tolist() if rng.uniform() < self.p else None
        return drawn

    @staticmethod
    def distort(image: np.ndarray, drawn: dict[str, Any]) -> np.ndarray:
        """Apply one draw of :meth:`params` to an RGB uint8 ``[H, W, 3]`` image."""
        from torchvision.transforms.v2 import functional as TF

        x = torch.from_numpy(np.require(image, requirements=["C", "W"])).permute(2, 0, 1)  # a writable view or copy
        if drawn["brightness"] is not None:
            x = TF.adjust_brightness(x, drawn["brightness"])
        if drawn["contrast"] is not None and drawn["contrast_before"]:
            x = TF.adjust_contrast(x, drawn["contrast"])
        if drawn["saturation"] is not None:
            x = TF.adjust_saturation(x, drawn["saturation"])
        if drawn["hue"] is not None:
            x = TF.adjust_hue(x, drawn["hue"])
        if drawn["contrast"] is not None and not drawn["contrast_before"]:
            x = TF.adjust_contrast(x, drawn["contrast"])
        if drawn["permutation"] is not None:
            x = x[drawn["permutation"]]
        return np.ascontiguousarray(x.permute(1, 2, 0).numpy())

    def __call__(self, image: np.ndarray, target: Target) -> Sample:
        if self.p <= 0:
            return image, target
        return self.distort(image, self.params()), target


# ------------------------------------------------------------------------------------- mosaic / mixup
class Mosaic(_Random):
    """YOLOv4's mosaic: 4 images around a random centre of a ``2 size`` canvas, then ``affine``.

    The given sample fills one quadrant and 3 samples drawn with ``load_sample(i)``, ``i`` uniform in
    ``[0, num_samples)``, the others. Each is first resized so its longer side is ``size``; the centre
    is ``U(size / 2, 3 size / 2)`` on each axis; the affine then warps the canvas to ``size x size``
    (objects cut by the crop are dropped by its box filter). With probability ``1 - p`` the sample is
    letterboxed to ``size`` and goes through the same affine instead.
    """

    def __init__(self, load_sample: Callable[[int], Sample], size: int, p: float = 1.0, *, num_samples: int,
                 affine: RandomAffine | None = None, fill: int = 114, seed: int | None = None) -> None:
        super().__init__(seed)
        if num_samples < 1:
            raise ValueError(f"Mosaic needs num_samples >= 1, got {num_samples}")
        self.load_sample, self.size, self.p, self.num_samples, self.fill = load_sample, size, p, num_samples, fill
        self.affine = affine if affine is not None else RandomAffine(translate=0.1, scale=0.5, fill=fill)

    def combine(self, samples: Sequence[Sample], centre: tuple[int, int]) -> Sample:
        """Paste 4 samples around ``centre = (xc, yc)`` on the ``[2 size, 2 size]`` canvas (no warp).

        Boxes are shifted and clipped to the visible part of their tile; with masks, the boxes of cut
        objects are re-tightened on the visible mask pixels (objects cut away entirely are dropped).
        """
        s2 = 2 * self.size
        xc, yc = centre
        canvas = np.full((s2, s2, 3), self.fill, np.uint8)
        with_masks = all("masks" in t for _, t in samples)
        tiles, parts = [], []
        for i, (image, target) in enumerate(samples):
            height, width = image.shape[:2]
            r = self.size / max(height, width)
            image, target = _resize_sample(image, target, max(1, round(width * r)), max(1, round(height * r)))
            h, w = image.shape[:2]
            # Destination (a) on the canvas and source (b) in the tile; quadrants TL, TR, BL, BR.
            x1a, x2a = (max(xc - w, 0), xc) if i in (0, 2) else (xc, min(xc + w, s2))
            y1a, y2a = (max(yc - h, 0), yc) if i in (0, 1) else (yc, min(yc + h, s2))
            x1b = w - (x2a - x1a) if i in (0, 2) else 0
            y1b = h - (y2a - y1a) if i in (0, 1) else 0
            canvas[y1a:y2a, x1a:x2a] = image[y1b:y1b + (y2a - y1a), x1b:x1b + (x2a - x1a)]
            tiles.append((x1a, y1a, x2a, y2a, x1a - x1b, y1a - y1b))
            parts.append(target)
        keys = [k for k in PER_OBJECT_KEYS if all(k in t for t in parts)]
        merged = {k: np.concatenate([t[k] for t in parts]) for k in keys if k != "masks"}
        shifted = merged["boxes"] + np.concatenate(
            [np.tile(np.float32([dx, dy]), (len(t["boxes"]), 2)) for (*_, dx, dy), t in zip(tiles, parts)])
        limits = np.concatenate([np.tile(np.float32(tile[:4]), (len(t["boxes"]), 1)) for tile, t in zip(tiles, parts)])
        boxes = np.concatenate([np.maximum(shifted[:, :2], limits[:, :2]), np.minimum(shifted[:, 2:], limits[:, 2:])], 1)
        visible = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        # Drop objects cut away entirely *before* the canvas-sized masks exist (indexing those copies).
        merged, boxes, shifted = _select(merged, visible), boxes[visible], shifted[visible]
        if with_masks:
            # Only each object's visible box region is copied: the cost follows the object sizes.
            sources = [(t["masks"][j], dx, dy) for (*_, dx, dy), t in zip(tiles, parts) for j in range(len(t["boxes"]))]
            sources = [src for src, v in zip(sources, visible) if v]
            masks = np.zeros((len(boxes), s2, s2), np.uint8)
            regions = _regions(boxes, s2, s2)
            for k, ((mask, dx, dy), (x0, y0, x1, y1)) in enumerate(zip(sources, regions)):
                masks[k, y0:y1, x0:x1] = mask[y0 - dy:y1 - dy, x0 - dx:x1 - dx]
            for k in np.flatnonzero((boxes != shifted).any(axis=1)):  # cut by the tile: re-tighten
                boxes[k] = boxes_from_masks(masks[k:k + 1], regions[k:k + 1])[0][0]
            merged["masks"] = masks
        merged["boxes"] = boxes.astype(np.float32)
        return canvas, _select(merged, (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1]))

    def __call__(self, image: np.ndarray, target: Target) -> Sample:
        rng = self.rng
        if rng.uniform() >= self.p:
            image, target = LetterBox(self.size, fill=self.fill)(image, target)
            return self.affine.transform(image, target, (self.size, self.size))
        others = [self.load_sample(int(rng.integers(self.num_samples))) for _ in range(3)]
        centre = tuple(int(c) for c in rng.uniform(self.size / 2, 3 * self.size / 2, 2))
        image, target = self.combine([(image, target), *others], centre)
        return self.affine.transform(image, target, (self.size, self.size))


class MixUp(_Random):
    """MixUp for detection (Zhang et al., 2018; YOLOv5 recipe): blend two images, keep both box sets.

    The ratio is ``Beta(alpha, alpha)`` (YOLOv5's 32 keeps it near 0.5). ``mix(a, b)`` blends two given
    samples (b resized to a's size if needed); called as a transform with probability ``p`` it blends
    with ``load_sample(i)``, ``i`` uniform in ``[0, num_samples)``.
    """

    def __init__(self, p: float = 0.5, alpha: float = 32.0, load_sample: Callable[[int], Sample] | None = None,
                 num_samples: int | None = None, seed: int | None = None) -> None:
        super().__init__(seed)
        self.p, self.alpha, self.load_sample, self.num_samples = p, alpha, load_sample, num_samples

    def mix(self, a: Sample, b: Sample, ratio: float | None = None) -> Sample:
        """Blend ``a`` and ``b``: ``ratio * a + (1 - ratio) * b``; targets concatenated (a first)."""
        (image_a, target_a), (image_b, target_b) = a, b
        if ("masks" in target_a) != ("masks" in target_b):
            raise SampleError("MixUp: one sample has masks and the other has none")
        if image_b.shape != image_a.shape:
            image_b, target_b = _resize_sample(image_b, target_b, image_a.shape[1], image_a.shape[0])
        ratio = self.rng.beta(self.alpha, self.alpha) if ratio is None else ratio
        image = (image_a.astype(np.float32) * ratio + image_b.astype(np.float32) * (1 - ratio) + 0.5).astype(np.uint8)
        keys = [k for k in PER_OBJECT_KEYS if k in target_a and k in target_b]
        return image, {k: np.concatenate([target_a[k], target_b[k]]) for k in keys}

    def __call__(self, image: np.ndarray, target: Target) -> Sample:
        if self.load_sample is None or not self.num_samples:
            raise ValueError("MixUp used as a transform needs load_sample and num_samples")
        if self.rng.uniform() >= self.p:
            return image, target
        return self.mix((image, target), self.load_sample(int(self.rng.integers(self.num_samples))))


def random_multiscale_size(base: int, scale_range: tuple[float, float] = (0.5, 1.5), stride: int = 32,
                           rng: np.random.Generator | None = None) -> int:
    """A training size for multi-scale training (YOLOv2): a multiple of ``stride`` in ``base * scale_range``.

    Drawn uniformly among the multiples of ``stride`` in ``[base * lo, base * hi]`` (at least ``stride``).
    Call it once per batch and resize the whole batch to it.
    """
    lo = max(stride, math.ceil(base * scale_range[0] / stride) * stride)
    hi = math.floor(base * scale_range[1] / stride) * stride
    if hi < lo:
        raise ValueError(f"no multiple of stride {stride} in [{base * scale_range[0]}, {base * scale_range[1]}]")
    rng = rng if rng is not None else np.random.default_rng(int(torch.randint(0, 2**62, ()).item()))
    return int(rng.integers(lo // stride, hi // stride + 1)) * stride


# ------------------------------------------------------------------------------------ torchvision v2
def to_tensors(image: np.ndarray, target: Target) -> tuple[Any, dict[str, Any]]:
    """Sample -> (``tv_tensors.Image`` uint8 ``[3, H, W]``, dict of tensors with ``BoundingBoxes`` XYXY)."""
    from torchvision import tv_tensors

    height, width = image.shape[:2]
    out: dict[str, Any] = {}
    for key, value in target.items():
        if key == "boxes":
            out[key] = tv_tensors.BoundingBoxes(torch.from_numpy(np.ascontiguousarray(value)), format="XYXY",
                                                canvas_size=(height, width))
        elif key == "masks":
            out[key] = tv_tensors.Mask(torch.from_numpy(np.ascontiguousarray(value)))
        else:
            out[key] = torch.as_tensor(value)
    return tv_tensors.Image(torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)), out


def from_tensors(image: torch.Tensor, target: dict[str, Any]) -> Sample:
    """Inverse of ``to_tensors``."""
    out = {k: v.as_subclass(torch.Tensor).numpy() for k, v in target.items()}
    out["boxes"] = out["boxes"].astype(np.float32)
    return np.ascontiguousarray(image.as_subclass(torch.Tensor).permute(1, 2, 0).numpy()), out


def _per_object_tensors(inputs: tuple[Any, dict[str, Any]]) -> tuple[torch.Tensor, ...]:
    """For ``SanitizeBoundingBoxes``: every per-object tensor but boxes and masks (v2 handles those)."""
    return tuple(inputs[1][k] for k in ("labels", "difficult", "iscrowd") if k in inputs[1])


class V2Adapter:
    """Run a ``torchvision.transforms.v2`` transform on a numpy sample, then drop degenerate boxes.

    v2 transforms draw from torch's RNG. ``SanitizeBoundingBoxes`` removes boxes smaller than
    ``min_size`` with their labels and masks (and any other per-object tensor).
    """

    def __init__(self, transform: Callable[..., Any], min_size: float = 1.0) -> None:
        from torchvision.transforms import v2

        self.transform = transform
        self.sanitize = v2.SanitizeBoundingBoxes(min_size=min_size, labels_getter=_per_object_tensors)

    def __call__(self, image: np.ndarray, target: Target) -> Sample:
        image_t, target_t = self.sanitize(*self.transform(*to_tensors(image, target)))
        return from_tensors(image_t, target_t)

    def __repr__(self) -> str:
        return f"V2Adapter({self.transform!r})"
