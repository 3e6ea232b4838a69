"""What a detector that resizes its own images (R-CNN, and torchvision's other detectors) does to them
before the backbone, and to its boxes after the heads.

Each image is normalised with the ImageNet mean and std, then resized so that its shorter side is
``min_size`` unless its longer side would exceed ``max_size`` (Ren et al. 2015, sec. 3.3: "we re-scale
the images such that their shorter side is s = 600 pixels"; FPN and torchvision use 800 / 1333), and the
resized images are padded bottom/right into one batch whose sides are multiples of ``size_divisible``.
Detections come back in the resized image's pixels and :func:`resize_boxes` maps them to the original's.
SSD instead resizes every image to one fixed size, its aspect ratio not kept (``fixed_size``; Liu et al.
2016 train and test SSD300 on 300 x 300 warps), which torchvision's transform also offers.
The conventions (bilinear resize by a recomputed scale factor, nearest for masks, float32 ratios) are
torchvision's ``GeneralizedRCNNTransform``, so that its checkpoints give the same detections.

While ``torch.onnx.export`` traces the model, the sizes are tensors instead of Python ints (an int would
be frozen into the graph at the tracing image's size): :func:`traced_resize_image` and
:func:`traced_pad_image` compute the same sizes with tensor ops, and the resized sizes handed on are the
0-d tensors of the resized image's shape.
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


def linear_taps(positions: torch.Tensor, in_size: int | torch.Tensor, out_size: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The two source cells and the upper one's weight of ``F.interpolate(mode="bilinear",
    align_corners=False)`` resizing ``in_size`` cells to ``out_size`` pixels, at output ``positions``.

    PyTorch's CPU kernel, step by step in float32: scale ``in / out``, source ``(i + 0.5) * scale - 0.5``
    clamped at 0, lower cell its integer part (at most the last), upper cell the next (or the last).

    Args:
        positions: float32 output pixel indices, broadcastable with ``out_size``.
        in_size: source cells (an int or a 0-d tensor).
        out_size: output pixels, a tensor.

    Returns:
        ``(low, high, weight)`` int64, int64, float32: the value is ``(1 - weight) * v[low] + weight * v[high]``.
    """
    scale = (in_size / out_size.to(torch.float32)).to(torch.float32)
    source = ((positions + 0.5) * scale - 0.5).clamp(min=0)
    low = source.to(torch.int64).clamp(max=in_size - 1)
    high = (low + 1).clamp(max=in_size - 1)
    return low, high, source - low.to(torch.float32)


def traced_resize_image(image: torch.Tensor, min_size: float, max_size: float) -> torch.Tensor:
    """:func:`resize_scale` + :func:`resize_image` as tensor ops, for ONNX export at any image size.

    The scale and the new sides are computed in float64, as Python computes them in the eager path
    (``min_size / min(h, w)`` and ``floor(h * scale)`` are correctly rounded in both), so the exported
    graph picks the same resized size. The bilinear resize is written out (:func:`linear_taps`, columns then
    rows, as PyTorch's kernel blends) instead of ONNX ``Resize``: onnxruntime computes the source
    coordinates as ``(i + 0.5) / (out / in)``, which moves them by ~1e-7 pixels, and on a noisy image that
    alone changes the resized pixels by ~1e-4 and the detections by a tenth of a pixel.
    """
    in_size = torch._shape_as_tensor(image)[-2:]
    sides = in_size.to(torch.float64)
    # Tensor / tensor: a number / tensor is traced as reciprocal() * number, which rounds twice.
    bounds = torch.tensor([float(min_size), float(max_size)], dtype=torch.float64, device=image.device)
    scale = (bounds / torch.stack((sides.min(), sides.max()))).min()
    new_size = torch.floor(sides * scale).to(torch.int64)
    columns = torch.arange(new_size[1], device=image.device).to(torch.float32)
    low, high, weight = linear_taps(columns, in_size[1], new_size[1])
    image = (1 - weight) * image.index_select(2, low) + weight * image.index_select(2, high)
    rows = torch.arange(new_size[0], device=image.device).to(torch.float32)
    low, high, weight = linear_taps(rows, in_size[0], new_size[0])
    weight = weight[:, None]
    return (1 - weight) * image.index_select(1, low) + weight * image.index_select(1, high)


def traced_pad_image(image: torch.Tensor, size_divisible: int) -> torch.Tensor:
    """One ``[C, H, W]`` image -> ``[1, C, H', W']`` zero-padded bottom/right to multiples of
    ``size_divisible`` (:func:`pad_batch` of one image, as tensor ops for ONNX export)."""
    size = torch._shape_as_tensor(image)[-2:]
    padding = (size + size_divisible - 1) // size_divisible * size_divisible - size
    return F.pad(image, (0, padding[1], 0, padding[0]))[None]


def resize_masks(masks: torch.Tensor, scale: float | None, size: tuple[int, int] | None = None) -> torch.Tensor:
    """``uint8 [N, H, W]`` instance masks resized like their image (nearest) -> ``uint8 [N, H', W']``: by
    ``scale``, or to ``size = (H', W')`` when given."""
    if size is not None:
        return F.interpolate(masks[:, None].float(), size=size)[:, 0].byte()
    return F.interpolate(masks[:, None].float(), scale_factor=scale, recompute_scale_factor=True)[:, 0].byte()


