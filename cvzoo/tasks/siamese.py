"""Siamese networks / metric learning: a shared embedding net trained with a triplet, contrastive or
supervised contrastive loss (optionally on two views of each image with an instance term), evaluated by
verification (ROC AUC, EER, best-threshold accuracy) on classes never seen in training."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, Subset

from cvzoo.data.augment.batch import random_affine, random_dilate, random_elastic
from cvzoo.data.augment.classify import classification_eval_transform, classification_train_transform
from cvzoo.data.datasets.classification import build_classification_dataset
from cvzoo.data.datasets.pairs import sample_pairs
from cvzoo.data.images import load_image
from cvzoo.losses.metric_learning import (
    batch_hard_triplet_loss,
    contrastive_loss,
    supervised_contrastive_loss,
)
from cvzoo.metrics.verification import pair_distances, retrieval_topk, verification_metrics
from cvzoo.models.siamese import EmbeddingNet
from cvzoo.tasks.base import Evaluator, Task


class VerificationEvaluator(Evaluator):
    """Collects embeddings; scores fixed seeded pairs of them (genuine/impostor) at compute time."""

    def __init__(self, pair_count: int, ks: tuple[int, ...], seed: int = 0) -> None:
        self.pair_count, self.ks, self.seed = pair_count, ks, seed
        self.embeddings: list[np.ndarray] = []
        self.labels: list[np.ndarray] = []
        self.indices: list[np.ndarray] = []

    def update(self, outputs: torch.Tensor, batch: Any) -> None:
        self.embeddings.append(outputs.detach().float().cpu().numpy())
        self.labels.append(batch[1].cpu().numpy())
        self.indices.append(batch[2].cpu().numpy())

    def state(self) -> Any:
        return (np.concatenate(self.embeddings) if self.embeddings else np.zeros((0, 0)),
                np.concatenate(self.labels) if self.labels else np.zeros(0, np.int64),
                np.concatenate(self.indices) if self.indices else np.zeros(0, np.int64))

    def load_states(self, states: list[Any]) -> None:
        parts = [s for s in states if len(s[1])]
        self.embeddings, self.labels, self.indices = ([p[i] for p in parts] for i in range(3))

    def compute(self) -> dict[str, Any]:
        embeddings, labels, indices = self.state()
        order = np.argsort(indices, kind="mergesort")  # rank-independent order: same pairs under DDP
        embeddings, labels = embeddings[order], labels[order]
        pairs, same = sample_pairs(labels, self.pair_count, seed=self.seed)
        metrics = verification_metrics(same, pair_distances(embeddings, pairs))
        metrics.update(retrieval_topk(embeddings, labels, self.ks))
        metrics["num_samples"] = len(labels)
        return metrics


class _Indexed(Dataset):
    """Adds the sample index to each item (keeps evaluation pairs identical across DDP ranks)."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[Any, int, int]:
        image, label = self.dataset[index]
        return image, label, index


