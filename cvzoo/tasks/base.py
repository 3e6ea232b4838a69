"""The Task protocol: everything the engine needs to know about a task, and nothing more.

The trainer calls these methods and never asks which task it runs (DESIGN.md, Contracts). A task
owns its model construction, datasets, batching, loss and metrics; the engine owns the loop,
optimisation, checkpoints, logging and distribution.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset, default_collate

from cvzoo.config import Config, ConfigError, OptimConfig, SchedulerConfig
from cvzoo.config.moved import moved_hint
from cvzoo.data.limit import limited_indices
from cvzoo.models.registry import ModelArgumentError, UnknownModelError, check_model_kwargs, split_name
from cvzoo.models.transfer import param_groups


def bare(model: nn.Module) -> nn.Module:
    """The model inside a DistributedDataParallel wrapper, whose methods (``loss``) the wrapper hides."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def checkpoint_config(config: Config) -> Config:
    """The config a checkpoint's model is rebuilt from: ``model.name`` without a weight tag. A run started
    from published weights (``resnet50.tv_in1k``) keeps the tag in its config, but its checkpoint holds the
    trained weights: rebuilding must not download (or, offline, fail on) the weights it started from."""
    arch, tag = split_name(config.model.name)
    return replace(config, model=replace(config.model, name=arch)) if tag else config


@dataclass
class OptimizerSpec:
    """One of a task's optimizers: what it trains, how, and the step that computes its loss.

    A task with one optimizer (every task but the GAN) has one spec, ``Task.optimizers``' default. With
    several (a GAN's generator and discriminator) the trainer runs, on each batch, the step of every spec
    whose turn it is, in the mapping's order, each followed by its own backward pass and optimizer step.

    Attributes:
        param_groups: the optimizer's parameter groups (``cvzoo.models.transfer.param_groups``).
        optim: its optimizer settings (``build_optimizer``).
        scheduler: its lr schedule (``build_scheduler``; stepped once per batch, as every schedule is).
        step: ``step(model, batch) -> {"loss": scalar, ...parts}``: the forward and loss of this optimizer.
        clip_grad_norm: clip the gradient norm of its parameters to this before a step (0 = off).
        every: step on the batches whose index over the run is a multiple of ``every`` (a WGAN-GP
            generator steps once per ``n_critic`` critic steps, Gulrajani et al. 2017, Alg. 1).
    """

    param_groups: list[dict[str, Any]]
    optim: OptimConfig
    scheduler: SchedulerConfig
    step: Callable[[nn.Module, Any], dict[str, torch.Tensor]]
    clip_grad_norm: float = 0.0
    every: int = 1


class Evaluator(ABC):
    """Accumulates validation results batch by batch; mergeable across DDP ranks."""

    @abstractmethod
    def update(self, outputs: Any, batch: Any) -> None: ...

    @abstractmethod
    def compute(self) -> dict[str, Any]:
        """Return the metrics; scalar entries (floats) are logged under ``metrics/<name>``."""

    @abstractmethod
    def state(self) -> Any:
        """A picklable summary of what was accumulated (sent between ranks)."""

    @abstractmethod
    def load_states(self, states: Sequence[Any]) -> None:
        """Replace the accumulated state by the union of ``states`` (one per rank)."""


