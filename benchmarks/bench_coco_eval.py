"""COCO box evaluation speed: cvzoo.metrics.coco_eval versus pycocotools, same inputs, same process.

Builds a seeded synthetic COCO-style set (default 5000 images, 80 categories, 100 detections per
image: ground-truth boxes of varied sizes including crowd regions, detections jittered from them
plus random false positives, scores rounded to 3 decimals so ties occur), then times the full
evaluation - loadRes + evaluate + accumulate + summarize for pycocotools, ``coco_eval`` for cvzoo -
alternating A B A B after a warm-up of each on a small set (``--warmup-images``; imports, caches
and code paths are then warm without paying for a full-size reference run). Both receive the ground truth as an in-memory dict
and the results as a list of dicts (pycocotools gets a fresh copy each time since loadRes mutates
it; the copy is not timed). Prints the medians, their ratio, the largest difference between the 12
numbers and the peak RSS.

    .venv-bench/bin/python benchmarks/bench_coco_eval.py                # full size
    .venv-bench/bin/python benchmarks/bench_coco_eval.py --images 500   # quick run
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import resource
import statistics
import time

import numpy as np

STAT_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


def make_dataset(num_images: int, num_classes: int, dets_per_image: int, seed: int) -> tuple[dict, list]:
    """Seeded synthetic ground truth (COCO dict) and results (list of dicts, bbox xywh)."""
    rng = np.random.default_rng(seed)
    images, annotations, results = [], [], []
    categories = [{"id": c + 1, "name": f"class{c + 1}"} for c in range(num_classes)]
    ann_id = 1
    width, height = 640.0, 480.0
    for image_id in range(1, num_images + 1):
        images.append({"id": image_id, "width": int(width), "height": int(height)})
        num_gt = int(min(rng.geometric(1 / 7.0), 40))
        # Log-uniform sizes give the COCO mix of small, medium and large objects.
        sizes = np.exp(rng.uniform(np.log(6), np.log(400), num_gt))
        aspect = np.exp(rng.normal(0, 0.4, num_gt))
        w = np.minimum(sizes * aspect, width - 1)
        h = np.minimum(sizes / aspect, height - 1)
        x = rng.uniform(0, width - w)
        y = rng.uniform(0, height - h)
        classes = rng.integers(1, num_classes + 1, num_gt)
        crowd = rng.random(num_gt) < 0.02
        dets = []
        for i in range(num_gt):
            box = [float(x[i]), float(y[i]), float(w[i]), float(h[i])]
            # Polygon area is smaller than the box area, as in COCO.
            area = float(w[i] * h[i] * rng.uniform(0.4, 0.9))
            annotations.append({"id": ann_id, "image_id": image_id, "category_id": int(classes[i]),
                                "bbox": box, "area": area, "iscrowd": int(crowd[i])})
            ann_id += 1
            for _ in range(int(rng.integers(1, 4))):
                jitter = rng.normal(0, 0.1, 4) * [w[i], h[i], w[i], h[i]]
                label = int(classes[i]) if rng.random() < 0.9 else int(rng.integers(1, num_classes + 1))
                dets.append((label, [box[0] + jitter[0], box[1] + jitter[1],
                                     max(box[2] + jitter[2], 1.0), max(box[3] + jitter[3], 1.0)],
                             rng.beta(4, 2)))
        while len(dets) < dets_per_image:
            size = np.exp(rng.uniform(np.log(6), np.log(300), 2))
            pos = rng.uniform(0, 1, 2) * [width - size[0], height - size[1]]
            dets.append((int(rng.integers(1, num_classes + 1)),
                         [pos[0], pos[1], size[0], size[1]], rng.beta(1.5, 4)))
        for label, box, score in dets[:dets_per_image]:
            results.append({"image_id": image_id, "category_id": label,
                            "bbox": [round(float(v), 2) for v in box], "score": round(float(score), 3)})
    gt = {"images": images, "annotations": annotations, "categories": categories}
    return gt, results


def run_pycocotools(gt: dict, results: list) -> tuple[float, np.ndarray]:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        start = time.perf_counter()
        coco_dt = coco_gt.loadRes(results)
        evaluator = COCOeval(coco_gt, coco_dt, "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
        elapsed = time.perf_counter() - start
    return elapsed, np.asarray(evaluator.stats)


def run_cvzoo(gt: dict, results: list) -> tuple[float, np.ndarray]:
    from cvzoo.metrics.coco import coco_eval

    start = time.perf_counter()
    stats = coco_eval(gt, results)
    elapsed = time.perf_counter() - start
    return elapsed, np.array([stats[k] for k in STAT_KEYS])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--classes", type=int, default=80)
    parser.add_argument("--dets", type=int, default=100, help="detections per image")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--warmup-images", type=int, default=200)
    args = parser.parse_args()

    warm_gt, warm_results = make_dataset(args.warmup_images, args.classes, args.dets, args.seed + 1)
    t_ref, _ = run_pycocotools(copy.deepcopy(warm_gt), copy.deepcopy(warm_results))
    t_our, _ = run_cvzoo(warm_gt, warm_results)
    print(f"warm-up on {args.warmup_images} images: pycocotools {t_ref:.2f}s  cvzoo {t_our:.3f}s")

    gt, results = make_dataset(args.images, args.classes, args.dets, args.seed)
    print(f"images={args.images} classes={args.classes} gt={len(gt['annotations'])} "
          f"detections={len(results)}", flush=True)
    ref_times, our_times, worst = [], [], 0.0
    for i in range(args.repeats):
        t_ref, ref_stats = run_pycocotools(copy.deepcopy(gt), copy.deepcopy(results))
        t_our, our_stats = run_cvzoo(gt, results)
        worst = max(worst, float(np.abs(ref_stats - our_stats).max()))
        ref_times.append(t_ref)
        our_times.append(t_our)
        print(f"run {i + 1}: pycocotools {t_ref:.2f}s  cvzoo {t_our:.3f}s  ratio {t_ref / t_our:.1f}x", flush=True)
    ref_med, our_med = statistics.median(ref_times), statistics.median(our_times)
    print("stats:", " ".join(f"{k}={v:.4f}" for k, v in zip(STAT_KEYS, our_stats)))
    print(f"max |pycocotools - cvzoo| over the 12 numbers: {worst:.2e}")
    print(f"median pycocotools {ref_med:.2f}s  median cvzoo {our_med:.3f}s  ratio {ref_med / our_med:.1f}x")
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak_mib:.0f} MiB (both evaluators, one process)")
    if worst > 1e-6:
        raise SystemExit(f"numbers differ by {worst:.2e} > 1e-6")


if __name__ == "__main__":
    main()
