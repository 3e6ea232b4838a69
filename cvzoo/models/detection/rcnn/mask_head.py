"""The mask branch of Mask R-CNN (He et al. 2017, "Mask R-CNN", sec. 3 and fig. 4).

Each positive proposal (training) or detection (inference) is pooled to ``[256, 14, 14]`` from its
pyramid level, goes through four 3x3 convs and a 2x2 stride-2 deconvolution to ``[256, 28, 28]``, and a
1x1 conv predicts one 28 x 28 mask logit map per class. Only the map of the box's class is used: the loss
is the per-pixel binary cross-entropy against the ground-truth mask cropped and resized to the proposal
(RoIAlign of the mask, 28 x 28), which decouples masks from classification (sec. 3, "Mask
Representation"). At inference the sigmoid of the predicted class's map is pasted into the image at the
detected box, resized bilinearly.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import roi_align

from cvzoo.layers import ConvNormAct
from cvzoo.models.detection.rcnn.poolers import MultiScaleRoIAlign
from cvzoo.models.detection.transform import linear_taps


class MaskHead(nn.Module):
    """``num_convs`` 3x3 conv (+ norm) + ReLU of width ``channels`` (He et al. fig. 4, right; the v2 recipe
    of Li et al. 2021 adds batch norm)."""

    def __init__(self, in_channels: int, channels: int = 256, num_convs: int = 4,
                 norm_layer: type[nn.Module] | None = None) -> None:
        super().__init__()
        widths = [in_channels] + [channels] * num_convs
        self.convs = nn.Sequential(*(ConvNormAct(a, b, 3, norm_layer=norm_layer) for a, b in zip(widths, widths[1:])))
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, C, 14, 14]`` -> ``[N, channels, 14, 14]``."""
        return self.convs(x)


