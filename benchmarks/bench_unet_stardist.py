"""U-Net on the StarDist nuclei image (nucleus vs background): mIoU and Dice after a fixed budget.

The data is the real 2-D example that the ``stardist`` wheel ships (BSD-3): a 512x512 fluorescence
microscopy image (``img2d.tif``, 16-bit grey) and its instance labels (``mask2d.tif``, 125 nuclei). Get
it offline, without installing or importing stardist::

    make bench-data    # pip download --no-deps stardist==0.9.2, unzipped into data/stardist/wheel
    .venv-bench/bin/python benchmarks/bench_unet_stardist.py --stardist data/stardist/wheel/stardist/data/images

What the script does, in order:

1. **Read** both TIFFs with Pillow (mode ``I;16``); ``tifffile`` is tried only when Pillow cannot decode
   them (it is not a cvzoo dependency).
2. **Semantic labels**: instance id > 0 -> 1 (nucleus), 0 -> 0 (background).
3. **Normalise** the image to uint8 by a per-image percentile stretch, as StarDist's own examples do:
   ``clip((x - p1) / (p99.8 - p1), 0, 1) * 255`` with p1 / p99.8 the 1st / 99.8th intensity percentiles
   of the whole image (no labels involved). cvzoo's loader would otherwise keep the high byte of 16-bit
   samples (``v >> 8``), and this image's values (0..235) would all become 0.
4. **Split in space**: columns ``[0, 384 - gap)`` train, ``[384, 512)`` validation (the right quarter,
   ``--val-fraction 0.25``), with a ``--gap`` (16 px) between them used by neither, so that no
   validation pixel and no pixel of a nucleus cut by the border is ever seen in training.
5. **Tiles** in cvzoo's ``images/<split>/`` + ``masks/<split>/`` + ``classes.txt`` (background, nucleus)
   folder layout: overlapping ``--tile`` (160) px tiles at ``--stride`` (64) px over the train region;
   non-overlapping ``--val-tile`` (128) px tiles over the validation strip (edge tiles are smaller, so
   every validation pixel is scored exactly once). Images are 8-bit grey PNGs, masks 0/1 index PNGs.
6. **Train** ``unet`` (``--base`` 16) through ``cvzoo.api.train`` for ``--epochs`` epochs (the fixed
   budget, 8 by default: 35 tiles, 5 steps of batch 8 per epoch), Adam 0.005, poly schedule, CE + Dice loss, random ``--crop`` (128) px crops of the tiles with a zoom
   of 0.8-1.25 (``segment.augment.scale`` is relative to the crop: ``zoom * tile / crop``), horizontal and
   vertical flips (p = 0.5 each), brightness/contrast jitter 0.2.
7. **Evaluate** the *last* checkpoint (the budget's end, not the best epoch: choosing by validation mIoU
   would select on the figure reported) with ``cvzoo.api.evaluate`` on the validation tiles at their
   own resolution. IoU and Dice come from one pixel confusion matrix over all validation pixels.
   Foreground Dice is the nucleus class's Dice. For context the same pixels are scored for an Otsu
   threshold chosen on the training region's normalised intensities.

Prints a summary and one line of JSON (prefixed ``RESULT``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import peak_rss_mib  # noqa: E402

CLASSES = ("background", "nucleus")


# ----------------------------------------------------------------------------------------------- data
def read_tiff(path: Path) -> np.ndarray:
    """A 2-D TIFF as a NumPy array of its stored values (Pillow first, ``tifffile`` as the fallback)."""
    try:
        with Image.open(path) as image:
            return np.asarray(image).copy()
    except OSError as err:
        try:
            import tifffile
        except ImportError:
            raise SystemExit(f"{path}: Pillow cannot read it ({err}) and tifffile is not installed "
                             "(pip install tifffile)") from err
        return np.asarray(tifffile.imread(path))


def find_stardist_images(folder: Path) -> tuple[Path, Path]:
    """``img2d.tif`` and ``mask2d.tif`` in ``folder`` or in an unpacked wheel's ``stardist/data/images``."""
    for base in (folder, folder / "stardist" / "data" / "images", folder / "data" / "images"):
        image, mask = base / "img2d.tif", base / "mask2d.tif"
        if image.is_file() and mask.is_file():
            return image, mask
    raise SystemExit(f"{folder}: no img2d.tif + mask2d.tif (unpack the stardist wheel; see this script's docstring)")


def percentile_stretch(image: np.ndarray, low: float = 1.0, high: float = 99.8) -> np.ndarray:
    """uint8 image: the ``low``..``high`` percentile range mapped linearly onto 0..255, clipped."""
    values = image.astype(np.float64)
    lo, hi = np.percentile(values, [low, high])
    scaled = np.clip((values - lo) / max(hi - lo, 1e-12), 0.0, 1.0)
    return np.rint(scaled * 255).astype(np.uint8)