class _TwoViews(Dataset):
    """Each item twice through the (random) transform: ``([2, C, H, W], label)``."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        self.targets = dataset.targets

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        first, label = self.dataset[index]
        second, _ = self.dataset[index]
        return torch.stack([first, second]), label


class SiameseTask(Task):
    name = "siamese"
    fitness_metric = "auc"
    task_keywords = ("num_classes", "in_channels", "backbone", "embedding_dim")
    headline_metrics = ("auc", "eer", "accuracy", "recall@1")

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.classes: list[str] = []
        self.mean: list[float] = []
        self.std: list[float] = []
        self.channels = 1
        self.img_size = 0

    def _split(self, split: str, seen: bool, train: bool) -> Dataset:
        data = self.config.data
        dataset, info = build_classification_dataset(data.source, split, val_fraction=data.val_fraction,
                                                     seed=self.config.train.seed, strict=data.strict)
        self.classes = list(info.classes)
        self.mean, self.std, self.channels = list(info.mean), list(info.std), info.channels
        self.img_size = data.img_size or (info.image_size[0] if info.image_size else 224)
        heldout = set(self.config.siamese.heldout_classes)
        unknown = heldout - set(range(len(self.classes)))
        if unknown:
            raise ValueError(f"siamese.heldout_classes {sorted(unknown)} are not class ids of {data.source} "
                             f"(0..{len(self.classes) - 1})")
        if train:
            dataset.transform = self._train_transform()
        else:
            dataset.transform = classification_eval_transform(self.img_size, self.mean, self.std, self.channels)
        targets = np.asarray(dataset.targets)
        keep = np.flatnonzero(~np.isin(targets, list(heldout)) if seen else np.isin(targets, list(heldout)))
        if len(keep) == 0:
            raise ValueError(f"no {'seen' if seen else 'held-out'} classes in the {split} split of {data.source}")
        # The limits cap images, as in classification (each class's first in turn), counted among the images
        # the split uses (seen classes in training, held-out ones in evaluation); the training pairs and
        # triplets are formed within each batch and the evaluation's from these images (``siamese.eval_pairs``).
        limited = self.kept_indices(split, len(keep), targets[keep])
        if limited is not None:
            keep = keep[limited]
        subset = Subset(dataset, keep.tolist())
        subset.targets = targets[keep].tolist()
        return subset

    def _train_transform(self) -> Any:
        augment = self.config.siamese.augment
        return classification_train_transform(
            self.img_size, self.mean, self.std, self.channels, hflip=augment.hflip,
            padding=None if augment.padding < 0 else augment.padding)

    def _augment_batch(self, images: torch.Tensor) -> torch.Tensor:
        """The batch augmentations of ``siamese.augment`` (:mod:`cvzoo.data.augment.batch`), in this order:
        pen width (``dilate``: probability of a 3x3 dilation), elastic wobble (``elastic_alpha`` /
        ``elastic_sigma``, Simard et al. 2003), then a random rotation/shear/zoom (``degrees``, ``shear``,
        zoom in ``1 +- affine_scale``). Shape-preserving deformations teach invariances (slant, size,
        stroke) that carry over to classes never seen in training."""
        augment = self.config.siamese.augment
        fill = -torch.tensor(self.mean) / torch.tensor(self.std)
        images = random_dilate(images, augment.dilate)
        images = random_elastic(images, augment.elastic_alpha, augment.elastic_sigma, fill)
        # Zoom only comes with a rotation or shear: affine_scale's default (0.5, once shared with
        # detection) would otherwise warp the batches of a recipe that sets neither angle.
        if augment.degrees > 0 or augment.shear > 0:
            images = random_affine(images, augment.degrees, augment.shear, augment.affine_scale, fill)
        return images

    def build_datasets(self) -> tuple[Dataset, Dataset | None]:
        train = self._split("train", seen=True, train=True)
        if self.config.siamese.instance_weight > 0:
            train = _TwoViews(train)
        return train, self.build_eval_dataset("val")

    def build_eval_dataset(self, split: str = "val") -> Dataset:
        return _Indexed(self._split(split, seen=False, train=False))

    def collate(self, samples: list[Any]) -> Any:
        return torch.utils.data.default_collate(samples)

    def _create(self) -> nn.Module:
        return EmbeddingNet(self.config.model.name, self.config.siamese.embedding_dim, self.channels,
                            **self.config.model.kwargs)

    def build_model(self) -> nn.Module:
        return self._create()

    def restore_extras(self, extras: dict[str, Any]) -> None:
        self.classes, self.mean, self.std = extras["classes"], extras["mean"], extras["std"]
        self.channels, self.img_size = extras["channels"], extras["img_size"]

    def build_inference_model(self, extras: dict[str, Any]) -> nn.Module:
        self.restore_extras(extras)
        return self._create()

    def checkpoint_extras(self) -> dict[str, Any]:
        return {"classes": self.classes, "mean": self.mean, "std": self.std, "channels": self.channels,
                "img_size": self.img_size}

    def _loss(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        options = self.config.siamese
        if options.loss == "triplet":
            # Batch-hard mining (Hermans et al., 2017): every anchor with its hardest positive/negative.
            return batch_hard_triplet_loss(embeddings, labels, margin=options.margin)
        if options.loss == "supcon":
            # Supervised contrastive (Khosla et al., 2020): a softmax over the batch per anchor.
            return supervised_contrastive_loss(embeddings, labels, temperature=options.temperature)
        # Contrastive: every pair of the batch, genuine and impostor pairs weighted equally.
        i, j = torch.triu_indices(len(labels), len(labels), offset=1, device=labels.device)
        similar = labels[i] == labels[j]
        per_pair = contrastive_loss(embeddings[i], embeddings[j], similar.float(), margin=options.margin,
                                    reduction="none")
        pos, neg = per_pair[similar], per_pair[~similar]
        return (pos.mean() if len(pos) else per_pair.sum() * 0) + (neg.mean() if len(neg) else per_pair.sum() * 0)

    def training_step(self, model: nn.Module, batch: Any) -> dict[str, torch.Tensor]:
        images, labels = batch
        if images.ndim == 4:
            return {"loss": self._loss(model(self._augment_batch(images)), labels)}
        # Two views [B, 2, C, H, W] (siamese.instance_weight > 0): the class loss sees all 2B images, and
        # the instance term asks each view to find its twin among them (Chen et al., 2020).
        count = images.shape[0]
        views = self._augment_batch(images.transpose(0, 1).flatten(0, 1))  # view 1 of all, then view 2
        embeddings = model(views)
        class_loss = self._loss(embeddings, labels.repeat(2))
        twins = torch.arange(count, device=labels.device).repeat(2)
        instance = supervised_contrastive_loss(embeddings, twins, temperature=self.config.siamese.temperature)
        weight = self.config.siamese.instance_weight
        return {"loss": class_loss + weight * instance, "class_loss": class_loss.detach(),
                "instance_loss": instance.detach()}

    def validation_step(self, model: nn.Module, batch: Any, evaluator: Evaluator) -> dict[str, torch.Tensor]:
        images, labels, _ = batch
        embeddings = model(images)
        evaluator.update(embeddings, batch)
        return {"loss": self._loss(embeddings, labels)}

    def build_evaluator(self) -> Evaluator:
        options = self.config.siamese
        return VerificationEvaluator(options.eval_pairs, tuple(options.retrieval_k), seed=self.config.train.seed)

    def example_input(self, batch: int = 1, imgsz: int | None = None) -> torch.Tensor:
        size = imgsz or self.img_size
        return torch.randn(batch, self.channels, size, size)

    def export_output_names(self) -> list[str]:
        return ["embedding"]

    @torch.no_grad()
    def predict_files(self, model: Any, files: list[Path], device: torch.device, **options: Any) -> list[dict]:
        """Embeddings of the files, and each file's nearest other file by embedding distance."""
        options.pop("topk", None)
        if options:
            raise ValueError(f"siamese predict does not take {sorted(options)}")
        transform = classification_eval_transform(self.img_size, self.mean, self.std, self.channels)
        mode = "L" if self.channels == 1 else "RGB"
        images = torch.stack([transform(load_image(f, mode=mode)) for f in files]).to(device)
        embeddings = model(images).float().cpu().numpy()
        dist = np.sqrt(((embeddings[:, None] - embeddings[None]) ** 2).sum(-1))
        np.fill_diagonal(dist, np.inf)
        results = []
        for i, path in enumerate(files):
            j = int(np.argmin(dist[i])) if len(files) > 1 else -1
            nearest = str(files[j]) if j >= 0 else ""
            row = {"image": str(path), "nearest": nearest, "distance": float(dist[i, j]) if j >= 0 else float("nan")}
            results.append({**row, "embedding": embeddings[i].tolist(), "rows": [row]})
        return results
