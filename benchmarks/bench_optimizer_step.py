"""One optimizer step and one EMA update, by kernel choice, on real models' parameters (``optim.implementation``).

    .venv/bin/python benchmarks/bench_optimizer_step.py [--models yolov8n rtdetr_r50vd] [--repeats 7] [--threads 2]

PyTorch runs an optimizer's update one tensor at a time on a CPU (it picks its batched ``foreach`` kernels on
CUDA only); ``optim.implementation=auto`` asks for the fused CPU kernel instead (``cvzoo/engine/optim.py``).
For each model this times, alternating the three in every round, ``step()`` of the model's recipe optimizer
(YOLO: SGD with Nesterov momentum; RT-DETR: AdamW) built by ``build_optimizer`` with ``implementation``
``loop`` / ``foreach`` / ``fused`` over the model's parameters with random gradients (the state already
created by a first step), and the EMA update of ``ModelEMA`` against the per-tensor update it replaced
(``mul_`` + ``add_`` per tensor), and the gradient-norm clipping the trainer runs before a step
(``clip_grad_norm_`` at PyTorch's default against ``foreach=True``). Prints the median per variant and the
ratio to PyTorch's CPU default.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cvzoo.config import OptimConfig  # noqa: E402
from cvzoo.engine.ema import ModelEMA  # noqa: E402
from cvzoo.engine.optim import build_optimizer  # noqa: E402
from cvzoo.models.registry import create_model  # noqa: E402

RECIPES = {"yolov8n": OptimConfig(name="sgd", lr=0.01, momentum=0.937, nesterov=True, weight_decay=5e-4),
           "rtdetr_r50vd": OptimConfig(name="adamw", lr=1e-4, weight_decay=1e-4)}


def per_tensor_ema(ema: ModelEMA, model: torch.nn.Module) -> None:
    """The EMA update before it was batched: two kernel calls per tensor."""
    d = ema.current_decay()
    source = model.state_dict()
    for name, value in ema.module.state_dict().items():
        if value.dtype.is_floating_point:
            value.mul_(d).add_(source[name], alpha=1 - d)
        else:
            value.copy_(source[name])


def measure(name: str, repeats: int) -> None:
    model = create_model(name, num_classes=10)
    params = [p for p in model.parameters() if p.requires_grad]
    for param in params:
        param.grad = torch.randn_like(param)
    recipe = RECIPES.get(name, OptimConfig())
    calls = {}
    for implementation in ("loop", "foreach", "fused"):
        cfg = OptimConfig(**{**recipe.__dict__, "implementation": implementation})
        optimizer = build_optimizer([{"params": params}], cfg)
        optimizer.step()  # creates the state (momentum / moments)
        calls[f"{cfg.name} {implementation}"] = optimizer.step
    calls["clip default"] = lambda: torch.nn.utils.clip_grad_norm_(params, 1e9)
    calls["clip foreach"] = lambda: torch.nn.utils.clip_grad_norm_(params, 1e9, foreach=True)
    ema = ModelEMA(model, updates=100)
    with torch.no_grad():
        calls["ema per tensor"] = lambda: per_tensor_ema(ema, model)
        calls["ema batched"] = lambda: ema.update(model)
        times: dict[str, list[float]] = {key: [] for key in calls}
        for _ in range(repeats):
            for key, call in calls.items():
                start = time.perf_counter()
                call()
                times[key].append(time.perf_counter() - start)
    values = sum(p.numel() for p in params)
    print(f"{name}: {len(params)} parameter tensors, {values / 1e6:.2f} M values, {torch.get_num_threads()} threads, "
          f"median of {repeats} alternating rounds")
    medians = {key: statistics.median(v) for key, v in times.items()}
    base = {"ema": medians["ema per tensor"], "clip": medians["clip default"], "opt": medians[f"{recipe.name} loop"]}
    for key, value in medians.items():
        reference = base.get(key.split()[0], base["opt"])
        print(f"  {key:16s} {value * 1e3:9.1f} ms   / PyTorch's CPU default {value / reference:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(RECIPES))
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for name in args.models:
        measure(name, args.repeats)


if __name__ == "__main__":
    main()