class MaskPredictor(nn.Module):
    """2x2 stride-2 deconvolution + ReLU, then a 1x1 conv to one mask logit map per head class (``K + 1``)."""

    def __init__(self, in_channels: int, channels: int, num_classes: int) -> None:
        super().__init__()
        self.upsample = nn.ConvTranspose2d(in_channels, channels, 2, stride=2)
        self.logits = nn.Conv2d(channels, num_classes + 1, 1)
        for module in (self.upsample, self.logits):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, C, 14, 14]`` -> ``[N, K + 1, 28, 28]`` logits."""
        return self.logits(F.relu(self.upsample(x)))


def mask_targets(gt_masks: torch.Tensor, boxes: torch.Tensor, matched: torch.Tensor, size: int) -> torch.Tensor:
    """Each box's ground-truth mask cropped to the box and resized to ``size x size`` (RoIAlign, fractional).

    Args:
        gt_masks: ``uint8 [G, H, W]`` one image's instance masks.
        boxes: ``[N, 4]`` xyxy proposals in the masks' pixels.
        matched: ``[N]`` index of each proposal's ground truth.
    """
    rois = torch.cat((matched.to(boxes)[:, None], boxes), dim=1)
    return roi_align(gt_masks[:, None].to(rois), rois, (size, size), 1.0)[:, 0]


def mask_loss(mask_logits: torch.Tensor, boxes: Sequence[torch.Tensor], matched: Sequence[torch.Tensor],
              gt_masks: Sequence[torch.Tensor], gt_labels: Sequence[torch.Tensor]) -> torch.Tensor:
    """Mean per-pixel BCE of the ground-truth class's map (0 with a gradient when there is no positive).

    Args:
        mask_logits: ``[sum N_i, K + 1, M, M]`` for the positive proposals of every image.
        boxes, matched: per image the positives' boxes and ground-truth indices.
        gt_masks, gt_labels: per image ``uint8 [G_i, H, W]`` masks and head labels ``[G_i]`` (1..K).
    """
    size = mask_logits.shape[-1]
    labels = torch.cat([lab[m] for lab, m in zip(gt_labels, matched)])
    targets = torch.cat([mask_targets(g, b, m, size) for g, b, m in zip(gt_masks, boxes, matched)])
    if targets.numel() == 0:
        return mask_logits.sum() * 0
    return F.binary_cross_entropy_with_logits(mask_logits[torch.arange(len(labels), device=labels.device), labels],
                                              targets)


def expand_boxes(boxes: torch.Tensor, scale: float) -> torch.Tensor:
    """``[N, 4]`` xyxy boxes scaled by ``scale`` about their centres."""
    half_w = (boxes[:, 2] - boxes[:, 0]) * 0.5 * scale
    half_h = (boxes[:, 3] - boxes[:, 1]) * 0.5 * scale
    centre_x = (boxes[:, 2] + boxes[:, 0]) * 0.5
    centre_y = (boxes[:, 3] + boxes[:, 1]) * 0.5
    return torch.stack((centre_x - half_w, centre_y - half_h, centre_x + half_w, centre_y + half_h), dim=1)


def paste_mask(mask: torch.Tensor, box: Sequence[int], height: int, width: int) -> torch.Tensor:
    """One ``[M, M]`` mask resized (bilinear) to the integer box ``(x1, y1, x2, y2)`` inclusive and placed in
    a zero ``[height, width]`` image (clipped at the borders)."""
    x1, y1, x2, y2 = box
    box_w, box_h = max(x2 - x1 + 1, 1), max(y2 - y1 + 1, 1)
    resized = F.interpolate(mask[None, None], size=(box_h, box_w), mode="bilinear", align_corners=False)[0, 0]
    image = mask.new_zeros((height, width))
    left, top = max(x1, 0), max(y1, 0)
    right, bottom = min(x2 + 1, width), min(y2 + 1, height)
    if right > left and bottom > top:
        image[top:bottom, left:right] = resized[top - y1:bottom - y1, left - x1:right - x1]
    return image


def paste_masks(masks: torch.Tensor, boxes: torch.Tensor, image_size: tuple[int, int], padding: int = 1) -> torch.Tensor:
    """``[N, M, M]`` box-relative masks -> ``[N, H, W]`` in the image at ``boxes`` (xyxy pixels).

    The masks get a ``padding``-pixel zero border and the boxes grow by the same factor ``(M + 2p) / M``,
    so that the bilinear resize fades to 0 at the box's edge instead of stretching the border pixels (the
    convention of Detectron and torchvision; boxes are then truncated to whole pixels).
    """
    if torch.onnx.is_in_onnx_export():
        return traced_paste_masks(masks, boxes, image_size, padding)
    height, width = image_size
    if len(masks) == 0:
        return masks.new_zeros((0, height, width))
    size = masks.shape[-1]
    padded = F.pad(masks, (padding,) * 4)
    int_boxes = expand_boxes(boxes, (size + 2 * padding) / size).to(torch.int64).tolist()
    return torch.stack([paste_mask(m, b, height, width) for m, b in zip(padded, int_boxes)])


def _bilinear_weights(start: torch.Tensor, end: torch.Tensor, mask_size: int, image_side: torch.Tensor | int
                      ) -> torch.Tensor:
    """Along one axis: ``[N, image_side, mask_size]`` weights that resize each box's ``mask_size`` cells to its
    integer extent ``start .. end`` (inclusive) as ``F.interpolate(..., mode="bilinear", align_corners=False)``
    does (:func:`linear_taps`: two cells per pixel), with zero rows for the image pixels outside the box.

    Args:
        start, end: ``[N]`` int64 first and last pixel of each box (``end < start``: an empty box).
        mask_size: cells of the (padded) mask.
        image_side: pixels of the image along the axis (a traced 0-d tensor in an export).
    """
    length = (end - start + 1).clamp(min=1)
    pixel = torch.arange(image_side, device=start.device)[None] - start[:, None]  # index inside the box
    inside = (pixel >= 0) & (pixel <= (end - start)[:, None])
    low, high, weight = linear_taps(pixel.to(torch.float32), mask_size, length[:, None])
    weight = weight[..., None]
    cells = torch.arange(mask_size, device=start.device)
    weights = (cells == low[..., None]) * (1 - weight) + (cells == high[..., None]) * weight
    return weights * inside[..., None]


def traced_paste_masks(masks: torch.Tensor, boxes: torch.Tensor, image_size: tuple, padding: int = 1) -> torch.Tensor:
    """:func:`paste_masks` as tensor ops for ONNX export: no loop over the detections, no ``tolist``.

    The bilinear resize of each padded mask to its integer box and its placement in the image are one
    product ``W_y @ mask @ W_x^T`` (:func:`_bilinear_weights`: the cells and weights :func:`paste_mask`'s
    ``F.interpolate`` reads, zero outside the box), which agrees with the eager paste up to float rounding
    and needs no ``[N, H, W]`` index tensors. ``image_size`` may hold traced 0-d tensors.
    """
    height, width = image_size
    size = masks.shape[-1]
    padded = F.pad(masks, (padding,) * 4)
    cells = size + 2 * padding
    x1, y1, x2, y2 = expand_boxes(boxes, cells / size).to(torch.int64).unbind(1)
    rows = _bilinear_weights(y1, y2, cells, height)  # [N, H, cells]
    cols = _bilinear_weights(x1, x2, cells, width)  # [N, W, cells]
    return rows @ padded @ cols.transpose(1, 2)


class MaskBranch(nn.Module):
    """Pooler (14 x 14) + :class:`MaskHead` + :class:`MaskPredictor`, with the training loss and inference.

    Args:
        pool: the mask RoIAlign.
        head: the conv stack.
        predictor: deconv + per-class logits.
    """

    def __init__(self, pool: MultiScaleRoIAlign, head: MaskHead, predictor: MaskPredictor) -> None:
        super().__init__()
        self.pool, self.head, self.predictor = pool, head, predictor

    def logits(self, features: Sequence[torch.Tensor], boxes: Sequence[torch.Tensor],
               image_sizes: Sequence[tuple[int, int]]) -> torch.Tensor:
        """``[sum N_i, K + 1, 28, 28]`` mask logits of per-image boxes."""
        return self.predictor(self.head(self.pool(features, boxes, image_sizes)))

    def loss(self, features: Sequence[torch.Tensor], boxes: Sequence[torch.Tensor], matched: Sequence[torch.Tensor],
             image_sizes: Sequence[tuple[int, int]], targets: Sequence[dict[str, torch.Tensor]]) -> torch.Tensor:
        """``loss_mask`` of the positive proposals ``boxes`` matched to ground truths ``matched``; targets carry
        ``masks`` (resized-image pixels) and head ``labels``."""
        logits = self.logits(features, boxes, image_sizes)
        return mask_loss(logits, boxes, matched, [t["masks"] for t in targets], [t["labels"] for t in targets])

    def predict(self, features: Sequence[torch.Tensor], boxes: Sequence[torch.Tensor], labels: Sequence[torch.Tensor],
                image_sizes: Sequence[tuple[int, int]]) -> list[torch.Tensor]:
        """Per image ``[D_i, 28, 28]`` probabilities of each detection's class (head labels)."""
        probs = self.logits(features, boxes, image_sizes).sigmoid()
        all_labels = torch.cat(list(labels))
        # A gather, not probs[arange(len(labels)), labels]: traced for ONNX export, len() is a constant.
        size = probs.shape[-1]
        probs = probs.gather(1, all_labels[:, None, None, None].expand(-1, 1, size, size))[:, 0]
        if len(boxes) == 1:  # no split (its count would also be a constant in a trace)
            return [probs]
        return list(probs.split([len(b) for b in boxes]))

