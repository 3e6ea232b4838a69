"""``make demo`` / ``python -m cvzoo.demo``: train, evaluate, predict and export on bundled data.

Runs in a few minutes on a 2-core CPU and needs no download: the classification step trains on the
Fashion-MNIST sample shipped inside the package (written out as an ImageFolder tree first, so the
same path a user's own folder takes is exercised).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from cvzoo import api
from cvzoo.data.bundled import export_sample_to_folder


def classification_demo(root: Path, epochs: int) -> dict:
    data_dir = export_sample_to_folder(root / "fashion_mnist_sample")
    print(f"[classify] bundled Fashion-MNIST sample written to {data_dir} (ImageFolder: train/ val/)")
    result = api.train(
        task="classify", model="resnet20_cifar", data=str(data_dir), epochs=epochs, batch=64, lr=0.1,
        project=str(root / "runs"), name="classify", overrides=[
            "scheduler.warmup_epochs=1", "classify.augment.hflip=0.5", "train.label_smoothing=0.1",
        ],
    )
    best = result.best_checkpoint or result.last_checkpoint
    metrics = api.evaluate(best, save_dir=result.run_dir / "val")
    print(f"[classify] val top-1 {metrics['top1']:.3f}, top-5 {metrics['top5']:.3f} (chance 0.100)")
    samples = sorted((data_dir / "val").glob("*/*.png"))[::40][:5]
    for pred in api.predict(best, samples, save_dir=result.run_dir / "predict"):
        top = pred["topk"][0]
        print(f"[classify] {Path(pred['image']).parent.name}/{Path(pred['image']).name}: "
              f"{top['class']} ({top['prob']:.2f})")
    onnx_path = api.export(best, format="onnx")[0]
    print(f"[classify] exported {onnx_path} (checked against PyTorch in onnxruntime)")
    print(f"[classify] run folder: {result.run_dir}")
    print(f"[classify]   curves: {result.run_dir / 'results.png'}")
    print(f"[classify]   confusion matrix: {result.run_dir / 'confusion_matrix.png'}")
    print(f"[classify]   TensorBoard: tensorboard --logdir {result.run_dir}")
    return metrics


def detection_demo(root: Path, epochs: int) -> dict:
    from cvzoo.data.synthetic import SceneConfig, write_yolo_dataset

    config = SceneConfig(image_size=(160, 160), objects_per_image=(1, 3), scale_range=(0.25, 0.5),
                         classes=["trouser", "bag", "sneaker"])
    data_yaml = write_yolo_dataset(root / "scenes_yolo", n_train=160, n_val=40, config=config, seed=0)
    print(f"[detect] synthetic scenes (real Fashion-MNIST objects, exact boxes) written to {data_yaml.parent}")
    result = api.train(
        task="detect", model="yolov8n", data=str(data_yaml), epochs=epochs, batch=16, imgsz=160, lr=0.01,
        project=str(root / "runs"), name="detect",
        overrides=["scheduler.warmup_epochs=1", "detect.augment.mosaic=0.5", "train.ema=true"],
    )
    best = result.best_checkpoint or result.last_checkpoint
    metrics = api.evaluate(best, save_dir=result.run_dir / "val")
    print(metrics["table"])
    print(f"[detect] val mAP50 {metrics['mAP50']:.3f}, mAP50-95 {metrics['mAP50-95']:.3f}")
    images = sorted((data_yaml.parent / "images" / "val").glob("*.jpg"))[:4]
    predictions = api.predict(best, images, save_dir=result.run_dir / "predict", conf=0.1)
    found = sum(len(p["detections"]) for p in predictions)
    print(f"[detect] {found} objects found (confidence >= 0.1) in {len(images)} val scenes; "
          f"drawn in {result.run_dir / 'predict'}")
    print(f"[detect] run folder: {result.run_dir} (PR_curve.png, confusion_matrix.png, val_batch0_pred.jpg)")
    return metrics


def segmentation_demo(root: Path, epochs: int) -> dict:
    from cvzoo.data.synthetic import SceneConfig, write_voc_segmentation

    config = SceneConfig(image_size=(96, 96), objects_per_image=(1, 3), scale_range=(0.3, 0.6),
                         classes=["trouser", "bag", "sneaker"])
    data_dir = write_voc_segmentation(root / "scenes_voc", n_train=120, n_val=30, config=config, seed=0)
    print(f"[segment] synthetic VOC-style scenes (exact masks) written to {data_dir}")
    result = api.train(
        task="segment", model="unet", data=str(data_dir), epochs=epochs, batch=8, imgsz=96, lr=0.01,
        optimizer="adamw", project=str(root / "runs"), name="segment",
        overrides=["model.kwargs={base_channels: 16}", "optim.weight_decay=0.0001"],
    )
    best = result.best_checkpoint or result.last_checkpoint
    metrics = api.evaluate(best, save_dir=result.run_dir / "val")
    print(f"[segment] val mIoU {metrics['mIoU']:.3f}, pixel accuracy {metrics['pixel_acc']:.3f}")
    images = sorted((Path(data_dir) / "JPEGImages").glob("*.jpg"))[:3]
    api.predict(best, images, save_dir=result.run_dir / "predict")
    print(f"[segment] palette masks and overlays in {result.run_dir / 'predict'}")
    return metrics


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", default="runs/demo", help="where the demo writes data and runs")
    parser.add_argument("--epochs", type=int, default=15, help="classification epochs")
    parser.add_argument("--detect-epochs", type=int, default=25, help="detection epochs (0 skips)")
    parser.add_argument("--segment-epochs", type=int, default=12, help="segmentation epochs (0 skips)")
    args = parser.parse_args(argv)
    root = Path(args.root)
    t0 = time.time()
    classification_demo(root, args.epochs)
    if args.detect_epochs:
        detection_demo(root, args.detect_epochs)
    if args.segment_epochs:
        segmentation_demo(root, args.segment_epochs)
    print(f"demo finished in {time.time() - t0:.0f} s; everything is under {root}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