def tile_starts(length: int, tile: int, stride: int) -> list[int]:
    """Tile origins every ``stride`` px covering ``[0, length)``; the last one ends at ``length``."""
    if tile >= length:
        return [0]
    starts = list(range(0, length - tile + 1, stride))
    if starts[-1] != length - tile:
        starts.append(length - tile)
    return starts


def write_tiles(root: Path, split: str, image: np.ndarray, mask: np.ndarray, tile: int, stride: int,
                cover: bool) -> int:
    """Cut ``image``/``mask`` into tiles under ``root/images/<split>`` and ``root/masks/<split>``.

    ``cover``: non-overlapping tiles of at most ``tile`` px that cover every pixel exactly once (the
    validation strip); otherwise overlapping ``tile`` px tiles every ``stride`` px (training).
    """
    height, width = mask.shape
    if cover:
        rows = [(y, min(tile, height - y)) for y in range(0, height, tile)]
        cols = [(x, min(tile, width - x)) for x in range(0, width, tile)]
    else:
        rows = [(y, min(tile, height)) for y in tile_starts(height, tile, stride)]
        cols = [(x, min(tile, width)) for x in tile_starts(width, tile, stride)]
    (root / "images" / split).mkdir(parents=True, exist_ok=True)
    (root / "masks" / split).mkdir(parents=True, exist_ok=True)
    count = 0
    for y, h in rows:
        for x, w in cols:
            stem = f"{split}_y{y:03d}_x{x:03d}"
            Image.fromarray(image[y:y + h, x:x + w]).save(root / "images" / split / f"{stem}.png")
            Image.fromarray(mask[y:y + h, x:x + w]).save(root / "masks" / split / f"{stem}.png")
            count += 1
    return count


def prepare(args: argparse.Namespace, root: Path) -> dict:
    """Write the tiled dataset under ``root``; returns what was written and the raw validation arrays."""
    image_path, mask_path = find_stardist_images(Path(args.stardist))
    raw, labels = read_tiff(image_path), read_tiff(mask_path)
    if raw.ndim != 2 or raw.shape != labels.shape:
        raise SystemExit(f"expected two 2-D images of the same size, got {raw.shape} and {labels.shape}")
    image = percentile_stretch(raw, 1.0, 99.8)
    semantic = (labels > 0).astype(np.uint8)
    width = raw.shape[1]
    val_x = int(round(width * (1.0 - args.val_fraction)))
    train_x = val_x - args.gap
    if train_x < args.tile or width - val_x < 16:
        raise SystemExit(f"split leaves {train_x} px for training and {width - val_x} px for validation")
    shutil.rmtree(root, ignore_errors=True)  # no stale tiles from an earlier run with other settings
    root.mkdir(parents=True)
    (root / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    n_train = write_tiles(root, "train", image[:, :train_x], semantic[:, :train_x], args.tile, args.stride, cover=False)
    n_val = write_tiles(root, "val", image[:, val_x:], semantic[:, val_x:], args.val_tile, 0, cover=True)
    return {
        "image": str(image_path), "size": list(raw.shape), "raw_range": [int(raw.min()), int(raw.max())],
        "nuclei": int(len(np.unique(labels)) - 1), "foreground_fraction": float(semantic.mean()),
        "train_columns": [0, train_x], "val_columns": [val_x, width], "train_tiles": n_train, "val_tiles": n_val,
        "train_image": image[:, :train_x], "val_image": image[:, val_x:], "val_mask": semantic[:, val_x:],
    }


# ------------------------------------------------------------------------------------------ baseline
def otsu_threshold(values: np.ndarray) -> int:
    """Otsu (1979): the uint8 threshold t maximising the between-class variance of ``values <= t`` / ``> t``."""
    hist = np.bincount(values.ravel(), minlength=256).astype(np.float64)
    prob = hist / hist.sum()
    omega = np.cumsum(prob)
    mu = np.cumsum(prob * np.arange(256))
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mu[-1] * omega - mu) ** 2 / (omega * (1.0 - omega))
    return int(np.nanargmax(between))


