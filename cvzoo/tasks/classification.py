"""Image classification: cross-entropy (label smoothing, MixUp/CutMix), top-k metrics, confusion matrix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from cvzoo.data.augment.classify import (
    BatchPadCropFlip,
    MixupCutmix,
    classification_eval_transform,
    classification_train_transform,
)
from cvzoo.data.datasets.classification import ArrayClassificationDataset, build_classification_dataset
from cvzoo.data.images import load_image
from cvzoo.metrics.classification import ClassificationEvaluator
from cvzoo.models.registry import create_model
from cvzoo.models.transfer import freeze, keep_frozen_bn_eval, param_groups
from cvzoo.models.weights import load_weights
from cvzoo.tasks.base import Evaluator, Task


class _EvaluatorAdapter(Evaluator):
    """Adapts ``ClassificationEvaluator`` to the engine's Evaluator protocol."""

    def __init__(self, num_classes: int, class_names: list[str]) -> None:
        self.inner = ClassificationEvaluator(num_classes, class_names)

    def update(self, outputs: torch.Tensor, batch: Any) -> None:
        self.inner.update(outputs.detach().float().cpu(), batch[1].cpu())

    def compute(self) -> dict[str, Any]:
        return self.inner.compute()

    def state(self) -> Any:
        return self.inner.state()

    def load_states(self, states: list[Any]) -> None:
        merged = ClassificationEvaluator(self.inner.num_classes, self.inner.class_names)
        for state in states:
            merged.merge(state)
        self.inner = merged


