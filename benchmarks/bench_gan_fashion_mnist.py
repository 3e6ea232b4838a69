"""DCGAN, WGAN-GP and conditional DCGAN on Fashion-MNIST by `cvzoo train --task gan`, judged by a cvzoo classifier.

1. A classifier (``lenet_mnist``) is trained on the training set: the judge. Its pooled features give
   "FID (cvzoo-lenet_mnist features)" and KID; its predictions on conditional samples give the
   classification accuracy score (CAS: the fraction of samples classified as the class they were asked
   for; the issue's target is >= 90%).
2. The floor: FID / KID between two halves of real images (the first ``--floor-n`` training images
   against as many test images) in the same features: what a perfect generator would score with that
   sample size.
3. Each GAN row trains for ``--minutes`` of wall time at most (whole epochs; the epoch count is estimated
   from a first epoch) and reports the best validation FID / KID (and CAS) of its run on the test set.

Numbers from different feature extractors do not compare: these are not Inception FIDs. CAS is bounded by the
judge: a sample it misclassifies counts against the generator, so the floor row's CAS is the judge's own top-1
on the real test images (a perfect generator's CAS). ``--judge-config recipes/fashion_mnist.yaml`` trains a
stronger judge (ResNet-9, ~94 %) by that recipe; ``--rejudge WEIGHTS...`` scores GAN checkpoints of an earlier
run with this run's judge, without training a GAN again.

    make bench-data    # or: apt-get install dataset-fashion-mnist
    .venv/bin/python benchmarks/bench_gan_fashion_mnist.py --data data/fashion-mnist            # ~30 min, 2 cores
    .venv/bin/python benchmarks/bench_gan_fashion_mnist.py --data data/fashion-mnist --quick    # a smoke run
    .venv/bin/python benchmarks/bench_gan_fashion_mnist.py --data data/fashion-mnist --rows cdcgan --minutes 30 \
        --project runs/bench_gan                                                   # keep the run's checkpoints
    .venv/bin/python benchmarks/bench_gan_fashion_mnist.py --data data/fashion-mnist --judge-config \
        recipes/fashion_mnist.yaml --rejudge runs/bench_gan/gan/cdcgan/weights/best.pt           # another judge
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import cvzoo
from cvzoo.api import build_config
from cvzoo.metrics.generative import fid, kid
from cvzoo.tasks.gan import FeatureExtractor, GanTask

# row -> (model, overrides)
ROWS: dict[str, tuple[str, list[str]]] = {
    "dcgan": ("dcgan_28", []),
    "wgan_gp": ("wgan_gp_28", []),
    "cdcgan": ("cdcgan_28", []),
}


def train_judge(data: str, project: str, model: str, epochs: int, limit: int,
                config: str | None = None) -> tuple[Path, float, str]:
    """The judge's checkpoint and its top-1 on the real test images: the CAS a perfect generator would get
    (a sample the judge misclassifies counts against the generator, so CAS is bounded by the judge).

    With ``config`` (a classification recipe such as ``recipes/fashion_mnist.yaml``) the judge is that
    recipe's model and schedule; its final validation is plain (no flip TTA), as the judge scores samples.
    """
    common = ["data.workers=0", "run.progress=false", "run.tensorboard=false", "run.plots=false",
              f"data.limit_train={limit}", f"data.source={data}", f"run.project={project}", "run.name=judge"]
    if config:
        result = cvzoo.train(config, overrides=[*common, "train.val_augment=false", "train.device=cpu"])
        model = build_config(config).model.name
    else:
        result = cvzoo.train(model=model, epochs=epochs, batch=128, device="cpu",
                             overrides=[*common, "classify.augment.hflip=0.5", "classify.augment.padding=2"])
    top1 = float(result.metrics["metrics/top1"])
    print(f"judge {model}: test top-1 {top1:.4f}", flush=True)
    return result.best_checkpoint, top1, model


def rejudge(weights: str, data: str, judge: Path, val_n: int) -> dict:
    """FID / KID (and CAS) of a trained GAN checkpoint in another judge's features, as `cvzoo val` computes
    them: the generator is not retrained, so a stronger judge can be compared on the same samples."""
    metrics = cvzoo.evaluate(weights, data=data, device="cpu", plots=False,
                             overrides=[f"gan.features={judge}", f"data.limit_val={val_n}", "data.workers=0"])
    out = {"row": f"rejudged {Path(weights).parent.parent.name}/{Path(weights).name}",
           "fid": float(metrics["fid"]), "kid": float(metrics["kid"])}
    if "cas" in metrics:
        out["cas"] = float(metrics["cas"])
    return out


@torch.no_grad()
def real_floor(data: str, judge: Path, n: int) -> dict:
    """FID / KID of n training images against n test images, in the judge's features."""
    extractor = FeatureExtractor(str(judge))
    task = GanTask(build_config(overrides=["task=gan", f"data.source={data}"]))
    feats = []
    for split in ("train", "val"):
        dataset = task.build_eval_dataset(split)
        images = torch.stack([dataset[i][0] for i in range(min(n, len(dataset)))])
        real, _ = task._real((images, None))
        feats.append(torch.cat([extractor(chunk)[0] for chunk in real.split(500)]).double().numpy())
    mean, _ = kid(feats[0], feats[1], subset_size=min(1000, len(feats[0]), len(feats[1])))
    return {"row": "floor (train half vs test)", "fid": fid(feats[0], feats[1]), "kid": mean, "n": len(feats[0])}


