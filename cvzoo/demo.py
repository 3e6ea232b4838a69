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
            "scheduler.warmup_epochs=1", "data.augment.hflip=0.5", "train.label_smoothing=0.1",
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", default="runs/demo", help="where the demo writes data and runs")
    parser.add_argument("--epochs", type=int, default=15, help="classification epochs")
    args = parser.parse_args(argv)
    root = Path(args.root)
    t0 = time.time()
    classification_demo(root, args.epochs)
    print(f"demo finished in {time.time() - t0:.0f} s; everything is under {root}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