def scores(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """IoU / Dice per class, their means and pixel accuracy of two binary class maps."""
    from cvzoo.metrics.segmentation import confusion_matrix, metrics_from_confusion

    result = metrics_from_confusion(confusion_matrix(pred.astype(np.int64), truth.astype(np.int64), 2))
    return {"mIoU": result["mIoU"], "iou_nucleus": float(result["iou"][1]), "iou_background": float(result["iou"][0]),
            "mDice": result["mDice"], "dice_nucleus": float(result["dice"][1]),
            "dice_background": float(result["dice"][0]), "pixel_acc": result["pixel_acc"]}


# --------------------------------------------------------------------------------------------- train
def run(args: argparse.Namespace, work: Path) -> dict:
    import cvzoo.api as api

    torch.set_num_threads(args.threads)
    data = prepare(args, work / "data")
    zoom = (0.8, 1.25)
    scale = [round(z * args.tile / args.crop, 4) for z in zoom]
    overrides = [
        f"model.kwargs={{base_channels: {args.base}}}", f"segment.loss={args.loss}",
        f"segment.augment.scale=[{scale[0]}, {scale[1]}]", "segment.augment.hflip=0.5",
        "segment.augment.vflip=0.5", "segment.augment.color_jitter=0.2",
        "data.workers=0", "optim.weight_decay=0", "scheduler.name=poly",
        "run.progress=false", "run.tensorboard=false", "run.plots=false", "train.log_images=false",
    ]
    print(f"StarDist {data['size'][0]}x{data['size'][1]}, {data['nuclei']} nuclei, foreground "
          f"{data['foreground_fraction']:.3f}; train columns {data['train_columns']} -> {data['train_tiles']} tiles "
          f"of {args.tile}px (stride {args.stride}), val columns {data['val_columns']} -> {data['val_tiles']} tiles")
    start = time.perf_counter()
    result = api.train(task="segment", model="unet", data=str(work / "data"), epochs=args.epochs, batch=args.batch,
                       imgsz=args.crop, lr=args.lr, optimizer="adam", device="cpu", seed=args.seed,
                       project=str(work / "runs"), name="unet_stardist", overrides=overrides)
    train_s = time.perf_counter() - start
    start = time.perf_counter()
    metrics = api.evaluate(result.last_checkpoint, device="cpu", save_dir=work / "val", plots=False)
    eval_s = time.perf_counter() - start
    per_class = {row["class"]: row for row in metrics["per_class"]}

    threshold = otsu_threshold(data["train_image"])
    otsu = scores(data["val_image"] > threshold, data["val_mask"])
    return {
        "model": f"unet base {args.base}", "loss": args.loss, "epochs": result.epochs_run, "batch": args.batch,
        "crop": args.crop, "lr": args.lr, "threads": args.threads,
        "mIoU": metrics["mIoU"], "iou_nucleus": per_class["nucleus"]["iou"],
        "iou_background": per_class["background"]["iou"], "mDice": metrics["mDice"],
        "dice_nucleus": per_class["nucleus"]["dice"], "dice_background": per_class["background"]["dice"],
        "pixel_acc": metrics["pixel_acc"], "val_pixels": int(sum(r["support"] for r in metrics["per_class"])),
        "train_s": round(train_s, 1), "eval_s": round(eval_s, 1), "peak_rss_mib": round(peak_rss_mib()),
        "otsu_threshold": threshold, "otsu": otsu,
        **{k: data[k] for k in ("nuclei", "foreground_fraction", "train_columns", "val_columns", "train_tiles",
                                "val_tiles")},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stardist", required=True, help="folder with img2d.tif + mask2d.tif (or the unpacked wheel)")
    parser.add_argument("--epochs", type=int, default=8, help="the fixed training budget")
    parser.add_argument("--base", type=int, default=16, help="U-Net base width")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=0.005)
    parser.add_argument("--loss", default="ce+dice", choices=["ce", "dice", "ce+dice", "focal", "focal+dice"])
    parser.add_argument("--tile", type=int, default=160, help="training tile side (px)")
    parser.add_argument("--stride", type=int, default=64, help="training tile stride (px)")
    parser.add_argument("--crop", type=int, default=128, help="random training crop side (data.img_size)")
    parser.add_argument("--val-tile", type=int, default=128, help="validation tile side (non-overlapping)")
    parser.add_argument("--val-fraction", type=float, default=0.25, help="right-hand share of columns for validation")
    parser.add_argument("--gap", type=int, default=16, help="columns between train and val used by neither")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default=None, help="keep the tiles and the run here (default: a temporary folder)")
    args = parser.parse_args()

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="unet_stardist_"))
    try:
        out = run(args, work)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    print(file=sys.stderr, flush=True)  # end the evaluation progress bar's line
    print(f"{out['model']}, {out['loss']}, {out['epochs']} epochs (batch {out['batch']}, {out['crop']}px crops, "
          f"{out['threads']} threads): train {out['train_s']:.0f}s, eval {out['eval_s']:.1f}s, "
          f"peak RSS {out['peak_rss_mib']} MiB")
    print(f"validation ({out['val_pixels']} px, columns {out['val_columns']}):")
    print(f"  mIoU {out['mIoU']:.4f}  IoU nucleus {out['iou_nucleus']:.4f}  IoU background {out['iou_background']:.4f}")
    print(f"  mDice {out['mDice']:.4f}  Dice nucleus (foreground) {out['dice_nucleus']:.4f}  "
          f"Dice background {out['dice_background']:.4f}  pixel acc {out['pixel_acc']:.4f}")
    otsu = out["otsu"]
    print(f"  Otsu threshold {out['otsu_threshold']} (chosen on the train columns): mIoU {otsu['mIoU']:.4f}  "
          f"IoU nucleus {otsu['iou_nucleus']:.4f}  Dice nucleus {otsu['dice_nucleus']:.4f}  "
          f"pixel acc {otsu['pixel_acc']:.4f}")
    print("RESULT " + json.dumps(out, sort_keys=True))


if __name__ == "__main__":
    main()
