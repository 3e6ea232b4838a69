"""The one training loop of cvzoo, shared by every task.

    trainer = Trainer(config)          # task built from config.task
    result = trainer.fit()             # -> TrainResult(run_dir, best_fitness, metrics, ...)

Features (all driven by ``cvzoo.config.Config``): device selection, AMP (fp16 + GradScaler on CUDA,
bf16 on CPU), gradient accumulation, clipping, EMA, warm-up + schedule with a floor, early stopping,
seeds and a deterministic mode, atomic last/best checkpoints, exact resume (also from the middle of
an epoch after Ctrl-C / SIGTERM), NaN/inf loss detection, DDP through torchrun.

``fit`` reads as its steps: ``_prepare`` (datasets, model, optimizer, schedule, resume state),
``_train_epoch`` (batches, each a ``_train_batch``, with ``_optimizer_step`` when a window closes),
``_finish_epoch`` (validation, the results row, ``_commit``). Faults: ``last.pt`` is the commit point
of a run. At an epoch end ``best.pt`` and periodic copies are written before it and results.csv
(derived from the history inside it) after it, so a kill at any moment leaves a run that resumes with
every finished epoch exactly once. SIGINT/SIGTERM stop at the next optimizer step (``cvzoo.engine.stop``)
with a checkpoint that holds the epoch's running loss sums, so the resumed run writes the same rows as
an uninterrupted one (exactly with in-process data loading, ``data.workers=0``; worker processes
carry random state of their own).
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn
from torch.utils.data import DataLoader, Dataset

from cvzoo import __version__
from cvzoo.config import Config, config_to_dict
from cvzoo.config.validate import validate_config
from cvzoo.engine import callbacks as cb
from cvzoo.engine import run_summary
from cvzoo.engine.checkpoint import (
    atomic_save,
    atomic_write_text,
    load_checkpoint,
    restore_rng_states,
    rng_states,
)
from cvzoo.engine.device import autocast_dtype, select_device
from cvzoo.engine.distributed import (
    DistInfo,
    all_gather_objects,
    all_reduce_mean,
    any_rank,
    cleanup,
    dist_info_from_env,
    init_distributed,
)
from cvzoo.engine.ema import ModelEMA
from cvzoo.engine.evaluate import run_validation
from cvzoo.engine.image_cache import CacheReport, setup_image_cache
from cvzoo.engine.optim import apply_warmup_overrides, build_optimizer, build_scheduler, nominal_accumulate
from cvzoo.engine.profile import EpochProfiler, StartupPhases, seconds_since_process_start
from cvzoo.engine.resume import resolve_resume, resumed_config, run_dir_of
from cvzoo.engine.run_dir import make_run_dir
from cvzoo.engine.sampler import ResumableSampler
from cvzoo.engine.stop import ForcedStop, StopRequests
from cvzoo.engine.workers import auto_workers
from cvzoo.tasks.base import OptimizerSpec, Task


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; training stops and the last good checkpoint is kept."""


class TrainingInterrupted(RuntimeError):
    """Ctrl-C / SIGTERM: a resumable checkpoint was written to ``checkpoint``.

    ``signum`` is the signal that stopped the run (None for a KeyboardInterrupt raised by code); the
    command line exits with 128 + signum, as a shell reports a process ended by that signal.
    """

    def __init__(self, message: str, checkpoint: Path, signum: int | None = None) -> None:
        super().__init__(message)
        self.checkpoint = checkpoint
        self.signum = signum


@dataclass
class TrainResult:
    run_dir: Path
    best_fitness: float
    metrics: dict[str, Any]
    last_checkpoint: Path
    best_checkpoint: Path | None
    epochs_run: int
    history: list[dict[str, float]] = field(default_factory=list)
    # Wall seconds to the end of the first optimizer step, from the process start for a process's first run
    # (from the run's own start for later runs, or where the process start is not known); results.csv holds
    # it as ``time/first_step`` in the row of that epoch.
    first_step_seconds: float | None = None


# What predict, val, export and --weights read from a checkpoint; best.pt keeps only these.
INFERENCE_KEYS = ("epoch", "best_fitness", "metrics", "config", "model_name", "task", "extras", "cvzoo_version",
                  "date")


def inference_state(state: dict[str, Any]) -> dict[str, Any]:
    """A training state reduced to what inference needs (ultralytics strips its best.pt the same way):
    the weights that validated (the EMA's when the run has one) in ``model``, the config and the task's
    extras; no optimizer, scheduler, RNG or history. A YOLOv8n best.pt is 12.2 MB beside a 36.6 MB last.pt
    (float32 weights kept: ultralytics' 6 MB also halves them to float16)."""
    weights = state["ema"]["module"] if state.get("ema") else state["model"]
    return {"model": weights, "ema": None, **{key: state[key] for key in INFERENCE_KEYS}}


def seed_everything(seed: int, deterministic: bool = False) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


@dataclass
class _Optimizer:
    """One of the task's optimizers (``Task.optimizers``) with its schedule and gradient scaler."""

    spec: OptimizerSpec
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    warmup_batches: int

    def params(self, model: nn.Module) -> list[nn.Parameter]:
        """Its parameters in the model's order (the order clipping sums the norms in)."""
        mine = {id(p) for group in self.optimizer.param_groups for p in group["params"]}
        return [p for p in model.parameters() if id(p) in mine]


