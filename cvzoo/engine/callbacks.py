"""Run outputs written on rank 0: results.csv, TensorBoard events and the results.png curves."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import torch


class Callback:
    """Hooks called by the trainer on rank 0. Every hook is optional."""

    def on_fit_start(self, trainer: Any) -> None: ...

    def on_train_batch_end(self, trainer: Any, step: int, logs: dict[str, float]) -> None: ...

    def on_epoch_end(self, trainer: Any, epoch: int, row: dict[str, float]) -> None: ...

    def on_fit_end(self, trainer: Any) -> None: ...


class CSVLogger(Callback):
    """results.csv: one row per epoch, columns fixed by the first row (epoch, time, train/*, val/*,
    metrics/*, lr/pg*). Appends on resume, so an interrupted run keeps one continuous file."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.columns: list[str] | None = None
        if self.path.exists():
            with self.path.open() as handle:
                header = handle.readline().strip()
            self.columns = header.split(",") if header else None

    def on_epoch_end(self, trainer: Any, epoch: int, row: dict[str, float]) -> None:
        if self.columns is None:
            self.columns = list(row)
            with self.path.open("w", newline="") as handle:
                csv.writer(handle).writerow(self.columns)
        with self.path.open("a", newline="") as handle:
            csv.writer(handle).writerow([_fmt(row.get(c, "")) for c in self.columns])


def _fmt(value: Any) -> Any:
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


def read_results(path: Path) -> list[dict[str, float]]:
    with Path(path).open() as handle:
        rows = list(csv.DictReader(handle))
    return [{k: float(v) if v not in ("", None) else math.nan for k, v in row.items()} for row in rows]


class TensorBoardLogger(Callback):
    """Scalars per epoch and per step, and a grid of training images once."""

    def __init__(self, log_dir: Path, log_images: bool = True) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(log_dir))
        self.log_images = log_images
        self._images_logged = False

    def log_batch_images(self, images: torch.Tensor | None, step: int) -> None:
        if not self.log_images or self._images_logged or images is None:
            return
        import torchvision

        grid = torchvision.utils.make_grid(images[:16].float().clamp(0, 1), nrow=4)
        self.writer.add_image("train/batch", grid, step)
        self._images_logged = True

    def on_train_batch_end(self, trainer: Any, step: int, logs: dict[str, float]) -> None:
        for key, value in logs.items():
            self.writer.add_scalar(f"step/{key}", value, step)

    def on_epoch_end(self, trainer: Any, epoch: int, row: dict[str, float]) -> None:
        for key, value in row.items():
            if key not in ("epoch",) and isinstance(value, (int, float)) and math.isfinite(value):
                self.writer.add_scalar(key, value, epoch)
        self.writer.flush()

    def on_fit_end(self, trainer: Any) -> None:
        self.writer.close()


def plot_results(csv_path: Path, out_path: Path) -> Path | None:
    """results.png: one small panel per column of results.csv (losses, metrics, learning rates)."""
    rows = read_results(csv_path)
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in rows[0] if k not in ("epoch", "time")]
    cols = min(5, len(keys))
    nrows = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(3.2 * cols, 2.6 * nrows), squeeze=False)
    epochs = [r["epoch"] for r in rows]
    for ax, key in zip(axes.flat, keys):
        ax.plot(epochs, [r[key] for r in rows], marker=".", linewidth=1.5)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out_path, dpi=120)
    plt.close(fig)
    return Path(out_path)
