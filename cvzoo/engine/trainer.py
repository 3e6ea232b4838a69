"""The one training loop of cvzoo, shared by every task.

    trainer = Trainer(config)          # task built from config.task
    result = trainer.fit()             # -> TrainResult(run_dir, best_fitness, metrics, ...)

Features (all driven by ``cvzoo.config.Config``): device selection, AMP (fp16 + GradScaler on CUDA,
bf16 on CPU), gradient accumulation, clipping, EMA, warm-up + schedule with a floor, early stopping,
seeds and a deterministic mode, atomic last/best checkpoints, exact resume (also from the middle of
an epoch after Ctrl-C / SIGTERM), NaN/inf loss detection, DDP through torchrun.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn
from torch.utils.data import DataLoader, Dataset

from cvzoo import __version__
from cvzoo.config import Config, config_to_dict, from_dict
from cvzoo.engine import callbacks as cb
from cvzoo.engine.checkpoint import atomic_save, load_checkpoint, restore_rng_states, rng_states
from cvzoo.engine.device import autocast_dtype, select_device
from cvzoo.engine.distributed import (
    DistInfo,
    all_gather_objects,
    all_reduce_mean,
    cleanup,
    dist_info_from_env,
    init_distributed,
)
from cvzoo.engine.ema import ModelEMA
from cvzoo.engine.evaluate import run_validation
from cvzoo.engine.optim import apply_warmup_overrides, build_optimizer, build_scheduler, nominal_accumulate
from cvzoo.engine.run_dir import make_run_dir
from cvzoo.engine.sampler import ResumableSampler
from cvzoo.tasks.base import Task


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; training stops and the last good checkpoint is kept."""


class TrainingInterrupted(RuntimeError):
    """Ctrl-C / SIGTERM: a resumable checkpoint was written to ``checkpoint``."""

    def __init__(self, message: str, checkpoint: Path) -> None:
        super().__init__(message)
        self.checkpoint = checkpoint


@dataclass
class TrainResult:
    run_dir: Path
    best_fitness: float
    metrics: dict[str, Any]
    last_checkpoint: Path
    best_checkpoint: Path | None
    epochs_run: int
    history: list[dict[str, float]] = field(default_factory=list)