@dataclass
class _Loop:
    """What ``_prepare`` builds once and every epoch uses."""

    model: nn.Module  # what the forward runs: the model, or its DDP / compiled wrapper
    bare_model: nn.Module  # the parameters: checkpoints, EMA and validation use these
    optimizers: dict[str, _Optimizer]  # by name, in the order their steps run on a batch
    ema: ModelEMA | None
    train_ds: Dataset
    train_loader: DataLoader
    val_loader: DataLoader | None
    batches_per_epoch: int
    accumulate_at: Callable[[int], int]
    callbacks: list[cb.Callback]
    tb_logger: cb.TensorBoardLogger | None
    workers: int


@dataclass
class _Progress:
    """Where the run is: everything a checkpoint must hold to continue exactly."""

    epoch: int = 0  # 0-based epoch being trained (= epochs finished)
    step_in_epoch: int = 0  # batches of ``epoch`` already consumed
    global_step: int = 0  # batches consumed since the run began
    last_step_batch: int = -1  # the batch after which the optimizer last stepped
    best_fitness: float = -math.inf
    patience: int = 0
    # The epoch's running sums of the logged losses over ``seen`` batches, and the seconds it has taken:
    # saved in a mid-epoch checkpoint so the resumed epoch's row averages over all its batches. ``counts``:
    # the batches each sum has, where an optimizer (a GAN's generator) skips batches; absent = ``seen``.
    sums: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    seen: int = 0
    epoch_time: float = 0.0
    # The same at the last optimizer step: where a KeyboardInterrupt raised by code resumes.
    sums_at_step: dict[str, float] = field(default_factory=dict)
    counts_at_step: dict[str, int] = field(default_factory=dict)
    seen_at_step: int = 0
    # An optimizer has stepped on the batch in progress (several optimizers): the weights are no longer
    # those of a batch boundary, so a KeyboardInterrupt here cannot be saved as one.
    stepped_in_batch: bool = False
    last_metrics: dict[str, Any] = field(default_factory=dict)
    rng_to_restore: dict[str, Any] | None = None


