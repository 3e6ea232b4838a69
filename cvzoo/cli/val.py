"""``cvzoo val``: evaluate a checkpoint on its validation data (or another dataset)."""

from __future__ import annotations

import argparse
import json

from cvzoo.cli._common import add_device_argument


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "val", help="evaluate a trained checkpoint",
        epilog="example: cvzoo val runs/classify/exp/weights/best.pt --data fashion_mnist_sample",
    )
    parser.add_argument("weights", help="a cvzoo training checkpoint (best.pt / last.pt), or a file cvzoo exported "
                                        "(.onnx, .xml, .torchscript; runs on the CPU in its runtime)")
    parser.add_argument("--threads", type=int, default=0, help="exported files: intra-op threads (0: default)")
    parser.add_argument("--data", help="dataset to evaluate on (default: the run's own)")
    parser.add_argument("--split", default="val", help="split to evaluate (val | test | train)")
    parser.add_argument("--batch", type=int)
    parser.add_argument("--save-dir", help="where to write plots (default runs/<task>/val<N>)")
    parser.add_argument("--json", action="store_true", help="print the metrics as JSON")
    parser.add_argument("--augment", action="store_true",
                        help="test-time augmentation: detection scales 1, 0.83 flipped, 0.67 with one NMS; "
                             "classification: logits of the image and its mirror averaged")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="config override"
    )
    add_device_argument(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cvzoo.api import evaluate
    from cvzoo.cli.main import CliError

    try:
        metrics = evaluate(args.weights, data=args.data, batch=args.batch, device=args.device,
                           split=args.split, save_dir=args.save_dir, overrides=args.overrides,
                           augment=args.augment, threads=args.threads)
    except (FileNotFoundError, ValueError, RuntimeError, ImportError) as err:
        raise CliError(str(err)) from err
    scalars = {k: v for k, v in metrics.items() if isinstance(v, (int, float, str))}
    if args.json:
        print(json.dumps(scalars, indent=1))
    else:
        table = scalars.pop("table", None)  # printed once, as a table
        if table:
            print(table)
        for key, value in scalars.items():
            print(f"{key:>24s}  {value:.5f}" if isinstance(value, float) else f"{key:>24s}  {value}")
    return 0
