"""Object detection: any registered detector trained on any annotation format, COCO/VOC metrics, predict,
export.

The task speaks to a detector only through the contract of ``cvzoo.models.detection.base.Detector``:
``model(images, targets, image_sizes)`` for the training losses, ``predict`` / ``validate`` for
detections, and the model's loss reduction, parameter groups, input policy (letterboxed squares or
images at their own size) and default recipe. Test-time augmentation and export without NMS need a dense
detector (``DenseDetector``: its decoded predictions before NMS).
"""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from cvzoo.config import ConfigError
from cvzoo.config.tasks import DetectAugment
from cvzoo.data.augment import detect as T
from cvzoo.data.augment.multiscale import multiscale_batch
from cvzoo.data.check import validate_annotations
from cvzoo.data.datasets.detection import DetectionDataset, collate_detection
from cvzoo.data.formats.auto import load_detection_dataset
from cvzoo.data.images import VIDEO_EXTENSIONS, CorruptVideoError, load_image
from cvzoo.metrics.detection import DetectionEvaluator
from cvzoo.models.detection.base import Detections, Detector, InputPolicy, validate_targets
from cvzoo.models.detection.dense import DenseDetector, nms_postprocess
from cvzoo.models.detection.graph_nms import NmsDetector, unpad_detections
from cvzoo.models.detection.tta import augmented_predictions
from cvzoo.models.registry import accepted_keywords, create_model, get_entry
from cvzoo.models.weights import load_weights
from cvzoo.ops.slicing import merge_tile_detections, tile_windows
from cvzoo.tasks.base import Evaluator, Task, bare

# Test-time augmentation and exported graphs (both dense detectors) validate / predict with YOLO's
# thresholds; a torch model otherwise applies its own (Detector.validation_settings, predict's defaults).
VAL_CONF, VAL_IOU, VAL_MAX_DET = 0.001, 0.7, 300
PREDICT_CONF, PREDICT_IOU = 0.25, 0.7
# Sliced predict: same-class boxes of two tiles (or a tile and the whole image) overlapping more than this are
# one object (SAHI's default match threshold).
SLICE_MERGE_IOU = 0.5


def max_stride(model: nn.Module, default: int = 32) -> int:
    """The largest stride of a dense detector (``strides``), else its ``input_policy.size_divisible``."""
    model = bare(model)
    strides = getattr(model, "strides", None)
    if strides:
        return int(max(strides))
    policy = getattr(model, "input_policy", None)
    return int(policy.size_divisible) if policy is not None else default


def input_policy_of(model_name: str) -> InputPolicy:
    """The input policy of a registered detector, read from its class without building it."""
    try:
        builder = get_entry(model_name).builder
    except KeyError:  # an unknown name: the config check reports it before any work
        return InputPolicy()
    return getattr(builder, "input_policy", InputPolicy())


def image_sizes_of(images: torch.Tensor, metas: list[dict[str, Any]]) -> list[tuple[int, int]]:
    """Each image's true ``(height, width)`` inside a padded batch (``meta["input_size"]``)."""
    full = (int(images.shape[-2]), int(images.shape[-1]))
    return [tuple(m.get("input_size", full)) for m in metas]


def check_augment_keys(config: Any) -> None:
    """Raise ConfigError naming the key and the model for a ``detect.augment`` value the model would not use:
    a key outside the detector's ``augment_keys`` set to anything but the family's default (the dataclass
    default, or its ``default_recipe``'s value)."""
    builder = get_entry(config.model.name).builder
    honoured = getattr(builder, "augment_keys", None)
    if honoured is None:  # not a Detector class: nothing declared to check against
        return
    recipe = getattr(builder, "default_recipe", {}) or {}
    baseline = DetectAugment()
    for field in dataclasses.fields(DetectAugment):
        if field.name in honoured:
            continue
        default = recipe.get(f"detect.augment.{field.name}", getattr(baseline, field.name))
        value = getattr(config.detect.augment, field.name)
        if value != default:
            raise ConfigError(
                f"detect.augment.{field.name}={value}: {config.model.name} does not use this augmentation (its "
                f"detect.augment keys: {', '.join(honoured)}); leave it at {default}")


