"""Detection evaluator: accumulate predictions per batch, then COCO + VOC numbers and a class table.

Predictions and targets use the canonical cvzoo types: boxes ``xyxy`` in absolute pixels, labels
0-based. One evaluator produces

* the 12 COCO numbers (box AP/AR, computed in memory with :mod:`cvzoo.metrics.coco`),
* the VOC mAP at IoU 0.5 (all-point, continuous coordinates: ``pixel_offset=0``),
* a per-class table (images, instances, P, R, mAP50, mAP50-95) with P and R taken at the confidence
  that maximises the class-averaged F1,
* P/R/F1-versus-confidence curves, PR curves and a confusion matrix with a background class.

For data-parallel evaluation, gather :meth:`DetectionEvaluator.state` from every rank and
:meth:`merge` them into one evaluator before :meth:`compute`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from cvzoo.metrics.coco import CocoEvaluation, CocoParams, evaluate_arrays, summarize
from cvzoo.metrics.coco_matching import DetectionArrays, GroundTruthArrays
from cvzoo.metrics.detection_confusion import detection_confusion_matrix
from cvzoo.metrics.detection_curves import DetectionCurves, confidence_curves
from cvzoo.metrics.voc import voc_eval_arrays

_FIELDS = {
    "gt_image": np.int64, "gt_boxes": np.float64, "gt_labels": np.int64, "gt_difficult": bool,
    "gt_crowd": bool, "det_image": np.int64, "det_boxes": np.float64, "det_scores": np.float64,
    "det_labels": np.int64,
}


class DetectionInputError(ValueError):
    """A prediction or target passed to :class:`DetectionEvaluator` is malformed."""


def _get(record: Any, key: str, where: str, required: bool = True) -> np.ndarray | None:
    value = record.get(key) if isinstance(record, Mapping) else getattr(record, key, None)
    if value is None:
        if required:
            raise DetectionInputError(f"{where}: missing {key!r}")
        return None
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


class DetectionEvaluator:
    """Accumulates detections and ground truth, image by image.

    Args:
        class_names: the ``K`` class names; labels are indices into it.
        conf_matrix_iou: IoU threshold of the confusion matrix.
        conf_matrix_conf: confidence threshold of the confusion matrix.

    Example:
        >>> import torch
        >>> ev = DetectionEvaluator(["cat", "dog"])
        >>> ev.update([{"boxes": torch.tensor([[0.0, 0, 10, 10]]), "scores": torch.tensor([0.9]),
        ...             "labels": torch.tensor([1])}],
        ...           [{"boxes": torch.tensor([[0.0, 0, 10, 10]]), "labels": torch.tensor([1])}])
        >>> round(ev.compute()["AP50"], 3)
        1.0
    """

    def __init__(self, class_names: Sequence[str], conf_matrix_iou: float = 0.45, conf_matrix_conf: float = 0.25):
        if len(class_names) == 0:
            raise ValueError("class_names must not be empty")
        self.class_names = tuple(str(c) for c in class_names)
        self.conf_matrix_iou = conf_matrix_iou
        self.conf_matrix_conf = conf_matrix_conf
        self.reset()

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def reset(self) -> None:
        """Forget everything accumulated so far."""
        self.num_images = 0
        self._parts: dict[str, list[np.ndarray]] = {name: [] for name in _FIELDS}
        self._cache: dict[str, Any] = {}

    def _check_labels(self, labels: np.ndarray, where: str) -> np.ndarray:
        labels = labels.reshape(-1).astype(np.int64)
        if labels.size and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise DetectionInputError(f"{where}: labels must be in [0, {self.num_classes}), "
                                      f"got range [{labels.min()}, {labels.max()}]")
        return labels

    def _boxes(self, boxes: np.ndarray, n: int, where: str) -> np.ndarray:
        boxes = boxes.astype(np.float64)
        if boxes.size == 0:
            boxes = boxes.reshape(0, 4)
        if boxes.ndim != 2 or boxes.shape[1] != 4 or boxes.shape[0] != n:
            raise DetectionInputError(f"{where}: boxes must be [{n}, 4] xyxy, got {list(boxes.shape)}")
        return boxes

    def update(self, predictions: Sequence[Any], targets: Sequence[Any]) -> None:
        """Add one batch.

        Args:
            predictions: per image, ``{"boxes": [N, 4] xyxy, "scores": [N], "labels": [N]}`` (dicts
                or objects with these attributes; torch tensors or numpy).
            targets: per image, ``{"boxes": [M, 4] xyxy, "labels": [M]}`` with optional
                ``"difficult"`` and ``"iscrowd"`` ``[M]`` flags (both are ignored regions).
        """
        if len(predictions) != len(targets):
            raise DetectionInputError(f"got {len(predictions)} predictions for {len(targets)} targets")
        for offset, (pred, target) in enumerate(zip(predictions, targets)):
            image = self.num_images + offset
            where = f"target of image {image}"
            labels = self._check_labels(_get(target, "labels", where), where)
            boxes = self._boxes(_get(target, "boxes", where), labels.size, where)
            flags = {}
            for key in ("difficult", "iscrowd"):
                value = _get(target, key, where, required=False)
                flags[key] = (np.zeros(labels.size, bool) if value is None
                              else value.reshape(-1).astype(bool))
                if flags[key].size != labels.size:
                    raise DetectionInputError(f"{where}: {key!r} has {flags[key].size} entries, "
                                              f"expected {labels.size}")
            where = f"prediction of image {image}"
            d_labels = self._check_labels(_get(pred, "labels", where), where)
            d_scores = _get(pred, "scores", where).reshape(-1).astype(np.float64)
            d_boxes = self._boxes(_get(pred, "boxes", where), d_labels.size, where)
            if d_scores.size != d_labels.size:
                raise DetectionInputError(f"{where}: {d_scores.size} scores for {d_labels.size} labels")
            for name, value in (
                ("gt_image", np.full(labels.size, image)), ("gt_boxes", boxes), ("gt_labels", labels),
                ("gt_difficult", flags["difficult"]), ("gt_crowd", flags["iscrowd"]),
                ("det_image", np.full(d_labels.size, image)), ("det_boxes", d_boxes),
                ("det_scores", d_scores), ("det_labels", d_labels),
            ):
                self._parts[name].append(value)
        self.num_images += len(targets)
        self._cache.clear()

    def state(self) -> dict[str, Any]:
        """Everything accumulated, as plain numpy arrays (picklable, for ``all_gather_object``)."""
        out: dict[str, Any] = {"num_images": self.num_images, "class_names": self.class_names}
        for name, dtype in _FIELDS.items():
            parts = self._parts[name]
            if parts:
                out[name] = np.concatenate(parts).astype(dtype)
            else:
                out[name] = np.zeros((0, 4) if name.endswith("boxes") else 0, dtype=dtype)
        return out

    def merge(self, other: DetectionEvaluator | Mapping[str, Any]) -> None:
        """Append the images of another evaluator (or of its :meth:`state`) after this one's."""
        state = other.state() if isinstance(other, DetectionEvaluator) else other
        if tuple(state["class_names"]) != self.class_names:
            raise ValueError("cannot merge evaluators with different class_names")
        for name in _FIELDS:
            value = np.asarray(state[name])
            if name.endswith("_image"):
                value = value + self.num_images
            self._parts[name].append(value)
        self.num_images += int(state["num_images"])
        self._cache.clear()

    # ------------------------------------------------------------------ results
    def _coco(self) -> tuple[CocoEvaluation, GroundTruthArrays, dict[str, np.ndarray]]:
        if "coco" not in self._cache:
            s = self.state()
            gxy = s["gt_boxes"]
            g_wh = np.stack([gxy[:, 0], gxy[:, 1], gxy[:, 2] - gxy[:, 0], gxy[:, 3] - gxy[:, 1]], axis=1)
            dxy = s["det_boxes"]
            d_wh = np.stack([dxy[:, 0], dxy[:, 1], dxy[:, 2] - dxy[:, 0], dxy[:, 3] - dxy[:, 1]], axis=1)
            gt = GroundTruthArrays(
                image_index=s["gt_image"], category_index=s["gt_labels"], boxes=g_wh,
                areas=g_wh[:, 2] * g_wh[:, 3], iscrowd=s["gt_crowd"], ignore=s["gt_difficult"],
                ids=np.arange(1, s["gt_labels"].size + 1),
            )
            dt = DetectionArrays(s["det_image"], s["det_labels"], d_wh, s["det_scores"])
            self._cache["coco"] = (evaluate_arrays(gt, dt, self.num_classes, CocoParams()), gt, s)
        return self._cache["coco"]

    def curves(self) -> DetectionCurves:
        """P/R/F1-versus-confidence curves (IoU 0.5) and PR curves per class."""
        evaluation, gt, _ = self._coco()
        match = evaluation.match
        tp, ignored = match.dense_flags(gt.ids, area_index=0)
        keep = ~ignored[0]
        conf, prec, rec, f1 = confidence_curves(
            match.det_score[keep], tp[0][keep], match.det_category[keep], evaluation.num_gt
        )
        pr_precision = evaluation.precision[0, :, :, 0, -1].T  # [K, R]
        return DetectionCurves(conf, prec, rec, f1, evaluation.params.recall_thresholds, pr_precision,
                               evaluation.num_gt, self.class_names)

    def confusion_matrix(self) -> np.ndarray:
        """``[K + 1, K + 1]`` counts, rows predicted, columns true, last index background."""
        _, _, s = self._coco()
        return detection_confusion_matrix(
            s["gt_image"], s["gt_boxes"], s["gt_labels"], s["gt_difficult"] | s["gt_crowd"],
            s["det_image"], s["det_boxes"], s["det_scores"], s["det_labels"], self.num_classes,
            self.conf_matrix_iou, self.conf_matrix_conf,
        )

    def compute(self) -> dict[str, Any]:
        """All numbers.

        Returns:
            The 12 COCO keys (``AP`` .. ``ARl``), ``"VOC_mAP50"``, ``"precision"`` and ``"recall"``
            (class means at the best-F1 confidence), ``"confidence"`` (that threshold) and
            ``"per_class"``: a list of rows ``{"class", "images", "instances", "P", "R", "mAP50",
            "mAP50-95"}`` (-1 for AP of classes without ground truth).
        """
        evaluation, _, s = self._coco()
        out: dict[str, Any] = summarize(evaluation)
        voc = voc_eval_arrays(
            s["gt_image"], s["gt_boxes"], s["gt_labels"], s["gt_difficult"] | s["gt_crowd"],
            s["det_image"], s["det_boxes"], s["det_scores"], s["det_labels"],
            range(self.num_classes), 0.5, False, 0.0,
        )
        aps = np.array([voc["ap"][k] for k in range(self.num_classes)])
        out["VOC_mAP50"] = float(np.nanmean(aps)) if (~np.isnan(aps)).any() else -1.0
        curves = self.curves()
        best = curves.best_index
        prec = evaluation.precision[:, :, :, 0, -1]
        counted = ~(s["gt_difficult"] | s["gt_crowd"])
        rows = []
        for k, name in enumerate(self.class_names):
            p50, p_all = prec[0, :, k], prec[:, :, k]
            has_gt = evaluation.num_gt[k] > 0
            rows.append({
                "class": name,
                "images": int(np.unique(s["gt_image"][(s["gt_labels"] == k) & counted]).size),
                "instances": int(evaluation.num_gt[k]),
                "P": float(curves.precision[k, best]),
                "R": float(curves.recall[k, best]),
                "mAP50": float(p50.mean()) if has_gt else -1.0,
                "mAP50-95": float(p_all.mean()) if has_gt else -1.0,
            })
        with_gt = [r for r in rows if r["instances"] > 0]
        out["precision"] = float(np.mean([r["P"] for r in with_gt])) if with_gt else 0.0
        out["recall"] = float(np.mean([r["R"] for r in with_gt])) if with_gt else 0.0
        out["confidence"] = float(curves.confidence[best])
        out["per_class"] = rows
        return out

    def format_table(self, results: Mapping[str, Any] | None = None) -> str:
        """The per-class table as text (an ``all`` row first, then classes with ground truth)."""
        results = results or self.compute()
        rows = [r for r in results["per_class"] if r["instances"] > 0]
        header = f"{'Class':>20}{'Images':>11}{'Instances':>11}{'P':>11}{'R':>11}{'mAP50':>11}{'mAP50-95':>11}"
        lines = [header]
        all_row = ("all", self.num_images,
                   sum(r["instances"] for r in rows), results["precision"], results["recall"],
                   results["AP50"], results["AP"])
        for values in [all_row, *[(r["class"], r["images"], r["instances"], r["P"], r["R"], r["mAP50"],
                                   r["mAP50-95"]) for r in rows]]:
            name, images, instances, *nums = values
            lines.append(f"{name:>20}{images:>11}{instances:>11}" + "".join(f"{v:>11.3f}" for v in nums))
        return "\n".join(lines)