def seed_everything(seed: int, deterministic: bool = False) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def default_workers(device: torch.device, requested: int) -> int:
    """-1 picks a worker count: in-process loading on small CPU machines (workers would compete with
    the compute threads), up to 8 workers when a GPU does the compute."""
    if requested >= 0:
        return requested
    cpus = os.cpu_count() or 1
    if device.type == "cuda":
        return min(8, max(1, cpus - 1))
    return 0 if cpus <= 4 else min(4, cpus // 2)


class Trainer:
    """Trains ``task`` (built from ``config.task`` when not given) under ``config``."""

    def __init__(self, config: Config, task: Task | None = None, callbacks: list[cb.Callback] | None = None):
        self.resume_state: dict[str, Any] | None = None
        if config.run.resume:
            self.resume_state = load_checkpoint(_resolve_resume(config))
            saved = from_dict(Config, self.resume_state["config"])
            # The saved configuration wins (the run continues as it started); the run keeps its folder.
            saved.run.resume = config.run.resume
            config = saved
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
        self.run_dir: Path | None = None
        self.history: list[dict[str, float]] = []
        self._stop_signal: int | None = None

    # ------------------------------------------------------------------------------------------------
    def log(self, message: str) -> None:
        if self.dist.is_main:
            from tqdm import tqdm

            tqdm.write(message)

    def _setup_run_dir(self) -> Path:
        cfg = self.config
        if self.resume_state is not None:
            run_dir = Path(_resolve_resume(cfg)).resolve().parent.parent
        elif self.dist.is_main:
            run_dir = make_run_dir(cfg.run.project, cfg.task, cfg.run.name, cfg.run.exist_ok)
        else:
            run_dir = None
        run_dir = all_gather_objects(run_dir)[0]
        if self.dist.is_main:
            with (run_dir / "args.yaml").open("w") as handle:
                yaml.safe_dump(config_to_dict(cfg), handle, sort_keys=False)
        return Path(run_dir)

    def _loader(self, dataset: Dataset, train: bool, batch_size: int, workers: int) -> DataLoader:
        sampler = ResumableSampler(
            len(dataset), shuffle=train, seed=self.config.train.seed,
            rank=self.dist.rank, world_size=self.dist.world_size, pad=train,
        )
        # A BatchNorm layer cannot train on a final batch of one sample.
        drop_last = train and sampler.per_rank % batch_size == 1
        return DataLoader(
            dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
            collate_fn=self.task.collate, pin_memory=self.device.type == "cuda", drop_last=drop_last,
            persistent_workers=workers > 0,
        )

    def _install_signal_handler(self) -> Any:
        def handler(signum: int, frame: Any) -> None:
            self._stop_signal = signum

        try:
            return signal.signal(signal.SIGTERM, handler)
        except ValueError:  # not in the main thread
            return None

    # ------------------------------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        cfg = self.config
        init_distributed(self.dist, self.device)
        seed_everything(cfg.train.seed + self.dist.rank, cfg.train.deterministic)
        self.run_dir = run_dir = self._setup_run_dir()
        weights_dir = run_dir / "weights"
        last_path, best_path = weights_dir / "last.pt", weights_dir / "best.pt"

        train_ds, val_ds = self.task.build_datasets()
        if len(train_ds) == 0:
            raise ValueError(f"the training set of {cfg.data.source!r} is empty")
        model = self.task.build_model().to(self.device)
        if cfg.train.channels_last:
            model = model.to(memory_format=torch.channels_last)
        if self.dist.enabled and cfg.train.sync_bn:
            if self.device.type == "cuda":
                model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
            else:  # PyTorch's SyncBatchNorm has no CPU kernel
                self.log("train.sync_bn ignored: SyncBatchNorm needs CUDA devices")
        bare_model = model
        if self.dist.enabled:
            model = nn.parallel.DistributedDataParallel(
                model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        if cfg.train.compile:
            # Compiles lazily on the first batch (minutes on a small CPU); checkpoints, EMA and
            # validation keep using the same parameters through ``bare_model``.
            model = torch.compile(model)

        workers = default_workers(self.device, cfg.data.workers)
        batch_size = cfg.data.batch_size
        train_loader = self._loader(train_ds, True, batch_size, workers)
        val_loader = (
            self._loader(val_ds, False, cfg.data.eval_batch_size(), workers)
            if val_ds is not None
            else None
        )
        if val_ds is not None and len(val_ds) == 0:
            raise ValueError(f"the validation set of {cfg.data.source!r} is empty")

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

        groups = self.task.param_groups(bare_model)
        for group in groups:
            group["weight_decay"] = group.get("weight_decay", cfg.optim.weight_decay) * weight_decay_scale
        optimizer = build_optimizer(groups, cfg.optim)
        scheduler = build_scheduler(optimizer, cfg.scheduler, cfg.train.epochs, batches_per_epoch)
        if self.resume_state is None:
            apply_warmup_overrides(optimizer, scheduler, warmup_batches, cfg.scheduler, cfg.optim.momentum)
        use_scaler = cfg.train.amp and self.device.type == "cuda"
        scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)
        ema = ModelEMA(bare_model, cfg.train.ema_decay, cfg.train.ema_tau) if cfg.train.ema else None

        start_epoch, start_step = 0, 0
        best_fitness, patience = -math.inf, 0
        if self.resume_state is not None:
            state = self.resume_state
            bare_model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            if state.get("scaler"):
                scaler.load_state_dict(state["scaler"])
            if ema is not None and state.get("ema"):
                ema.load_state_dict(state["ema"])
            start_epoch, start_step = state["epoch"], state.get("step_in_epoch", 0)
            best_fitness, patience = state["best_fitness"], state.get("patience", 0)
            self.history = list(state.get("history", []))
            restore_rng_states(state["rng"])
            if start_epoch >= cfg.train.epochs:
                self.log(f"{last_path} already finished {cfg.train.epochs} epochs; nothing to resume")
            else:
                self.log(f"Resuming {run_dir} from epoch {start_epoch + 1}, batch {start_step}")

        callbacks: list[cb.Callback] = []
        tb_logger = None
        if self.dist.is_main:
            callbacks.append(cb.CSVLogger(run_dir / "results.csv"))
            if cfg.run.tensorboard:
                tb_logger = cb.TensorBoardLogger(run_dir, cfg.train.log_images)
                callbacks.append(tb_logger)
            callbacks.extend(self.extra_callbacks)
        for callback in callbacks:
            callback.on_fit_start(self)

        def checkpoint(epoch: int, step_in_epoch: int, metrics: dict[str, Any]) -> dict[str, Any]:
            return {
                "model": bare_model.state_dict(),
                "ema": ema.state_dict() if ema is not None else None,
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict() if use_scaler else None,
                "epoch": epoch,
                "step_in_epoch": step_in_epoch,
                "best_fitness": best_fitness,
                "patience": patience,
                "history": self.history,
                "metrics": {k: v for k, v in metrics.items() if isinstance(v, (int, float))},
                "rng": rng_states(),
                "config": config_to_dict(cfg),
                "model_name": cfg.model.name,
                "task": cfg.task,
                "extras": self.task.checkpoint_extras(),
                "cvzoo_version": __version__,
                "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            }

        previous_handler = self._install_signal_handler()
        autocast = (
            torch.autocast(self.device.type, dtype=autocast_dtype(self.device))
            if cfg.train.amp
            else contextlib.nullcontext()
        )
        metrics: dict[str, Any] = self.history[-1] if self.history else {}
        last_metrics: dict[str, Any] = {}
        global_step = start_epoch * batches_per_epoch + start_step
        # The iteration of the last optimizer step: a step is due when ``accumulate_at`` batches followed it.
        last_step_batch = global_step - 1
        epoch = start_epoch
        try:
            for epoch in range(start_epoch, cfg.train.epochs):
                t0 = time.time()
                skip = start_step if epoch == start_epoch else 0
                train_loader.sampler.set_epoch(epoch, skip * batch_size)
                self.task.on_epoch_start(epoch, train_ds)
                model.train()
                self.task.set_train_mode(bare_model)
                sums: dict[str, float] = {}
                seen = 0
                iterator = train_loader
                if self.dist.is_main and cfg.run.progress:
                    from tqdm import tqdm

                    iterator = tqdm(
                        train_loader, desc=f"epoch {epoch + 1}/{cfg.train.epochs}", dynamic_ncols=True,
                        leave=False, initial=skip, total=len(train_loader) + skip,
                    )
                optimizer.zero_grad(set_to_none=True)
                for step_in_epoch, batch in enumerate(iterator, start=skip):
                    if self._stop_signal is not None:
                        raise KeyboardInterrupt
                    batch = self.task.to_device(batch, self.device)
                    if tb_logger is not None and global_step == 0:
                        tb_logger.log_batch_images(self.task.sample_images(batch), 0)
                    with autocast:
                        out = self.task.training_step(model, batch)
                    loss = out["loss"]
                    if not torch.isfinite(loss).all():
                        parts = {k: float(v.detach()) for k, v in out.items()}
                        raise NonFiniteLossError(
                            f"loss became {float(loss.detach())} at epoch {epoch + 1}, batch {step_in_epoch} "
                            f"({parts}); stopped. The last good checkpoint is kept at {last_path}. "
                            "Try a lower optim.lr, train.clip_grad_norm, or train.amp=false."
                        )
                    accumulate = accumulate_at(global_step)
                    scaler.scale(loss if self.task.loss_is_batch_sum else loss / accumulate).backward()
                    end_of_epoch = step_in_epoch + 1 == len(train_loader) + skip
                    if global_step - last_step_batch >= accumulate or end_of_epoch:
                        if cfg.train.clip_grad_norm > 0:
                            scaler.unscale_(optimizer)
                            nn.utils.clip_grad_norm_(bare_model.parameters(), cfg.train.clip_grad_norm)
                        scaler.step(optimizer)
                        scaler.update()
                        optimizer.zero_grad(set_to_none=True)
                        while scheduler.last_epoch <= global_step:  # one scheduler step per batch consumed
                            scheduler.step()
                        apply_warmup_overrides(optimizer, scheduler, warmup_batches, cfg.scheduler, cfg.optim.momentum)
                        last_step_batch = global_step
                        if ema is not None:
                            ema.update(bare_model)
                    global_step += 1
                    seen += 1
                    logs = {k: float(v.detach()) for k, v in out.items()}
                    for key, value in logs.items():
                        sums[key] = sums.get(key, 0.0) + value
                    if self.dist.is_main and cfg.run.progress:
                        iterator.set_postfix(
                            loss=f"{sums['loss'] / seen:.4f}", lr=f"{optimizer.param_groups[0]['lr']:.2e}"
                        )
                    if global_step % 50 == 0:
                        for callback in callbacks:
                            callback.on_train_batch_end(self, global_step, logs)
                start_step = 0
                train_logs = all_reduce_mean({k: v / max(1, seen) for k, v in sums.items()}, self.device)
                train_time = time.time() - t0

                val_losses: dict[str, float] = {}
                is_last = epoch + 1 == cfg.train.epochs
                if val_loader is not None and ((epoch + 1) % cfg.train.val_interval == 0 or is_last):
                    eval_model = ema.module if ema is not None else bare_model
                    last_metrics, val_losses = run_validation(
                        self.task, eval_model, val_loader, self.device, cfg.train.amp,
                        progress=self.dist.is_main and cfg.run.progress,
                    )
                    fitness = self.task.fitness(last_metrics)
                else:
                    fitness = -train_logs.get("loss", math.inf)
                improved = fitness > best_fitness
                if improved:
                    best_fitness, patience = fitness, 0
                else:
                    patience += 1

                row: dict[str, float] = {"epoch": epoch + 1, "time": round(time.time() - t0, 3)}
                row.update({f"train/{k}": v for k, v in train_logs.items()})
                row.update({f"val/{k}": v for k, v in val_losses.items()})
                row.update(
                    {f"metrics/{k}": float(v) for k, v in last_metrics.items() if isinstance(v, (int, float))}
                )
                row.update({f"lr/pg{i}": g["lr"] for i, g in enumerate(optimizer.param_groups)})
                self.history.append(row)
                metrics = row
                if self.dist.is_main:
                    state = checkpoint(epoch + 1, 0, last_metrics)
                    atomic_save(state, last_path)
                    if improved:
                        atomic_save(state, best_path)
                    if cfg.run.save_period and (epoch + 1) % cfg.run.save_period == 0:
                        atomic_save(state, weights_dir / f"epoch{epoch + 1}.pt")
                    for callback in callbacks:
                        callback.on_epoch_end(self, epoch + 1, row)
                    self.log(_epoch_line(row, train_time))
                if cfg.train.early_stop_patience and patience >= cfg.train.early_stop_patience:
                    self.log(
                        f"Early stopping: no improvement of the fitness for {patience} epochs "
                        f"(best {best_fitness:.5g})"
                    )
                    break
        except KeyboardInterrupt:
            # Save where we are: the next run skips the batches already seen in this epoch.
            interrupt_path = weights_dir / "last.pt"
            if self.dist.is_main:
                # Gradients of an unfinished accumulation window are lost; resume at its start (the batch
                # after the last optimizer step, which is never before the epoch's first batch).
                done = max(0, last_step_batch + 1 - epoch * batches_per_epoch)
                atomic_save(checkpoint(epoch, done, last_metrics), interrupt_path)
            raise TrainingInterrupted(
                f"training interrupted at epoch {epoch + 1}; resumable checkpoint {interrupt_path} "
                f"(resume with `cvzoo train --resume {interrupt_path}`)",
                interrupt_path,
            ) from None
        finally:
            if previous_handler is not None:
                signal.signal(signal.SIGTERM, previous_handler)
            for callback in callbacks:
                callback.on_fit_end(self)

        if self.dist.is_main:
            if cfg.run.plots and (run_dir / "results.csv").exists():
                cb.plot_results(run_dir / "results.csv", run_dir / "results.png")
            if last_metrics and cfg.run.plots:
                self.task.save_artifacts(run_dir, last_metrics)
        cleanup()
        return TrainResult(
            run_dir=run_dir,
            best_fitness=best_fitness,
            metrics={**metrics, **{k: v for k, v in last_metrics.items()}},
            last_checkpoint=last_path,
            best_checkpoint=best_path if best_path.exists() else None,
            epochs_run=len(self.history),
            history=self.history,
        )


def _epoch_line(row: dict[str, float], train_time: float) -> str:
    parts = [f"epoch {int(row['epoch'])}"]
    for key, value in row.items():
        if key.startswith(("train/", "val/", "metrics/")):
            parts.append(f"{key}={value:.4g}")
    parts.append(f"({row['time']:.1f}s, train {train_time:.1f}s)")
    return "  ".join(parts)


def _resolve_resume(config: Config) -> Path:
    resume = config.run.resume
    if resume == "auto":
        candidates = sorted(
            Path(config.run.project, config.task).glob(f"{config.run.name}*/weights/last.pt"),
            key=lambda p: p.stat().st_mtime,
        )
        if not candidates:
            raise FileNotFoundError(
                f"--resume auto: no last.pt under {Path(config.run.project, config.task)}/{config.run.name}*"
            )
        return candidates[-1]
    return Path(resume)
