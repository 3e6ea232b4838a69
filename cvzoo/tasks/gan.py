"""Generative adversarial networks (``--task gan``): DCGAN, WGAN-GP and their class-conditional forms.

Two optimizers (``Task.optimizers``): the discriminator steps on every batch, the generator on every
``gan.n_critic``-th, after it (Gulrajani et al. 2017, Alg. 1; ``n_critic=1`` is DCGAN's alternation).
Each has its own Adam settings, ``gan.generator`` / ``gan.discriminator``: the recipe of the model
(DCGAN: lr 2e-4, betas (0.5, 0.999), Radford et al. 2016; WGAN-GP: lr 1e-4, betas (0, 0.9),
n_critic 5, Gulrajani et al. 2017) sets both, and a config without one of them is an error naming it.

Data: any source the classify task reads (idx MNIST / Fashion-MNIST, CIFAR-10 batches, image folders),
served as uint8 at ``data.img_size`` and scaled to [-1, 1] on the device (the generator's tanh range).
Validation: the discriminator's mean scores on real and generated images, and, with ``gan.features``,
FID and KID of the validation images against as many samples in a feature extractor's features. Its
file decides which (``feature_extractor``): a cvzoo classify checkpoint trained on the same data gives
that classifier's pooled features (reported as "FID (cvzoo-<model> features)") and, for a conditional
GAN, its accuracy on the samples' intended classes (the "classification accuracy score"); any other
file must be pytorch-fid's Inception weights (``pt_inception-2015-12-05-6726825d.pth``), which give
the standard FID in Inception-v3's pool3 features and no accuracy score (Inception's classes are
ImageNet's, not the data's). Every validation writes ``samples/epoch<N>.png``: a fixed-noise grid (a conditional
GAN: one row per class), also to TensorBoard. ``cvzoo predict`` on a GAN checkpoint writes samples,
a class grid and a latent interpolation.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from cvzoo.config import Config, ConfigError
from cvzoo.data.datasets.classification import ArrayClassificationDataset, build_classification_dataset
from cvzoo.metrics.generative import fid, kid
from cvzoo.models.registry import create_model
from cvzoo.tasks.base import Evaluator, OptimizerSpec, Task, bare, checkpoint_config
from cvzoo.tasks.classification import ClassificationTask

GRID_SEED = 1234  # the fixed noise of the per-epoch grids (the same images every epoch)


class GanEvaluator(Evaluator):
    """Collects real and generated features (with a feature extractor), discriminator scores and the
    classifier's hits on conditional samples; ``compute`` gives FID, KID and the accuracy score."""

    def __init__(self, kid_subset_size: int = 1000) -> None:
        self.real: list[np.ndarray] = []
        self.fake: list[np.ndarray] = []
        self.sums = {"d_real": 0.0, "d_fake": 0.0, "cas_hits": 0.0, "cas_count": 0.0, "count": 0.0}
        self.kid_subset_size = kid_subset_size
        self.grid: torch.Tensor | None = None  # the fixed-noise sample grid of this validation
        self.noise: torch.Generator | None = None  # the samples' noise, the same sequence every validation

    def update(self, outputs: dict[str, Any], batch: Any) -> None:
        for key in ("d_real", "d_fake"):
            self.sums[key] += float(outputs[key])
        self.sums["count"] += len(batch[1])
        if "cas_hits" in outputs:  # a conditional GAN judged by the feature extractor
            self.sums["cas_hits"] += float(outputs["cas_hits"])
            self.sums["cas_count"] += len(batch[1])
        if "real_features" in outputs:
            self.real.append(outputs["real_features"])
            self.fake.append(outputs["fake_features"])

    def compute(self) -> dict[str, Any]:
        n = max(1.0, self.sums["count"])
        metrics: dict[str, Any] = {"d_real": self.sums["d_real"] / n, "d_fake": self.sums["d_fake"] / n}
        if self.real:
            real, fake = np.concatenate(self.real), np.concatenate(self.fake)
            metrics["fid"] = fid(real, fake)
            size = min(self.kid_subset_size, len(real), len(fake))
            metrics["kid"], metrics["kid_std"] = kid(real, fake, subsets=100, subset_size=size)
        if self.sums["cas_count"]:
            metrics["cas"] = self.sums["cas_hits"] / self.sums["cas_count"]
        if self.grid is not None:
            metrics["samples"] = self.grid
        return metrics

    def state(self) -> Any:
        return self.real, self.fake, dict(self.sums), self.grid

    def load_states(self, states: Sequence[Any]) -> None:
        self.real = [f for s in states for f in s[0]]
        self.fake = [f for s in states for f in s[1]]
        self.sums = {k: sum(s[2][k] for s in states) for k in self.sums}
        self.grid = states[0][3]  # the main rank's


