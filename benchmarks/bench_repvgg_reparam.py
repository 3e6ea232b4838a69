"""RepVGG batch-1 CPU latency: training form (3x3 + 1x1 + identity branches) versus the re-parameterised
deploy form (one 3x3 conv per block), same weights, same process, same threads.

The deploy model is a deep copy of the training model after ``reparameterize()``; the script first
checks that both give the same logits, then times one forward pass of each under
``torch.inference_mode``, alternating A B A B after a warm-up, and prints the medians and the median of
the per-round ratios (deploy / training; RepVGG's claim is a clear speed-up, the target here <= 0.6x).

    .venv-bench/bin/python benchmarks/bench_repvgg_reparam.py                       # repvgg_a0, 224 px, 1 thread
    .venv-bench/bin/python benchmarks/bench_repvgg_reparam.py --model repvgg_b0 --threads 2 --repeats 50
    .venv-bench/bin/python benchmarks/bench_repvgg_reparam.py --channels-last     # both forms in NHWC (as cvzoo predict runs)
    .venv-bench/bin/python benchmarks/bench_repvgg_reparam.py --device cuda       # on a GPU (each call synchronised)
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import alternate, median, median_ratio, peak_rss_mib  # noqa: E402

from cvzoo.models import create_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="repvgg_a0")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--channels-last", action="store_true",
                        help="both forms and the input in channels-last memory order (oneDNN's NHWC kernels, the "
                             "order cvzoo's predictor uses on the CPU); the default is NCHW for both")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    train_form = create_model(args.model).eval().to(device)
    deploy_form = copy.deepcopy(train_form).reparameterize()
    x = torch.randn(1, 3, args.size, args.size, device=device)
    layout = "NCHW"
    if args.channels_last:
        layout = "channels-last"
        x = x.contiguous(memory_format=torch.channels_last)
        for model in (train_form, deploy_form):
            model.to(memory_format=torch.channels_last)
    with torch.inference_mode():
        expected = train_form(x)
        difference = ((deploy_form(x) - expected).abs().max() / expected.abs().max()).item()

    def run(model: torch.nn.Module):
        def call() -> None:
            with torch.inference_mode():
                model(x)
            if device.type == "cuda":
                torch.cuda.synchronize(device)  # time the kernels, not their launch

        return call

    times = alternate({"train": run(train_form), "deploy": run(deploy_form)}, args.repeats, args.warmup)
    params = {name: sum(p.numel() for p in m.parameters()) / 1e6 for name, m in
              (("train", train_form), ("deploy", deploy_form))}
    where = f"{args.threads} thread(s)" if device.type == "cpu" else str(device)
    print(f"{args.model}, batch 1, {args.size} px, {layout}, {where}, {args.repeats} rounds")
    print(f"max |logit difference| / max |logit|: {difference:.1e}")
    for name in ("train", "deploy"):
        print(f"{name:<7} median {median(times[name]) * 1e3:8.2f} ms   params {params[name]:.2f} M")
    print(f"ratio deploy / train (median of per-round ratios): {median_ratio(times['deploy'], times['train']):.3f}x")
    print(f"peak RSS {peak_rss_mib():.0f} MiB")


if __name__ == "__main__":
    main()
