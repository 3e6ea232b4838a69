"""ONNX exporters and graph simplification, side by side on the same model, on this CPU (issue #19).

    .venv/bin/python benchmarks/bench_onnx_exporters.py                       # lenet, resnet18, yolov8n
    .venv/bin/python benchmarks/bench_onnx_exporters.py --models resnet18 --threads 2
    .venv/bin/python benchmarks/bench_onnx_exporters.py --quick               # tiny sizes: checks that it runs

For each model (random weights; YOLOv8n through its export module, images -> decoded predictions) and each
way of writing the file

    torchscript         torch.onnx.export(dynamo=False), opset 17: the deprecated tracer
    dynamo-unoptimized  torch.export + onnxscript translation, opset 18, without onnxscript's optimizer
    dynamo              cvzoo.export.export_onnx's default: the same with the optimizer (optimize=True:
                        constant folding, redundant-op removal)
    dynamo+onnxslim     the dynamo file passed through onnxslim as well (only when ``onnxslim`` imports)

it prints the export time (seconds; both exporters warmed up first on a tiny model, so imports and
one-time caches are not counted), the largest difference from PyTorch in onnxruntime at batch 1 and 2
(the dynamic batch), the node count, the file size and the onnxruntime latency at batch 1 (median of
``--runs`` calls, the formats run alternately A B C A B C so that a drifting load hits them alike).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import alternate, median  # noqa: E402

from cvzoo.export.onnx import check_onnx_parity, export_onnx  # noqa: E402
from cvzoo.export.runtime import OnnxRuntimeModel  # noqa: E402
from cvzoo.models import create_model  # noqa: E402

SIZES = {"lenet": 32, "resnet18": 224, "yolov8n": 640, "unet": 256}
QUICK_SIZES = {"lenet": 32, "resnet18": 64, "yolov8n": 64, "unet": 64}


def build(name: str) -> tuple[torch.nn.Module, int]:
    model = create_model(name, **({"num_classes": 80} if name.startswith("yolo") else {})).eval()
    channels = 1 if name == "lenet_mnist" else 3
    return (model.export_module() if name.startswith("yolo") else model), channels


def node_count(path: Path) -> int:
    import onnx

    return len(onnx.load(str(path)).graph.node)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="lenet,resnet18,yolov8n")
    parser.add_argument("--threads", type=int, default=2, help="PyTorch's and onnxruntime's intra-op threads")
    parser.add_argument("--runs", type=int, default=30, help="timed onnxruntime calls per format")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and few runs (figures mean nothing)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    try:
        import onnxslim
    except ImportError:
        onnxslim = None
        print("onnxslim is not installed: no dynamo+onnxslim rows (pip install onnxslim)")
    sizes = QUICK_SIZES if args.quick else SIZES
    runs = 3 if args.quick else args.runs
    root = Path(tempfile.mkdtemp(prefix="bench_onnx_"))
    tiny = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU()).eval()
    for exporter in ("torchscript", "dynamo"):
        start = time.perf_counter()
        export_onnx(tiny, root / "warmup.onnx", torch.rand(1, 3, 8, 8), exporter=exporter, check=False)
        print(f"first export in this process ({exporter}, tiny conv): {time.perf_counter() - start:.2f} s")
    print(f"{'model':10s} {'file':19s} {'export s':>9s} {'max diff':>9s} {'nodes':>6s} {'MB':>6s} "
          f"{'ort ms':>8s}")
    for name in args.models.split(","):
        model, channels = build(name)
        example = torch.rand(1, channels, sizes[name], sizes[name])
        files: dict[str, tuple[Path, float]] = {}
        for label, exporter, optimize in (("torchscript", "torchscript", False), ("dynamo-unoptimized", "dynamo", False),
                                          ("dynamo", "dynamo", True)):
            path = root / f"{name}-{label}.onnx"
            start = time.perf_counter()
            export_onnx(model, path, example, exporter=exporter, optimize=optimize, check=False)
            files[label] = (path, time.perf_counter() - start)
        if onnxslim is not None:
            path = root / f"{name}-dynamo+onnxslim.onnx"
            start = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):  # its before/after table of every op type
                onnxslim.slim(str(files["dynamo"][0]), str(path))
            files["dynamo+onnxslim"] = (path, files["dynamo"][1] + time.perf_counter() - start)
        sessions = {}
        for label, (path, _) in list(files.items()):
            try:
                sessions[label] = OnnxRuntimeModel(path, threads=args.threads)
            except Exception as err:  # a row with the error (e.g. a simplifier's invalid graph), not a crash
                print(f"{name:10s} {label:19s} onnxruntime cannot load it: {str(err).splitlines()[0][:150]}")
                del files[label]
        image = np.ascontiguousarray(example.numpy())
        times = alternate({label: (lambda s=s, image=image: (s(image), None)[1]) for label, s in sessions.items()},
                          repeats=runs, warmup=3)
        for label, (path, seconds) in files.items():
            diff = check_onnx_parity(model, path, example, atol=float("inf"), batch_sizes=(1, 2))
            print(f"{name:10s} {label:19s} {seconds:9.2f} {diff:9.2e} {node_count(path):6d} "
                  f"{os.path.getsize(path) / 2**20:6.1f} {1000 * median(times[label]):8.2f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
