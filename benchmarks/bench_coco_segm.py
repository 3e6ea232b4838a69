"""COCO mask evaluation speed: cvzoo.metrics.coco_eval(iou_type="segm") versus pycocotools, same inputs.

Builds a seeded synthetic COCO-style instance-segmentation set (default 500 images of 200x200 to
640x480 pixels, 80 categories, 100 results per image): ground-truth objects are star-shaped polygons
of log-uniform sizes (some in two parts), 2% crowd regions as uncompressed RLE as in COCO, the
``area`` field the mask area; results are compressed RLEs of jittered ground-truth polygons (1-3 per
object, 10% with another category) plus random false positives, scores rounded to 3 decimals so that
ties occur. It then times the full evaluation - loadRes + evaluate + accumulate + summarize for
pycocotools, ``coco_eval(..., iou_type="segm")`` for cvzoo - alternating A B A B after a warm-up of
each on a small set (``--warmup-images``). faster-coco-eval (``COCOeval_faster``) is timed beside
them when it is installed. Every evaluator gets the ground truth as an in-memory dict and the
results as a list of dicts (the references get fresh copies since loadRes and annToRLE mutate them;
the copies are not timed). Prints the medians, the ratio, the largest difference between the 12
numbers and the peak RSS.

    .venv-bench/bin/python benchmarks/bench_coco_segm.py                 # default size
    .venv-bench/bin/python benchmarks/bench_coco_segm.py --images 100    # quick run
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


def star(rng: np.random.Generator, cx: float, cy: float, radius: float, aspect: float) -> list[float]:
    """A star-shaped polygon (concave for some radii draws), 6 to 30 vertices."""
    n = int(rng.integers(6, 31))
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    radii = radius * rng.uniform(0.55, 1.0, n)
    xy = np.stack([cx + radii * np.cos(angles) * aspect, cy + radii * np.sin(angles) / aspect], axis=1)
    return [round(float(v), 2) for v in xy.ravel()]


def make_dataset(num_images: int, num_classes: int, dets_per_image: int, seed: int) -> tuple[dict, list]:
    """Seeded synthetic ground truth (COCO dict, polygons + crowd RLE) and results (compressed RLE)."""
    from cvzoo.ops.masks import RleBatch

    rng = np.random.default_rng(seed)
    images, annotations, results = [], [], []
    categories = [{"id": c + 1, "name": f"class{c + 1}"} for c in range(num_classes)]
    det_segs, det_sizes = [], []
    ann_id = 1
    for image_id in range(1, num_images + 1):
        width, height = int(rng.integers(200, 641)), int(rng.integers(200, 481))
        images.append({"id": image_id, "width": width, "height": height})
        num_gt = int(min(rng.geometric(1 / 7.0), 40))
        dets = []
        gt_polys = []
        for _ in range(num_gt):
            # Log-uniform sizes give the COCO mix of small, medium and large objects.
            radius = float(np.exp(rng.uniform(np.log(3), np.log(min(width, height) / 2.5))))
            aspect = float(np.exp(rng.normal(0, 0.3)))
            cx, cy = rng.uniform(0, width), rng.uniform(0, height)
            polys = [star(rng, cx, cy, radius, aspect)]
            if rng.random() < 0.15:
                polys.append(star(rng, cx + 1.5 * radius, cy, radius / 2, aspect))
            label = int(rng.integers(1, num_classes + 1))
            crowd = rng.random() < 0.02
            gt_polys.append((polys, label, crowd, radius))
            for _ in range(int(rng.integers(1, 4))):
                shift = rng.normal(0, 0.12 * radius, 2)
                moved = [[round(float(v + shift[k % 2] + rng.normal(0, 0.06 * radius)), 2) for k, v in enumerate(p)]
                         for p in polys]
                det_label = label if rng.random() < 0.9 else int(rng.integers(1, num_classes + 1))
                dets.append((det_label, moved, rng.beta(4, 2)))
        while len(dets) < dets_per_image:
            radius = float(np.exp(rng.uniform(np.log(3), np.log(min(width, height) / 3))))
            poly = star(rng, rng.uniform(0, width), rng.uniform(0, height), radius, float(np.exp(rng.normal(0, 0.3))))
            dets.append((int(rng.integers(1, num_classes + 1)), [poly], rng.beta(1.5, 4)))
        gt_masks = RleBatch.from_segmentations([p for p, *_ in gt_polys], [height] * num_gt, [width] * num_gt)
        areas = gt_masks.areas().tolist()
        crowd_rles = gt_masks.to_uncompressed()
        gt_boxes = gt_masks.bboxes().tolist()
        for i, (polys, label, crowd, _) in enumerate(gt_polys):
            annotations.append({"id": ann_id, "image_id": image_id, "category_id": label,
                                "segmentation": crowd_rles[i] if crowd else polys, "area": float(areas[i]),
                                "bbox": gt_boxes[i], "iscrowd": int(crowd)})
            ann_id += 1
        for label, polys, score in dets[:dets_per_image]:
            results.append({"image_id": image_id, "category_id": label, "score": round(float(score), 3)})
            det_segs.append(polys)
            det_sizes.append((height, width))
    sizes = np.array(det_sizes)
    for record, rle in zip(results, RleBatch.from_segmentations(det_segs, sizes[:, 0], sizes[:, 1]).to_rles()):
        record["segmentation"] = rle
    gt = {"images": images, "annotations": annotations, "categories": categories}
    return gt, results


def run_reference(gt: dict, results: list, faster: bool) -> tuple[float, np.ndarray]:
    """pycocotools (or faster-coco-eval with ``faster``): loadRes + evaluate + accumulate + summarize."""
    if faster:
        from faster_coco_eval import COCO
        from faster_coco_eval import COCOeval_faster as COCOeval
    else:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        start = time.perf_counter()
        coco_dt = coco_gt.loadRes(results)
        evaluator = COCOeval(coco_gt, coco_dt, "segm")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
        elapsed = time.perf_counter() - start
    return elapsed, np.asarray(evaluator.stats[:12])


def run_cvzoo(gt: dict, results: list) -> tuple[float, np.ndarray]:
    from cvzoo.metrics.coco import coco_eval

    start = time.perf_counter()
    stats = coco_eval(gt, results, iou_type="segm")
    elapsed = time.perf_counter() - start
    return elapsed, np.array([stats[k] for k in STAT_KEYS])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--classes", type=int, default=80)
    parser.add_argument("--dets", type=int, default=100, help="results per image")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--warmup-images", type=int, default=30)
    args = parser.parse_args()
    try:
        import faster_coco_eval  # noqa: F401

        has_faster = True
    except ImportError:
        has_faster = False
        print("faster-coco-eval is not installed: timing pycocotools and cvzoo only")

    runners = {"pycocotools": lambda g, r: run_reference(copy.deepcopy(g), copy.deepcopy(r), faster=False),
               "cvzoo": run_cvzoo}
    if has_faster:
        runners["faster-coco-eval"] = lambda g, r: run_reference(copy.deepcopy(g), copy.deepcopy(r), faster=True)

    warm_gt, warm_results = make_dataset(args.warmup_images, args.classes, args.dets, args.seed + 1)
    warm = {name: fn(warm_gt, warm_results)[0] for name, fn in runners.items()}
    print(f"warm-up on {args.warmup_images} images: " + "  ".join(f"{k} {v:.2f}s" for k, v in warm.items()))

    gt, results = make_dataset(args.images, args.classes, args.dets, args.seed)
    crowd = sum(a["iscrowd"] for a in gt["annotations"])
    print(f"images={args.images} classes={args.classes} gt={len(gt['annotations'])} (crowd {crowd}) "
          f"results={len(results)}", flush=True)
    times: dict[str, list[float]] = {name: [] for name in runners}
    stats: dict[str, np.ndarray] = {}
    worst = {name: 0.0 for name in runners if name != "pycocotools"}
    for i in range(args.repeats):
        for name, fn in runners.items():
            elapsed, stats[name] = fn(gt, results)
            times[name].append(elapsed)
        for name in worst:
            worst[name] = max(worst[name], float(np.abs(stats["pycocotools"] - stats[name]).max()))
        line = "  ".join(f"{name} {t[-1]:.2f}s" for name, t in times.items())
        print(f"run {i + 1}: {line}  ratio pycocotools/cvzoo {times['pycocotools'][-1] / times['cvzoo'][-1]:.1f}x",
              flush=True)
    med = {name: statistics.median(t) for name, t in times.items()}
    print("stats:", " ".join(f"{k}={v:.4f}" for k, v in zip(STAT_KEYS, stats["cvzoo"])))
    for name, diff in worst.items():
        print(f"max |pycocotools - {name}| over the 12 numbers: {diff:.2e}")
    print(f"median pycocotools {med['pycocotools']:.2f}s  median cvzoo {med['cvzoo']:.2f}s  "
          f"ratio {med['pycocotools'] / med['cvzoo']:.1f}x")
    if has_faster:
        print(f"median faster-coco-eval {med['faster-coco-eval']:.2f}s  "
              f"(pycocotools / faster-coco-eval {med['pycocotools'] / med['faster-coco-eval']:.1f}x, "
              f"faster-coco-eval / cvzoo {med['faster-coco-eval'] / med['cvzoo']:.2f}x)")
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak_mib:.0f} MiB (all evaluators, one process)")
    if worst["cvzoo"] > 1e-6:
        raise SystemExit(f"numbers differ by {worst['cvzoo']:.2e} > 1e-6")


if __name__ == "__main__":
    main()
