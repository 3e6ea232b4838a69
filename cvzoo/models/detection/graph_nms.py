"""NMS inside an exported graph: images -> fixed-size, padded detections per image.

Contract of the graph that ``NmsDetector`` exports (``cvzoo export --nms``), for ``B`` images
(dynamic) and ``D = max_det``:

- ``boxes [B, D, 4]`` float32, xyxy in pixels of the network input (letterboxed image);
- ``scores [B, D]`` float32, by decreasing score;
- ``labels [B, D]`` int64, 0-based class ids;
- ``num_dets [B]`` int64: rows ``0 .. num_dets - 1`` are detections, the rest is padding
  (boxes 0, scores 0, labels -1).

The detections are those of ``nms_postprocess`` with the recorded ``conf``, ``iou`` and ``max_det``:
each anchor keeps its best class, scores ``> conf`` survive, class-wise NMS suppresses IoU ``> iou``,
the best ``max_det`` remain. The one difference: ``nms_postprocess`` first caps the candidates at
30000 per image, the graph does not (it matters only when more than 30000 anchors pass ``conf``).

Why the ONNX ``NonMaxSuppression`` operator: it takes a batch and a class axis, so one node serves a
dynamic batch with exact per-class IoUs (no class-offset coordinates, whose float32 rounding at large
offsets could flip decisions at the threshold), and onnxruntime implements it with the same rules as
torchvision (score ``> threshold``, suppress IoU ``> threshold``). ``BatchedNmsOp`` computes it in
PyTorch with torchvision's NMS and emits the ONNX node when exported with the TorchScript-based
exporter (``torch.onnx.export(..., dynamo=False)``); the rest is plain tensor ops.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torchvision
from torch import nn

from cvzoo.models.detection.base import Detections
from cvzoo.models.detection.export_check import TIE_TOLERANCE, candidate_errors, candidates_of
from cvzoo.ops.boxes import box_iou

OUTPUT_NAMES = ("boxes", "scores", "labels", "num_dets")
# Keys of the ONNX metadata that records the settings baked into the graph.
META_NMS, META_CONF, META_IOU, META_MAX_DET = "cvzoo_nms", "cvzoo_nms_conf", "cvzoo_nms_iou", "cvzoo_nms_max_det"


class BatchedNmsOp(torch.autograd.Function):
    """ONNX ``NonMaxSuppression``: boxes ``[B, N, 4]`` xyxy, scores ``[B, C, N]`` -> selected ``[M, 3]``.

    Each selected row is ``(image, class, box index)``; per image and class, boxes with score
    ``> conf`` are kept greedily by decreasing score, suppressing IoU ``> iou``, at most
    ``max_per_class`` of them.
    """

    @staticmethod
    def forward(ctx: Any, boxes: torch.Tensor, scores: torch.Tensor, max_per_class: int, iou: float,
                conf: float) -> torch.Tensor:
        rows = []
        for image in range(scores.shape[0]):  # per image, the same batched_nms call as nms_postprocess
            cls, index = (scores[image] > conf).nonzero(as_tuple=True)
            kept = torchvision.ops.batched_nms(boxes[image, index], scores[image, cls, index], cls, iou)
            # Keep the first ``max_per_class`` of every class: sort by class (stable, so each class stays
            # by decreasing score) and rank within the class.
            kept = kept[torch.sort(cls[kept], stable=True).indices]
            rank = torch.arange(len(kept), device=kept.device) - torch.searchsorted(cls[kept], cls[kept])
            kept = kept[rank < max_per_class]
            rows.append(torch.stack([torch.full_like(kept, image), cls[kept], index[kept]], dim=1))
        return torch.cat(rows) if rows else torch.zeros(0, 3, dtype=torch.int64, device=scores.device)

    @staticmethod
    def symbolic(g: Any, boxes: Any, scores: Any, max_per_class: int, iou: float, conf: float) -> Any:
        # center_point_box=0: corners as [y1, x1, y2, x2]; the IoU is symmetric in x and y, so xyxy works.
        return g.op(
            "NonMaxSuppression", boxes, scores,
            g.op("Constant", value_t=torch.tensor([max_per_class], dtype=torch.int64)),
            g.op("Constant", value_t=torch.tensor([iou], dtype=torch.float32)),
            g.op("Constant", value_t=torch.tensor([conf], dtype=torch.float32)),
            center_point_box_i=0,
        )


def padded_nms(predictions: torch.Tensor, conf: float, iou: float, max_det: int) -> tuple[torch.Tensor, ...]:
    """Decoded predictions ``[B, A, 4 + K]`` -> ``(boxes [B, D, 4], scores [B, D], labels [B, D], num_dets [B])``.

    Only shape-generic tensor ops (no Python loop over images or data-dependent ``int``), so that the
    trace stays valid for any batch size.
    """
    boxes, class_scores = predictions[..., :4], predictions[..., 4:]
    scores, labels = class_scores.max(dim=-1)  # [B, A]: the best class of each anchor, as nms_postprocess
    classes = torch.arange(class_scores.shape[-1], device=labels.device)
    # [B, K, A]: an anchor competes only in its best class; -1 is below every threshold (conf >= 0).
    per_class = torch.where(labels.unsqueeze(1) == classes.view(1, -1, 1), scores.unsqueeze(1), -1.0)
    selected = BatchedNmsOp.apply(boxes, per_class, max_det, iou, conf)  # [M, 3]
    # Flat anchor index into [B * A]; a dense [B, M] table of the selected scores by image (-1 where a
    # row belongs to another image); max_det padding columns so that top-k always has enough entries.
    # Batch-sized tensors are computed from the data (``x * 0 + c``): the tracer freezes
    # ``torch.arange(batch)``, and the exporter constant-folds ``ones_like`` / ``full_like``, to the
    # example's batch size, which would break the dynamic batch.
    flat = selected[:, 0] * scores.shape[1] + selected[:, 2]
    image_ids = (labels[:, 0] * 0 + 1).cumsum(dim=0) - 1  # [B]
    table = torch.where(selected[:, 0].unsqueeze(0) == image_ids.unsqueeze(1), scores.reshape(-1)[flat].unsqueeze(0), -1.0)
    padding = (labels[:, :1] * 0 - 1).to(scores.dtype).expand(-1, max_det)
    top_scores, top = torch.cat([table, padding], dim=1).topk(max_det, dim=1)  # [B, D], by decreasing score
    flat = torch.cat([flat, torch.zeros(max_det, dtype=flat.dtype, device=flat.device)])[top]
    valid = top_scores >= 0
    out_boxes = torch.where(valid.unsqueeze(-1), boxes.reshape(-1, 4)[flat], 0.0)
    out_scores = torch.where(valid, top_scores, 0.0)
    out_labels = torch.where(valid, labels.reshape(-1)[flat], -1)
    return out_boxes, out_scores, out_labels, valid.sum(dim=1)


class NmsDetector(nn.Module):
    """Export wrapper: images -> padded detections after NMS (see the module docstring for the contract)."""

    output_names = OUTPUT_NAMES
    # The TorchScript-based exporter: the NonMaxSuppression node comes from BatchedNmsOp.symbolic, which only
    # that exporter calls; torch.export traces into torchvision's NMS instead, whose output size depends on
    # the data (cvzoo.export.onnx.ONNX_EXPORTERS).
    onnx_exporter = "torchscript"

    def __init__(self, model: nn.Module, conf: float = 0.25, iou: float = 0.7, max_det: int = 300) -> None:
        super().__init__()
        if not 0 <= conf < 1 or not 0 < iou <= 1 or max_det < 1:
            raise ValueError(f"NMS settings need 0 <= conf < 1, 0 < iou <= 1, max_det >= 1; got {conf}, {iou}, {max_det}")
        self.model, self.conf, self.iou, self.max_det = model, float(conf), float(iou), int(max_det)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return padded_nms(self.model.decode(self.model(images)), self.conf, self.iou, self.max_det)

    def metadata(self) -> dict[str, str]:
        """What to record in the exported file so that a reader knows the outputs and their settings."""
        return {META_NMS: "1", META_CONF: repr(self.conf), META_IOU: repr(self.iou), META_MAX_DET: str(self.max_det)}

    @torch.no_grad()
    def parity_difference(self, images: torch.Tensor, expected: Sequence[torch.Tensor], got: Sequence[Any]) -> float:
        """The export check's measure: how far another runtime's padded outputs ``got`` are from a valid
        result for ``images``, given PyTorch's ``expected``.

        Near-tied candidates make element-wise comparison meaningless: scores closer than the float
        error between two runtimes (about 1e-7 relative) may swap ranks, and NMS then keeps the other
        of two overlapping boxes, which can change what that box suppresses in turn, and so the count
        (a barely trained model, whose candidates are nearly all alike, does this). So the check is:
        every detection of ``got`` is one of the model's candidates (box, score, and a class tied for the
        candidate's best score: ``export_check.candidate_errors``), and ``got`` is a greedy NMS result of
        those candidates (``nms_violation``); where the counts agree and the decoding itself has one result,
        the sorted scores agree too. A decoder that selects its rows by comparing scores (CornerNet's top-k
        corners) may decode other candidates in another runtime: its ``export_candidates`` says which it may
        and which it must (``cvzoo.models.detection.export_check``), and only the latter must be kept or
        suppressed. Exact equality of the NMS itself is tested on models without ties
        (``tests/models/detection/test_graph_nms.py``).
        """
        candidates = candidates_of(self.model, self.model(images))
        worst = 0.0
        for (pred, required), a, b in zip(candidates, unpad_detections([torch.as_tensor(t) for t in expected]),
                                          unpad_detections([torch.as_tensor(t) for t in got])):
            if len(a) == len(b) and len(b) and bool(required.all()):
                sorted_a, sorted_b = a.scores.sort(descending=True).values, b.scores.sort(descending=True).values
                worst = max(worst, float((sorted_a - sorted_b).abs().max()))
            if len(b):
                worst = max(worst, float(candidate_errors(pred, b)[0].max()))
            worst = max(worst, nms_violation(pred, b, self.conf, self.iou, self.max_det, required=required))
        return worst


def nms_violation(predictions: torch.Tensor, kept: Detections, conf: float, iou: float, max_det: int,
                  tol: float = TIE_TOLERANCE, required: torch.Tensor | None = None) -> float:
    """0 when ``kept`` is a greedy NMS result of the candidates ``predictions [A, 4 + K]`` (each anchor in
    its best class) with these settings, up to ``tol`` on scores and IoUs; ``inf`` otherwise.

    Greedy NMS's output is characterised by two conditions, which hold whichever of two tied boxes it
    visited first: no two kept boxes of a class overlap by more than ``iou``, and every candidate above
    ``conf`` that was not kept is suppressed by a kept box of its class that scores at least as high
    (or was cut by ``max_det``, when ``max_det`` boxes are kept and it scores no higher than the last).
    ``required [A]`` (default: all) marks the candidates that were certainly decoded; the others may not
    have been there to keep (``export_check``), so they need no reason to be missing.
    """
    scores = predictions[:, 4:].max(dim=-1).values
    boxes = predictions[:, :4]
    same_class = kept.labels[:, None] == kept.labels[None, :]
    overlap = box_iou(kept.boxes, kept.boxes).fill_diagonal_(0)
    if bool((same_class & (overlap > iou + tol)).any()):
        return float("inf")
    must_account = scores > conf + tol
    if required is not None:
        must_account &= required
    if not len(kept) or not len(predictions):
        return float("inf") if bool(must_account.any()) or len(kept) else 0.0
    # The candidate each kept detection is (the nearest in box and score: another runtime's boxes differ by
    # its float error, which the caller measures) needs no reason.
    nearest = torch.maximum((kept.boxes[:, None] - boxes[None]).abs().amax(dim=-1),
                            (kept.scores[:, None] - scores[None]).abs()).argmin(dim=1)
    pending = must_account.clone()
    pending[nearest] = False
    if not bool(pending.any()):
        return 0.0
    cand_boxes, cand_scores = boxes[pending], scores[pending]
    # A candidate competes in its best class; where classes tie (a barely trained model scores them all
    # alike) another runtime may put it in any of the tied ones, and a kept box of that class suppresses it.
    class_ok = predictions[pending][:, 4:][:, kept.labels.long()] >= cand_scores[:, None] - tol  # [P, D]
    suppressed = ((box_iou(cand_boxes, kept.boxes) > iou - tol) & class_ok
                  & (kept.scores[None] >= cand_scores[:, None] - tol)).any(dim=1)
    if len(kept) >= max_det:
        suppressed |= cand_scores <= kept.scores.min() + tol
    return 0.0 if bool(suppressed.all()) else float("inf")


def unpad_detections(
    outputs: Mapping[str, torch.Tensor] | Sequence[torch.Tensor],
    metadata: Mapping[str, str] | None = None,
    conf: float | None = None,
    iou: float | None = None,
    max_det: int | None = None,
    classes: Sequence[int] | None = None,
) -> list[Detections]:
    """Read an NMS graph's padded outputs as per-image Detections (no second NMS).

    The graph's thresholds are fixed; ``conf``/``iou``/``max_det`` may only ask for what it can give:
    a higher ``conf`` or a lower ``max_det`` filter its detections (boxes that the now-dropped ones
    suppressed stay suppressed), ``classes`` keeps the listed classes. Anything else is a ValueError.
    """
    if not isinstance(outputs, Mapping):
        outputs = dict(zip(OUTPUT_NAMES, outputs))
    baked_conf, baked_iou, baked_max = _baked(metadata or {})
    if iou is not None and baked_iou is not None and abs(iou - baked_iou) > 1e-9:
        raise ValueError(f"this ONNX file has NMS with iou={baked_iou} built in; re-export with --iou {iou} "
                         "(or without --nms) to use another IoU threshold")
    if conf is not None and baked_conf is not None and conf < baked_conf - 1e-9:
        raise ValueError(f"this ONNX file has NMS with conf={baked_conf} built in; re-export with --conf {conf} "
                         "(or without --nms) for a lower confidence threshold")
    if max_det is not None and baked_max is not None and max_det > baked_max:
        raise ValueError(f"this ONNX file keeps at most {baked_max} detections per image; re-export with "
                         f"--max-det {max_det}")
    results = []
    for boxes, scores, labels, count in zip(outputs["boxes"], outputs["scores"], outputs["labels"], outputs["num_dets"]):
        n = int(count)
        boxes, scores, labels = boxes[:n].float(), scores[:n].float(), labels[:n].long()
        keep = scores > (conf if conf is not None else -1.0)
        if classes is not None:
            keep &= torch.isin(labels, torch.as_tensor(list(classes), device=labels.device))
        boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        if max_det is not None:
            boxes, scores, labels = boxes[:max_det], scores[:max_det], labels[:max_det]
        results.append(Detections(boxes, scores, labels))
    return results


def detections_difference(expected: Detections, got: Detections) -> tuple[float, float]:
    """``(largest box difference, largest score difference)`` between two detection sets of one image,
    each detection matched to the same-label detection with the nearest box; ``inf`` when the counts
    differ or no one-to-one matching exists.

    Order-insensitive on purpose: two scores closer than the float error between two runtimes (about
    1e-5) may swap ranks, which shifts every padded row after them without being a real difference.
    """
    if len(expected) != len(got):
        return float("inf"), float("inf")
    if not len(expected):
        return 0.0, 0.0
    distance = (expected.boxes[:, None].float() - got.boxes[None].float()).abs().amax(dim=-1)  # [N, N]
    distance[expected.labels[:, None] != got.labels[None]] = float("inf")
    nearest = distance.argmin(dim=1)
    if len(set(nearest.tolist())) != len(expected):
        return float("inf"), float("inf")
    box = float(distance.min(dim=1).values.max())
    return box, float((expected.scores.float() - got.scores[nearest].float()).abs().max())


def _baked(metadata: Mapping[str, str]) -> tuple[float | None, float | None, int | None]:
    if metadata.get(META_NMS) != "1":
        return None, None, None
    return float(metadata[META_CONF]), float(metadata[META_IOU]), int(metadata[META_MAX_DET])
