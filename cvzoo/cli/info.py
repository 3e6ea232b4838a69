"""``cvzoo info MODEL``: per-layer output shapes, parameters and MACs, totals and receptive field."""

from __future__ import annotations

import argparse
import json

from cvzoo.cli.main import CliError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "info",
        help="per-layer table of a model: output shapes, params, MACs, receptive field",
        description="Run one forward pass of a registered model on a random input and print a "
        "torchsummary-like table (output shape, parameters and multiply-accumulates per layer), the "
        "totals, and the receptive field when the network is a plain conv/pool chain.",
    )
    parser.add_argument("model", help="registered model name (see `cvzoo models`)")
    parser.add_argument("--size", type=int, help="square input side (default: the model's own input size)")
    parser.add_argument("--depth", type=int, default=2, help="deepest module level listed (default: 2)")
    parser.add_argument("--num-classes", type=int, help="build the model with this many classes")
    parser.add_argument("--in-channels", type=int, help="build the model with this many input channels")
    parser.add_argument("--json", action="store_true", help="print the rows and totals as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cvzoo.analysis import format_summary, model_receptive_field, model_summary
    from cvzoo.analysis.summary import format_shape
    from cvzoo.cli.models import build_for_analysis, input_size_for
    from cvzoo.models.registry import UnknownModelError, get_entry

    if args.depth < 1:
        raise CliError(f"--depth must be >= 1, got {args.depth}")
    for flag, value in (("--num-classes", args.num_classes), ("--in-channels", args.in_channels)):
        if value is not None and value < 1:
            raise CliError(f"{flag} must be a positive int, got {value}")
    try:
        entry = get_entry(args.model)
    except UnknownModelError as err:
        raise CliError(str(err)) from None
    kwargs = {k: v for k, v in (("num_classes", args.num_classes), ("in_channels", args.in_channels)) if v is not None}
    try:
        model = build_for_analysis(args.model, **kwargs)
    except TypeError as err:
        raise CliError(f"cannot build {args.model} with {kwargs}: {err}") from None
    shape = input_size_for(entry.input_size, args.size, args.in_channels)
    try:
        rows = model_summary(model, shape, depth=args.depth)
        field = model_receptive_field(model, shape)
    except RuntimeError as err:
        raise CliError(f"{args.model} does not run on a {list(shape)} input: {err}".splitlines()[0]) from None
    if args.json:
        payload = {
            "model": args.model,
            "input_size": list(shape),
            "layers": [
                {"name": r.name, "type": r.type, "output_shape": format_shape(r.output_shape), "params": r.params,
                 "trainable": r.trainable, "macs": r.macs, "depth": r.depth}
                for r in rows
            ],
            "total_params": rows.total_params,
            "trainable_params": rows.trainable_params,
            "gmacs": rows.total_macs / 1e9,
            "gflops": 2 * rows.total_macs / 1e9,
            "receptive_field": None if field is None else list(field.size),
            "jump": None if field is None else list(field.jump),
        }
        print(json.dumps(payload, indent=2))
        return 0
    print(format_summary(rows, title=f"{args.model}  input {list(shape)}"))
    if field is None:
        print("Receptive field: n/a (not a plain conv/pool chain: branches, merges or resizing ops)")
    else:
        (rh, rw), (jh, jw) = field.size, field.jump
        print(f"Receptive field of the last feature map: {rh}x{rw} px (effective stride {jh}x{jw}, "
              f"{len(field.layers)} conv/pool layers)")
    return 0