def feature_extractor(path: str) -> FeatureExtractor | InceptionFeatures:
    """The extractor of ``gan.features``, chosen by what the file holds: a cvzoo checkpoint (it records
    its ``task``) must be a classify one and gives ``FeatureExtractor``; anything else is read as
    pytorch-fid's Inception weights (``InceptionFeatures``), loaded strictly."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except (OSError, RuntimeError, pickle.UnpicklingError) as err:  # missing, unreadable or not a torch file
        raise ConfigError(f"gan.features: cannot read {path}: {err}") from err
    if isinstance(checkpoint, dict) and "task" in checkpoint:
        return FeatureExtractor(path, checkpoint)
    return InceptionFeatures(path, checkpoint)


class FeatureExtractor(nn.Module):
    """A cvzoo classifier checkpoint as FID features (its pooled pre-logits) and as the judge of the
    classification accuracy score; takes images in [-1, 1] at any size, channels adapted."""

    def __init__(self, path: str, checkpoint: Any = None) -> None:
        super().__init__()
        if checkpoint is None:
            checkpoint = torch.load(path, map_location="cpu", weights_only=False)
        if not isinstance(checkpoint, dict) or checkpoint.get("task") != "classify":
            raise ConfigError(f"gan.features: {path} is not a cvzoo classify checkpoint (train one with "
                              "`cvzoo train --task classify` on the same data and pass its best.pt)")
        from cvzoo.config import from_dict
        from cvzoo.config.moved import upgrade_saved_config

        task = ClassificationTask(checkpoint_config(from_dict(Config, upgrade_saved_config(checkpoint["config"]))))
        self.model = task.build_inference_model(checkpoint["extras"])
        state = checkpoint["ema"]["module"] if checkpoint.get("ema") else checkpoint["model"]
        self.model.load_state_dict(state)
        self.model.eval().requires_grad_(False)
        self.name = checkpoint.get("model_name", "classifier")
        self.classes = list(task.classes)
        self.size, self.channels = task.img_size, task.model_channels
        self.register_buffer("mean", torch.tensor(task.mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(task.std).view(1, -1, 1, 1), persistent=False)
        self.description = f"cvzoo-{self.name} features"

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``images [B, C, H, W]`` in [-1, 1] -> (pooled features ``[B, D]``, logits ``[B, classes]``)."""
        x = (images.float() + 1) / 2
        if x.shape[1] != self.channels:
            x = x.mean(1, keepdim=True) if self.channels == 1 else x.expand(-1, self.channels, -1, -1)
        if x.shape[-1] != self.size or x.shape[-2] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True)
        x = (x - self.mean) / self.std
        features = self.model.forward_pre_logits(self.model.forward_features(x))
        return features, self.model.get_classifier()(features)


