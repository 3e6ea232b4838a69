"""``cvzoo predict``: run a checkpoint (or its exported ONNX file) on images."""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys

from cvzoo.cli._common import add_device_argument


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "predict", help="predict on images, folders or globs",
        epilog="example: cvzoo predict runs/classify/exp/weights/best.pt 'photos/*.png' --topk 3",
    )
    parser.add_argument("weights", help="a cvzoo training checkpoint, or a file cvzoo exported (.onnx, .xml, "
                                        ".torchscript; runs in its runtime; task, classes and preprocessing from "
                                        "its metadata)")
    parser.add_argument("source", nargs="*", help="image file(s), folder(s) or glob(s) (none for a GAN checkpoint, "
                                                  "which generates images)")
    parser.add_argument("--samples", type=int, help="GAN: images to generate (default 64)")
    parser.add_argument("--seed", type=int, help="GAN: seed of the latent vectors (default 0)")
    parser.add_argument("--topk", type=int, default=5, help="classification: classes per image")
    parser.add_argument("--conf", type=float, help="detection: confidence threshold")
    parser.add_argument("--iou", type=float, help="detection: NMS IoU threshold")
    parser.add_argument("--max-det", type=int, help="detection: at most this many detections per image")
    parser.add_argument("--imgsz", type=int, help="predict at this size instead of the trained one (torch backend)")
    parser.add_argument("--slice", type=int, metavar="TILE",
                        help="detection: sliced inference on large images: TILE-pixel tiles plus the whole image, "
                             "merged by class-wise NMS (small objects in large photos)")
    parser.add_argument("--slice-overlap", type=float, default=0.2, help="overlap of neighbouring tiles (fraction)")
    parser.add_argument("--classes", nargs="+", metavar="CLASS",
                        help="detection: keep only these classes (names or indices, space- or comma-separated)")
    parser.add_argument("--format", choices=["table", "json", "csv"], default="table",
                        help="stdout holds only the predictions; notes and skipped files go to stderr")
    parser.add_argument("--save", metavar="DIR", help="write annotated images and predictions.json here")
    parser.add_argument("--backend", choices=["torch", "onnxruntime", "openvino", "torchscript"],
                        help="runtime (default: torch for a checkpoint, the file's own for an exported file); "
                             "with a checkpoint, another backend runs its export next to it")
    parser.add_argument("--onnx", help="exported file for --backend onnxruntime/openvino/torchscript, exported from "
                                       "WEIGHTS (default: WEIGHTS with .onnx/.xml/.torchscript, exported when missing "
                                       "or made from other weights)")
    parser.add_argument("--threads", type=int, default=0, help="exported files: intra-op threads (0: default)")
    parser.add_argument("--augment", action="store_true",
                        help="test-time augmentation: detection scales 1, 0.83 flipped, 0.67 with one NMS; "
                             "classification: logits of the image and its mirror averaged")
    add_device_argument(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cvzoo.api import predict
    from cvzoo.cli.main import CliError

    options = {"topk": args.topk}
    for key in ("conf", "iou", "onnx", "max_det", "imgsz", "slice", "samples", "seed"):
        if getattr(args, key) is not None:
            options[key] = getattr(args, key)
    if args.slice is not None:
        options["slice_overlap"] = args.slice_overlap
    if args.classes:
        options["classes"] = [c for item in args.classes for c in item.split(",") if c.strip()]
    try:
        results = predict(args.weights, args.source, device=args.device, save_dir=args.save,
                          backend=args.backend, augment=args.augment, threads=args.threads, **options)
    except (FileNotFoundError, ValueError, RuntimeError, ImportError) as err:
        raise CliError(str(err)) from err
    skipped = [r for r in results if "error" in r]
    print(format_results([r for r in results if "error" not in r] if args.format != "json" else results, args.format))
    for result in skipped:
        print(f"skipped {result['image']}: {result['error']}", file=sys.stderr)
    if args.save:
        print(f"saved to {args.save}", file=sys.stderr)
    return 1 if skipped else 0


def format_results(results: list[dict], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(results, indent=1, default=str)
    rows = [row for result in results for row in result.get("rows", [])]
    if fmt == "csv":
        buffer = io.StringIO()
        if rows:
            writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        return buffer.getvalue().rstrip()
    if not rows:
        return "no predictions"
    keys = list(rows[0])
    widths = {k: max(len(k), *(len(_cell(r[k])) for r in rows)) for k in keys}
    lines = ["  ".join(k.ljust(widths[k]) for k in keys)]
    lines += ["  ".join(_cell(r[k]).ljust(widths[k]) for k in keys) for r in rows]
    return "\n".join(lines)


def _cell(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)
