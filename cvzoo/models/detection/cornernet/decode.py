"""Corner-pair decoding (CornerNet, Law & Deng 2018, Sec. 4.2), as tensor ops that trace to ONNX.

1. Heatmap NMS: a 3x3 max pool keeps the local maxima of the sigmoid heatmaps.
2. The top ``K`` (100) top-left and bottom-right corners over all classes and positions, each moved by its
   predicted offset and scaled back to input pixels.
3. Every top-left / bottom-right pair (``K x K``) is a candidate box; it is rejected unless both corners
   have the same class, their embeddings are closer than 0.5 and the bottom-right corner is right of and
   below the top-left one, and unless both corners are peaks of the heatmap NMS. A kept pair scores the
   mean of its two corner scores.

The result has the dense-detector layout ``[B, K * K, 4 + C]`` (xyxy input pixels, then a class-score
row that is the pair's score at its class and 0 elsewhere; rejected pairs score 0), so the usual
confidence threshold + class-wise NMS (``nms_postprocess``), test-time augmentation and the graph-NMS
export apply unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cvzoo.models.detection.cornernet.loss import gather_at


def heatmap_nms(scores: torch.Tensor, kernel: int = 3) -> torch.Tensor:
    """Zero every score that is not the maximum of its ``kernel x kernel`` neighbourhood (``[B, C, H, W]``)."""
    peaks = F.max_pool2d(scores, kernel, stride=1, padding=kernel // 2)
    return scores * (peaks == scores).to(scores.dtype)


def top_corners(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, ...]:
    """Top ``k`` entries of ``[B, C, H, W]`` over classes and positions: ``(scores, classes, flat index
    y * W + x, xs, ys)``, each ``[B, k]``, ordered by their position ``(class, y, x)``.

    A map with fewer than ``k`` non-zero scores (peaks after ``heatmap_nms``) fills the rest with zeros;
    which zeros a top-k picks among equals is up to the implementation (PyTorch and onnxruntime differ).
    Zeros rank here by position (a tiny negative key, first position highest), so that the corners and
    their order are the same in every runtime; their scores stay 0.
    """
    batch, _, height, width = scores.shape
    flat = scores.flatten(1)
    numel = flat.shape[1]
    position = torch.arange(numel, device=flat.device, dtype=flat.dtype)
    keys = torch.where(flat > 0, flat, -(1 + position) / numel)
    top_keys, top = keys.topk(k, dim=1)
    # The chosen corners in position order rather than score order: scores a float rounding apart (a
    # barely trained model has many) swap ranks between runtimes, positions do not, so the decoded rows
    # keep their order in an exported graph.
    top, order = top.sort(dim=1)
    top_scores = top_keys.gather(1, order).clamp(min=0)
    classes, index, xs, ys = flat_positions(top, height, width)
    return top_scores, classes, index, xs.to(scores.dtype), ys.to(scores.dtype)


def flat_positions(flat: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, ...]:
    """Positions in a flattened ``[C, H, W]`` map -> ``(class, index within the class's map, x, y)``."""
    classes = torch.div(flat, height * width, rounding_mode="floor")
    index = flat - classes * (height * width)
    ys = torch.div(index, width, rounding_mode="floor")
    return classes, index, index - ys * width, ys


def decode_corners(
    tl_heatmap: torch.Tensor,
    br_heatmap: torch.Tensor,
    tl_embedding: torch.Tensor,
    br_embedding: torch.Tensor,
    tl_offset: torch.Tensor,
    br_offset: torch.Tensor,
    stride: int,
    k: int = 100,
    max_embedding_distance: float = 0.5,
) -> torch.Tensor:
    """Candidate boxes of every corner pair.

    Args:
        tl_heatmap, br_heatmap: ``[B, C, H, W]`` heatmap logits.
        tl_embedding, br_embedding: ``[B, D, H, W]``.
        tl_offset, br_offset: ``[B, 2, H, W]`` sub-pixel ``(x, y)`` offsets in map pixels.
        stride: input pixels per map pixel (4).
        k: corners kept per type (fewer when the map has fewer entries).
        max_embedding_distance: pairs whose embeddings are farther apart are rejected (0.5).

    Returns:
        ``[B, k * k, 4 + C]`` xyxy boxes in input pixels and one-hot pair scores (module docstring).
    """
    batch, num_classes, height, width = tl_heatmap.shape
    k = min(k, num_classes * height * width)
    tl_scores, tl_classes, tl_index, tl_xs, tl_ys = top_corners(heatmap_nms(tl_heatmap.sigmoid()), k)
    br_scores, br_classes, br_index, br_xs, br_ys = top_corners(heatmap_nms(br_heatmap.sigmoid()), k)
    tl_off, br_off = gather_at(tl_offset, tl_index), gather_at(br_offset, br_index)  # [B, k, 2]
    tl_x, tl_y = (tl_xs + tl_off[..., 0]) * stride, (tl_ys + tl_off[..., 1]) * stride
    br_x, br_y = (br_xs + br_off[..., 0]) * stride, (br_ys + br_off[..., 1]) * stride
    # Pairs: top-left along dim 1, bottom-right along dim 2.
    tl_emb, br_emb = gather_at(tl_embedding, tl_index), gather_at(br_embedding, br_index)  # [B, k, D]
    distance = (tl_emb[:, :, None, :] - br_emb[:, None, :, :]).pow(2).sum(-1).sqrt()
    # A corner suppressed by the heatmap NMS (score 0, only picked when a map has fewer than k peaks)
    # pairs with nothing.
    valid = ((tl_scores[:, :, None] > 0) & (br_scores[:, None, :] > 0)
             & (tl_classes[:, :, None] == br_classes[:, None, :]) & (distance < max_embedding_distance)
             & (br_x[:, None, :] >= tl_x[:, :, None]) & (br_y[:, None, :] >= tl_y[:, :, None]))
    scores = (tl_scores[:, :, None] + br_scores[:, None, :]) / 2 * valid.to(tl_scores.dtype)
    boxes = torch.stack((tl_x[:, :, None].expand(-1, -1, k), tl_y[:, :, None].expand(-1, -1, k),
                         br_x[:, None, :].expand(-1, k, -1), br_y[:, None, :].expand(-1, k, -1)), dim=-1)
    classes = torch.arange(num_classes, device=tl_heatmap.device)
    one_hot = (tl_classes[:, :, None, None] == classes).to(scores.dtype)  # [B, k, 1, C]
    class_scores = scores[..., None] * one_hot  # [B, k, k, C]
    return torch.cat((boxes, class_scores), dim=-1).reshape(batch, k * k, 4 + num_classes)
