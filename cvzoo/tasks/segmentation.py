"""Semantic segmentation: the segmenter's criterion configured from the ``segment`` section, confusion-
matrix metrics (mIoU first), class-map predictions written as palette PNGs and colour overlays.

The options are in ``config.segment`` (``cvzoo.config.SegmentConfig``): the loss (``ce``, ``dice``,
``focal``, ``ce+dice``, ``focal+dice``, with ``dice_weight``, ``focal_gamma``, ``class_weights``),
mask handling (``ignore_unknown``, ``allow_missing_masks``), ``eval_size`` and the training
augmentation ``segment.augment`` (``hflip``, ``vflip``, ``scale``, ``color_jitter``). ``model.kwargs``
holds only the model's constructor arguments.

The loss is the model's own (``Segmenter.loss``): the task gives the model its criterion
(``cvzoo.losses.SegmentationLoss``) when it builds it. The auxiliary head's loss is added with
``config.train.aux_loss_weight`` (0.5 for this task; torchvision's recipe). ``config.data.img_size`` is
the training crop (0 = no crop). Predictions are always scored at the original mask resolution.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset, Subset

from cvzoo.data.datasets.segmentation import (
    IGNORE_INDEX,
    IMAGENET_MEAN,
    IMAGENET_STD,
    SegmentationDataset,
    SegmentationEvalTransform,
    SegmentationTrainTransform,
    load_segmentation_split,
    pad_collate,
)
from cvzoo.data.formats.voc_seg import voc_colormap
from cvzoo.data.images import MissingDataError, load_image
from cvzoo.losses import SegmentationLoss
from cvzoo.metrics.segmentation import SegmentationMetrics
from cvzoo.models.registry import create_model
from cvzoo.models.transfer import freeze, keep_frozen_bn_eval, param_groups
from cvzoo.models.weights import load_weights
from cvzoo.tasks.base import Evaluator, Task, bare

GRID_SAMPLES = 8


class SegmentationEvaluator(Evaluator):
    """The engine's Evaluator over ``SegmentationMetrics`` (pixel confusion matrix)."""

    def __init__(self, class_names: list[str]) -> None:
        self.class_names = class_names
        self.inner = SegmentationMetrics(len(class_names), class_names)

    def update(self, outputs: list[torch.Tensor], batch: list[torch.Tensor]) -> None:
        """``outputs``: predicted class maps; ``batch``: the matching true class maps."""
        for pred, target in zip(outputs, batch):
            self.inner.update(pred.cpu(), target.cpu())

    def compute(self) -> dict[str, Any]:
        return self.inner.compute()

    def state(self) -> Any:
        return self.inner.state()

    def load_states(self, states: list[Any]) -> None:
        merged = SegmentationMetrics(len(self.class_names), self.class_names)
        for state in states:
            merged.merge(state)
        self.inner = merged


