"""SSD300 / SSDlite320 beside torchvision's: batch-1 CPU eval latency of the same weights.

``latency``: torchvision's model (no pretrained weights; batch-norm statistics spread, class predictors
sharpened, as ``tests/models/detection/test_ssd_parity.py`` randomises them) is saved and loaded into cvzoo
through ``create_model(name, num_classes=90, weights=path)``. One random 480 x 640 image; each model with
its own resize, normalisation and post-processing (``predict`` for cvzoo, ``model([image])`` for
torchvision). The detections are compared first (counts, max abs difference of boxes and scores), then the
calls alternate A B, B A after a warm-up; the figure is the median of the per-pair ratios cvzoo /
torchvision (target <= 1.0).

    .venv-bench/bin/python benchmarks/bench_ssd.py latency
    .venv-bench/bin/python benchmarks/bench_ssd.py latency --models ssdlite320_mobilenet_v3_large --repeats 10
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import median, median_ratio, peak_rss_mib  # noqa: E402

from cvzoo.models import create_model  # noqa: E402

MODELS = ("ssdlite320_mobilenet_v3_large", "ssd300_vgg16")


@torch.no_grad()
def randomise(model: nn.Module, seed: int, sharpen: float = 5.0) -> None:
    """Spread batch-norm statistics and sharpen the class predictors: many distinct detections."""
    generator = torch.Generator().manual_seed(seed)
    for key, tensor in model.state_dict().items():
        if key.endswith("running_var"):
            tensor.copy_(0.5 + torch.rand(tensor.shape, generator=generator))
        elif key.endswith("running_mean"):
            tensor.copy_(0.1 * torch.randn(tensor.shape, generator=generator))
    for module in model.head.classification_head.modules():
        if isinstance(module, nn.Conv2d) and module.groups == 1:
            module.weight.mul_(sharpen)


def eval_pair(name: str) -> tuple[nn.Module, nn.Module]:
    """(cvzoo, torchvision) in eval mode with the same randomised weights, loaded as a user loads a file."""
    from torchvision.models import detection as tvd

    torch.manual_seed(0)
    reference = getattr(tvd, name)(weights=None, weights_backbone=None, num_classes=91)
    randomise(reference, seed=1)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{name}.pth"
        torch.save(reference.state_dict(), path)
        ours = create_model(name, num_classes=90, weights=str(path))
    return ours.eval(), reference.eval()


def latency(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    image = torch.rand(3, 480, 640, generator=torch.Generator().manual_seed(3))
    batch = image[None]
    for name in args.models:
        ours, reference = eval_pair(name)
        with torch.no_grad():
            got, expected = ours.predict(batch)[0], reference([image])[0]
        same = len(got) == len(expected["boxes"])
        diff = (max(float((got.boxes - expected["boxes"]).abs().max()), float((got.scores - expected["scores"]).abs().max()))
                if same and len(got) else float("nan"))
        print(f"{name}: {len(got)} vs {len(expected['boxes'])} detections, max abs diff {diff:.3g}")

        def run_ours(ours: nn.Module = ours) -> None:
            with torch.no_grad():
                ours.predict(batch)

        def run_reference(reference: nn.Module = reference) -> None:
            with torch.no_grad():
                reference([image])

        for _ in range(args.warmup):
            run_ours()
            run_reference()
        times: dict[str, list[float]] = {"cvzoo": [], "torchvision": []}
        for pair in range(args.repeats):
            order = (("cvzoo", run_ours), ("torchvision", run_reference))
            for label, fn in order if pair % 2 == 0 else order[::-1]:
                start = time.perf_counter()
                fn()
                times[label].append(time.perf_counter() - start)
        print(f"  cvzoo {median(times['cvzoo']) * 1000:.1f} ms, torchvision {median(times['torchvision']) * 1000:.1f} ms, "
              f"ratio (median of pairs) {median_ratio(times['cvzoo'], times['torchvision']):.3f}; "
              f"peak RSS {peak_rss_mib():.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    lat = sub.add_parser("latency", help="batch-1 CPU eval latency, cvzoo / torchvision")
    lat.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    lat.add_argument("--repeats", type=int, default=10)
    lat.add_argument("--warmup", type=int, default=2)
    lat.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if args.command == "latency":
        latency(args)


if __name__ == "__main__":
    main()
