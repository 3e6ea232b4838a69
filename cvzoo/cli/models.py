"""``cvzoo models``: the registered models with their parameter counts and, optionally, GFLOPs."""

from __future__ import annotations

import argparse
import json
from typing import Any

from cvzoo.cli.main import CliError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "models",
        help="list registered models with params (M), GMACs and GFLOPs",
        description="List registered models matching a shell-style PATTERN with their parameter count "
        "(millions) and, with --flops, the cost of one forward pass: GMACs (billions of multiply-accumulates, "
        "what torchvision's tables call GFLOPS) and GFLOPs (2 per multiply-accumulate, as in the YOLO tables).",
    )
    parser.add_argument("pattern", nargs="?", default="*", help="shell-style name pattern, e.g. 'resnet*'")
    parser.add_argument("--task", help="only models of this task (classify, detect, segment, ...)")
    parser.add_argument("--flops", action="store_true", help="also count GMACs and GFLOPs per model")
    parser.add_argument("--size", type=int, help="square input side for --flops (default: each model's own)")
    parser.add_argument("--weights", action="store_true",
                        help="also list each model's published weight tags (the default first, marked *)")
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    parser.set_defaults(func=run)


def build_for_analysis(name: str, **kwargs: Any):
    """Build a model without allocating real weights when possible (``meta`` device: shapes only)."""
    import torch

    from cvzoo.models.registry import create_model

    try:
        with torch.device("meta"):
            return create_model(name, **kwargs)
    except (NotImplementedError, RuntimeError):
        return create_model(name, **kwargs)  # a builder that needs real tensors (e.g. data-dependent init)


def input_size_for(entry_size: tuple[int, ...], size: int | None, in_channels: int | None = None) -> tuple[int, ...]:
    """``(C, H, W)`` from the registry entry, optionally overriding the side and the channels."""
    channels = in_channels if in_channels is not None else entry_size[0]
    if size is None:
        return (channels, *entry_size[1:])
    if size < 1:
        raise CliError(f"--size must be a positive int, got {size}")
    return (channels, size, size)


def weight_tags(name: str) -> list[str]:
    """The published weight tags of ``name``, the default (``pretrained=True``) first and marked ``*``."""
    from cvzoo.models.pretrained import default_tag, weight_sets

    default = default_tag(name)
    others = sorted(tag for tag in weight_sets(name) if tag != default)
    return ([f"{default}*"] if default else []) + others


def describe(name: str, flops: bool, size: int | None, weights: bool = False) -> dict[str, Any]:
    from cvzoo.analysis import count_flops
    from cvzoo.models.registry import get_entry

    entry = get_entry(name)
    model = build_for_analysis(name)
    row: dict[str, Any] = {
        "name": name,
        "task": entry.task,
        "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 3),
        "input_size": list(entry.input_size),
    }
    if flops:
        shape = input_size_for(entry.input_size, size)
        try:
            report = count_flops(model, shape)
        except (RuntimeError, NotImplementedError):  # op without a meta kernel: count on real tensors
            from cvzoo.models.registry import create_model

            report = count_flops(create_model(name), shape)
        row["input_size"] = list(shape)
        row["gmacs"] = round(report.gmacs, 3)
        row["gflops"] = round(report.gflops, 3)
    if weights:
        row["weights"] = weight_tags(name)
    return row


def models_for_task(pattern: str, task: str | None) -> list[str]:
    """Registered models matching ``pattern`` that ``task`` can train: a task that runs another task's models
    (instance segmentation: detectors) lists those its ``model_problem`` accepts (Mask R-CNN)."""
    from cvzoo.config.tasks import TASKS
    from cvzoo.models.registry import list_models
    from cvzoo.tasks import task_class

    spec = TASKS.get(task or "")
    if spec is None or not spec.model_task:
        return list_models(pattern, task=task)
    implementation = task_class(task)
    return [name for name in list_models(pattern, task=spec.model_task) if not implementation.model_problem(name)]


def run(args: argparse.Namespace) -> int:
    names = models_for_task(args.pattern, args.task)
    if not names:
        what = f"matching {args.pattern!r}" + (f" for task {args.task!r}" if args.task else "")
        raise CliError(f"no registered model {what}; try `cvzoo models` for the full list")
    if args.size is not None and args.size < 1:
        raise CliError(f"--size must be a positive int, got {args.size}")
    rows = [describe(name, args.flops, args.size, args.weights) for name in names]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    header = ["name", "task", "params (M)", "input"] + (["GMACs", "GFLOPs"] if args.flops else []) + (
        ["weights"] if args.weights else [])
    table = [
        [r["name"], r["task"], f"{r['params_m']:.2f}", "x".join(str(v) for v in r["input_size"])]
        + ([f"{r['gmacs']:.3f}", f"{r['gflops']:.3f}"] if args.flops else [])
        + ([" ".join(r["weights"]) or "-"] if args.weights else [])
        for r in rows
    ]
    widths = [max(len(h), *(len(t[i]) for t in table)) for i, h in enumerate(header)]
    left = {0, 1, len(header) - 1} if args.weights else {0, 1}
    fmt = lambda cells: "  ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))  # noqa: E731
    print(fmt(header))
    print("  ".join("-" * w for w in widths))
    for cells in table:
        print(fmt(cells))
    if args.flops:
        print("GMACs = billions of multiply-accumulates per image (torchvision's 'GFLOPS'); GFLOPs = 2 x GMACs.")
    return 0