class _OutOnly(nn.Module):
    """Export wrapper: the ``"out"`` logits ``[B, K, H, W]`` of a dict-returning segmenter."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)["out"]


class SegmentationTask(Task):
    name = "segment"
    fitness_metric = "mIoU"
    takes_backbone = True
    headline_metrics = ("mIoU", "pixel_acc", "mean_acc", "mDice")

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.classes: list[str] = []
        self.palette: np.ndarray = voc_colormap(256)
        self.mean, self.std = list(IMAGENET_MEAN), list(IMAGENET_STD)
        self.img_size = 0
        self._grid: tuple[list, list, list] | None = None

    # --- model arguments -----------------------------------------------------------------------
    def _model_kwargs(self) -> dict[str, Any]:
        return {**self.model_kwargs(), "num_classes": len(self.classes)}

    # --- data --------------------------------------------------------------------------------------
    def _dataset(self, split: str, train: bool) -> Dataset:
        data, options = self.config.data, self.config.segment
        source = load_segmentation_split(
            data.source, split, class_names=self.classes or None, val_fraction=data.val_fraction,
            seed=self.config.train.seed, allow_missing_masks=options.allow_missing_masks,
            ignore_unknown=options.ignore_unknown,
        )
        if not self.classes:
            self.classes = list(source.class_names)
            if source.palette is not None and len(source.palette) >= len(self.classes):
                self.palette = np.asarray(source.palette, np.uint8)
            self.img_size = int(data.img_size)
        if train:
            aug = options.augment
            transform: Any = SegmentationTrainTransform(
                self.img_size, tuple(aug.scale), aug.hflip, aug.color_jitter, self.mean, self.std, vflip=aug.vflip)
        else:
            transform = SegmentationEvalTransform(options.eval_size, self.mean, self.std)
        dataset: Dataset = SegmentationDataset(source, transform, options.ignore_unknown)
        keep = self.kept_indices(split, len(dataset))  # masks have no single class: the first images
        if keep is not None:
            dataset = Subset(dataset, keep)
        return dataset

    def build_datasets(self) -> tuple[Dataset, Dataset | None]:
        train = self._dataset("train", train=True)
        try:
            val = self._dataset("val", train=False)
        except MissingDataError as err:
            warnings.warn(f"no validation split ({err}); training without validation", UserWarning, stacklevel=2)
            val = None
        return train, val

    def build_eval_dataset(self, split: str = "val") -> Dataset:
        return self._dataset(split, train=False)

    def collate(self, samples: list[Any]) -> Any:
        return pad_collate(samples)

    # --- model -------------------------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        model = create_model(self.config.model.name, **self._model_kwargs())
        cfg = self.config.model
        if cfg.weights:
            report = load_weights(model, cfg.weights, strict=cfg.weights_strict and not cfg.reset_head)
            if not report.ok:
                print(f"weights: {report.summary()}")
        if cfg.freeze:
            backbone = getattr(model, "backbone", None)
            if backbone is None or not hasattr(backbone, "body"):
                raise ValueError(f"model.freeze needs a model with a classification backbone; "
                                 f"{cfg.name!r} has none")
            freeze(backbone.body, cfg.freeze)
        model.criterion = self.criterion()
        return model

    def restore_extras(self, extras: dict[str, Any]) -> None:
        self.classes = list(extras["classes"])
        self.palette = np.asarray(extras.get("palette") or voc_colormap(len(self.classes)), np.uint8)
        self.mean, self.std = list(extras["mean"]), list(extras["std"])
        self.img_size = int(extras.get("img_size", 0))

    def build_inference_model(self, extras: dict[str, Any]) -> nn.Module:
        self.restore_extras(extras)
        return create_model(self.config.model.name, **self._model_kwargs())

    def checkpoint_extras(self) -> dict[str, Any]:
        return {
            "classes": self.classes, "palette": self.palette[: max(len(self.classes), 1)].tolist(),
            "mean": self.mean, "std": self.std, "img_size": self.img_size,
        }

    def param_groups(self, model: nn.Module) -> list[dict[str, Any]]:
        """Backbone parameters at ``lr * optim.backbone_lr_mult``, the rest (heads, decoder) at ``lr``."""
        optim = self.config.optim
        return param_groups(model, optim.lr, backbone_lr_mult=optim.backbone_lr_mult,
                            weight_decay=optim.weight_decay, no_decay_norm_bias=optim.no_decay_norm_bias,
                            split="backbone")

    def set_train_mode(self, model: nn.Module) -> None:
        keep_frozen_bn_eval(model)

    # --- loss --------------------------------------------------------------------------------------
    def criterion(self) -> SegmentationLoss:
        """The model's criterion from ``segment`` (and ``train.label_smoothing``), for the classes read."""
        options = self.config.segment
        weights = options.class_weights
        if weights is not None and len(weights) != len(self.classes):
            raise ValueError(f"segment.class_weights has {len(weights)} values for {len(self.classes)} classes")
        return SegmentationLoss(options.loss, options.dice_weight, options.focal_gamma, weights,
                                self.config.train.label_smoothing, IGNORE_INDEX)

    def training_step(self, model: nn.Module, batch: Any) -> dict[str, torch.Tensor]:
        images, masks, _ = batch
        outputs = model(self.memory_format(images))
        return bare(model).loss(outputs, masks, aux_weight=self.config.train.aux_loss_weight)

    # --- validation --------------------------------------------------------------------------------
    def build_evaluator(self) -> Evaluator:
        self._grid = None
        return SegmentationEvaluator(self.classes)

    def _per_image_logits(self, logits: torch.Tensor, sizes: torch.Tensor) -> list[torch.Tensor]:
        """Each sample's logits ``[1, K, h, w]``: padding removed, resized to its mask's resolution."""
        out = []
        for i, (img_h, img_w, mask_h, mask_w) in enumerate(sizes.tolist()):
            item = logits[i : i + 1, :, :img_h, :img_w].float()
            if (img_h, img_w) != (mask_h, mask_w):
                item = F.interpolate(item, size=(mask_h, mask_w), mode="bilinear", align_corners=False)
            out.append(item)
        return out

    def validation_step(self, model: nn.Module, batch: Any, evaluator: Evaluator) -> dict[str, torch.Tensor]:
        images, masks, sizes = batch
        logits = model(images)["out"] if isinstance(model, nn.Module) else self._graph_logits(model, images, sizes)
        per_image = self._per_image_logits(logits, sizes)
        targets = [masks[i, :h, :w] for i, (_, _, h, w) in enumerate(sizes.tolist())]
        preds = [logits.argmax(1)[0] for logits in per_image]
        evaluator.update(preds, targets)
        if self._grid is None:
            self._grid = self._grid_samples(images, sizes, targets, preds)
        losses = [F.cross_entropy(lg, t[None], ignore_index=IGNORE_INDEX, reduction="sum") for lg, t in zip(per_image, targets)]
        pixels = sum(int((t != IGNORE_INDEX).sum()) for t in targets)
        return {"loss": torch.stack(losses).sum() / max(1, pixels)}

    def _graph_logits(self, model: Any, images: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
        """An exported graph's logits for a padded batch: each image resized to the export's fixed size (as
        ``predict_files`` does), run, and its logits resized back into the image's place in the batch."""
        size = self._export_size()
        crops = [F.interpolate(images[i : i + 1, :, :h, :w].float(), size=(size, size), mode="bilinear",
                               align_corners=False) for i, (h, w, _, _) in enumerate(sizes.tolist())]
        out = model(torch.cat(crops)).to(images.device)
        logits = images.new_zeros(images.shape[0], out.shape[1], *images.shape[-2:], dtype=torch.float32)
        for i, (h, w, _, _) in enumerate(sizes.tolist()):
            logits[i, :, :h, :w] = F.interpolate(out[i : i + 1].float(), size=(h, w), mode="bilinear",
                                                 align_corners=False)[0]
        return logits

    def _denormalize(self, image: torch.Tensor) -> np.ndarray:
        mean = torch.tensor(self.mean, device=image.device).view(-1, 1, 1)
        std = torch.tensor(self.std, device=image.device).view(-1, 1, 1)
        return ((image.float() * std + mean).clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()

    def _grid_samples(self, images, sizes, targets, preds) -> tuple[list, list, list]:
        shown, grid_t, grid_p = [], [], []
        for i, (img_h, img_w, mask_h, mask_w) in enumerate(sizes.tolist()[:GRID_SAMPLES]):
            image = images[i : i + 1, :, :img_h, :img_w]
            if (img_h, img_w) != (mask_h, mask_w):
                image = F.interpolate(image.float(), size=(mask_h, mask_w), mode="bilinear", align_corners=False)
            shown.append(self._denormalize(image[0]))
            grid_t.append(targets[i].cpu().numpy())
            grid_p.append(preds[i].cpu().numpy())
        return shown, grid_t, grid_p

    def sample_images(self, batch: Any) -> torch.Tensor:
        images = batch[0][:16].detach().float().cpu()
        mean, std = torch.tensor(self.mean).view(1, -1, 1, 1), torch.tensor(self.std).view(1, -1, 1, 1)
        return (images * std + mean).clamp(0, 1)

    def save_artifacts(self, run_dir: Path, metrics: dict[str, Any]) -> list[Path]:
        from cvzoo.metrics.plots_classification import plot_confusion_matrix
        from cvzoo.metrics.plots_segmentation import save_prediction_grid, write_per_class_csv

        paths: list[Path] = []
        if metrics.get("per_class"):
            paths.append(write_per_class_csv(metrics["per_class"], run_dir / "per_class_iou.csv"))
        cm = metrics.get("confusion_matrix")
        if cm is not None:
            paths.append(plot_confusion_matrix(np.asarray(cm), self.classes, run_dir / "confusion_matrix.png",
                                               normalize=True, title="Pixel confusion matrix (row-normalised)"))
        if self._grid is not None:
            paths.append(save_prediction_grid(*self._grid, self.palette, run_dir / "val_batch0_pred.jpg"))
        return paths

    # --- inference ---------------------------------------------------------------------------------
    def _export_size(self, imgsz: int | None = None) -> int:
        return int(imgsz or self.config.segment.eval_size or self.img_size or 512)

    def example_input(self, batch: int = 1, imgsz: int | None = None) -> torch.Tensor:
        size = self._export_size(imgsz)
        return torch.randn(batch, 3, size, size)

    def export_module(self, model: nn.Module) -> nn.Module:
        return _OutOnly(model)

    def export_output_names(self) -> list[str]:
        return ["logits"]

    @torch.no_grad()
    def predict_files(self, model: Any, files: list[Path], device: torch.device, **options: Any) -> list[dict]:
        """Class maps at each image's own resolution.

        A torch model runs on the image as it is (or resized by ``eval_size``); any other callable (an
        exported graph with a fixed input size) gets the image resized to the export size. ``topk``
        (always sent by the CLI) is ignored.

        Returns:
            Per image ``{"image", "height", "width", "mask": [H, W] uint8 class map, "classes": {name:
            pixel fraction}, "rows": [...]}``.
        """
        options.pop("topk", None)
        if options:
            raise ValueError(f"segmentation predict does not take {sorted(options)}")
        transform = SegmentationEvalTransform(self.config.segment.eval_size, self.mean, self.std)
        is_torch = isinstance(model, nn.Module)
        if is_torch:
            model.eval()
        results = []
        for path in files:
            image = load_image(path, mode="RGB")
            tensor = torch.from_numpy(np.array(image, np.uint8)).permute(2, 0, 1)
            x = transform.image(tensor)[None]
            if not is_torch:
                size = self._export_size()
                x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
            out = model(x.to(device))
            logits = out["out"] if isinstance(out, dict) else out
            logits = F.interpolate(logits.float().cpu(), size=(image.height, image.width), mode="bilinear",
                                   align_corners=False)
            class_map = logits.argmax(1)[0].numpy().astype(np.uint8)
            counts = np.bincount(class_map.ravel(), minlength=len(self.classes))
            total = max(1, class_map.size)
            rows = [{"image": str(path), "class": self.classes[c], "index": int(c), "pixels": int(counts[c]),
                     "fraction": float(counts[c] / total)} for c in np.flatnonzero(counts)]
            results.append({
                "image": str(path), "height": image.height, "width": image.width, "mask": class_map,
                "classes": {row["class"]: row["fraction"] for row in rows}, "rows": rows,
            })
        return results

    def save_predictions(self, results: list[dict], save_dir: Path) -> list[Path]:
        """``<stem>_mask.png`` (palette PNG of class indices), ``<stem>_overlay.jpg`` and predictions.json."""
        from PIL import Image

        from cvzoo.metrics.plots_segmentation import overlay

        save_dir = Path(save_dir)
        paths = super().save_predictions([{k: v for k, v in r.items() if k != "mask"} for r in results], save_dir)
        palette = np.zeros((256, 3), np.uint8)
        palette[: len(self.palette)] = self.palette[:256]
        palette[IGNORE_INDEX] = voc_colormap()[IGNORE_INDEX]
        for result in results:
            stem = Path(result["image"]).stem
            png = Image.fromarray(result["mask"])  # "L"; putpalette makes it "P" with the indices kept
            png.putpalette(palette.ravel().tolist())
            mask_path = save_dir / f"{stem}_mask.png"
            png.save(mask_path)
            image = np.array(load_image(result["image"], mode="RGB"), np.uint8)
            overlay_path = save_dir / f"{stem}_overlay.jpg"
            Image.fromarray(overlay(image, result["mask"], self.palette)).save(overlay_path, quality=90)
            paths += [mask_path, overlay_path]
        return paths

    def fitness(self, metrics: dict[str, Any]) -> float:
        value = super().fitness(metrics)
        return -math.inf if math.isnan(value) else value


__all__ = ["SegmentationEvaluator", "SegmentationTask"]