class InceptionFeatures(nn.Module):
    """pytorch-fid's Inception weights file as FID features: the 2048-d pool3 features of the FID
    Inception-v3 (``cvzoo.models.classification.inception_fid``), the standard FID. No logits: its
    classes are not the data's, so it judges no classification accuracy score."""

    def __init__(self, path: str, checkpoint: Any = None) -> None:
        super().__init__()
        from cvzoo.models.classification.inception_fid import load_fid_inception
        from cvzoo.models.weights import WeightsError

        try:
            self.model = load_fid_inception(path, checkpoint)
        except WeightsError as err:  # names the file and lists the keys that do not fit
            raise ConfigError(f"gan.features takes a cvzoo classify checkpoint or pytorch-fid's Inception "
                              f"weights; {err}") from err
        self.name = "inception_v3_fid"
        self.description = "Inception-v3 pool3 features (pytorch-fid's weights): the standard FID"

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, None]:
        """``images [B, C, H, W]`` in [-1, 1] (the generator's range, which the network also takes: it
        resizes them as pytorch-fid does) -> (pool3 features ``[B, 2048]``, None). Grey images are
        repeated over RGB (as torch-fidelity and clean-fid feed them to Inception)."""
        x = images.float()
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return self.model(x), None


class GanTask(Task):
    name = "gan"
    fitness_metric = "fid"
    lower_is_better = ("fid", "kid")
    headline_metrics = ("fid", "kid", "cas", "d_real", "d_fake")
    task_keywords = ("num_classes", "in_channels", "img_size")
    OPTIMIZERS = ("discriminator", "generator")
    generates = True

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        for part in self.OPTIMIZERS:
            settings = getattr(config.gan, part)
            for key in ("lr", "betas"):
                if getattr(settings, key) is None:
                    raise ConfigError(
                        f"gan.{part}.{key}: not set; the gan task trains two optimizers (generator and "
                        f"discriminator) and each needs its lr and betas (the registered GAN models' recipes "
                        f"set both: DCGAN lr 2e-4, betas [0.5, 0.999]; WGAN-GP lr 1e-4, betas [0.0, 0.9])")
        _reject_generic_optim(config)
        self.classes: list[str] = []
        self.channels = 1
        self.img_size = 0
        self.epoch = 0
        self.features: FeatureExtractor | InceptionFeatures | None = None

    # --- data ------------------------------------------------------------------------------------
    def _dataset(self, split: str) -> Dataset:
        data = self.config.data
        dataset, info = build_classification_dataset(data.source, split, val_fraction=data.val_fraction,
                                                     seed=self.config.train.seed, strict=data.strict)
        if not self.classes:
            self.classes, self.channels = list(info.classes), info.channels
            native = info.image_size[0] if info.image_size else info.native_side
            self.img_size = data.img_size or native
        if isinstance(dataset, ArrayClassificationDataset) and tuple(dataset.images.shape[-2:]) == (self.img_size,) * 2:
            dataset.transform = None  # already uint8 at the size: batches go to the device as they are
        else:
            from torchvision.transforms import v2

            dataset.transform = v2.Compose([v2.ToImage(), v2.Resize(self.img_size, antialias=True),
                                            v2.CenterCrop(self.img_size)])
        keep = self.kept_indices(split, len(dataset), dataset.targets)
        if keep is not None:
            dataset = torch.utils.data.Subset(dataset, keep)
        return dataset

    def build_datasets(self) -> tuple[Dataset, Dataset | None]:
        train = self._dataset("train")
        try:
            val = self._dataset("val")
        except FileNotFoundError:
            val = None
        return train, val

    def build_eval_dataset(self, split: str = "val") -> Dataset:
        return self._dataset(split)

    def _real(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 images -> float in [-1, 1] (the channel count of the model), and the labels."""
        images, labels = batch
        images = images.float() / 127.5 - 1
        if images.shape[1] != self.channels:  # an image folder of mixed modes read as RGB for a grey model
            images = images.mean(1, keepdim=True) if self.channels == 1 else images.expand(-1, self.channels, -1, -1)
        return self.memory_format(images), labels

    # --- model -----------------------------------------------------------------------------------
    def _create(self) -> nn.Module:
        return create_model(self.config.model.name, **self.config.model.kwargs, num_classes=len(self.classes),
                            in_channels=self.channels, img_size=self.img_size)

    def build_model(self) -> nn.Module:
        model = self._create()
        if self.config.model.weights:
            from cvzoo.models.weights import load_weights

            load_weights(model, self.config.model.weights, strict=self.config.model.weights_strict)
        if self.config.gan.features:  # loaded before training starts: a wrong file fails at once
            self._load_features()
        return model

    def _load_features(self) -> None:
        self.features = feature_extractor(self.config.gan.features)
        if isinstance(self.features, InceptionFeatures):
            print(f"gan.features: FID / KID in {self.features.description} ({self.config.gan.features}); "
                  "no classification accuracy score (it needs a cvzoo classify checkpoint as gan.features)")
        else:
            print(f"gan.features: FID / KID in {self.features.description} ({self.config.gan.features}), "
                  "not Inception's: they compare only with figures from the same classifier")

    def optimizers(self, model: nn.Module) -> dict[str, OptimizerSpec]:
        """Adam for each network with its own ``gan.<part>`` settings; the discriminator first on every
        batch, the generator every ``gan.n_critic`` batches (weight decay off, as in both papers)."""
        cfg, model = self.config, bare(model)
        specs = {}
        for part, step, every in (("discriminator", self.discriminator_step, 1),
                                  ("generator", self.generator_step, cfg.gan.n_critic)):
            settings = getattr(cfg.gan, part)
            optim = replace(cfg.optim, name="adam", lr=settings.lr, betas=tuple(settings.betas), weight_decay=0.0)
            params = [p for p in getattr(model, part).parameters() if p.requires_grad]
            specs[part] = OptimizerSpec([{"params": params, "name": part}], optim, cfg.scheduler, step,
                                        settings.clip_grad_norm, every)
        return specs

    def checkpoint_extras(self) -> dict[str, Any]:
        return {"classes": self.classes, "in_channels": self.channels, "img_size": self.img_size}

    def restore_extras(self, extras: dict[str, Any]) -> None:
        self.classes = list(extras["classes"])
        self.channels, self.img_size = extras["in_channels"], extras["img_size"]

    def build_inference_model(self, extras: dict[str, Any]) -> nn.Module:
        self.restore_extras(extras)
        return self._create()

    # --- steps -----------------------------------------------------------------------------------
    def training_step(self, model: nn.Module, batch: Any) -> dict[str, torch.Tensor]:
        """The discriminator's step (the first optimizer's); ``generator_step`` is the other."""
        return self.discriminator_step(model, batch)

    def discriminator_step(self, model: nn.Module, batch: Any) -> dict[str, torch.Tensor]:
        real, labels = self._real(batch)
        return model(real, labels, "discriminator")

    def generator_step(self, model: nn.Module, batch: Any) -> dict[str, torch.Tensor]:
        real, labels = self._real(batch)
        return model(real, labels, "generator")

    def on_epoch_start(self, epoch: int, train_dataset: Dataset) -> bool:
        self.epoch = epoch
        return False

    def build_evaluator(self) -> Evaluator:
        if self.config.gan.features and self.features is None:  # val / predict: no build_model before
            self._load_features()
        return GanEvaluator()

    def _grid_inputs(self, model: nn.Module, device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None, int]:
        """The fixed noise (and labels) of the sample grid: 8 x 8, or one row of 8 per class when conditional."""
        gen = torch.Generator().manual_seed(GRID_SEED)
        if model.conditional:
            columns = 8
            labels = torch.arange(len(self.classes)).repeat_interleave(columns)
            z = model.sample_latent(columns, generator=gen).repeat(len(self.classes), 1)
            return z.to(device), labels.to(device), columns
        return model.sample_latent(64, generator=gen).to(device), None, 8

    @torch.no_grad()
    def validation_step(self, model: nn.Module, batch: Any, evaluator: Evaluator) -> dict[str, torch.Tensor]:
        model = bare(model)
        real, labels = self._real(batch)
        if evaluator.grid is None:
            z, grid_labels, columns = self._grid_inputs(model, real.device)
            evaluator.grid = _grid(model.generate(z, grid_labels), columns)
        # Samples with the real batch's labels (a conditional GAN's samples then have the data's classes);
        # their noise is one seeded sequence per validation (per rank), so every epoch is judged on the same z.
        if evaluator.noise is None:
            rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
            evaluator.noise = torch.Generator(device=real.device).manual_seed(GRID_SEED + 1 + rank)
        z = torch.randn(len(real), model.latent_dim, device=real.device, generator=evaluator.noise)
        fake = model.generate(z, labels)
        conditional = labels if model.conditional else None
        outputs: dict[str, Any] = {"d_real": model.discriminator(real, conditional).float().sum(),
                                   "d_fake": model.discriminator(fake, conditional).float().sum()}
        if self.features is not None:
            self.features.to(real.device)
            real_features, _ = self.features(real)
            fake_features, logits = self.features(fake)
            outputs["real_features"] = real_features.double().cpu().numpy()
            outputs["fake_features"] = fake_features.double().cpu().numpy()
            if model.conditional and logits is not None:  # a classifier judges; Inception does not
                outputs["cas_hits"] = (logits.argmax(1) == labels).sum()
        evaluator.update(outputs, batch)
        return {}

    def fitness(self, metrics: dict[str, Any]) -> float:
        """FID (lower is better) when a feature extractor gives one; without ``gan.features`` there is no
        quality measure, and best.pt follows the latest validated epoch (the fitness is the epoch)."""
        if self.config.train.fitness_metric or "fid" in metrics:
            return super().fitness(metrics)
        return float(self.epoch)

    def epoch_images(self, run_dir: Path, epoch: int, metrics: dict[str, Any]) -> dict[str, torch.Tensor]:
        path = self._save_grid(metrics, run_dir / "samples" / f"epoch{epoch}.png")
        return {} if path is None else {"samples": metrics["samples"]}

    def save_artifacts(self, run_dir: Path, metrics: dict[str, Any]) -> list[Path]:
        """The last validation's fixed-noise grid as ``samples.png`` (end of training, ``cvzoo val``)."""
        path = self._save_grid(metrics, run_dir / "samples.png")
        return [] if path is None else [path]

    @staticmethod
    def _save_grid(metrics: dict[str, Any], path: Path) -> Path | None:
        grid = metrics.get("samples")
        if grid is None:
            return None
        from torchvision.utils import save_image

        path.parent.mkdir(parents=True, exist_ok=True)
        save_image(grid, path)
        return path

    def sample_images(self, batch: Any) -> torch.Tensor:
        return (self._real(batch)[0][:16].float().cpu() + 1) / 2

    # --- inference -------------------------------------------------------------------------------
    def example_input(self, batch: int = 1, imgsz: int | None = None) -> torch.Tensor:
        size = imgsz or self.img_size
        return torch.randn(batch, self.channels, size, size)

    def export_module(self, model: nn.Module) -> nn.Module:
        raise ValueError("exporting a GAN checkpoint (its generator, from latent vectors) is not available yet; "
                         "`cvzoo predict` generates images from it")

    def predict_files(self, model: Any, files: list[Path], device: torch.device, **options: Any) -> list[dict]:
        raise ValueError("a GAN checkpoint generates images and takes no input files: run `cvzoo predict "
                         "WEIGHTS --samples N --save DIR` without a source")

    @torch.no_grad()
    def generate(self, model: nn.Module, device: torch.device, save_dir: Path | None, samples: int = 64,
                 seed: int = 0, steps: int = 8) -> list[dict]:
        """``samples`` images (``samples.png`` and one PNG each), a class grid (conditional GANs:
        ``class_grid.png``, one row per class) and a latent interpolation (``interpolation.png``: rows of
        ``steps`` images along the great circle between two latents, White 2016's slerp, which keeps the
        interpolants at the norm a Gaussian latent has). Returns one dict per written sample."""
        from torchvision.utils import save_image

        model = bare(model).eval()
        gen = torch.Generator().manual_seed(seed)
        z = model.sample_latent(samples, generator=gen).to(device)
        labels = (torch.randint(len(self.classes), (samples,), generator=gen).to(device) if model.conditional
                  else None)
        images = (model.generate(z, labels).float().cpu() + 1) / 2
        results = [{"image": f"sample_{i:04d}.png", "class": self.classes[int(labels[i])] if labels is not None
                    else None, "rows": [{"sample": i, **({"class": self.classes[int(labels[i])]}
                                                         if labels is not None else {})}]} for i in range(samples)]
        if save_dir is None:
            return results
        save_dir.mkdir(parents=True, exist_ok=True)
        for i, image in enumerate(images):
            save_image(image, save_dir / f"sample_{i:04d}.png")
        save_image(images, save_dir / "samples.png", nrow=max(1, round(math.sqrt(samples))))
        if model.conditional:
            grid_z, grid_labels, columns = self._grid_inputs(model, device)
            save_image((model.generate(grid_z, grid_labels).float().cpu() + 1) / 2, save_dir / "class_grid.png",
                       nrow=columns)
        ends = model.sample_latent(8, generator=gen).to(device)
        path = torch.stack([slerp(ends[2 * r], ends[2 * r + 1], steps) for r in range(4)]).flatten(0, 1)
        path_labels = (torch.arange(4, device=device).remainder(len(self.classes)).repeat_interleave(steps)
                       if model.conditional else None)
        save_image((model.generate(path, path_labels).float().cpu() + 1) / 2, save_dir / "interpolation.png",
                   nrow=steps)
        return results

    def save_predictions(self, results: list[dict], save_dir: Path) -> list[Path]:
        return sorted(save_dir.glob("*.png"))  # ``generate`` wrote them


