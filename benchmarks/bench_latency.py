"""Batch-1 CPU inference latency of cvzoo models beside the reference (torchvision / timm) model.

Both models carry the same weights (the reference's random init, loaded into cvzoo through the key
remaps), run eager fp32 in eval mode under ``torch.inference_mode`` with the same thread count; calls
alternate A B, B A after a warm-up and the figure is the median of the per-pair ratios.

    .venv-bench/bin/python benchmarks/bench_latency.py                      # every model with a reference
    .venv-bench/bin/python benchmarks/bench_latency.py 'resnet*' --size 224 --repeats 30
    .venv-bench/bin/python benchmarks/bench_latency.py '*' --skip 'vgg*' 'resnet*' alexnet --repeats 10   # several patterns
"""

from __future__ import annotations

import argparse
import fnmatch
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import median, median_ratio  # noqa: E402

from cvzoo.models.registry import create_model, get_entry, list_models  # noqa: E402


def reference_model(reference: str, num_classes: int = 1000) -> torch.nn.Module:
    library, name = reference.split(":", 1)
    if library == "torchvision":
        import torchvision

        return torchvision.models.get_model(name, weights=None, num_classes=num_classes)  # no download
    if library == "timm":
        import timm

        return timm.create_model(name, pretrained=False, num_classes=num_classes)
    raise ValueError(f"unknown reference library in {reference!r}")


def time_call(model: torch.nn.Module, x: torch.Tensor) -> float:
    start = time.perf_counter()
    model(x)
    return time.perf_counter() - start


@torch.inference_mode()
def compare(name: str, size: int | None, repeats: int) -> tuple[float, float, float]:
    entry = get_entry(name)
    torch.manual_seed(0)
    ref = reference_model(entry.reference).eval()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ref.pth"
        torch.save(ref.state_dict(), path)
        ours = create_model(name, weights=str(path)).eval()
    side = size or entry.input_size[-1]
    x = torch.randn(1, entry.input_size[0], side, side)
    torch.testing.assert_close(ours(x), ref(x), rtol=1e-4, atol=1e-4)  # same weights, same outputs
    for _ in range(3):
        time_call(ours, x), time_call(ref, x)
    a, b = [], []
    for i in range(repeats):  # A B, B A, ...: neither model always runs first
        if i % 2 == 0:
            a.append(time_call(ours, x))
            b.append(time_call(ref, x))
        else:
            b.append(time_call(ref, x))
            a.append(time_call(ours, x))
    return median(a), median(b), median_ratio(a, b)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("patterns", nargs="*", default=["*"], help="fnmatch patterns of model names")
    parser.add_argument("--skip", nargs="*", default=[], help="fnmatch patterns of model names to leave out")
    parser.add_argument("--size", type=int, help="input side (default: each model's input_size)")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    names = [
        n for n in list_models(task="classify")
        if any(fnmatch.fnmatch(n, p) for p in args.patterns) and not any(fnmatch.fnmatch(n, p) for p in args.skip)
        and get_entry(n).reference
    ]
    print(f"batch 1, eager fp32, {args.threads} threads, {args.repeats} alternating pairs")
    print(f"{'model':28s} {'reference':34s} {'cvzoo ms':>9s} {'ref ms':>9s} {'ratio':>7s}")
    worst = 0.0
    for name in names:
        ours, ref, ratio = compare(name, args.size, args.repeats)
        worst = max(worst, ratio)
        print(f"{name:28s} {get_entry(name).reference:34s} {ours * 1e3:9.2f} {ref * 1e3:9.2f} {ratio:7.3f}",
              flush=True)
    print(f"worst ratio {worst:.3f} (target <= 1.05)")
    # Segmentation models have their own script (benchmarks/bench_segmentation.py), the R-CNNs theirs
    # (benchmarks/bench_rcnn.py latency).


if __name__ == "__main__":
    main()
