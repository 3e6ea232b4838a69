"""``cvzoo benchmark``: every deployment format of a checkpoint side by side on this CPU: file size, batch-1
latency, throughput and the task's metric on the validation set, as one table and a CSV.

A format that fails to export or run (a missing package, an operator a runtime lacks) is a row with its
error, and the others are still measured.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path
from typing import Any

FORMATS = ("torch", "torchscript", "onnx", "onnx-int8", "openvino", "openvino-int8")
COLUMNS = ("format", "file", "size_mb", "latency_ms", "throughput_ips", "metric", "value", "error")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "benchmark", help="size, latency, throughput and accuracy of every export format on this CPU",
        epilog="example: cvzoo benchmark runs/detect/exp/weights/best.pt --formats onnx,openvino-int8 --threads 4",
    )
    parser.add_argument("weights", help="a cvzoo training checkpoint")
    parser.add_argument("--data", help="validation data for the metric (default: the run's own)")
    parser.add_argument("--formats", default=",".join(FORMATS), help=f"comma-separated, of {', '.join(FORMATS)}")
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads of every runtime (0: its default)")
    parser.add_argument("--batch", type=int, default=8, help="batch size of the throughput measurement")
    parser.add_argument("--runs", type=int, default=50, help="timed batch-1 calls (the median is reported)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed calls before timing")
    parser.add_argument("--imgsz", type=int, help="input size (default: the training size)")
    parser.add_argument("--calib", type=int, default=64, help="int8: calibration images from the training split")
    parser.add_argument("--no-metric", action="store_true", help="skip validation (speed and size only)")
    parser.add_argument("--out", help="folder for the exported files and benchmark.csv (default: next to WEIGHTS, "
                                      "in benchmark/)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cvzoo.cli.main import CliError

    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise CliError(f"unknown format {unknown[0]!r}; use {', '.join(FORMATS)}")
    if not Path(args.weights).is_file():
        raise CliError(f"checkpoint not found: {args.weights}")
    out = Path(args.out) if args.out else Path(args.weights).parent / "benchmark"
    out.mkdir(parents=True, exist_ok=True)
    rows = [benchmark_format(args, fmt, out) for fmt in formats]
    print(format_table(rows))
    path = out / "benchmark.csv"
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(COLUMNS))
        writer.writeheader()
        writer.writerows({key: row.get(key, "") for key in COLUMNS} for row in rows)
    print(f"saved {path}", file=sys.stderr)
    return 0


def benchmark_format(args: argparse.Namespace, fmt: str, out: Path) -> dict[str, Any]:
    """One row: the format exported (into ``out``), timed and validated; an error becomes the row's
    ``error`` (the first line of its message) with what was measured before it."""
    row: dict[str, Any] = {"format": fmt}
    try:
        measure(args, fmt, out, row)
    except Exception as err:  # a format that cannot be made or run is reported, not fatal (see module doc)
        row["error"] = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    return row


def measure(args: argparse.Namespace, fmt: str, out: Path, row: dict[str, Any]) -> None:
    from cvzoo import api
    from cvzoo.export.runtime import load_runtime
    from cvzoo.export.timing import latency_ms, throughput, torch_threads
    from cvzoo.layers.reparam import prepare_for_inference

    task, model, _ = api.load_trained(args.weights, "cpu")
    example = task.example_input(1, args.imgsz)
    if fmt == "torch":
        path = Path(args.weights)
        # What `cvzoo predict` runs: BatchNorm folded, channels-last; the export module's outputs (decoding
        # included) so that the work matches the exported graphs'.
        runner = task.export_module(prepare_for_inference(model, "cpu")).eval()
        files = [path]
    else:
        path = api.export(args.weights, format=fmt, out=out / Path(args.weights).stem, imgsz=args.imgsz,
                          calib=args.calib)[0]
        runner = load_runtime(path, args.threads)
        files = [path, path.with_suffix(".bin")] if path.suffix == ".xml" else [path]
    row["file"] = str(path)
    row["size_mb"] = round(sum(f.stat().st_size for f in files) / 2**20, 2)
    with torch_threads(args.threads):
        row["latency_ms"] = round(latency_ms(runner, example, args.runs, args.warmup), 2)
        batch = task.example_input(args.batch, args.imgsz)
        row["throughput_ips"] = round(throughput(runner, batch, max(3, args.runs // 5), 2), 1)
        if not args.no_metric:
            metrics = api.evaluate(path, data=args.data, device="cpu", plots=False, threads=args.threads,
                                   save_dir=out / f"val-{fmt}")
            key = task.config.train.fitness_metric or task.fitness_metric
            row["metric"], row["value"] = key, round(float(metrics[key]), 4)


def format_table(rows: list[dict[str, Any]]) -> str:
    shown = [c for c in COLUMNS if c != "file" and any(row.get(c) not in (None, "") for row in rows)]
    cells = [[str(row.get(c, "")) for c in shown] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(shown)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(shown, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in cells]
    return "\n".join(lines)
