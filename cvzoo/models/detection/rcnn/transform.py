"""What an R-CNN does to its images before the backbone and to its boxes after the heads.

Each image is normalised with the ImageNet mean and std, then resized so that its shorter side is
``min_size`` unless its longer side would exceed ``max_size`` (Ren et al. 2015, sec. 3.3: "we re-scale
the images such that their shorter side is s = 600 pixels"; FPN and torchvision use 800 / 1333), and the
resized images are padded bottom/right into one batch whose sides are multiples of ``size_divisible``.
Detections come back in the resized image's pixels and :func:`resize_boxes` maps them to the original's.
The conventions (bilinear resize by a recomputed scale factor, nearest for masks, float32 ratios) are
torchvision's ``GeneralizedRCNNTransform``, so that its checkpoints give the same detections.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

Target = dict[str, torch.Tensor]


def resize_scale(height: int, width: int, min_size: float, max_size: float) -> float:
    """The factor that brings the shorter side to ``min_size`` without the longer exceeding ``max_size``."""
    return min(min_size / min(height, width), max_size / max(height, width))


def resize_image(image: torch.Tensor, scale: float) -> torch.Tensor:
    """``[C, H, W]`` -> ``[C, floor(H s), floor(W s)]``, bilinear (half-pixel centres)."""
    return F.interpolate(image[None], scale_factor=scale, mode="bilinear", recompute_scale_factor=True,
                         align_corners=False)[0]


def resize_masks(masks: torch.Tensor, scale: float) -> torch.Tensor:
    """``uint8 [N, H, W]`` instance masks resized like their image (nearest) -> ``uint8 [N, H', W']``."""
    return F.interpolate(masks[:, None].float(), scale_factor=scale, recompute_scale_factor=True)[:, 0].byte()


def resize_boxes(boxes: torch.Tensor, old_size: Sequence[int], new_size: Sequence[int]) -> torch.Tensor:
    """``[N, 4]`` xyxy boxes in an image of ``old_size = (H, W)`` -> the same boxes in ``new_size``."""
    old = torch.tensor([float(v) for v in old_size], dtype=torch.float32, device=boxes.device)
    new = torch.tensor([float(v) for v in new_size], dtype=torch.float32, device=boxes.device)
    ratio_h, ratio_w = (new / old).unbind()
    return boxes * torch.stack((ratio_w, ratio_h, ratio_w, ratio_h))


def pad_batch(images: Sequence[torch.Tensor], size_divisible: int) -> torch.Tensor:
    """Images ``[C, H_i, W_i]`` -> ``[B, C, H, W]``, zero-padded bottom/right, ``H`` and ``W`` the largest
    sides rounded up to multiples of ``size_divisible``."""
    height = int(math.ceil(max(img.shape[1] for img in images) / size_divisible) * size_divisible)
    width = int(math.ceil(max(img.shape[2] for img in images) / size_divisible) * size_divisible)
    batch = images[0].new_zeros((len(images), images[0].shape[0], height, width))
    for out, img in zip(batch, images):
        out[:, : img.shape[1], : img.shape[2]].copy_(img)
    return batch


class RCNNTransform(nn.Module):
    """Normalise, resize and batch images (and resize their targets) for an R-CNN.

    Args:
        min_size: target length of the shorter side; a sequence draws one per training image (multi-scale
            training, one ``torch`` uniform draw per image) and uses the last at evaluation.
        max_size: cap on the longer side.
        mean, std: per-channel normalisation of the [0, 1] RGB input.
        size_divisible: the padded batch's sides are multiples of this.
    """

    def __init__(self, min_size: int | Sequence[int], max_size: int, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD, size_divisible: int = 32) -> None:
        super().__init__()
        self.min_sizes = tuple(min_size) if isinstance(min_size, Sequence) else (min_size,)
        self.max_size = max_size
        self.mean, self.std = tuple(mean), tuple(std)
        self.size_divisible = size_divisible

    def shorter_side(self) -> int:
        """The ``min_size`` for the next image: a random one of ``min_sizes`` in training, else the last."""
        if not self.training:
            return self.min_sizes[-1]
        index = int(torch.empty(1).uniform_(0.0, float(len(self.min_sizes))).item())
        return self.min_sizes[index]

    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        mean = torch.as_tensor(self.mean, dtype=image.dtype, device=image.device)
        std = torch.as_tensor(self.std, dtype=image.dtype, device=image.device)
        return (image - mean[:, None, None]) / std[:, None, None]

    def forward(
        self, images: Sequence[torch.Tensor], targets: Sequence[Target] | None = None
    ) -> tuple[torch.Tensor, list[tuple[int, int]], list[Target] | None]:
        """Images ``[3, H_i, W_i]`` in [0, 1] (and targets in their pixels) -> the padded normalised batch
        ``[B, 3, H, W]``, each resized image's ``(height, width)`` and the targets in resized pixels
        (``boxes`` scaled, ``masks`` resized; other keys as given)."""
        resized, new_targets = [], [] if targets is not None else None
        for i, image in enumerate(images):
            height, width = image.shape[-2:]
            scale = resize_scale(int(height), int(width), self.shorter_side(), self.max_size)
            image = resize_image(self.normalize(image), scale)
            resized.append(image)
            if targets is not None and new_targets is not None:
                target = dict(targets[i])
                target["boxes"] = resize_boxes(target["boxes"], (height, width), image.shape[-2:])
                if "masks" in target:
                    target["masks"] = resize_masks(target["masks"], scale)
                new_targets.append(target)
        sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img in resized]
        return pad_batch(resized, self.size_divisible), sizes, new_targets

    def extra_repr(self) -> str:
        return f"min_size={self.min_sizes}, max_size={self.max_size}, size_divisible={self.size_divisible}"
