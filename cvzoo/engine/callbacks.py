"""Run outputs written on rank 0: results.csv, TensorBoard events and the results.png curves."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from cvzoo.engine.checkpoint import atomic_write_text


class Callback:
    """Hooks called by the trainer on rank 0. Every hook is optional."""

    def on_fit_start(self, trainer: Any) -> None: ...

    def on_train_batch_end(self, trainer: Any, step: int, logs: dict[str, float]) -> None: ...

    def on_epoch_end(self, trainer: Any, epoch: int, row: dict[str, float]) -> None: ...

    def on_fit_end(self, trainer: Any) -> None: ...


class CSVLogger(Callback):
    """results.csv: one row per finished epoch (epoch, time, train/*, val/*, metrics/*, lr/pg*).

    The file is derived from the trainer's history, which the checkpoint holds: it is rewritten whole
    (atomically) at every epoch end and when a run resumes. A run killed between its checkpoint and
    this file, or after this file but before its checkpoint, so still ends with every finished epoch
    exactly once. Columns are those of the first row, then any that appear later, in order.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def on_fit_start(self, trainer: Any) -> None:
        if trainer.history or self.path.exists():
            write_results(self.path, trainer.history)

    def on_epoch_end(self, trainer: Any, epoch: int, row: dict[str, float]) -> None:
        write_results(self.path, trainer.history)


def results_columns(rows: list[dict[str, Any]]) -> list[str]:
    """The columns of results.csv: those of the first row, then any that appear later, in order."""
    columns: list[str] = []
    for row in rows:
        columns.extend(key for key in row if key not in columns)
    return columns


def write_results(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write ``rows`` as results.csv (atomic replace; see ``cvzoo.engine.checkpoint.atomic_write``)."""
    columns = results_columns(rows)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if columns:
        writer.writerow(columns)
    for row in rows:
        writer.writerow([_fmt(row.get(c, "")) for c in columns])
    atomic_write_text(path, buffer.getvalue())


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

    def log_epoch_images(self, images: dict[str, torch.Tensor], epoch: int) -> None:
        """A task's pictures of an epoch (``Task.epoch_images``), ``[C, H, W]`` in [0, 1] by name."""
        for name, image in images.items():
            self.writer.add_image(f"epoch/{name}", image, epoch)

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


def results_panels(rows: list[dict[str, float]], headline: Sequence[str] = ()) -> list[tuple[str, list[str]]]:
    """What results.png shows, as ``(title, columns)`` panels, from the columns of results.csv.

    One panel per loss with its train and val curves together (over- or under-fitting reads at a
    glance), then the task's headline metrics (``headline``, names without ``metrics/``; every metric
    column when empty), then one panel with the learning rate of every parameter group. Columns that
    hold no information are left out: all missing, or all equal to -1 (the COCO placeholder for
    "no ground truth of that size").
    """
    columns = results_columns(rows)

    def informative(key: str) -> bool:
        values = [row.get(key, math.nan) for row in rows]
        finite = [v for v in values if math.isfinite(v)]
        return bool(finite) and any(v != -1.0 for v in finite)

    panels: list[tuple[str, list[str]]] = []
    losses = [c[len("train/"):] for c in columns if c.startswith("train/")]
    losses += [c[len("val/"):] for c in columns if c.startswith("val/") and c[len("val/"):] not in losses]
    for loss in losses:
        keys = [k for k in (f"train/{loss}", f"val/{loss}") if k in columns and informative(k)]
        if keys:
            panels.append((loss, keys))
    metric_names = list(headline) or [c[len("metrics/"):] for c in columns if c.startswith("metrics/")]
    for name in metric_names:
        key = f"metrics/{name}"
        if key in columns and informative(key):
            panels.append((name, [key]))
    lr_keys = [c for c in columns if c.startswith("lr/")]
    if lr_keys:
        panels.append(("learning rate", lr_keys))
    return panels


def plot_results(csv_path: Path, out_path: Path, headline: Sequence[str] = ()) -> Path | None:
    """results.png: the panels of ``results_panels`` (losses train vs val, headline metrics, lr)."""
    rows = read_results(csv_path)
    panels = results_panels(rows, headline)
    if not panels:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    cols = min(4, len(panels))
    nrows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(3.4 * cols, 2.7 * nrows), squeeze=False)
    epochs = [r["epoch"] for r in rows]
    for ax, (title, keys) in zip(axes.flat, panels):
        for key in keys:
            values = [r.get(key, math.nan) for r in rows]
            label = key.split("/", 1)[0] if title != "learning rate" else key.split("/", 1)[1]
            ax.plot(epochs, values, marker=".", linewidth=1.5, label=label)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(labelsize=7)
        if len(keys) > 1:
            ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out_path, dpi=120)
    plt.close(fig)
    return Path(out_path)
