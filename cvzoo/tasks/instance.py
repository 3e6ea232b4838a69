"""Instance segmentation (``task: instance``): a detector whose detections carry masks (Mask R-CNN).

Everything but the masks is the detection task's: any detection format (masks from COCO polygons and
RLE, Labelme polygons, VOC SegmentationObject, YOLO-seg polygons; a box without a mask is filled), the
model's contract, recipe and input policy. Validation adds the COCO mask AP (``iou_type="segm"``) to
the box metrics; predict adds each detection's mask as COCO RLE (``"segmentation"``) to its row, to the
COCO-style JSON and, blended, to the saved images.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from cvzoo.config import ConfigError
from cvzoo.metrics.coco import coco_eval, format_coco_summary
from cvzoo.models.detection.base import Detections
from cvzoo.models.registry import get_entry
from cvzoo.ops.masks import rle_area, rle_encode, rle_to_bbox
from cvzoo.tasks.base import Evaluator
from cvzoo.tasks.detection import DetectionTask, _DetectionEvaluatorAdapter, input_policy_of

# A predicted mask is the pixels whose probability reaches this (Mask R-CNN's, He et al. 2017).
MASK_THRESHOLD = 0.5


def binary_masks(detections: Detections) -> np.ndarray:
    """``[N, H, W]`` uint8 masks of detections (probabilities thresholded at ``MASK_THRESHOLD``)."""
    if detections.masks is None:
        raise ValueError("these detections carry no masks")
    return (detections.masks >= MASK_THRESHOLD).to(torch.uint8).cpu().numpy()


class InstanceEvaluator(_DetectionEvaluatorAdapter):
    """The detection metrics plus COCO mask AP: masks are kept as RLE per image, evaluated at the end."""

    def __init__(self, class_names: list[str]) -> None:
        super().__init__(class_names)
        self.sizes: list[tuple[int, int]] = []
        self.truths: list[dict[str, Any]] = []  # {"image", "label", "rle", "iscrowd"}
        self.results: list[dict[str, Any]] = []  # {"image", "label", "rle", "score"}

    def update(self, outputs: Any, batch: Any) -> None:
        super().update(outputs, batch)
        detections, truths = outputs
        for det, truth in zip(detections, truths):
            image = len(self.sizes)
            masks = truth["masks"].cpu().numpy().astype(np.uint8)
            self.sizes.append((int(masks.shape[-2]), int(masks.shape[-1])))
            crowd = np.asarray(truth.get("iscrowd", np.zeros(len(masks), bool)), dtype=bool)
            for rle, label, is_crowd in zip(rle_encode(masks) if len(masks) else [], truth["labels"].tolist(), crowd):
                self.truths.append({"image": image, "label": int(label), "rle": rle, "iscrowd": bool(is_crowd)})
            if len(det):
                for rle, label, score in zip(rle_encode(binary_masks(det)), det.labels.tolist(), det.scores.tolist()):
                    self.results.append({"image": image, "label": int(label), "rle": rle, "score": float(score)})

    def mask_metrics(self) -> dict[str, float]:
        """The 12 COCO ``segm`` numbers of everything seen, keys prefixed ``mask_``."""
        gt = {
            "images": [{"id": i + 1, "height": h, "width": w} for i, (h, w) in enumerate(self.sizes)],
            "categories": [{"id": k + 1, "name": name} for k, name in enumerate(self.class_names)],
            "annotations": [
                {"id": n + 1, "image_id": t["image"] + 1, "category_id": t["label"] + 1, "segmentation": t["rle"],
                 "area": float(rle_area(t["rle"])), "bbox": [float(v) for v in rle_to_bbox(t["rle"])],
                 "iscrowd": int(t["iscrowd"])}
                for n, t in enumerate(self.truths)
            ],
        }
        results = [{"image_id": r["image"] + 1, "category_id": r["label"] + 1, "segmentation": r["rle"],
                    "score": r["score"]} for r in self.results]
        return {f"mask_{key}": value for key, value in coco_eval(gt, results, iou_type="segm").items()}

    def compute(self) -> dict[str, Any]:
        result = super().compute()
        masks = self.mask_metrics()
        result.update(masks)
        result["mask_mAP50"], result["mask_mAP50-95"] = masks["mask_AP50"], masks["mask_AP"]
        # As for instance segmentation in YOLOv8: the box and the mask fitness added.
        result["fitness"] += 0.1 * result["mask_mAP50"] + 0.9 * result["mask_mAP50-95"]
        result["table"] = (result["table"] + "\n\nbox AP (COCO bbox)\n" + format_coco_summary(result)
                           + "\n\nmask AP (COCO segm)\n" + format_coco_summary(masks, prefix="mask_"))
        return result

    def state(self) -> Any:
        return {"boxes": super().state(), "sizes": self.sizes, "truths": self.truths, "results": self.results}

    def load_states(self, states: list[Any]) -> None:
        super().load_states([state["boxes"] for state in states])
        self.sizes, self.truths, self.results = [], [], []
        for state in states:
            offset = len(self.sizes)
            self.sizes += state["sizes"]
            self.truths += [{**t, "image": t["image"] + offset} for t in state["truths"]]
            self.results += [{**r, "image": r["image"] + offset} for r in state["results"]]


def _mask_model_problem(name: str, predicts_masks: bool, resize: str) -> str:
    """Why detector ``name`` cannot serve the instance task, or ``""``."""
    if not predicts_masks:
        return (f"{name} is a box detector without a mask head; the instance task needs one "
                "(maskrcnn_resnet50_fpn, maskrcnn_resnet50_fpn_v2), or use --task detect")
    if resize != "model":
        return (f"{name} takes letterboxed images; the instance task serves masks at each image's own size, for a "
                "model that resizes its images itself")
    return ""


class InstanceSegmentationTask(DetectionTask):
    name = "instance"
    headline_metrics = ("mask_mAP50", "mask_mAP50-95", "mAP50", "mAP50-95")
    supports_augment = False  # test-time augmentation merges boxes only
    supports_export_nms = False
    with_masks = True

    @classmethod
    def model_problem(cls, name: str) -> str:
        """Why registered detector ``name`` cannot serve this task (no mask head, letterbox input), or ``""``."""
        return _mask_model_problem(name, getattr(get_entry(name).builder, "predicts_masks", False),
                                   input_policy_of(name).resize)

    @classmethod
    def check_model_config(cls, config: Any) -> None:
        """Also, before any work: the model predicts masks and takes images at their own size."""
        super().check_model_config(config)
        problem = cls.model_problem(config.model.name)
        if problem:
            raise ConfigError(f"model.name: {problem}")

    def _create(self) -> nn.Module:
        model = super()._create()
        problem = _mask_model_problem(self.config.model.name, model.predicts_masks, model.input_policy.resize)
        if problem:  # a checkpoint's model (cvzoo val / predict) is checked here
            raise ValueError(problem)
        return model

    def _val_truth(self, meta: dict[str, Any], target: dict[str, torch.Tensor]) -> dict[str, Any]:
        # The sample's masks are in the original pixels: validation serves images at their own size.
        return {**super()._val_truth(meta, target), "masks": target["masks"]}

    def build_evaluator(self) -> Evaluator:
        self._last_val_batch = None
        return InstanceEvaluator(self.class_names)

    def _rows(self, detections: Detections) -> list[dict[str, Any]]:
        rows = super()._rows(detections)
        if len(detections):
            for row, rle in zip(rows, rle_encode(binary_masks(detections))):
                row["segmentation"] = rle
        return rows