class Trainer:
    """Trains ``task`` (built from ``config.task`` when not given) under ``config``.

    ``sources`` maps the dotted keys of ``config`` to the layer that set them (task defaults, recipe,
    flags, ``--set``; see ``cvzoo.api.build_config_with_sources``): the run's first lines report it, and
    on ``run.resume`` it tells which settings the user asked to change.
    """

    _first_in_process = True  # whether no Trainer was created in this process yet (time to first step)

    def __init__(self, config: Config, task: Task | None = None, callbacks: list[cb.Callback] | None = None,
                 sources: Mapping[str, str] | None = None):
        # The start-up up to the first optimizer step, phase by phase (``train.profile`` prints it). The first
        # run of a process counts from the process start (what a `cvzoo train` user waits, imports included);
        # a later run in the same process (the API, the demo, a benchmark) counts from its own start, as the
        # process start would also count the runs before it.
        before = seconds_since_process_start() if Trainer._first_in_process else None
        self._first_step_origin = ("the process started" if before is not None else "the run started",
                                   time.perf_counter() - (before or 0.0))
        Trainer._first_in_process = False
        self.startup = StartupPhases(before)
        self.first_step_seconds: float | None = None
        self._first_step_noted = self._first_step_in_row = False
        self.sources = dict(sources or {})
        self.resume_state: dict[str, Any] | None = None
        self.resume_path: Path | None = None
        self.resume_notes: list[str] = []
        if config.run.resume:
            self.resume_path = resolve_resume(config)
            self.resume_state = load_checkpoint(self.resume_path)
            if "optimizer" not in self.resume_state:
                raise ValueError(f"{self.resume_path} holds the weights only (best.pt keeps what predict, val and "
                                 "export need; the resumable state is in last.pt and epoch<N>.pt): resume from "
                                 f"last.pt, or start a new run from these weights with --weights {self.resume_path}")
            explicit = [key for key, layer in self.sources.items() if "defaults" not in layer]
            config, self.resume_notes = resumed_config(self.resume_state, config, explicit, self.resume_path)
        validate_config(config)  # also for a Trainer built without cvzoo.api.build_config
        self.config = config
        if task is None:
            from cvzoo.tasks import build_task

            task = build_task(config)
        if config.train.val_augment:
            task.enable_augment()  # fails here, before any work, for a task without test-time augmentation
        self.task = task
        self.extra_callbacks = list(callbacks or [])
        self.dist: DistInfo = dist_info_from_env()
        self.device = select_device(config.train.device, self.dist.local_rank)
        self.profiler = EpochProfiler(config.train.profile, self.device)
        self.run_dir: Path | None = None
        self.history: list[dict[str, float]] = []
        self.startup.mark("task")

    # ------------------------------------------------------------------------------------------------
    def log(self, message: str) -> None:
        if self.dist.is_main:
            from tqdm import tqdm

            tqdm.write(message)

    @property
    def weights_dir(self) -> Path:
        assert self.run_dir is not None
        return self.run_dir / "weights"

    def _setup_run_dir(self) -> Path:
        cfg = self.config
        run_dir = None
        if self.dist.is_main:
            if self.resume_path is not None:
                run_dir = run_dir_of(self.resume_path)
                if run_dir is None:
                    run_dir = make_run_dir(cfg.run.project, cfg.task, cfg.run.name, cfg.run.exist_ok)
                    self.log(f"{self.resume_path} is not the weights/last.pt of a run folder, so the resumed "
                             f"run writes to a new one: {run_dir}")
            else:
                run_dir = make_run_dir(cfg.run.project, cfg.task, cfg.run.name, cfg.run.exist_ok)
            atomic_write_text(run_dir / "args.yaml", yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
        return Path(all_gather_objects(run_dir)[0])

    def _loader(self, dataset: Dataset, train: bool, batch_size: int, workers: int) -> DataLoader:
        sampler = ResumableSampler(
            len(dataset), shuffle=train, seed=self.config.train.seed,
            rank=self.dist.rank, world_size=self.dist.world_size, pad=train,
        )
        # A BatchNorm layer cannot train on a final batch of one sample.
        drop_last = train and sampler.per_rank % batch_size == 1
        # Its own generator (re-seeded every epoch): creating an iterator draws the workers' base seed
        # from it, which would otherwise come from the global RNG and shift every later random draw of a
        # run resumed in the middle of an epoch.
        return DataLoader(
            dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
            collate_fn=self.task.collate, pin_memory=self.device.type == "cuda", drop_last=drop_last,
            persistent_workers=workers > 0, generator=torch.Generator(),
        )

    # ------------------------------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        cfg = self.config
        init_distributed(self.dist, self.device)
        seed_everything(cfg.train.seed + self.dist.rank, cfg.train.deterministic)
        self.run_dir = run_dir = self._setup_run_dir()
        self.startup.mark("run folder")
        loop, progress = self._prepare()
        for callback in loop.callbacks:
            callback.on_fit_start(self)
        self.startup.mark("optimizer, loggers")
        try:
            with StopRequests(self.log) as stop:
                while progress.epoch < cfg.train.epochs:
                    self._train_epoch(loop, progress, stop)
                    self._finish_epoch(loop, progress)
                    if progress.epoch < cfg.train.epochs and self._stop_agreed(stop):
                        raise TrainingInterrupted(self._interrupt_message(progress), self.weights_dir / "last.pt",
                                                  stop.signum)
                    if cfg.train.early_stop_patience and progress.patience >= cfg.train.early_stop_patience:
                        self.log(f"Early stopping: no improvement of the fitness for {progress.patience} epochs "
                                 f"(best {progress.best_fitness:.5g})")
                        break
        except ForcedStop as err:
            last = self.weights_dir / "last.pt"
            saved = f"{last} holds the last completed save" if last.exists() else "no checkpoint was saved yet"
            raise TrainingInterrupted(f"stopped at once by a second signal; {saved}", last, err.signum) from None
        except KeyboardInterrupt:  # raised by code (or outside the main thread): no safe point was reached
            self._save_at_last_step(loop, progress)
            raise TrainingInterrupted(self._interrupt_message(progress), self.weights_dir / "last.pt") from None
        finally:
            for callback in loop.callbacks:
                callback.on_fit_end(self)

        last_path, best_path = self.weights_dir / "last.pt", self.weights_dir / "best.pt"
        if self.dist.is_main:
            if cfg.run.plots and (run_dir / "results.csv").exists():
                cb.plot_results(run_dir / "results.csv", run_dir / "results.png", self.task.headline_metrics)
            if progress.last_metrics and cfg.run.plots:
                self.task.save_artifacts(run_dir, progress.last_metrics)
        cleanup()
        metrics = self.history[-1] if self.history else {}
        return TrainResult(
            run_dir=run_dir,
            best_fitness=progress.best_fitness,
            metrics={**metrics, **progress.last_metrics},
            last_checkpoint=last_path,
            best_checkpoint=best_path if best_path.exists() else None,
            epochs_run=len(self.history),
            history=self.history,
            first_step_seconds=self.first_step_seconds,
        )

    # --- setup --------------------------------------------------------------------------------------
    def _prepare(self) -> tuple[_Loop, _Progress]:
        cfg = self.config
        train_ds, val_ds = self.task.build_datasets()
        if len(train_ds) == 0:
            raise ValueError(f"the training set of {cfg.data.source!r} is empty")
        if val_ds is not None and len(val_ds) == 0:
            raise ValueError(f"the validation set of {cfg.data.source!r} is empty")
        self.startup.mark("datasets")
        model = self.task.build_model().to(self.device)
        if cfg.train.channels_last:
            model = model.to(memory_format=torch.channels_last)
        if self.dist.enabled and cfg.train.sync_bn:
            if self.device.type == "cuda":
                model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
            else:  # PyTorch's SyncBatchNorm has no CPU kernel
                self.log("train.sync_bn ignored: SyncBatchNorm needs CUDA devices")
        bare_model = model
        specs = self.task.optimizers(bare_model)
        _check_optimizer_specs(specs, cfg)
        if self.dist.enabled:
            # Several optimizers: each step's forward uses part of the model (a GAN's discriminator step
            # leaves the generator without gradients), so DDP must look for the unused parameters.
            model = nn.parallel.DistributedDataParallel(
                model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=len(specs) > 1,
            )
        if cfg.train.compile:
            # Compiles lazily on the first batch (minutes on a small CPU); checkpoints, EMA and
            # validation keep using the same parameters through ``bare_model``.
            model = torch.compile(model)

        self.startup.mark("model")
        batch_size = cfg.data.batch_size
        # Filled here, before any loader forks its workers: they share the cache's pages (cvzoo/data/cache.py).
        cache = setup_image_cache(cfg.data.cache, train_ds, val_ds, copies=self.dist.world_size,
                                  on_cpu=self.device.type == "cpu")
        workers = auto_workers(self.device, cfg.data.workers, train_ds, batch_size)
        train_loader = self._loader(train_ds, True, batch_size, workers)
        val_loader = self._loader(val_ds, False, cfg.data.eval_batch_size(), workers) if val_ds is not None else None
        self.startup.mark("loaders")
        self._log_header(bare_model, train_ds, val_ds, workers, cache)
        self.startup.mark("run summary")

        batches_per_epoch = len(train_loader)
        # The schedule and warm-up count iterations (batches); see cvzoo.engine.optim.
        warmup_batches = int(round(cfg.scheduler.warmup_epochs * batches_per_epoch))
        global_batch_size = batch_size * self.dist.world_size
        nominal = cfg.train.nominal_batch_size
        weight_decay_scale = 1.0
        if nominal > 0:
            # YOLO's nominal batch size: step every ~nbs images (fewer in warm-up), weight decay scaled to match.
            weight_decay_scale = global_batch_size * nominal_accumulate(nominal, global_batch_size) / nominal

        def accumulate_at(batch_index: int) -> int:
            if nominal > 0:
                return nominal_accumulate(nominal, global_batch_size, batch_index, warmup_batches)
            return cfg.train.accumulate

        optimizers = {name: self._build_optimizer(spec, batches_per_epoch, weight_decay_scale)
                      for name, spec in specs.items()}
        ema = ModelEMA(bare_model, cfg.train.ema_decay, cfg.train.ema_tau) if cfg.train.ema else None

        callbacks: list[cb.Callback] = []
        tb_logger = None
        if self.dist.is_main:
            callbacks.append(cb.CSVLogger(self.run_dir / "results.csv"))
            if cfg.run.tensorboard:
                tb_logger = cb.TensorBoardLogger(self.run_dir, cfg.train.log_images)
                callbacks.append(tb_logger)
            callbacks.extend(self.extra_callbacks)
        loop = _Loop(model, bare_model, optimizers, ema, train_ds, train_loader, val_loader,
                     batches_per_epoch, accumulate_at, callbacks, tb_logger, workers)
        return loop, self._restore(loop)

    def _build_optimizer(self, spec: OptimizerSpec, batches_per_epoch: int, weight_decay_scale: float) -> _Optimizer:
        """An optimizer of ``spec`` with its schedule (warm-up counted in batches) and gradient scaler."""
        for group in spec.param_groups:
            group["weight_decay"] = group.get("weight_decay", spec.optim.weight_decay) * weight_decay_scale
        optimizer = build_optimizer(spec.param_groups, spec.optim)
        scheduler = build_scheduler(optimizer, spec.scheduler, self.config.train.epochs, batches_per_epoch)
        warmup_batches = int(round(spec.scheduler.warmup_epochs * batches_per_epoch))
        if self.resume_state is None:
            apply_warmup_overrides(optimizer, scheduler, warmup_batches, spec.scheduler, spec.optim.momentum)
        scaler = torch.amp.GradScaler("cuda", enabled=self.config.train.amp and self.device.type == "cuda")
        return _Optimizer(spec, optimizer, scheduler, scaler, warmup_batches)

    def _restore(self, loop: _Loop) -> _Progress:
        """The progress of a new run, or the saved state of a resumed one loaded into ``loop``."""
        progress = _Progress()
        state = self.resume_state
        if state is None:
            return progress
        loop.bare_model.load_state_dict(state["model"])
        names = list(loop.optimizers)
        saved = {key: _by_name(state.get(key), names, key, self.resume_path)
                 for key in ("optimizer", "scheduler", "scaler")}
        for name, opt in loop.optimizers.items():
            opt.optimizer.load_state_dict(saved["optimizer"][name])
            opt.scheduler.load_state_dict(saved["scheduler"][name])
            if saved["scaler"].get(name):
                opt.scaler.load_state_dict(saved["scaler"][name])
        if loop.ema is not None and state.get("ema"):
            loop.ema.load_state_dict(state["ema"])
        progress.epoch, progress.step_in_epoch = state["epoch"], state.get("step_in_epoch", 0)
        progress.best_fitness, progress.patience = state["best_fitness"], state.get("patience", 0)
        progress.sums = dict(state.get("epoch_sums") or {})
        progress.counts = dict(state.get("epoch_counts") or {})
        progress.seen = state.get("epoch_seen", 0)
        progress.epoch_time = state.get("epoch_time", 0.0)
        progress.sums_at_step, progress.seen_at_step = dict(progress.sums), progress.seen
        progress.counts_at_step = dict(progress.counts)
        progress.global_step = progress.epoch * loop.batches_per_epoch + progress.step_in_epoch
        progress.last_step_batch = progress.global_step - 1
        progress.rng_to_restore = state["rng"]
        self.history = list(state.get("history", []))
        for note in self.resume_notes:
            self.log(f"resume: {note}")
        epochs = self.config.train.epochs
        if progress.epoch >= epochs:
            # A kill after the last epoch's checkpoint may have cut results.csv or the plots short: the
            # resumed run restores them from the checkpoint's history and trains nothing.
            self.log(f"{self.resume_path} has finished its {epochs} epochs: nothing to train; results.csv and "
                     f"the plots are rewritten from it. To train it longer pass a larger --epochs with --resume "
                     f"(e.g. --epochs {epochs * 2}); to fine-tune from it, start a new run with --weights "
                     f"{self.resume_path}")
        else:
            self.log(f"Resuming {self.run_dir} at epoch {progress.epoch + 1}, batch {progress.step_in_epoch} "
                     f"(from {self.resume_path})")
        return progress

    def _log_header(self, model: nn.Module, train_ds: Dataset, val_ds: Dataset | None, workers: int,
                    cache: CacheReport | None = None) -> None:
        if not self.dist.is_main:
            return
        cfg = self.config
        try:
            example = self.task.example_input(1).to(self.device)
        except Exception as err:  # the summary must not stop a run; the model line says what is missing
            self.log(f"(no example input for the GFLOPs count: {type(err).__name__}: {err})")
            example = None
        if example is not None and cfg.train.channels_last and example.dim() == 4:
            example = example.to(memory_format=torch.channels_last)
        classes = run_summary.class_names(self.task.checkpoint_extras())
        for line in (
            f"cvzoo {__version__} · {cfg.task} · {self.run_dir}",
            run_summary.describe_device(self.device, cfg, workers, self.dist.world_size),
            run_summary.describe_model(cfg.model.name, model, example),
            run_summary.describe_data(cfg.data.source, len(train_ds), None if val_ds is None else len(val_ds), classes,
                                      None if cache is None else cache.describe()),
            run_summary.describe_sources(cfg, self.sources),
        ):
            self.log(line)

    # --- training -----------------------------------------------------------------------------------
    def _train_epoch(self, loop: _Loop, progress: _Progress, stop: StopRequests) -> None:
        cfg = self.config
        epoch, skip = progress.epoch, progress.step_in_epoch
        if self.task.on_epoch_start(epoch, loop.train_ds) and loop.workers > 0:
            # The persistent workers hold copies of the dataset made when they started, which would go on
            # with its old state (mosaic on after close-mosaic): new workers copy the changed one.
            loop.train_loader = self._loader(loop.train_ds, True, cfg.data.batch_size, loop.workers)
        loop.train_loader.sampler.set_epoch(epoch, skip * cfg.data.batch_size)
        loop.train_loader.generator.manual_seed(cfg.train.seed + epoch)
        if progress.rng_to_restore is not None:
            # Restored here, right before the first batch the run has not seen (on_epoch_start draws no
            # random numbers), so the resumed batches get the same random draws as uninterrupted ones.
            restore_rng_states(progress.rng_to_restore)
            progress.rng_to_restore = None
        loop.model.train()
        self.task.set_train_mode(loop.bare_model)
        started = time.time() - progress.epoch_time
        iterator = loop.train_loader
        if self.dist.is_main and cfg.run.progress:
            from tqdm import tqdm

            iterator = tqdm(loop.train_loader, desc=f"epoch {epoch + 1}/{cfg.train.epochs}", dynamic_ncols=True,
                            leave=False, initial=skip, total=loop.batches_per_epoch)
        _zero_grads(loop)
        first = next(iter(loop.optimizers.values())).optimizer
        batch_done = time.perf_counter()
        for step_in_epoch, batch in enumerate(iterator, start=skip):
            self.profiler.add("data", time.perf_counter() - batch_done)  # waiting for the loader
            self.startup.mark("first batch")  # the loader's first batch (worker start-up included)
            logs = self._train_batch(loop, progress, batch, step_in_epoch)
            progress.step_in_epoch = step_in_epoch + 1
            progress.epoch_time = time.time() - started
            if self.dist.is_main and cfg.run.progress:
                means = {k: f"{v:.4f}" for k, v in _epoch_means(progress, progress.sums).items() if k.endswith("loss")}
                iterator.set_postfix(**means, lr=f"{first.param_groups[0]['lr']:.2e}")
            if progress.global_step % 50 == 0:
                for callback in loop.callbacks:
                    callback.on_train_batch_end(self, progress.global_step, logs)
            at_step = progress.last_step_batch == progress.global_step - 1
            if at_step and progress.step_in_epoch < loop.batches_per_epoch and self._stop_agreed(stop):
                self._save_checkpoint(loop, progress, self.weights_dir / "last.pt")
                raise TrainingInterrupted(self._interrupt_message(progress), self.weights_dir / "last.pt",
                                          stop.signum)
            batch_done = time.perf_counter()

    def _plot_train_batch(self, batch: Any) -> None:
        """``train_batch0.jpg``: the first batch as the model sees it, with its targets (a task that can draw
        them). A drawing error is reported and training goes on: the picture is a diagnostic."""
        try:
            self.task.plot_train_batch(batch, self.run_dir / "train_batch0.jpg")
        except Exception as err:  # noqa: BLE001 - reported, not hidden
            self.log(f"train_batch0.jpg not drawn ({type(err).__name__}: {err})")

    def _train_batch(self, loop: _Loop, progress: _Progress, batch: Any, step_in_epoch: int) -> dict[str, float]:
        cfg = self.config
        with self.profiler.stage("to_device"):
            batch = self.task.to_device(batch, self.device)
        if loop.tb_logger is not None and progress.global_step == 0:
            loop.tb_logger.log_batch_images(self.task.sample_images(batch), 0)
        if cfg.run.plots and self.dist.is_main and progress.global_step == 0:
            self._plot_train_batch(batch)
        self.startup.mark("train_batch0 plot")
        autocast = (torch.autocast(self.device.type, dtype=autocast_dtype(self.device)) if cfg.train.amp
                    else contextlib.nullcontext())
        accumulate = loop.accumulate_at(progress.global_step)
        end_of_epoch = step_in_epoch + 1 == loop.batches_per_epoch
        window_closes = progress.global_step - progress.last_step_batch >= accumulate or end_of_epoch
        several = len(loop.optimizers) > 1
        logs: dict[str, float] = {}
        # Each optimizer whose turn it is: its forward and loss, backward, and (when the accumulation window
        # closes; always with several optimizers) its step, before the next optimizer's forward sees the
        # updated weights (a GAN's generator step scores its samples with the just-updated discriminator).
        for name, opt in loop.optimizers.items():
            if progress.global_step % opt.spec.every:
                continue
            with autocast, self.profiler.stage("forward"):
                out = opt.spec.step(loop.model, batch)
            loss = out["loss"]
            if not torch.isfinite(loss).all():
                parts = {k: float(v.detach()) for k, v in out.items()}
                which = f" of optimizer {name!r}" if several else ""
                raise NonFiniteLossError(
                    f"loss{which} became {float(loss.detach())} at epoch {progress.epoch + 1}, batch {step_in_epoch} "
                    f"({parts}); stopped. The last good checkpoint is kept at {self.weights_dir / 'last.pt'}. "
                    "Try a lower optim.lr, train.clip_grad_norm, or train.amp=false."
                )
            with self.profiler.stage("backward"):
                opt.scaler.scale(loss if self.task.loss_is_batch_sum else loss / accumulate).backward()
            # With several optimizers each one's parts are logged under its name: ``<name>_loss``.
            logs.update({f"{name}_{k}" if several else k: float(v.detach()) for k, v in out.items()})
            if window_closes:
                with self.profiler.stage("optimizer"):
                    self._optimizer_step(loop, opt)
                progress.stepped_in_batch = True
        for key, value in logs.items():
            progress.sums[key] = progress.sums.get(key, 0.0) + value
            progress.counts[key] = progress.counts.get(key, 0) + 1
        progress.seen += 1
        if window_closes and not self._first_step_noted:
            self._note_first_step()
        if window_closes:
            with self.profiler.stage("schedule_ema"):
                self._advance_schedules(loop, progress)
        progress.global_step += 1
        progress.stepped_in_batch = False
        return logs

    def _note_first_step(self) -> None:
        """The end of this process's first optimizer step: the time a user waited for training to start."""
        self._first_step_noted = True
        self.startup.mark("first step")
        origin, started = self._first_step_origin
        self.first_step_seconds = seconds = time.perf_counter() - started
        self.log(f"first optimizer step {seconds:.2f} s after {origin}")
        if self.profiler.enabled:
            self.log(self.startup.summary())

    def _optimizer_step(self, loop: _Loop, opt: _Optimizer) -> None:
        """Clip (its own parameters), step and clear every gradient: another optimizer's backward may have
        left some on this one's parameters (a generator loss reaches the discriminator) and must not carry
        them into its next step."""
        if opt.spec.clip_grad_norm > 0:
            opt.scaler.unscale_(opt.optimizer)
            nn.utils.clip_grad_norm_(opt.params(loop.bare_model), opt.spec.clip_grad_norm)
        opt.scaler.step(opt.optimizer)
        opt.scaler.update()
        _zero_grads(loop)

    def _advance_schedules(self, loop: _Loop, progress: _Progress) -> None:
        """After the optimizer steps of a closed window: every schedule (also those of optimizers that did
        not step on this batch) counts the batches consumed; then the EMA follows the weights."""
        for opt in loop.optimizers.values():
            while opt.scheduler.last_epoch <= progress.global_step:  # one scheduler step per batch consumed
                opt.scheduler.step()
            apply_warmup_overrides(opt.optimizer, opt.scheduler, opt.warmup_batches, opt.spec.scheduler,
                                   opt.spec.optim.momentum)
        progress.last_step_batch = progress.global_step
        progress.sums_at_step, progress.seen_at_step = dict(progress.sums), progress.seen
        progress.counts_at_step = dict(progress.counts)
        if loop.ema is not None:
            loop.ema.update(loop.bare_model)

    # --- epoch end ----------------------------------------------------------------------------------
    def _finish_epoch(self, loop: _Loop, progress: _Progress) -> None:
        """Validate, append the epoch's row to the history and commit it (``_commit``)."""
        cfg = self.config
        epoch = progress.epoch
        train_logs = all_reduce_mean(_epoch_means(progress, progress.sums), self.device)
        train_time = progress.epoch_time
        started = time.time() - train_time
        val_losses: dict[str, float] = {}
        is_last = epoch + 1 == cfg.train.epochs
        if loop.val_loader is not None and ((epoch + 1) % cfg.train.val_interval == 0 or is_last):
            eval_model = loop.ema.module if loop.ema is not None else loop.bare_model
            with self.profiler.stage("validation"):
                progress.last_metrics, val_losses = run_validation(
                    self.task, eval_model, loop.val_loader, self.device, cfg.train.amp,
                    progress=self.dist.is_main and cfg.run.progress,
                )
            fitness = self.task.fitness(progress.last_metrics)
            if self.dist.is_main and cfg.run.plots:
                images = self.task.epoch_images(self.run_dir, epoch + 1, progress.last_metrics)
                if images and loop.tb_logger is not None and cfg.train.log_images:
                    loop.tb_logger.log_epoch_images(images, epoch + 1)
        elif "loss" in train_logs:
            fitness = -train_logs["loss"]
        else:
            # No validation and no single loss to compare (several optimizers: a GAN's generator and
            # discriminator losses do not fall as it improves): the latest epoch is the best one.
            fitness = float(epoch)
        improved = fitness > progress.best_fitness
        if improved:
            progress.best_fitness, progress.patience = fitness, 0
        else:
            progress.patience += 1

        row: dict[str, float] = {"epoch": epoch + 1, "time": round(time.time() - started, 3)}
        row.update({f"train/{k}": v for k, v in train_logs.items()})
        row.update({f"val/{k}": v for k, v in val_losses.items()})
        row.update({f"metrics/{k}": float(v) for k, v in progress.last_metrics.items() if isinstance(v, (int, float))})
        if self.first_step_seconds is not None and not self._first_step_in_row:
            row["time/first_step"] = round(self.first_step_seconds, 3)  # in the row of the epoch it happened in
            self._first_step_in_row = True
        for name, opt in loop.optimizers.items():  # lr/pg<i>, or lr/<name>_pg<i> with several optimizers
            prefix = f"lr/{name}_" if len(loop.optimizers) > 1 else "lr/"
            row.update({f"{prefix}pg{i}": g["lr"] for i, g in enumerate(opt.optimizer.param_groups)})
        self.history.append(row)
        progress.epoch, progress.step_in_epoch = epoch + 1, 0
        progress.sums, progress.counts, progress.seen, progress.epoch_time = {}, {}, 0, 0.0
        progress.sums_at_step, progress.counts_at_step, progress.seen_at_step = {}, {}, 0
        if self.dist.is_main:
            with self.profiler.stage("checkpoint"):
                self._commit(loop, progress, row, improved)
            self.log(_epoch_line(row, train_time, self.task.headline_metrics))
            if self.profiler.enabled:
                self.log(self.profiler.summary(epoch + 1))
        self.profiler.reset()

    def _commit(self, loop: _Loop, progress: _Progress, row: dict[str, float], improved: bool) -> None:
        """Save the finished epoch. ``last.pt`` is the commit point: what is written before it is redone
        identically by a run resumed from the previous ``last.pt``; results.csv after it is derived from
        the history inside it."""
        state = self._state(loop, progress)
        if improved:
            atomic_save(inference_state(state), self.weights_dir / "best.pt")
        period = self.config.run.save_period
        if period and progress.epoch % period == 0:
            atomic_save(state, self.weights_dir / f"epoch{progress.epoch}.pt")
        atomic_save(state, self.weights_dir / "last.pt")
        for callback in loop.callbacks:
            callback.on_epoch_end(self, progress.epoch, row)

    def _state(self, loop: _Loop, progress: _Progress) -> dict[str, Any]:
        cfg = self.config
        return {
            "model": loop.bare_model.state_dict(),
            "ema": loop.ema.state_dict() if loop.ema is not None else None,
            # By optimizer name (``Task.optimizers``): {"model": ...} for a task with one.
            "optimizer": {name: opt.optimizer.state_dict() for name, opt in loop.optimizers.items()},
            "scheduler": {name: opt.scheduler.state_dict() for name, opt in loop.optimizers.items()},
            "scaler": {name: opt.scaler.state_dict() if opt.scaler.is_enabled() else None
                       for name, opt in loop.optimizers.items()},
            "epoch": progress.epoch,
            "step_in_epoch": progress.step_in_epoch,
            "epoch_sums": dict(progress.sums),
            "epoch_counts": dict(progress.counts),
            "epoch_seen": progress.seen,
            "epoch_time": progress.epoch_time,
            "best_fitness": progress.best_fitness,
            "patience": progress.patience,
            "history": self.history,
            "metrics": {k: v for k, v in progress.last_metrics.items() if isinstance(v, (int, float))},
            "rng": rng_states(),
            "config": config_to_dict(cfg),
            "model_name": cfg.model.name,
            "task": cfg.task,
            "extras": self.task.checkpoint_extras(),
            "cvzoo_version": __version__,
            "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        }

    # --- stopping -----------------------------------------------------------------------------------
    def _stop_agreed(self, stop: StopRequests) -> bool:
        """Whether to stop now; under DDP every rank stops at the same batch when any rank was signalled."""
        return any_rank(stop.requested, self.device) if self.dist.enabled else stop.requested

    def _save_checkpoint(self, loop: _Loop, progress: _Progress, path: Path) -> None:
        if self.dist.is_main:
            atomic_save(self._state(loop, progress), path)

    def _save_at_last_step(self, loop: _Loop, progress: _Progress) -> None:
        """A KeyboardInterrupt raised in the middle of a batch: save the run as it was after its last
        optimizer step (the gradients of an unfinished accumulation window are lost), resuming at the
        batch after it, never before the epoch's first batch."""
        if progress.epoch >= self.config.train.epochs or (progress.step_in_epoch == 0 and progress.seen == 0):
            return  # between epochs: the epoch's own last.pt is the right checkpoint
        if progress.stepped_in_batch:
            self.log("not saved: the interrupt came between two optimizers' steps on one batch, where no "
                     "resumable state exists; weights/last.pt keeps the last save")
            return
        start = progress.epoch * loop.batches_per_epoch
        progress.step_in_epoch = max(0, progress.last_step_batch + 1 - start)
        progress.sums, progress.seen = progress.sums_at_step, progress.seen_at_step
        progress.counts = progress.counts_at_step
        self._save_checkpoint(loop, progress, self.weights_dir / "last.pt")

    def _interrupt_message(self, progress: _Progress) -> str:
        last = self.weights_dir / "last.pt"
        where = (f"after epoch {progress.epoch}" if progress.step_in_epoch == 0
                 else f"at epoch {progress.epoch + 1}, batch {progress.step_in_epoch}")
        return (f"training interrupted {where}; resumable checkpoint {last} "
                f"(resume with `cvzoo train --resume {last}`)")


def _check_optimizer_specs(specs: Mapping[str, OptimizerSpec], cfg: Config) -> None:
    """A task's optimizers: at least one, and gradient accumulation only with one (with several, each step
    changes the weights the next optimizer's loss is computed with, so there is no window to accumulate)."""
    if not specs:
        raise ValueError("the task declares no optimizer (Task.optimizers returned none)")
    bad = [name for name, spec in specs.items() if spec.every < 1]
    if bad:
        raise ValueError(f"optimizer {bad[0]!r}: every={specs[bad[0]].every}; it must be >= 1")
    if len(specs) > 1 and (cfg.train.accumulate > 1 or cfg.train.nominal_batch_size > 0):
        key = "train.accumulate" if cfg.train.accumulate > 1 else "train.nominal_batch_size"
        raise ValueError(f"{key}: gradient accumulation needs a task with one optimizer; this task has "
                         f"{len(specs)} ({', '.join(specs)}), each stepping on every batch it trains")


# A key each state of the one-optimizer checkpoint layout has (before ``Task.optimizers``).
_UNNAMED_LAYOUT = {"optimizer": "param_groups", "scheduler": "last_epoch", "scaler": "scale"}


def _by_name(saved: Any, names: list[str], key: str, path: Path | None) -> dict[str, Any]:
    """A checkpoint's ``optimizer`` / ``scheduler`` / ``scaler`` entry by optimizer name. Checkpoints
    written before tasks could have several optimizers hold the one state itself (``None`` for a disabled
    scaler): it is the only optimizer's."""
    if isinstance(saved, dict) and set(saved) == set(names):
        return saved
    unnamed = saved is None if key == "scaler" else False
    unnamed = unnamed or (isinstance(saved, dict) and _UNNAMED_LAYOUT[key] in saved)
    if unnamed and len(names) == 1:
        return {names[0]: saved}
    held = sorted(saved) if isinstance(saved, dict) and not unnamed else "one, unnamed"
    raise ValueError(f"{path}: its {key} states are those of the optimizers {held}; this task has {names}")


def _zero_grads(loop: _Loop) -> None:
    for opt in loop.optimizers.values():
        opt.optimizer.zero_grad(set_to_none=True)


def _epoch_means(progress: _Progress, sums: Mapping[str, float]) -> dict[str, float]:
    """The epoch's mean of each logged loss over the batches it was logged on."""
    return {k: v / max(1, progress.counts.get(k, progress.seen)) for k, v in sums.items()}


def _epoch_line(row: dict[str, float], train_time: float, headline: tuple[str, ...] = ()) -> str:
    """The epoch's log line: its losses and the task's headline metrics (every metric when it names
    none); results.csv holds every column."""
    shown = {f"metrics/{name}" for name in headline}
    parts = [f"epoch {int(row['epoch'])}"]
    for key, value in row.items():
        if key.startswith(("train/", "val/")) or (key.startswith("metrics/") and (not shown or key in shown)):
            parts.append(f"{key}={value:.4g}")
    parts.append(f"({row['time']:.1f}s, train {train_time:.1f}s)")
    return "  ".join(parts)