def resize_image_to(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``[C, H, W]`` -> ``[C, *size]``, bilinear (half-pixel centres), the aspect ratio not kept."""
    return F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]


def traced_resize_image_to(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """:func:`resize_image_to` for ONNX export from any input size, written out with :func:`linear_taps`
    (columns then rows, as PyTorch's kernel blends) for the reason :func:`traced_resize_image` gives."""
    in_size = torch._shape_as_tensor(image)[-2:]
    new_size = torch.tensor(size, dtype=torch.int64, device=image.device)
    columns = torch.arange(size[1], device=image.device).to(torch.float32)
    low, high, weight = linear_taps(columns, in_size[1], new_size[1])
    image = (1 - weight) * image.index_select(2, low) + weight * image.index_select(2, high)
    rows = torch.arange(size[0], device=image.device).to(torch.float32)
    low, high, weight = linear_taps(rows, in_size[0], new_size[0])
    weight = weight[:, None]
    return (1 - weight) * image.index_select(1, low) + weight * image.index_select(1, high)


def resize_boxes(boxes: torch.Tensor, old_size: Sequence[int | torch.Tensor],
                 new_size: Sequence[int | torch.Tensor]) -> torch.Tensor:
    """``[N, 4]`` xyxy boxes in an image of ``old_size = (H, W)`` -> the same boxes in ``new_size``.

    The sizes may be 0-d tensors (the traced sizes of an ONNX export), which stay in the graph.
    """
    old, new = _size_tensor(old_size, boxes.device), _size_tensor(new_size, boxes.device)
    ratio_h, ratio_w = (new / old).unbind()
    return boxes * torch.stack((ratio_w, ratio_h, ratio_w, ratio_h))


def _size_tensor(size: Sequence[int | torch.Tensor], device: torch.device) -> torch.Tensor:
    if isinstance(size[0], torch.Tensor):  # traced sizes: torch.tensor would freeze them into constants
        return torch.stack([v.to(device=device, dtype=torch.float32) for v in size])
    return torch.tensor([float(v) for v in size], dtype=torch.float32, device=device)


def pad_batch(images: Sequence[torch.Tensor], size_divisible: int) -> torch.Tensor:
    """Images ``[C, H_i, W_i]`` -> ``[B, C, H, W]``, zero-padded bottom/right, ``H`` and ``W`` the largest
    sides rounded up to multiples of ``size_divisible``."""
    height = int(math.ceil(max(img.shape[1] for img in images) / size_divisible) * size_divisible)
    width = int(math.ceil(max(img.shape[2] for img in images) / size_divisible) * size_divisible)
    batch = images[0].new_zeros((len(images), images[0].shape[0], height, width))
    for out, img in zip(batch, images):
        out[:, : img.shape[1], : img.shape[2]].copy_(img)
    return batch


class DetectorTransform(nn.Module):
    """Normalise, resize and batch images (and resize their targets) for a detector with ``InputPolicy("model")``.

    Args:
        min_size: target length of the shorter side; a sequence draws one per training image (multi-scale
            training, one ``torch`` uniform draw per image) and uses the last at evaluation.
        max_size: cap on the longer side.
        mean, std: per-channel normalisation of the [0, 1] RGB input.
        size_divisible: the padded batch's sides are multiples of this.
        fixed_size: ``(height, width)`` every image is resized to, its aspect ratio not kept (SSD); the
            shorter/longer side rule (``min_size``, ``max_size``) is then unused.
    """

    def __init__(self, min_size: int | Sequence[int], max_size: int, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD, size_divisible: int = 32,
                 fixed_size: tuple[int, int] | None = None) -> None:
        super().__init__()
        self.min_sizes = tuple(min_size) if isinstance(min_size, Sequence) else (min_size,)
        self.max_size = max_size
        self.mean, self.std = tuple(mean), tuple(std)
        self.size_divisible = size_divisible
        self.fixed_size = None if fixed_size is None else (int(fixed_size[0]), int(fixed_size[1]))

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
        if torch.onnx.is_in_onnx_export() and targets is None:
            return self._traced(images)
        resized, new_targets = [], [] if targets is not None else None
        for i, image in enumerate(images):
            height, width = image.shape[-2:]
            if self.fixed_size is not None:
                scale = None
                image = resize_image_to(self.normalize(image), self.fixed_size)
            else:
                scale = resize_scale(int(height), int(width), self.shorter_side(), self.max_size)
                image = resize_image(self.normalize(image), scale)
            resized.append(image)
            if targets is not None and new_targets is not None:
                target = dict(targets[i])
                target["boxes"] = resize_boxes(target["boxes"], (height, width), image.shape[-2:])
                if "masks" in target:
                    target["masks"] = resize_masks(target["masks"], scale, self.fixed_size)
                new_targets.append(target)
        sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img in resized]
        return pad_batch(resized, self.size_divisible), sizes, new_targets

    def _traced(self, images: Sequence[torch.Tensor]) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]], None]:
        """The inference path of :meth:`forward` for ONNX export: one image, sizes as traced tensors."""
        if len(images) != 1:
            raise ValueError(f"a detector with this transform exports for one image at a time, got {len(images)}")
        if self.fixed_size is not None:
            image = traced_resize_image_to(self.normalize(images[0]), self.fixed_size)
        else:
            image = traced_resize_image(self.normalize(images[0]), self.shorter_side(), self.max_size)
        return traced_pad_image(image, self.size_divisible), [(image.shape[-2], image.shape[-1])], None

    def extra_repr(self) -> str:
        if self.fixed_size is not None:
            return f"fixed_size={self.fixed_size}, size_divisible={self.size_divisible}"
        return f"min_size={self.min_sizes}, max_size={self.max_size}, size_divisible={self.size_divisible}"
