"""How ``cvzoo export`` checks a detector's graph where its outputs cannot be compared element-wise.

A decoder that *selects* by comparing data values (CornerNet's top-k of heatmap peaks; NMS) can give
another result in another runtime whenever two compared values are closer than the runtimes' float
error (about 1e-6): the other side of a tie is picked, and every row after it moves. A barely trained
model, whose scores are nearly all alike, has many such ties. Both results are correct decodings, so the
check does not ask "the same rows" but "rows PyTorch's maps allow":

- a detector's ``export_candidates(outputs, tol)`` gives, per image, every decoded row a correct runtime
  *may* give (each comparison within ``tol`` of flipping taken either way) and which of them it *must*
  give (those whose comparisons all hold with ``tol`` to spare); a decoder that compares nothing
  (YOLO's grid) has one result: its rows, all required (:func:`candidates_of`);
- each row the other runtime gave is matched to its nearest candidate (:func:`candidate_errors`); the
  largest distance is the difference the check reports, and a required candidate left unmatched, or two
  rows on one candidate, is an infinite one (:func:`decoded_rows_difference`).

``graph_nms.NmsDetector.parity_difference`` adds the NMS conditions on top (``nms_violation``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cvzoo.models.detection.base import Detections

# How close two compared values may be before another runtime may order them the other way: well above
# the float error between PyTorch and onnxruntime on the same maps (~1e-6 on scores), well below any
# difference a wrong graph makes.
TIE_TOLERANCE = 1e-4


def candidates_of(model: nn.Module, outputs: Any,
                  tol: float = TIE_TOLERANCE) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per image ``(candidates [A, 4 + K], required [A] bool)`` of ``model``'s decoding of ``outputs``: its
    ``export_candidates`` where it has one, else its decoded rows, all required."""
    if hasattr(model, "export_candidates"):
        return model.export_candidates(outputs, tol)
    return [(rows, torch.ones(len(rows), dtype=torch.bool, device=rows.device)) for rows in model.decode(outputs)]


def candidate_errors(candidates: torch.Tensor, found: Detections) -> tuple[torch.Tensor, torch.Tensor]:
    """For each detection of ``found``, ``(error, index)`` of its nearest row of ``candidates [A, 4 + K]``.

    The error is the largest of the box difference (pixels), the score difference at the detection's class
    and how far that class scores below the candidate's best: a detection may carry any class tied for the
    candidate's best (saturated sigmoids give several classes 1.0, and runtimes break such ties
    differently), and any other class is as wrong as its score gap. ``inf`` errors where there are no
    candidates.
    """
    if not len(candidates):
        return torch.full((len(found),), float("inf")), torch.zeros(len(found), dtype=torch.long)
    class_scores = candidates[:, 4:][:, found.labels.long()].T  # [D, A]: each detection's class, every candidate
    best = candidates[:, 4:].max(dim=-1).values[None]  # [1, A]
    error = torch.stack([(found.boxes[:, None] - candidates[None, :, :4]).abs().amax(dim=-1),
                         (found.scores[:, None] - class_scores).abs(), best - class_scores]).amax(dim=0)
    values, index = error.min(dim=1)
    return values, index


def rows_as_detections(rows: torch.Tensor) -> Detections:
    """Decoded rows ``[A, 4 + K]`` as detections: each row's best class, rows scoring 0 (none) left out."""
    scores, labels = rows[:, 4:].max(dim=-1)
    keep = scores > 0
    return Detections(rows[keep, :4], scores[keep], labels[keep])


def decoded_rows_difference(candidates: torch.Tensor, required: torch.Tensor, rows: torch.Tensor) -> float:
    """How far another runtime's decoded ``rows [A', 4 + K]`` of one image are from a correct decoding:
    the largest distance of a detection among them to its nearest candidate (:func:`candidate_errors`),
    ``inf`` when a required candidate is no detection's nearest or two detections share one. Row order
    and the rows that score 0 (no detection) do not count."""
    found = rows_as_detections(rows.float())
    if not len(found) or not len(candidates):
        return 0.0 if not len(found) and not bool(required.any()) else float("inf")
    error, nearest = candidate_errors(candidates, found)
    if len(set(nearest.tolist())) != len(found):
        return float("inf")
    matched = torch.zeros(len(candidates), dtype=torch.bool, device=candidates.device)
    matched[nearest] = True
    if bool((required & ~matched).any()):
        return float("inf")
    return float(error.max())