class ClassificationTask(Task):
    name = "classify"
    fitness_metric = "top1"
    # model.kwargs.in_channels is allowed: it picks the model's input channels (the data is converted).
    task_keywords = ("num_classes",)
    headline_metrics = ("top1", "top5", "precision", "recall")
    # Test-time augmentation: the logits of the image and of its horizontal mirror, averaged.
    supports_augment = True

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.classes: list[str] = []
        self.mean: list[float] = []
        self.std: list[float] = []
        self.data_channels = 3
        self.model_channels = 3
        self.img_size = 0
        self.mixer: MixupCutmix | None = None
        # In-memory small-image data skips the per-sample pipeline: the loader yields uint8 batches and
        # these modules crop/flip/normalise whole batches on the training device (see _batch_level).
        self.batch_train_transform: BatchPadCropFlip | None = None
        self.batch_eval_transform: BatchPadCropFlip | None = None

    # --- data ------------------------------------------------------------------------------------
    def _set_data_info(self, info: Any) -> None:
        self.classes = list(info.classes)
        self.mean, self.std = list(info.mean), list(info.std)
        self.data_channels = info.channels
        native = info.image_size[0] if info.image_size else info.native_side
        # Small images (MNIST, CIFAR-sized folders) train at their own size; photos at 224.
        self.img_size = self.config.data.img_size or min(native, 224)
        # Grey data trains a 1-channel model from scratch; a 3-channel checkpoint gets grey repeated.
        self.model_channels = 3 if (self.config.model.weights and info.channels == 1) else info.channels
        self.model_channels = self.config.model.kwargs.get("in_channels", self.model_channels)

    def _train_transform(self) -> Any:
        aug = self.config.classify.augment
        return classification_train_transform(
            self.img_size, self.mean, self.std, self.model_channels, scale=tuple(aug.scale), hflip=aug.hflip,
            color_jitter=aug.color_jitter, auto_augment="randaugment" if aug.randaugment else None,
            random_erasing=aug.random_erasing, padding=None if aug.padding < 0 else aug.padding,
        )

    def _batch_level(self, dataset: Dataset) -> bool:
        """Whether ``dataset`` can skip the per-sample transform for the batched one.

        True for in-memory uint8 data (idx files, CIFAR batches, the bundled sample) already at the
        training size when the augmentation is the small-image preset (pad-crop + flip) alone: that
        preset is a handful of tensor ops on a whole batch, while per-sample transforms cost a 2-core
        machine about as much as the forward pass of a small network.
        """
        aug = self.config.classify.augment
        base = dataset.dataset if isinstance(dataset, torch.utils.data.Subset) else dataset
        return (
            isinstance(base, ArrayClassificationDataset)
            and tuple(base.images.shape[-2:]) == (self.img_size, self.img_size)
            and self.img_size <= 64
            and aug.color_jitter <= 0 and not aug.randaugment and aug.random_erasing <= 0
        )

    def _to_float(self, images: torch.Tensor, train: bool) -> torch.Tensor:
        """uint8 batches from the batch-level path -> normalised float32 (augmented when training)."""
        if images.dtype != torch.uint8:
            return images
        module = self.batch_train_transform if train else self.batch_eval_transform
        if module is None:
            raise RuntimeError("got a uint8 batch but the dataset was not built for batch-level transforms")
        return module.to(images.device)(images)

    def _eval_transform(self) -> Any:
        return classification_eval_transform(self.img_size, self.mean, self.std, self.model_channels)

    def _dataset(self, split: str, train: bool) -> Dataset:
        data = self.config.data
        dataset, info = build_classification_dataset(
            data.source, split, val_fraction=data.val_fraction, seed=self.config.train.seed, strict=data.strict,
        )
        if not self.classes:
            self._set_data_info(info)
        elif list(info.classes) != self.classes:
            raise ValueError(
                f"{data.source!r} has classes {list(info.classes)[:10]}... but the model was trained on "
                f"{self.classes[:10]}...; class lists must match"
            )
        if self._batch_level(dataset):
            dataset.transform = None
            aug = self.config.classify.augment
            pad = max(1, round(self.img_size / 8)) if aug.padding < 0 else aug.padding
            if train:
                self.batch_train_transform = BatchPadCropFlip(
                    pad, aug.hflip, self.mean, self.std, channels=self.model_channels
                )
            else:
                self.batch_eval_transform = BatchPadCropFlip(0, 0.0, self.mean, self.std, self.model_channels)
        else:
            dataset.transform = self._train_transform() if train else self._eval_transform()
        keep = self.kept_indices(split, len(dataset), dataset.targets)
        if keep is not None:
            dataset = torch.utils.data.Subset(dataset, keep)
        return dataset

    def _train_and_val(self) -> tuple[Dataset, Dataset | None]:
        """The train split and the val split when the source has one (``_dataset`` raises FileNotFoundError)."""
        train = self._dataset("train", train=True)
        try:
            val = self._dataset("val", train=False)
        except FileNotFoundError:
            val = None
        return train, val

    def build_datasets(self) -> tuple[Dataset, Dataset | None]:
        train, val = self._train_and_val()
        aug = self.config.classify.augment
        if aug.mixup > 0 or aug.cutmix > 0:
            self.mixer = MixupCutmix(
                len(self.classes), mixup_alpha=aug.mixup, cutmix_alpha=aug.cutmix,
                label_smoothing=self.config.train.label_smoothing,
            )
        return train, val

    def build_eval_dataset(self, split: str = "val") -> Dataset:
        return self._dataset(split, train=False)

    # --- model -----------------------------------------------------------------------------------
    def _create(self) -> nn.Module:
        kwargs = {**self.config.model.kwargs, "num_classes": len(self.classes), "in_channels": self.model_channels}
        return create_model(self.config.model.name, **kwargs)

    def build_model(self) -> nn.Module:
        model = self._create()
        cfg = self.config.model
        if cfg.weights:
            report = load_weights(model, cfg.weights, strict=cfg.weights_strict and not cfg.reset_head)
            if report is not None and getattr(report, "mismatched_shapes", None):
                print(f"weights: {report}")
        if cfg.freeze:
            freeze(model, cfg.freeze)
        return model

    def restore_extras(self, extras: dict[str, Any]) -> None:
        self.classes = list(extras["classes"])
        self.mean, self.std = list(extras["mean"]), list(extras["std"])
        self.model_channels = extras["in_channels"]
        self.data_channels = extras.get("data_channels", self.model_channels)
        self.img_size = extras["img_size"]

    def build_inference_model(self, extras: dict[str, Any]) -> nn.Module:
        self.restore_extras(extras)
        return self._create()

    def checkpoint_extras(self) -> dict[str, Any]:
        return {
            "classes": self.classes, "mean": self.mean, "std": self.std, "in_channels": self.model_channels,
            "data_channels": self.data_channels, "img_size": self.img_size,
        }

    def param_groups(self, model: nn.Module) -> list[dict[str, Any]]:
        optim = self.config.optim
        return param_groups(
            model, optim.lr, backbone_lr_mult=optim.backbone_lr_mult, weight_decay=optim.weight_decay,
            no_decay_norm_bias=optim.no_decay_norm_bias,
        )

    def set_train_mode(self, model: nn.Module) -> None:
        keep_frozen_bn_eval(model)

    # --- steps -----------------------------------------------------------------------------------
    def _loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if targets.ndim == 2:  # soft targets from MixUp/CutMix (smoothing already folded in)
            return torch.sum(-targets * F.log_softmax(logits.float(), dim=-1), dim=-1).mean()
        return F.cross_entropy(logits.float(), targets, label_smoothing=self.config.train.label_smoothing)

    def training_step(self, model: nn.Module, batch: Any) -> dict[str, torch.Tensor]:
        images, labels = batch
        images = self._to_float(images, train=True)
        targets = labels
        if self.mixer is not None:
            images, targets = self.mixer(images, labels)
        images = self.memory_format(images)
        outputs = model(images)
        if isinstance(outputs, (tuple, list)):
            # GoogLeNet: main logits + auxiliary classifiers, weighted 0.3 each (Szegedy et al., 2015).
            main, *aux = outputs
            loss_main = self._loss(main, targets)
            loss_aux = sum(self._loss(a, targets) for a in aux)
            loss = loss_main + self.config.train.aux_loss_weight * loss_aux
            return {"loss": loss, "loss_main": loss_main.detach(), "loss_aux": loss_aux.detach()}
        return {"loss": self._loss(outputs, targets)}

    def _logits(self, model: Any, images: torch.Tensor) -> torch.Tensor:
        """The model's logits; with ``self.augment`` averaged with those of the mirrored images.

        Only meaningful where a mirrored image keeps its class (clothes, objects; not digits or text),
        i.e. where the model was trained with ``classify.augment.hflip > 0``.
        """
        logits = model(images)
        if self.augment:
            logits = (logits.float() + model(images.flip(-1)).float()) / 2
        return logits

    def validation_step(self, model: nn.Module, batch: Any, evaluator: Evaluator) -> dict[str, torch.Tensor]:
        images, labels = batch
        logits = self._logits(model, self._to_float(images, train=False))
        evaluator.update(logits, batch)
        return {"loss": F.cross_entropy(logits.float(), labels)}

    def batch_images(self, batch: Any) -> torch.Tensor:
        return self._to_float(batch[0], train=False)

    def build_evaluator(self) -> Evaluator:
        return _EvaluatorAdapter(len(self.classes), self.classes)

    def sample_images(self, batch: Any) -> torch.Tensor:
        images = batch[0][:16].detach()
        if images.dtype == torch.uint8:
            images = self._to_float(images, train=True)
        images = images.float().cpu()
        mean = torch.tensor(self.mean if len(self.mean) == images.shape[1] else self.mean * images.shape[1])
        std = torch.tensor(self.std if len(self.std) == images.shape[1] else self.std * images.shape[1])
        return images * std.view(1, -1, 1, 1) + mean.view(1, -1, 1, 1)

    def plot_train_batch(self, batch: Any, path: Path, cell: int = 96) -> Path:
        """``train_batch0.jpg``: up to 16 images of the first training batch as the model sees them (augmented,
        normalisation undone), 4 per row, each with its class (the larger share under mixup / cutmix)."""
        from PIL import Image, ImageDraw

        images = self.sample_images(batch).clamp(0, 1)
        labels = batch[1][: len(images)]
        mixed = labels.ndim == 2
        classes = (labels.argmax(1) if mixed else labels).tolist()
        cols = max(1, min(4, len(images)))
        grid = Image.new("RGB", (cols * cell, -(-len(images) // cols) * (cell + 14)), (114, 114, 114))
        draw = ImageDraw.Draw(grid)
        for i, (image, label) in enumerate(zip(images, classes)):
            pixels = (image * 255).round().byte().permute(1, 2, 0).numpy()
            tile = Image.fromarray(pixels.squeeze(-1) if pixels.shape[-1] == 1 else pixels[..., :3]).convert("RGB")
            x, y = (i % cols) * cell, (i // cols) * (cell + 14)
            grid.paste(tile.resize((cell, cell), Image.NEAREST), (x, y))
            name = self.classes[label] if label < len(self.classes) else str(label)
            draw.text((x + 2, y + cell), f"{name}{' (mix)' if mixed else ''}", fill=(255, 255, 255))
        grid.save(path, quality=90)
        return path

    def save_artifacts(self, run_dir: Path, metrics: dict[str, Any]) -> list[Path]:
        from cvzoo.metrics.plots_classification import plot_confusion_matrix

        cm = metrics.get("confusion_matrix")
        if cm is None:
            return []
        paths = [
            plot_confusion_matrix(np.asarray(cm), self.classes, run_dir / "confusion_matrix.png", normalize=False),
            plot_confusion_matrix(
                np.asarray(cm), self.classes, run_dir / "confusion_matrix_normalized.png", normalize=True
            ),
        ]
        rows = metrics.get("per_class") or []
        if rows:
            lines = ["class,precision,recall,f1,support"]
            for name, row in zip(self.classes, rows):
                lines.append(f"{name},{row['precision']:.4f},{row['recall']:.4f},{row['f1']:.4f},{row['support']}")
            (run_dir / "per_class.csv").write_text("\n".join(lines) + "\n")
            paths.append(run_dir / "per_class.csv")
        return paths

    # --- inference -------------------------------------------------------------------------------
    def example_input(self, batch: int = 1, imgsz: int | None = None) -> torch.Tensor:
        size = imgsz or self.img_size
        return torch.randn(batch, self.model_channels, size, size)

    def export_output_names(self) -> list[str]:
        return ["logits"]

    @torch.no_grad()
    def predict_files(self, model: Any, files: list[Path], device: torch.device, topk: int = 5,
                      batch_size: int = 32, **options: Any) -> list[dict]:
        if options:
            raise ValueError(f"classification predict does not take {sorted(options)}")
        transform = self._eval_transform()
        mode = "L" if self.data_channels == 1 else "RGB"
        results = []
        k = min(topk, len(self.classes))
        for start in range(0, len(files), batch_size):
            chunk = files[start : start + batch_size]
            images = torch.stack([transform(load_image(path, mode=mode)) for path in chunk]).to(device)
            if isinstance(model, nn.Module):
                model.eval()
            probs = torch.softmax(self._logits(model, images).float(), dim=-1).cpu()
            values, indices = probs.topk(k, dim=-1)
            for path, vals, idxs in zip(chunk, values.tolist(), indices.tolist()):
                top = [{"class": self.classes[i], "index": i, "prob": p} for i, p in zip(idxs, vals)]
                rows = [{"image": str(path), "rank": r + 1, **t} for r, t in enumerate(top)]
                results.append({"image": str(path), "topk": top, "rows": rows})
        return results

    def save_predictions(self, results: list[dict], save_dir: Path) -> list[Path]:
        paths = super().save_predictions(results, save_dir)
        from PIL import ImageDraw

        for result in results:
            image = load_image(result["image"], mode="RGB")
            scale = max(1, 160 // max(image.size))
            image = image.resize((image.width * scale, image.height * scale))
            canvas = image.copy()
            draw = ImageDraw.Draw(canvas)
            label = "\n".join(f"{t['class']} {t['prob']:.2f}" for t in result["topk"][:3])
            draw.rectangle((0, 0, canvas.width, 12 * min(3, len(result["topk"])) + 4), fill=(0, 0, 0))
            draw.multiline_text((2, 2), label, fill=(255, 255, 0))
            out = save_dir / (Path(result["image"]).stem + "_pred.png")
            canvas.save(out)
            paths.append(out)
        return paths


__all__ = ["ClassificationTask"]
