"""CornerNet's corner pooling: the doubling suffix maximum (exportable to ONNX, what cvzoo traces) against a
reversed ``torch.cummax`` (no ONNX operator, what cvzoo runs eagerly), forward and backward.

    PYTHONPATH=. python benchmarks/bench_corner_pool.py [--size 64] [--channels 128] [--batch 8] [--threads 2]

Prints the median time of each and the median ratio doubling / cummax (A B A B after a warm-up).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _timing import alternate, median, median_ratio  # noqa: E402

from cvzoo.models.detection.cornernet.corner_pool import suffix_max  # noqa: E402


def cummax_top_left(vertical: torch.Tensor, horizontal: torch.Tensor) -> torch.Tensor:
    return suffix_max(vertical, -2, doubling=False) + suffix_max(horizontal, -1, doubling=False)


def doubling_top_left(vertical: torch.Tensor, horizontal: torch.Tensor) -> torch.Tensor:
    return suffix_max(vertical, -2, doubling=True) + suffix_max(horizontal, -1, doubling=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=64, help="map side (a 256 px input at stride 4)")
    parser.add_argument("--channels", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    shape = (args.batch, args.channels, args.size, args.size)
    vertical = torch.randn(shape, requires_grad=True)
    horizontal = torch.randn(shape, requires_grad=True)
    torch.testing.assert_close(doubling_top_left(vertical, horizontal), cummax_top_left(vertical, horizontal))

    def step(fn):
        def run() -> None:
            fn(vertical, horizontal).sum().backward()
        return run

    times = alternate({"doubling": step(doubling_top_left), "cummax": step(cummax_top_left)}, repeats=args.repeats)
    print(f"maps {list(shape)}, {args.threads} threads, forward + backward of top-left pooling")
    for name, values in times.items():
        print(f"  {name:9s} median {median(values) * 1e3:8.2f} ms")
    print(f"  ratio doubling / cummax (median of rounds): {median_ratio(times['doubling'], times['cummax']):.2f}")


if __name__ == "__main__":
    main()