class _DetectionEvaluatorAdapter(Evaluator):
    def __init__(self, class_names: list[str]) -> None:
        self.class_names = class_names
        self.inner = DetectionEvaluator(class_names)

    def update(self, outputs: Any, batch: Any) -> None:
        detections, truths = outputs
        predictions = [{"boxes": d.boxes.cpu(), "scores": d.scores.cpu(), "labels": d.labels.cpu()} for d in detections]
        self.inner.update(predictions, truths)

    def compute(self) -> dict[str, Any]:
        result = self.inner.compute()
        result["mAP50"], result["mAP50-95"] = result["AP50"], result["AP"]
        result["fitness"] = 0.1 * result["mAP50"] + 0.9 * result["mAP50-95"]
        result["table"] = self.inner.format_table(result)
        result["curves"] = self.inner.curves()
        result["confusion_matrix"] = self.inner.confusion_matrix()
        return result

    def state(self) -> Any:
        return self.inner.state()

    def load_states(self, states: list[Any]) -> None:
        merged = DetectionEvaluator(self.class_names)
        for state in states:
            merged.merge(state)
        self.inner = merged


class DetectionTask(Task):
    name = "detect"
    # YOLOv5/v8's fitness: mostly mAP50-95, a little mAP50.
    fitness_metric = "fitness"
    takes_backbone = True
    headline_metrics = ("mAP50", "mAP50-95", "precision", "recall")
    supports_augment = True
    supports_export_nms = True
    predicts_video = True
    # Targets carry instance masks (the instance-segmentation task).
    with_masks = False

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.class_names: list[str] = []
        self.img_size = config.data.img_size or 640
        self.val_dataset: DetectionDataset | None = None
        self._last_val_batch: tuple | None = None
        self.letterbox = input_policy_of(config.model.name).resize == "letterbox"

    # --- data ------------------------------------------------------------------------------------
    def _annotations(self, split: str) -> Any:
        """``split``'s annotations with the class list of ``data.names``, else the training split's (VOC,
        YOLO and Labelme take the list as given; a COCO file's categories must equal it)."""
        data = self.config.data
        names = list(data.names) or (self.class_names if split != "train" else []) or None
        annotations = load_detection_dataset(data.source, split, val_fraction=data.val_fraction,
                                             seed=self.config.train.seed, class_names=names)
        if names is not None and list(annotations.class_names) != names:
            key = "data.names" if data.names else "the training split's classes"
            raise ValueError(f"{data.source} ({split}): its categories {annotations.class_names} differ from {key} "
                             f"{names}")
        issues = validate_annotations(annotations, clip=True, drop=True)
        if issues:
            warnings.warn(
                f"{self.config.data.source} ({split}): {len(issues)} annotation issue(s) fixed "
                f"(boxes clipped/dropped); first: {issues[0]}", stacklevel=2,
            )
        # The first images: an image holds objects of several classes, so there is no class to balance.
        keep = self.kept_indices(split, len(annotations.images))
        if keep is not None:
            annotations.images = [annotations.images[i] for i in keep]
        return annotations

    def build_datasets(self) -> tuple[Dataset, Dataset | None]:
        train_ann = self._annotations("train")
        self.class_names = list(train_ann.class_names)
        if self.config.detect.augment.multiscale and not self.letterbox:
            raise ValueError(f"detect.augment.multiscale resizes letterboxed batches; {self.config.model.name} "
                             "resizes its images itself")
        train = DetectionDataset(train_ann, self.img_size, augment=True, hyp=self.config.detect.augment,
                                 strict=self.config.data.strict, letterbox=self.letterbox, with_masks=self.with_masks)
        train.sample_seed = self.config.train.seed  # augmentation keyed by (seed, epoch, sample): exact resume
        try:
            val = self.build_eval_dataset("val")
        except FileNotFoundError as err:
            warnings.warn(f"no validation split ({err}); training without validation", UserWarning, stacklevel=2)
            val = None
        if val is not None:
            warn_if_validating_on_training_images(train_ann, val.annotations, self.config.data.source)
        return train, val

    def build_eval_dataset(self, split: str = "val") -> Dataset:
        annotations = self._annotations(split)
        if self.class_names and list(annotations.class_names) != self.class_names:
            raise ValueError(
                f"the {split} split has classes {annotations.class_names} but the model was trained on "
                f"{self.class_names}"
            )
        self.class_names = self.class_names or list(annotations.class_names)
        if len(annotations.images) == 0:
            raise ValueError(f"the {split} split of {self.config.data.source} has no images")
        # Rectangular batches need the loader's batch size: the trainer and `cvzoo val` both use this one.
        # An exported graph takes the square it was exported at (``exported_graph``): no rectangular batches.
        rect = self.config.data.eval_batch_size() if self.config.detect.rect_val and not self.exported_graph else 0
        self.val_dataset = DetectionDataset(annotations, self.img_size, augment=False, rect_batch_size=rect,
                                            letterbox=self.letterbox, with_masks=self.with_masks)
        return self.val_dataset

    def collate(self, samples: list[Any]) -> Any:
        return collate_detection(samples)

    def to_device(self, batch: Any, device: torch.device) -> Any:
        images, targets, metas = batch
        images = images.to(device, non_blocking=device.type == "cuda").float() / 255.0
        images = self.memory_format(images)
        targets = [{k: v.to(device) for k, v in t.items()} for t in targets]
        return images, targets, metas

    def on_epoch_start(self, epoch: int, train_dataset: Dataset) -> bool:
        if not isinstance(train_dataset, DetectionDataset):
            return False
        train_dataset.set_epoch(epoch)  # each sample's augmentation key; shared with the loading workers
        close = self.config.detect.augment.close_mosaic
        return bool(close) and train_dataset.set_mosaic(epoch < self.config.train.epochs - close)

    # --- model -----------------------------------------------------------------------------------
    @classmethod
    def check_model_config(cls, config: Any) -> None:
        """Also, before any work: ``model.name`` is a detector."""
        super().check_model_config(config)
        entry = get_entry(config.model.name)
        if entry.task != "detect":
            raise ConfigError(f"model.name: {config.model.name!r} is a {entry.task} model, not a detector; see "
                              "`cvzoo models --task detect`")
        check_augment_keys(config)

    def _create(self) -> nn.Module:
        entry = get_entry(self.config.model.name)
        if entry.task != "detect":
            raise ValueError(f"{self.config.model.name!r} is a {entry.task} model, not a detector")
        kwargs = self.model_kwargs()
        if not self.letterbox and "min_size" in (accepted_keywords(entry.builder) or ()) and "min_size" not in kwargs:
            # A detector that resizes its images itself (R-CNN) takes data.img_size as its shorter side.
            kwargs["min_size"] = self.img_size
        if self.config.model.weights and "fine_tune" in (accepted_keywords(entry.builder) or ()):
            kwargs.setdefault("fine_tune", True)  # built for fine-tuning (R-CNN: frozen batch norm, 3 stages)
        model = create_model(self.config.model.name, num_classes=len(self.class_names), **kwargs)
        if not isinstance(model, Detector):
            raise TypeError(f"{self.config.model.name} does not implement the Detector contract")
        # Accumulated batches add up unscaled for a batch-sum loss (YOLO), are averaged for a mean.
        self.loss_is_batch_sum = model.loss_reduction == "sum"
        return model

    def build_model(self) -> nn.Module:
        model = self._create()
        cfg = self.config.model
        if cfg.weights:
            checkpoint_classes = _checkpoint_class_count(cfg.weights)
            if checkpoint_classes is not None and checkpoint_classes != len(self.class_names) and not cfg.reset_head:
                raise ValueError(
                    f"{cfg.weights} was trained for {checkpoint_classes} classes but {self.config.data.source} "
                    f"has {len(self.class_names)}; set model.reset_head=true to re-initialise the head"
                )
            load_weights(model, cfg.weights, strict=not cfg.reset_head and cfg.weights_strict)
        return model

    def restore_extras(self, extras: dict[str, Any]) -> None:
        self.class_names = list(extras["class_names"])
        self.img_size = extras["img_size"]

    def build_inference_model(self, extras: dict[str, Any]) -> nn.Module:
        self.restore_extras(extras)
        return self._create()

    def checkpoint_extras(self) -> dict[str, Any]:
        return {"class_names": self.class_names, "img_size": self.img_size, "num_classes": len(self.class_names)}

    def param_groups(self, model: nn.Module) -> list[dict[str, Any]]:
        """The detector's own groups (``Detector.param_groups``; YOLO's are YOLOv5's three kinds)."""
        optim = self.config.optim
        return bare(model).param_groups(optim.lr, optim.weight_decay, optim.backbone_lr_mult)

    # --- steps -----------------------------------------------------------------------------------
    def training_step(self, model: nn.Module, batch: Any) -> dict[str, torch.Tensor]:
        images, targets, metas = batch
        sizes = image_sizes_of(images, metas)
        targets = validate_targets(targets, sizes, len(self.class_names))
        if self.config.detect.augment.multiscale:
            # Multi-scale training (YOLOv3's random=1, YOLOv5's --multi-scale): a random side in
            # 0.5-1.5 x img_size per batch, a multiple of the largest stride; validation keeps img_size.
            images, targets = multiscale_batch(images, targets, self.img_size, max_stride(model))
            sizes = None
        # Through the (possibly DDP-wrapped) model's forward, so gradient synchronisation sees the call.
        return model(images, targets, sizes)

    @torch.no_grad()
    def validation_step(self, model: nn.Module, batch: Any, evaluator: Evaluator) -> dict[str, torch.Tensor]:
        images, batch_targets, metas = batch
        sizes = image_sizes_of(images, metas)
        targets = validate_targets(batch_targets, sizes, len(self.class_names))
        if not isinstance(model, nn.Module):  # an exported graph: detections only, no losses
            losses, detections = {}, self._graph_validate(model, images, sizes)
        elif self.augment:
            settings = bare(model).validation_settings
            losses = model(images, targets, sizes)
            detections = self._detect(model, images, sizes, settings.get("conf_threshold", VAL_CONF),
                                      settings.get("iou_threshold", VAL_IOU), settings.get("max_detections", VAL_MAX_DET))
        else:
            losses, detections = bare(model).validate(images, targets, sizes, **bare(model).validation_settings)
        detections = [self._to_original(d, m) for d, m in zip(detections, metas)]
        truths = [self._val_truth(m, t) for m, t in zip(metas, batch_targets)]
        evaluator.update((detections, truths), batch)
        if self._last_val_batch is None:
            self._last_val_batch = (metas, detections, truths)
        if not losses:
            return {}
        return {k: v.detach() for k, v in losses.items() if k != "loss"} | {"loss": losses["loss"].detach()}

    def _graph_validate(self, model: Any, images: torch.Tensor, sizes: list[tuple[int, int]]) -> list[Detections]:
        """An exported graph's detections on a letterboxed batch, with validation's thresholds where the graph
        leaves NMS to the reader (an NMS graph gives what its recorded thresholds kept; export it with
        ``--conf 0.001`` for a full mAP); an R-CNN graph takes one image at a time."""
        outputs = model(images)
        if isinstance(outputs, dict) and "num_dets" in outputs:
            return unpad_detections(outputs, getattr(model, "metadata", None))
        if isinstance(outputs, dict):
            if len(images) == 1 and tuple(images.shape[-2:]) == tuple(sizes[0]):
                return [_graph_detections(outputs, None, None, None, None, None)]
            return [_graph_detections(model(image[None, :, :h, :w]), None, None, None, None, None)
                    for image, (h, w) in zip(images, sizes)]
        return nms_postprocess(outputs, VAL_CONF, VAL_IOU, VAL_MAX_DET)

    def _val_truth(self, meta: dict[str, Any], target: dict[str, torch.Tensor]) -> dict[str, Any]:
        """The ground truth metrics compare an image's detections with, in its original pixels."""
        return self.val_dataset.original_targets(meta["index"])

    def _detect(self, model: nn.Module, images: torch.Tensor, sizes: list[tuple[int, int]] | None,
                conf: float | None, iou: float | None, max_det: int | None, classes: list[int] | None = None,
                soft_nms: str | None = None) -> list[Detections]:
        """Detections in the pixels of ``images``; with ``self.augment`` the test-time augmentation passes
        (``cvzoo.models.detection.tta``) of a dense detector are merged before the one NMS."""
        model = bare(model)
        if not self.augment:
            return model.predict(images, sizes, conf, iou, max_det, classes, soft_nms)
        if not isinstance(model, DenseDetector):
            raise ValueError(f"test-time augmentation (--augment) merges a dense detector's predictions before NMS; "
                             f"{type(model).__name__} is not one")
        predictions = augmented_predictions(lambda x: model.decode(model(x)), images, stride=max_stride(model))
        return nms_postprocess(predictions, PREDICT_CONF if conf is None else conf, PREDICT_IOU if iou is None else iou,
                               300 if max_det is None else max_det, classes, soft_nms)

    def _to_original(self, detections: Detections, meta: dict[str, Any]) -> Detections:
        boxes = T.scale_boxes_back(detections.boxes, meta["ratio"], meta["pad"], meta["orig_size"])
        return Detections(boxes, detections.scores, detections.labels, detections.masks)

    def build_evaluator(self) -> Evaluator:
        self._last_val_batch = None
        return _DetectionEvaluatorAdapter(self.class_names)

    def sample_images(self, batch: Any) -> torch.Tensor:
        return batch[0][:16].detach().float().cpu()

    def save_artifacts(self, run_dir: Path, metrics: dict[str, Any]) -> list[Path]:
        from cvzoo.metrics import plots_detection as plots

        paths = []
        if "curves" in metrics:
            curves = metrics["curves"]
            paths.append(plots.plot_pr_curve(curves, run_dir / "PR_curve.png"))
            for name in ("F1", "P", "R"):
                paths.append(plots.plot_confidence_curve(curves, run_dir / f"{name}_curve.png", metric=name))
        if "confusion_matrix" in metrics:
            for normalize in (False, True):
                name = "confusion_matrix_normalized.png" if normalize else "confusion_matrix.png"
                paths.append(plots.plot_detection_confusion_matrix(
                    metrics["confusion_matrix"], self.class_names, run_dir / name, normalize=normalize))
        summary = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
        (run_dir / "metrics.json").write_text(json.dumps(summary, indent=1))
        paths.append(run_dir / "metrics.json")
        if metrics.get("table"):
            (run_dir / "per_class.txt").write_text(metrics["table"] + "\n")
            paths.append(run_dir / "per_class.txt")
        if self._last_val_batch is not None:
            # The first validation batch twice, as ultralytics shows it: its ground truth and the predictions.
            metas, detections, truths = self._last_val_batch
            images = [load_image(m["file"], mode="RGB") for m in metas[:16]]
            predicted = [[d for d in det.to_dict(self.class_names) if d["score"] >= PREDICT_CONF]
                         for det in detections[:16]]
            paths.append(draw_grid(images, [truth_rows(t, self.class_names) for t in truths[:16]],
                                   run_dir / "val_batch0_labels.jpg"))
            paths.append(draw_grid(images, predicted, run_dir / "val_batch0_pred.jpg"))
        return paths

    def plot_train_batch(self, batch: Any, path: Path) -> Path:
        """The first training batch as the model sees it (augmented, resized), with its target boxes."""
        from PIL import Image

        images, targets, _ = batch
        pixels = (images[:16].float().clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
        drawn = [Image.fromarray(p) for p in pixels]
        rows = [truth_rows({k: v.cpu().numpy() for k, v in t.items()}, self.class_names) for t in targets[:16]]
        return draw_grid(drawn, rows, path)

    # --- inference -------------------------------------------------------------------------------
    def example_input(self, batch: int = 1, imgsz: int | None = None) -> torch.Tensor:
        size = imgsz or self.img_size
        return torch.rand(batch, 3, size, size)

    def export_module(self, model: nn.Module) -> nn.Module:
        """The detector's export graph (``Detector.export_module``; a dense detector's decoded predictions
        ``[B, A, 4 + K]``, NMS left to the reader; an R-CNN's final detections for one image of any size,
        whose module names its outputs and axes), or with ``export_nms`` padded detections after NMS
        (``cvzoo.models.detection.graph_nms``)."""
        detector = bare(model)
        if not getattr(detector, "exportable", False):
            raise ValueError(f"{type(detector).__name__} has no export path yet (Detector.exportable is False)")
        if self.export_nms is None:
            return detector.export_module()
        if not isinstance(detector, DenseDetector):
            raise ValueError(f"{type(detector).__name__} exports its detections after NMS already; drop --nms")
        return NmsDetector(model, **self.export_nms)

    def export_output_names(self) -> list[str]:
        return list(NmsDetector.output_names) if self.export_nms is not None else ["predictions"]

    @torch.no_grad()
    def predict_files(self, model: Any, files: list[Path], device: torch.device, conf: float | None = None,
                      iou: float | None = None, max_det: int | None = None, classes: list[int] | None = None,
                      soft_nms: str | None = None, topk: int | None = None, slice: int | None = None,
                      slice_overlap: float = 0.2, **options: Any) -> list[dict]:
        """Detections per image (or per video frame: ``"frame"`` is set and ``"image"`` is the video).

        ``conf``/``iou``/``max_det`` default to 0.25/0.7/300, or for an ONNX file exported with NMS to
        the settings built into it. With ``self.augment`` the torch model runs test-time augmentation.
        ``slice=TILE`` runs sliced inference on images larger than a tile (``cvzoo.ops.slicing``): tiles of
        TILE pixels overlapping by ``slice_overlap`` plus the whole image, merged by class-wise NMS.
        """
        if options:
            raise ValueError(f"detection predict does not take {sorted(options)}")
        if slice is not None:
            tile_windows(slice, slice, slice, slice_overlap)  # checks the tile and overlap before any work
        if self.augment and not isinstance(model, nn.Module):
            raise ValueError("test-time augmentation (--augment) needs the torch backend: an exported graph has a "
                             "fixed input size")
        settings = (conf, iou, max_det, classes, soft_nms)
        tiles = None if slice is None else (slice, slice_overlap, max_det)
        results = []
        for path in files:
            if Path(path).suffix.lower() in VIDEO_EXTENSIONS:
                for index, frame in _video_frames(path):
                    result = self._predict_array(model, frame, device, settings, tiles)
                    results.append({"image": str(path), "frame": index, **result})
            else:
                image = np.asarray(load_image(path, mode="RGB"))
                results.append({"image": str(path), **self._predict_array(model, image, device, settings, tiles)})
        for result in results:
            for row in result["detections"]:
                row["image"] = result["image"] if "frame" not in result else f"{result['image']}#{result['frame']}"
            result["rows"] = result["detections"]
        return results

    def set_predict_size(self, size: int, model: Any) -> None:
        if not self.letterbox:
            raise ValueError(f"{self.config.model.name} resizes its images itself (its min/max sides); --imgsz is "
                             "for letterboxed detectors such as YOLO")
        super().set_predict_size(size, model)

    def _predict_array(self, model: Any, image: np.ndarray, device: torch.device, settings: tuple,
                       tiles: tuple[int, float, int | None] | None = None) -> dict:
        if tiles is None:
            dets = self._detect_array(model, image, device, settings)
        else:
            dets = self._detect_sliced(model, image, device, settings, *tiles)
        return {"size": list(image.shape[:2]), "detections": self._rows(dets)}

    def _detect_sliced(self, model: Any, image: np.ndarray, device: torch.device, settings: tuple, tile: int,
                       overlap: float, max_det: int | None) -> Detections:
        """Sliced inference (SAHI): every tile at its own resolution and the whole image, merged."""
        height, width = image.shape[:2]
        windows = tile_windows(height, width, tile, overlap)
        if len(windows) == 1:
            return self._detect_array(model, image, device, settings)
        parts, offsets = [], []
        for x0, y0, x1, y1 in [*windows, (0, 0, width, height)]:
            dets = self._detect_array(model, np.ascontiguousarray(image[y0:y1, x0:x1]), device, settings)
            if dets.masks is not None:
                raise ValueError("sliced predict (--slice) merges boxes; this model predicts masks, which it "
                                 "cannot stitch across tiles")
            parts.append((dets.boxes.cpu(), dets.scores.cpu(), dets.labels.cpu()))
            offsets.append((x0, y0))
        return Detections(*merge_tile_detections(parts, offsets, SLICE_MERGE_IOU, 300 if max_det is None else max_det))

    def _detect_array(self, model: Any, image: np.ndarray, device: torch.device, settings: tuple) -> Detections:
        conf, iou, max_det, classes, soft_nms = settings
        # A PyTorch model takes any multiple of its stride: pad only to the smallest such rectangle
        # (a 4:3 photo at 640 runs at 640x480, a quarter less compute). Exported graphs keep the square.
        is_torch = isinstance(model, nn.Module)
        if self.letterbox:
            letterbox = T.LetterBox(self.img_size, stride=max_stride(model) if is_torch else 32, auto=is_torch,
                                    scaleup=True)
            boxed, _, ratio, pad = letterbox.apply(image)
        else:  # the detector resizes it itself and answers in these pixels (a writable copy for torch)
            boxed, ratio, pad = np.require(image, requirements=["C", "W"]), (1.0, 1.0), (0, 0)
        # HWC uint8 -> [1, 3, H, W] float: a channels-last tensor (the permute is a view), which is what
        # the channels-last convolutions of a predicting model want; an exported graph gets NCHW.
        x = torch.from_numpy(np.ascontiguousarray(boxed)).permute(2, 0, 1).unsqueeze(0).to(device)
        x = x.float().div_(255)
        if not is_torch:
            x = x.contiguous()
        # The exported graph's NMS runs here, with YOLO's defaults; a torch model applies its own to a None.
        defaults = (PREDICT_CONF if conf is None else conf, PREDICT_IOU if iou is None else iou,
                    300 if max_det is None else max_det)
        if is_torch:
            dets = self._detect(model, x, None, conf, iou, max_det, classes, soft_nms)[0]
        else:  # an exported graph: decoded predictions [1, A, 4 + K], padded detections after NMS, or an
            outputs = model(x)  # R-CNN's final detections for the image at its own size
            if isinstance(outputs, dict) and "num_dets" not in outputs:
                dets = _graph_detections(outputs, conf, iou, max_det, classes, soft_nms)
            elif isinstance(outputs, dict):
                if soft_nms:
                    raise ValueError("this ONNX file has hard NMS built in; export without --nms for Soft-NMS")
                dets = unpad_detections(outputs, getattr(model, "metadata", None), conf, iou, max_det, classes)[0]
            else:
                dets = nms_postprocess(outputs, *defaults, classes, soft_nms)[0]
        return self._to_original(dets, {"ratio": ratio, "pad": pad, "orig_size": image.shape[:2]})

    def _rows(self, detections: Detections) -> list[dict[str, Any]]:
        """One image's detections as plain rows (``Detections.to_dict``) for predict's outputs."""
        return detections.to_dict(self.class_names)

    def save_predictions(self, results: list[dict], save_dir: Path) -> list[Path]:
        paths = super().save_predictions(results, save_dir)
        labels_dir = save_dir / "labels"
        labels_dir.mkdir(parents=True, exist_ok=True)
        videos: dict[str, list[dict]] = {}
        for result in results:
            if "frame" in result:
                videos.setdefault(result["image"], []).append(result)
        for video, frames in videos.items():
            paths.append(_write_annotated_video(Path(video), frames, save_dir / f"{Path(video).stem}_pred.mp4"))
        for result in results:
            stem = Path(result["image"]).stem
            if "frame" in result:
                stem = f"{stem}_{result['frame']:06d}"
            else:
                image = load_image(result["image"], mode="RGB")
                out = save_dir / f"{stem}.jpg"
                draw_detections(image, result["detections"]).save(out)
                paths.append(out)
            height, width = result["size"]
            lines = []
            for det in result["detections"]:
                x1, y1, x2, y2 = det["box"]
                lines.append(f"{det['label']} {(x1 + x2) / 2 / width:.6f} {(y1 + y2) / 2 / height:.6f} "
                             f"{(x2 - x1) / width:.6f} {(y2 - y1) / height:.6f} {det['score']:.5f}")
            (labels_dir / f"{stem}.txt").write_text("\n".join(lines) + ("\n" if lines else ""))
        coco = [
            {"image_id": i, "file_name": Path(r["image"]).name, "category_id": d["label"],
             "bbox": [d["box"][0], d["box"][1], d["box"][2] - d["box"][0], d["box"][3] - d["box"][1]],
             "score": d["score"], **({"segmentation": d["segmentation"]} if "segmentation" in d else {})}
            for i, r in enumerate(results) for d in r["detections"]
        ]
        (save_dir / "predictions_coco.json").write_text(json.dumps(coco))
        return paths


def _graph_detections(outputs: dict[str, torch.Tensor], conf: float | None, iou: float | None, max_det: int | None,
                      classes: list[int] | None, soft_nms: str | None) -> Detections:
    """One image's detections from an R-CNN graph (``boxes``, ``scores``, ``labels``, ``masks``: NMS and the
    model's thresholds built in); ``conf``, ``max_det`` and ``classes`` may only narrow them."""
    if iou is not None or soft_nms:
        raise ValueError("this ONNX file (an R-CNN) has its NMS built in; predict with the torch backend for another "
                         "IoU threshold or Soft-NMS")
    dets = Detections(outputs["boxes"].float(), outputs["scores"].float(), outputs["labels"].long(), outputs.get("masks"))
    keep = dets.scores > (conf if conf is not None else -1.0)
    if classes is not None:
        keep &= torch.isin(dets.labels, torch.as_tensor(list(classes)))
    dets = dets.select(keep)
    return dets if max_det is None else dets.select(torch.arange(min(max_det, len(dets))))


def _video_frames(path: Path):
    """Yield ``(index, RGB frame)`` of a video file read with OpenCV; a clear error if it cannot be opened."""
    import cv2

    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise CorruptVideoError(path, "cannot open it: missing file, unknown codec or not a video")
    index = 0
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            yield index, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            index += 1
    finally:
        capture.release()
    if index == 0:
        raise CorruptVideoError(path, "no readable frames")


def _write_annotated_video(video: Path, frames: list[dict], out: Path) -> Path:
    import cv2

    capture = cv2.VideoCapture(str(video))
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    height, width = frames[0]["size"]
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    from PIL import Image

    for result, (_, frame) in zip(frames, _video_frames(video)):
        drawn = draw_detections(Image.fromarray(frame), result["detections"])
        writer.write(cv2.cvtColor(np.asarray(drawn), cv2.COLOR_RGB2BGR))
    writer.release()
    capture.release()
    return out


def _checkpoint_class_count(path: str) -> int | None:
    state = torch.load(path, map_location="cpu", weights_only=False)
    if isinstance(state, dict) and isinstance(state.get("extras"), dict):
        return state["extras"].get("num_classes")
    return None


def _palette(label: int) -> tuple[int, int, int]:
    rng = np.random.default_rng(label * 7919 + 17)
    return tuple(int(c) for c in rng.integers(60, 256, 3))


def draw_detections(image: Any, detections: list[dict]) -> Any:
    """Boxes with class and score (ground truth: no score); a row's ``"segmentation"`` (COCO RLE) or
    ``"mask"`` (bool array) is blended in its colour."""
    from PIL import Image, ImageDraw

    masked = [d for d in detections if "segmentation" in d or "mask" in d]
    if masked:
        from cvzoo.ops.masks import rle_decode

        pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
        for det in masked:
            inside = det["mask"] if "mask" in det else rle_decode(det["segmentation"]).astype(bool)
            pixels[inside] = 0.5 * pixels[inside] + 0.5 * np.float32(_palette(det["label"]))
        image = Image.fromarray(pixels.astype(np.uint8))
    image = image.copy()
    draw = ImageDraw.Draw(image)
    for det in detections:
        colour = _palette(det["label"])
        draw.rectangle(det["box"], outline=colour, width=2)
        text = str(det.get("class", det["label"])) + (f" {det['score']:.2f}" if "score" in det else "")
        x1, y1 = det["box"][:2]
        draw.rectangle((x1, max(0, y1 - 11), x1 + 6 * len(text), max(0, y1 - 11) + 11), fill=colour)
        draw.text((x1 + 1, max(0, y1 - 11)), text, fill=(0, 0, 0))
    return image


def truth_rows(target: dict[str, Any], class_names: list[str]) -> list[dict]:
    """Ground-truth boxes (and masks) as rows ``draw_detections`` draws: class names, no score."""
    rows = []
    masks = target.get("masks")
    for k, (box, label) in enumerate(zip(np.asarray(target["boxes"]).tolist(), np.asarray(target["labels"]).tolist())):
        row = {"box": box, "label": int(label), "class": class_names[int(label)]}
        if masks is not None and len(masks):
            row["mask"] = np.asarray(masks[k]).astype(bool)
        rows.append(row)
    return rows


def draw_grid(images: list[Any], rows: list[list[dict]], path: Path, cell: int = 256) -> Path:
    """Up to 16 PIL images with their rows (``draw_detections``) in a 4-column grid saved to ``path``."""
    from PIL import Image

    cols = max(1, min(4, len(images)))
    grid_rows = (len(images) + cols - 1) // cols
    canvas = Image.new("RGB", (cols * cell, max(1, grid_rows) * cell), (114, 114, 114))
    for i, (image, image_rows) in enumerate(zip(images, rows)):
        drawn = draw_detections(image, image_rows)
        drawn.thumbnail((cell, cell))
        canvas.paste(drawn, ((i % cols) * cell, (i // cols) * cell))
    canvas.save(path, quality=90)
    return path


def warn_if_validating_on_training_images(train: Any, val: Any, source: str) -> None:
    """Say so when the validation split holds training images (a flat YOLO folder or a single COCO file
    reads the same images for every split; a dataset YAML may name one folder twice): its metrics then
    measure how well the model fits its training set, not how it generalises."""
    train_files = {os.path.realpath(train.image_path(image)) for image in train.images}
    shared = sum(os.path.realpath(val.image_path(image)) in train_files for image in val.images)
    if shared:
        warnings.warn(
            f"{source}: {shared} of the {len(val.images)} validation images are training images, so validation "
            "measures fit, not generalisation; give the dataset a separate val split (a val/ folder, a val entry "
            "in its YAML, a val JSON), or hold out a share of a flat Labelme folder with data.val_fraction",
            UserWarning, stacklevel=3,
        )
