"""Throughput of the YOLO training augmentation (mosaic + affine + HSV + flip) beside a plain letterbox.

Both pipelines run on the same synthetic scenes held in memory (no decoding), with torch and OpenCV
limited to the same number of threads, alternating A B A B after a warm-up. As a reference for the
warp, torchvision v2's RandomAffine + ColorJitter(brightness, saturation) + RandomHorizontalFlip (no
mosaic, no hue: v2's hue jitter alone costs about a second per 640 px image on CPU) runs on the same
letterboxed inputs as tensors, on fewer images per run (``--ref-count``) because it is much slower. Prints the median images/s of each and the median ratio against the
letterbox pipeline, plus peak RSS.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_mosaic_pipeline.py --size 640 --repeats 5
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import cv2
import numpy as np
import torch
from torchvision.transforms import v2

from cvzoo.data.augment.detect import (
    Compose,
    LetterBox,
    Mosaic,
    RandomAffine,
    RandomHorizontalFlip,
    RandomHSV,
    to_tensors,
)
from cvzoo.data.synthetic import SceneConfig, generate_dataset


def build_samples(n: int, size: int, masks: bool) -> list[tuple[np.ndarray, dict[str, np.ndarray]]]:
    config = SceneConfig(size_range=(size * 3 // 4, size * 5 // 4), objects_per_image=(2, 8))
    images, anns = generate_dataset(n, config, seed=0)
    samples = []
    for image, ann in zip(images, anns.images):
        target = {"boxes": ann.boxes, "labels": ann.labels}
        if masks:
            target["masks"] = ann.masks
        samples.append((image, target))
    return samples


def images_per_second(pipeline, samples, count: int) -> float:
    start = time.perf_counter()
    for i in range(count):
        pipeline(*samples[i % len(samples)])
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=640)
    parser.add_argument("--scenes", type=int, default=24, help="distinct source scenes in memory")
    parser.add_argument("--count", type=int, default=48, help="images per timed run")
    parser.add_argument("--ref-count", type=int, default=8, help="images per timed run of the v2 reference")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--masks", action="store_true", help="carry instance masks through the pipelines")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    torch.manual_seed(0)
    samples = build_samples(args.scenes, args.size, args.masks)
    letterboxed = [LetterBox(args.size)(*s) for s in samples]

    letterbox = LetterBox(args.size)
    mosaic = Compose([
        Mosaic(samples.__getitem__, args.size, num_samples=len(samples),
               affine=RandomAffine(degrees=0.0, translate=0.1, scale=0.5, shear=0.0)),
        RandomHSV(h=0.015, s=0.7, v=0.4),
        RandomHorizontalFlip(0.5),
    ])
    tv_reference = v2.Compose([
        v2.RandomAffine(degrees=0.0, translate=(0.1, 0.1), scale=(0.5, 1.5), fill=114),
        v2.ColorJitter(brightness=0.4, saturation=0.7),
        v2.RandomHorizontalFlip(0.5),
        v2.SanitizeBoundingBoxes(),
    ])

    def reference(image, target):
        return tv_reference(*to_tensors(image, target))

    pipelines = {
        "letterbox (cvzoo)": (letterbox, samples, args.count),
        "mosaic+affine+hsv+flip (cvzoo)": (mosaic, samples, args.count),
        "affine+jitter+flip (torchvision v2)": (reference, letterboxed, args.ref_count),
    }
    for pipeline, inputs, _ in pipelines.values():  # warm-up
        images_per_second(pipeline, inputs, 2)
    rates: dict[str, list[float]] = {name: [] for name in pipelines}
    for _ in range(args.repeats):
        for name, (pipeline, inputs, count) in pipelines.items():
            rates[name].append(images_per_second(pipeline, inputs, count))

    base = rates["letterbox (cvzoo)"]
    print(f"size={args.size} threads={args.threads} masks={args.masks} scenes={args.scenes} "
          f"count={args.count} ref_count={args.ref_count} repeats={args.repeats}")
    print(f"{'pipeline':40s} {'median img/s':>13s} {'ratio vs letterbox':>19s}")
    for name, values in rates.items():
        ratio = statistics.median(v / b for v, b in zip(values, base))
        print(f"{name:40s} {statistics.median(values):13.1f} {ratio:19.3f}")
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