class Task(ABC):
    """Base class of the classify / detect / segment / siamese tasks."""

    name: str = ""
    # Default metric that decides best.pt and early stopping (higher is better, unless it is named in
    # ``lower_is_better``).
    fitness_metric: str = ""
    # Metrics that improve as they fall (FID, KID): ``fitness`` negates them, so any of them (the task's
    # or ``train.fitness_metric``) can choose best.pt.
    lower_is_better: tuple[str, ...] = ()
    # The metrics results.png plots (names without ``metrics/``); empty = every metric column.
    headline_metrics: tuple[str, ...] = ()
    # Optional inference features. The API checks these flags before switching a feature on (by setting
    # ``augment`` / ``export_nms`` below), so that asking a task without it is one clear error.
    supports_augment: bool = False  # test-time augmentation in validation_step and predict_files
    predicts_video: bool = False  # predict_files takes video files (each frame predicted)
    # predict_files takes a folder of frame images as one input (a video's frames); a folder of such
    # folders or of videos lists them.
    predicts_clip_folders: bool = False
    supports_export_nms: bool = False  # NMS inside the exported graph (export_module, export_output_names)
    # How gradient accumulation combines batches. False: the loss is a mean over the batch, so the trainer
    # divides each batch's loss by the accumulation count (the accumulated gradient is that of the mean over
    # the nominal batch). True: the loss is a sum over the batch's images (YOLOv5/v8 multiply the mean by the
    # batch size and tune lr=0.01 for it), so the batches' losses are added, as YOLO's training loop does.
    loss_is_batch_sum: bool = False
    # The task's models generate images rather than predict on them (GANs): ``cvzoo predict`` takes no
    # source and calls ``generate``.
    generates: bool = False

    def __init__(self, config: Config) -> None:
        self.config = config
        self.augment = False
        # {"conf": float, "iou": float, "max_det": int} when the export should include NMS.
        self.export_nms: dict[str, Any] | None = None
        # True when the task runs an exported graph (``api.load_exported``) or feeds one (calibration): its
        # input has the export's fixed size, so evaluation builds no rectangular batches.
        self.exported_graph = False

    def enable_augment(self) -> None:
        """Switch test-time augmentation on, or say clearly that this task has none."""
        if not self.supports_augment:
            raise ValueError(f"test-time augmentation (augment / --augment / train.val_augment) is not available "
                             f"for the {self.name!r} task; it is supported by 'classify' and 'detect'")
        self.augment = True

    # --- configuration checks ---------------------------------------------------------------------
    # Whether the task's models take a registered classifier as backbone (``model.backbone``) and its
    # weights (``model.backbone_weights``, also loaded into a model's own backbone when no name is given).
    takes_backbone: bool = False
    # Constructor keywords the task sets itself (from the data): in ``model.kwargs`` they are an error
    # naming the key, rather than silently replaced or a "multiple values" TypeError when the model is built.
    task_keywords: tuple[str, ...] = ("num_classes",)
    BACKBONE_KEYS = ("backbone", "backbone_weights")

    @classmethod
    def model_keywords(cls, config: Config) -> dict[str, str]:
        """The constructor keywords that ``config`` passes to the registered model ``model.name``, each
        with the config key it comes from (to name it in errors): ``model.kwargs`` and, for a task that
        ``takes_backbone``, the backbone keys that are set."""
        taken = [key for key in config.model.kwargs if key in cls.task_keywords]
        if taken:
            raise ConfigError(f"model.kwargs.{taken[0]}: the {cls.name} task sets {taken[0]} itself (from the data); "
                              "leave it out of model.kwargs")
        keywords = {key: f"model.kwargs.{key}" for key in config.model.kwargs}
        for key in cls.BACKBONE_KEYS:
            if getattr(config.model, key):
                if not cls.takes_backbone:
                    raise ConfigError(f"model.{key}: the {cls.name} task's models take no backbone by name")
                keywords[key] = f"model.{key}"
        return keywords

    def model_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of ``model_keywords`` with their values (the task adds ``num_classes``)."""
        model = self.config.model
        return {key: model.kwargs[key] if source.startswith("model.kwargs.") else getattr(model, key)
                for key, source in self.model_keywords(self.config).items()}

    @classmethod
    def model_problem(cls, name: str) -> str:
        """Why registered model ``name`` (of the task's registry task) cannot serve this task, or ``""``; a
        task that needs more of its models (instance segmentation: a mask head) says so here."""
        return ""

    @classmethod
    def check_model_config(cls, config: Config) -> None:
        """Raise ConfigError naming the key when ``model.name`` is not registered or does not take a
        keyword the config gives it. Building the model would fail the same way, but only once the run
        folder and the datasets exist; this runs before any work."""
        keywords = cls.model_keywords(config)
        try:
            check_model_kwargs(config.model.name, keywords)
        except UnknownModelError as err:
            raise ConfigError(f"model.name: {err}") from None
        except ModelArgumentError as err:
            key = keywords[err.unexpected[0]]
            moved = moved_hint(key)  # a segment option left in model.kwargs from the old layout
            raise ConfigError(f"{key}: {err}" + (f"; {moved}" if moved else "")) from None

    # --- construction ---------------------------------------------------------------------------
    def split_limit(self, split: str) -> int:
        """How many samples of ``split`` a run keeps (0 = all): ``data.limit_train`` for the training split,
        ``data.limit_val`` for any other (val, test). By the split's name, not by what the run does with it:
        ``cvzoo val --split train`` evaluates the training images the run trained on."""
        data = self.config.data
        return data.limit_train if split == "train" else data.limit_val

    def kept_indices(self, split: str, count: int, labels: Sequence[int] | None = None) -> list[int] | None:
        """The samples of ``split`` (``count`` of them, with ``labels`` where each has one class) that the
        run keeps under ``split_limit``, in dataset order, or None for all: every task caps its splits here
        (``cvzoo.data.limit.limited_indices``: the first samples, or each class's first in turn)."""
        return limited_indices(count, self.split_limit(split), labels)

    @abstractmethod
    def build_datasets(self) -> tuple[Dataset, Dataset | None]:
        """Return (train, val) datasets; val may be None when the data has no validation split."""

    @abstractmethod
    def build_model(self) -> nn.Module:
        """Build the model for the datasets built before (class count known)."""

    def param_groups(self, model: nn.Module) -> list[dict[str, Any]]:
        """Optimizer parameter groups (default: one part, norm/bias without weight decay); tasks choose
        their parts with ``cvzoo.models.transfer.param_groups``, the one builder."""
        optim = self.config.optim
        return param_groups(model, optim.lr, weight_decay=optim.weight_decay,
                            no_decay_norm_bias=optim.no_decay_norm_bias, split="none")

    def optimizers(self, model: nn.Module) -> dict[str, OptimizerSpec]:
        """The optimizers the trainer builds, by name (their states are saved under these names). Default:
        one, ``"model"``, over ``param_groups`` with the run's ``optim`` / ``scheduler`` / clipping settings
        and ``training_step`` as its step."""
        cfg = self.config
        return {"model": OptimizerSpec(self.param_groups(model), cfg.optim, cfg.scheduler, self.training_step,
                                       cfg.train.clip_grad_norm)}

    def collate(self, samples: list[Any]) -> Any:
        return default_collate(samples)

    def to_device(self, batch: Any, device: torch.device) -> Any:
        non_blocking = device.type == "cuda"
        if isinstance(batch, torch.Tensor):
            return batch.to(device, non_blocking=non_blocking)
        if isinstance(batch, (list, tuple)):
            return type(batch)(self.to_device(b, device) for b in batch)
        if isinstance(batch, dict):
            return {k: self.to_device(v, device) for k, v in batch.items()}
        return batch

    def memory_format(self, images: torch.Tensor) -> torch.Tensor:
        """``images`` in the memory order the model trains in: channels-last (NHWC) with
        ``train.channels_last``, matching the model's weights (the trainer converts them), else as given."""
        if self.config.train.channels_last and images.ndim == 4:
            return images.contiguous(memory_format=torch.channels_last)
        return images

    # --- steps ------------------------------------------------------------------------------------
    @abstractmethod
    def training_step(self, model: nn.Module, batch: Any) -> dict[str, torch.Tensor]:
        """Forward + loss. Must return ``{"loss": scalar, ...named parts (detached or not)}``."""

    @abstractmethod
    def validation_step(self, model: nn.Module, batch: Any, evaluator: Evaluator) -> dict[str, torch.Tensor]:
        """Forward in eval mode, update ``evaluator``, return named validation losses."""

    @abstractmethod
    def build_evaluator(self) -> Evaluator: ...

    def set_train_mode(self, model: nn.Module) -> None:
        """Called after ``model.train()`` each epoch (e.g. to keep frozen BatchNorm layers in eval)."""

    def on_epoch_start(self, epoch: int, train_dataset: Dataset) -> bool:
        """Hook for per-epoch data changes (e.g. close-mosaic in the last epochs). Returns True when it changed
        ``train_dataset``: the trainer then starts new loading workers (running ones hold an old copy)."""
        return False

    def sample_images(self, batch: Any) -> torch.Tensor | None:
        """A few input images ``[N, C, H, W]`` in [0, 1] for the TensorBoard grid, or None."""
        return None

    def epoch_images(self, run_dir: Path, epoch: int, metrics: dict[str, Any]) -> dict[str, torch.Tensor]:
        """After each validation (main process, with ``run.plots``): write the epoch's pictures under
        ``run_dir`` and return them by name, ``[C, H, W]`` in [0, 1], for TensorBoard (a GAN's sample grid)."""
        return {}

    def generate(self, model: nn.Module, device: torch.device, save_dir: Path | None, **options: Any) -> list[dict]:
        """Generate images (a task that ``generates``), writing them to ``save_dir``; one dict per image."""
        raise ValueError(f"the {self.name!r} task predicts on images; it does not generate them")

    def save_artifacts(self, run_dir: Path, metrics: dict[str, Any]) -> list[Path]:
        """Write task-specific plots/tables (confusion matrix, PR curves...) after validation."""
        return []

    def checkpoint_extras(self) -> dict[str, Any]:
        """Task metadata stored in checkpoints (class names, image size...)."""
        return {}

    # --- inference (val / predict / export from a checkpoint) -----------------------------------------
    def restore_extras(self, extras: dict[str, Any]) -> None:
        """Take back what ``checkpoint_extras`` saved (class names, normalisation, image size): what predict
        needs besides the model, also for an exported file that carries them in its metadata."""

    @abstractmethod
    def build_inference_model(self, extras: dict[str, Any]) -> nn.Module:
        """The model architecture of a checkpoint, from its ``extras`` (no data, no pretrained load)."""

    @abstractmethod
    def build_eval_dataset(self, split: str = "val") -> Dataset:
        """The evaluation split of ``config.data.source`` with eval transforms."""

    @abstractmethod
    def predict_files(self, model: Any, files: list[Path], device: torch.device, **options: Any) -> list[dict]:
        """Predict on image files; one plain dict per file."""

    def set_predict_size(self, size: int, model: Any) -> None:
        """Predict at ``size`` pixels (``--imgsz``) instead of the trained ``img_size``.

        Raises:
            ValueError: a size below 1, or an exported graph (its input size is fixed at export).
        """
        if int(size) != size or size < 1:
            raise ValueError(f"imgsz must be a positive number of pixels, got {size!r}")
        if not isinstance(model, nn.Module) and int(size) != getattr(self, "img_size", size):
            raise ValueError(f"this exported graph takes {self.img_size} px images; to predict at {size} px, export "
                             f"the checkpoint again with --imgsz {size}")
        self.img_size = int(size)

    def plot_train_batch(self, batch: Any, path: Path) -> Path | None:
        """Draw a training batch (after ``to_device``) with its targets to ``path``; None: nothing drawn."""
        return None

    def save_predictions(self, results: list[dict], save_dir: Path) -> list[Path]:
        """Write predictions (JSON by default; tasks add annotated images)."""
        import json

        save_dir.mkdir(parents=True, exist_ok=True)
        path = save_dir / "predictions.json"
        path.write_text(json.dumps(results, indent=1, default=str))
        return [path]

    @abstractmethod
    def example_input(self, batch: int = 1, imgsz: int | None = None) -> torch.Tensor:
        """A correctly shaped input for tracing / export."""

    def batch_images(self, batch: Any) -> torch.Tensor:
        """The float model input ``[B, C, H, W]`` of a collated batch after ``to_device`` (tasks whose
        batches hold something else, e.g. uint8 images normalised on the device, convert it here)."""
        return batch[0]

    def calibration_images(self, count: int, split: str = "train", imgsz: int | None = None) -> list[torch.Tensor]:
        """Up to ``count`` images ``[1, C, H, W]`` of ``split`` as the exported graph takes them (eval
        transforms, resized to ``example_input``'s size where the dataset's differs): what int8
        quantisation measures activation ranges on (``cvzoo.export.quantize``)."""
        if count < 1:
            raise ValueError(f"the calibration set is empty (calibration count {count}): int8 quantisation needs "
                             "images to measure activation ranges on; ask for at least one")
        self.exported_graph = True  # the graph's fixed input size: no rectangular batches
        dataset = self.build_eval_dataset(split)
        size = tuple(self.example_input(1, imgsz).shape[-2:])
        images = []
        for index in range(min(count, len(dataset))):
            x = self.batch_images(self.to_device(self.collate([dataset[index]]), torch.device("cpu"))).float()
            if tuple(x.shape[-2:]) != size:
                x = torch.nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False)
            images.append(x.contiguous())
        return images

    def export_module(self, model: nn.Module) -> nn.Module:
        """The module to export (tasks may wrap the model, e.g. to add decoding)."""
        return model

    def export_output_names(self) -> list[str]:
        return ["output"]

    def fitness(self, metrics: dict[str, Any]) -> float:
        key = self.config.train.fitness_metric or self.fitness_metric
        if key not in metrics:
            raise KeyError(f"fitness metric {key!r} not among the validation metrics {sorted(metrics)}")
        return -float(metrics[key]) if key in self.lower_is_better else float(metrics[key])