def run_gan(name: str, data: str, project: str, judge: Path, minutes: float, limit: int, val_n: int) -> dict:
    model, overrides = ROWS[name]
    common = [*overrides, "data.workers=0", "run.progress=false", f"gan.features={judge}", f"data.limit_val={val_n}",
              f"data.limit_train={limit}"]
    start = time.perf_counter()
    # One epoch first: its wall time sizes the run to the time box.
    first = cvzoo.train(task="gan", model=model, data=data, epochs=1, device="cpu", project=project, name=name,
                        overrides=common)
    per_epoch = time.perf_counter() - start
    epochs = max(1, int(minutes * 60 // per_epoch))
    result = first
    if epochs > 1:
        result = cvzoo.train(task="gan", model=model, data=data, epochs=epochs, device="cpu", project=project,
                             name=name, overrides=[*common, f"run.resume={first.last_checkpoint}"])
    with (result.run_dir / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    best = min(rows, key=lambda r: float(r["metrics/fid"]))
    out = {"row": name, "model": model, "epochs": len(rows), "wall_s": round(time.perf_counter() - start, 1),
           "best_epoch": int(best["epoch"]), "fid": float(best["metrics/fid"]), "kid": float(best["metrics/kid"]),
           "grid": str(result.run_dir / "samples" / f"epoch{best['epoch']}.png")}
    if "metrics/cas" in best:
        out["cas"] = float(best["metrics/cas"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/fashion-mnist", help="folder with the four *-ubyte(.gz) files")
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--minutes", type=float, default=8.0, help="time box of each GAN row")
    parser.add_argument("--judge-model", default="lenet_mnist", help="the judge classifier (a registered model)")
    parser.add_argument("--judge-epochs", type=int, default=3)
    parser.add_argument("--judge-config", default=None,
                        help="train the judge by a classification recipe instead (e.g. recipes/fashion_mnist.yaml)")
    parser.add_argument("--rejudge", nargs="+", default=[], metavar="WEIGHTS",
                        help="GAN checkpoints of an earlier run to score with this run's judge (no GAN training)")
    parser.add_argument("--floor-n", type=int, default=5000)
    parser.add_argument("--val-n", type=int, default=2000, help="test images (and samples) per FID")
    parser.add_argument("--limit", type=int, default=0, help="training images (0 = all 60k)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 2k images, 1 epoch each")
    parser.add_argument("--project", default=None, help="run folder (default: a temporary one)")
    args = parser.parse_args()
    if not Path(args.data).is_dir():
        sys.exit(f"{args.data}: not a folder; run `make bench-data` or apt-get install dataset-fashion-mnist")
    if args.quick:
        args.minutes, args.judge_epochs, args.floor_n, args.val_n, args.limit = 0.01, 1, 500, 500, 2000
    torch.set_num_threads(max(1, torch.get_num_threads()))
    project = args.project or tempfile.mkdtemp(prefix="bench_gan_")
    judge, judge_top1, judge_name = train_judge(args.data, project, args.judge_model, args.judge_epochs, args.limit,
                                    args.judge_config)
    results = [{**real_floor(args.data, judge, args.floor_n), "cas": judge_top1}]
    print(json.dumps(results[-1]), flush=True)
    for weights in args.rejudge:
        results.append(rejudge(weights, args.data, judge, args.val_n))
        print(json.dumps(results[-1]), flush=True)
    for name in args.rows if not args.rejudge else []:
        results.append(run_gan(name, args.data, project, judge, args.minutes, args.limit, args.val_n))
        print(json.dumps(results[-1]), flush=True)
    print(f"\nFID / KID in cvzoo-{judge_name} features (not Inception); test images per FID: {args.val_n}; "
          f"the floor row's CAS is the judge's top-1 on the real test images (a perfect generator's CAS)")
    print(f"{'row':40s} {'epochs':>6s} {'wall s':>7s} {'FID':>8s} {'KID':>8s} {'CAS':>6s}")
    for r in results:
        cas = f"{r['cas']:.3f}" if "cas" in r else "-"
        print(f"{r['row']:40s} {r.get('epochs', '-')!s:>6s} {r.get('wall_s', '-')!s:>7s} {r['fid']:8.3f} "
              f"{r['kid']:8.4f} {cas:>6s}")
    np.set_printoptions(precision=4)


if __name__ == "__main__":
    main()