def _reject_generic_optim(config: Config) -> None:
    """The run-wide ``optim`` settings and ``train.clip_grad_norm`` are not read by the gan task (its two
    optimizers have their own): set away from their defaults they are an error, not silently unused."""
    from dataclasses import fields

    from cvzoo.config import OptimConfig

    default = OptimConfig()
    changed = [f"optim.{f.name}" for f in fields(OptimConfig) if getattr(config.optim, f.name) != getattr(default, f.name)]
    if config.train.clip_grad_norm:
        changed.append("train.clip_grad_norm")
    if changed:
        key = changed[0]
        raise ConfigError(f"{key}: the gan task does not read it; its two optimizers have their own settings, "
                          f"gan.generator.* and gan.discriminator.* (lr, betas, clip_grad_norm)")


def slerp(a: torch.Tensor, b: torch.Tensor, steps: int) -> torch.Tensor:
    """``steps`` points from ``a`` to ``b`` ([D] each) along the great circle (spherical interpolation)."""
    t = torch.linspace(0, 1, steps, device=a.device)[:, None]
    omega = torch.arccos(torch.clamp(F.cosine_similarity(a, b, dim=0), -1, 1))
    if omega.abs() < 1e-6:  # (anti)parallel latents: the straight line is the arc
        return (1 - t) * a + t * b
    return (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / torch.sin(omega)


def _grid(images: torch.Tensor, columns: int) -> torch.Tensor:
    from torchvision.utils import make_grid

    return make_grid((images.float().cpu() + 1) / 2, nrow=columns, padding=2).clamp(0, 1)


__all__ = ["FeatureExtractor", "GanTask", "InceptionFeatures", "feature_extractor", "slerp"]
