"""Deployment figures of issue #19, each side by side in one run, on this CPU.

    .venv-bench/bin/python benchmarks/bench_deploy.py yolo [--ultralytics-weights last.pt --data DATA.yaml]
    .venv-bench/bin/python benchmarks/bench_deploy.py yolo --train-scenes 400 --train-epochs 10   # trains them first
    .venv/bin/python benchmarks/bench_deploy.py classify --model resnet50 [--weights best.pt]
    .venv/bin/python benchmarks/bench_deploy.py serve [--weights best.pt]
    ... --quick        # any mode: tiny sizes and few repeats, to check that it runs (figures mean nothing)

Modes
    yolo      YOLOv8n, batch 1, 640 px, the same weights on both sides: ultralytics' ``YOLO`` checkpoint (or,
              without ``--ultralytics-weights``, its ``yolov8n.yaml`` random init) is loaded into cvzoo's YOLOv8n
              through the ``ultralytics:yolov8`` key remap. Each side exports its CPU formats (cvzoo: onnx,
              onnx-int8, openvino, openvino-int8; ultralytics: torchscript, onnx, openvino, and openvino int8
              when ``--data`` is given) and predicts one decoded image (``bus.jpg``) the way its predict
              command does (letterbox, graph, NMS, boxes back to the image): cvzoo
              ``DetectionTask._predict_array`` with the runtime graph, ultralytics ``YOLO(file).predict``.
              Every format's median is printed, then the fastest of each side run alternately A B A B: the
              figure is the median of the per-pair ratios cvzoo / ultralytics (target <= 0.7). With ``--data``
              (the data set the weights were trained on) cvzoo's mAP50-95 of each of its formats is printed
              beside its PyTorch model's (target: within 1 point). ultralytics is AGPL and lives in
              ``.venv-bench`` only (``make bench-env``), never in cvzoo.
    classify  A classifier (``--model resnet50`` / ``mobilenet_v3_large``) at 224 px, batch 1: eager fp32 PyTorch
              (BatchNorm folded, channels-last, as ``cvzoo predict``) against its onnx, onnx-int8 and
              openvino-int8 exports, alternating; ratios int8 / eager (target <= 0.5) and, with ``--weights`` (a
              trained checkpoint), top-1 on its val set per format (target: within 1 point of fp32).
              Without ``--weights`` the model has random weights on the bundled Fashion-MNIST sample.
    serve     ``cvzoo serve`` on a classification checkpoint in this process (uvicorn on a free port): 100
              sequential requests, then 8 concurrent clients of 25 requests each; median and p99 latency
              and the count of failed or lost requests (target: none).

``--threads`` (default 2) sets every runtime's intra-op threads, PyTorch's included.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from _timing import alternate, median, median_ratio  # noqa: E402

CVZOO_FORMATS = ("onnx", "onnx-int8", "openvino", "openvino-int8")


def timed(call):
    def run() -> None:
        call()

    return run


def best_of(runs: dict, repeats: int, warmup: int) -> dict[str, float]:
    """Median seconds of each callable (each timed on its own; a failing one is reported and left out)."""
    out = {}
    for name, call in runs.items():
        try:
            out[name] = median(alternate({name: timed(call)}, repeats, warmup)[name])
        except Exception as err:  # a format a runtime cannot run is a line of output, not the end of the run
            print(f"  {name}: failed: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")
    return out


# ------------------------------------------------------------------------------------------------- yolo
def yolo(args: argparse.Namespace) -> None:
    import numpy as np
    import torch

    sys.path.insert(0, str(HERE))
    from bench_yolo_vs_ultralytics import import_ultralytics, offline_environment

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    offline_environment(work)
    ultralytics = import_ultralytics(args.threads)
    from ultralytics import YOLO

    from cvzoo import api
    from cvzoo.config import config_to_dict
    from cvzoo.data.images import load_image
    from cvzoo.export.runtime import load_runtime
    from cvzoo.models.registry import create_model
    from cvzoo.models.weights import load_weights

    torch.set_num_threads(args.threads)
    imgsz = 160 if args.quick else 640
    if args.train_scenes and not args.ultralytics_weights:
        args.ultralytics_weights, args.data = train_reference(args, work)
    os.chdir(work)  # ultralytics writes its exports next to the model file / in the working folder
    reference = YOLO(args.ultralytics_weights or "yolov8n.yaml")
    network = reference.model
    names = [network.names[i] for i in range(len(network.names))]
    model = create_model("yolov8n", num_classes=len(names))
    load_weights(model, network.float().state_dict(), remap="ultralytics:yolov8")  # strict: every key
    data = args.data or str(synthetic_yolo(work))
    cfg = api.build_config(task="detect", model="yolov8n", data=data, imgsz=imgsz, device="cpu",
                           overrides=[f"data.names={names}"])
    weights = work / "cvzoo_yolov8n.pt"
    torch.save({"config": config_to_dict(cfg), "task": "detect", "model": model.state_dict(), "ema": None, "epoch": 0,
                "extras": {"class_names": names, "img_size": imgsz, "num_classes": len(names)}}, weights)
    bus = Path(ultralytics.__file__).parent / "assets" / "bus.jpg"
    rgb = np.asarray(load_image(bus, mode="RGB"))
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    task, torch_model, _ = api.load_trained(weights, "cpu")
    from cvzoo.layers.reparam import prepare_for_inference

    prepare_for_inference(torch_model, "cpu")
    settings = (0.25, 0.7, 300, None, None)
    cpu = torch.device("cpu")

    def cvzoo_call(runner):
        return lambda: task._predict_array(runner, rgb, cpu, settings)

    ours = {"cvzoo torch": cvzoo_call(torch_model)}
    files = {}
    for fmt in CVZOO_FORMATS:
        try:
            files[fmt] = api.export(weights, format=fmt, out=work / "cvzoo_yolov8n", calib=8 if args.quick else 128)[0]
            ours[f"cvzoo {fmt}"] = cvzoo_call(load_runtime(files[fmt], args.threads))
        except Exception as err:
            print(f"  cvzoo {fmt}: export failed: {type(err).__name__}: {err}")
    theirs = {"ultralytics torch": lambda: reference.predict(bgr, imgsz=imgsz, device="cpu", verbose=False)}
    exports = [("torchscript", {}), ("onnx", {}), ("openvino", {})]
    if args.data:
        exports.append(("openvino", {"int8": True, "data": args.data}))
    for fmt, options in exports:
        name = f"ultralytics {fmt}{'-int8' if options.get('int8') else ''}"
        try:
            path = reference.export(format=fmt, imgsz=imgsz, **options)
            exported = YOLO(path, task="detect")
            theirs[name] = (lambda m: lambda: m.predict(bgr, imgsz=imgsz, device="cpu", verbose=False))(exported)
        except Exception as err:
            print(f"  {name}: export failed: {type(err).__name__}: {err}")
    torch.set_num_threads(args.threads)  # ultralytics resets it when it selects a device
    print(f"bus.jpg {rgb.shape[1]}x{rgb.shape[0]}, imgsz {imgsz}, batch 1, CPU, {args.threads} threads; "
          f"weights: {args.ultralytics_weights or 'yolov8n.yaml (random)'} on both sides")
    times = best_of({**ours, **theirs}, args.repeats, args.warmup)
    for name, seconds in times.items():
        print(f"  {name:28s} {seconds * 1e3:9.2f} ms")
    fastest_ours = min((n for n in times if n.startswith("cvzoo")), key=times.get)
    fastest_theirs = min((n for n in times if n.startswith("ultralytics")), key=times.get)
    pairs = alternate({"a": timed({**ours, **theirs}[fastest_ours]), "b": timed({**ours, **theirs}[fastest_theirs])},
                      args.repeats, args.warmup)
    print(f"fastest: {fastest_ours} vs {fastest_theirs}: latency ratio (median of per-pair ratios) "
          f"{median_ratio(pairs['a'], pairs['b']):.3f} (target <= 0.7)")
    if args.data:
        reference_map = api.evaluate(weights, device="cpu", plots=False)["mAP50-95"]
        print(f"cvzoo mAP50-95 on {data}: torch {reference_map:.4f}")
        for fmt, path in files.items():
            value = api.evaluate(path, plots=False, threads=args.threads)["mAP50-95"]
            print(f"  {fmt:16s} {value:.4f} ({100 * (value - reference_map):+.2f} points)")


def train_reference(args: argparse.Namespace, work: Path) -> tuple[str, str]:
    """``--train-scenes N``: ultralytics trains its YOLOv8n from ``yolov8n.yaml`` (random init, nothing
    downloaded) on N synthetic scenes (and N / 4 for validation) of 320-640 px at 320 px for
    ``--train-epochs``, in-process loading, seed 0; a finished run with the same settings is reused.
    Returns its ``last.pt`` and the data YAML, the weights both sides then load."""
    from _ultralytics import synthetic_scenes
    from ultralytics import YOLO

    from cvzoo.data.synthetic import SceneConfig

    val = max(1, args.train_scenes // 4)
    data = synthetic_scenes(work / f"scenes_{args.train_scenes}_{val}", args.train_scenes, val,
                            SceneConfig(size_range=(320, 640), seed=0))
    name = f"yolov8n_{args.train_scenes}_{args.train_epochs}"
    weights = work / "reference" / name / "weights" / "last.pt"
    done = weights.parent.parent / ".complete"
    if not done.exists():
        started = time.perf_counter()
        YOLO("yolov8n.yaml").train(data=str(data), epochs=args.train_epochs, imgsz=320, batch=16, workers=0,
                                   device="cpu", project=str(work / "reference"), name=name, exist_ok=True,
                                   pretrained=False, plots=False, seed=0, verbose=False)
        done.write_text("ok\n")
        print(f"ultralytics trained {name} in {time.perf_counter() - started:.0f} s: {weights}")
    return str(weights), str(data)


def synthetic_yolo(work: Path) -> Path:
    """A tiny synthetic data set (calibration images for the int8 formats when no ``--data`` is given)."""
    from cvzoo.data.synthetic import SceneConfig, write_yolo_dataset

    folder = work / "synthetic"
    if not (folder / "data.yaml").is_file():
        write_yolo_dataset(folder, n_train=32, n_val=8, config=SceneConfig(image_size=(320, 320)), seed=0)
    return folder / "data.yaml"


# --------------------------------------------------------------------------------------------- classify
def classify(args: argparse.Namespace) -> None:
    import torch

    from cvzoo import api
    from cvzoo.export.runtime import load_runtime
    from cvzoo.layers.reparam import prepare_for_inference

    torch.set_num_threads(args.threads)
    work = Path(args.workdir)
    weights = Path(args.weights) if args.weights else random_classifier(args, work)
    task, model, _ = api.load_trained(weights, "cpu")
    imgsz = 64 if args.quick else None
    example = task.example_input(1, imgsz)
    prepare_for_inference(model, "cpu")
    runs = {"torch fp32": lambda: model(example.contiguous(memory_format=torch.channels_last))}
    paths = {}
    for fmt in ("onnx", "onnx-int8", "openvino-int8"):
        paths[fmt] = api.export(weights, format=fmt, out=work / weights.stem, imgsz=imgsz, calib=8 if args.quick else 256)[0]
        runner = load_runtime(paths[fmt], args.threads)
        runs[fmt] = (lambda r: lambda: r(example))(runner)
    with torch.inference_mode():
        times = alternate({name: timed(call) for name, call in runs.items()}, args.repeats, args.warmup)
    print(f"{task.config.model.name}, {list(example.shape)}, CPU, {args.threads} threads, "
          f"{args.warmup} warm-up + {args.repeats} alternating rounds")
    base = times["torch fp32"]
    for name, values in times.items():
        print(f"  {name:16s} {median(values) * 1e3:9.2f} ms  ratio to eager fp32 {median_ratio(values, base):.3f}")
    if args.weights:
        top1 = api.evaluate(weights, device="cpu", plots=False)["top1"]
        print(f"top-1: torch {top1:.4f}")
        for fmt, path in paths.items():
            value = api.evaluate(path, plots=False, threads=args.threads)["top1"]
            print(f"  {fmt:16s} {value:.4f} ({100 * (value - top1):+.2f} points)")


def random_classifier(args: argparse.Namespace, work: Path) -> Path:
    """``args.model`` with its initial weights on the bundled sample, saved as a checkpoint."""
    import torch

    from cvzoo import api
    from cvzoo.config import config_to_dict
    from cvzoo.tasks import task_class

    cfg = api.build_config(task="classify", model=args.model, data="fashion_mnist_sample", device="cpu",
                           imgsz=64 if args.quick else 224, overrides=["data.limit_train=64", "data.limit_val=64"])
    task = task_class("classify")(cfg)
    task.build_datasets()
    model = task.build_model()
    path = work / f"{args.model}_random.pt"
    work.mkdir(parents=True, exist_ok=True)
    torch.save({"config": config_to_dict(cfg), "task": "classify", "model": model.state_dict(), "ema": None,
                "extras": task.checkpoint_extras(), "epoch": 0}, path)
    return path


# ------------------------------------------------------------------------------------------------ serve
def serve(args: argparse.Namespace) -> None:
    import httpx
    import numpy as np
    import uvicorn
    from PIL import Image

    from cvzoo.server import create_app

    work = Path(args.workdir)
    if args.weights:
        weights = Path(args.weights)
    else:
        args.model = args.model or "resnet18"
        weights = random_classifier(args, work)
    server = uvicorn.Server(uvicorn.Config(create_app(weights, threads=args.threads), host="127.0.0.1", port=0,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not (server.started and server.servers):
        time.sleep(0.05)
    url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}/predict"
    buffer = io.BytesIO()
    Image.fromarray((np.random.default_rng(0).random((224, 224, 3)) * 255).astype(np.uint8)).save(buffer, "PNG")
    image = buffer.getvalue()

    def request(client) -> tuple[float, bool]:
        start = time.perf_counter()
        try:
            ok = client.post(url, files={"image": ("x.png", image, "image/png")}, timeout=60).status_code == 200
        except httpx.HTTPError:
            ok = False
        return time.perf_counter() - start, ok

    sequential, clients, per_client = (20, 8, 5) if args.quick else (100, 8, 25)
    with httpx.Client() as client:
        request(client)  # warm-up
        results = [request(client) for _ in range(sequential)]
    report(f"{sequential} sequential requests", results)
    concurrent: list[tuple[float, bool]] = []
    lock = threading.Lock()

    def worker() -> None:
        with httpx.Client() as client:
            mine = [request(client) for _ in range(per_client)]
        with lock:
            concurrent.extend(mine)

    workers = [threading.Thread(target=worker) for _ in range(clients)]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - start
    report(f"{clients} concurrent clients x {per_client}", concurrent, clients * per_client)
    print(f"  throughput {len(concurrent) / elapsed:.1f} requests/s")
    server.should_exit = True
    thread.join(timeout=10)


def report(title: str, results: list[tuple[float, bool]], expected: int | None = None) -> None:
    times = sorted(t for t, _ in results)
    failed = sum(not ok for _, ok in results)
    lost = (expected - len(results)) if expected is not None else 0
    p99 = times[min(len(times) - 1, int(round(0.99 * (len(times) - 1))))]
    print(f"{title}: median {statistics.median(times) * 1e3:.1f} ms, p99 {p99 * 1e3:.1f} ms, "
          f"failed {failed}, lost {lost}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=["yolo", "classify", "serve"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--model", default=None, help="classify: registered classifier (default resnet50); serve: "
                        "without --weights, a random one (default resnet18)")
    parser.add_argument("--weights", help="classify / serve: a trained cvzoo checkpoint")
    parser.add_argument("--ultralytics-weights", help="yolo: a trained ultralytics YOLOv8n .pt")
    parser.add_argument("--data", help="yolo: the data YAML those weights were trained on (mAP, int8 calibration)")
    parser.add_argument("--train-scenes", type=int, default=0,
                        help="yolo: without --ultralytics-weights, ultralytics first trains YOLOv8n on this many "
                             "synthetic scenes (weights and --data for both sides)")
    parser.add_argument("--train-epochs", type=int, default=10, help="yolo: epochs of that training")
    parser.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "cvzoo_bench_deploy"))
    parser.add_argument("--quick", action="store_true", help="tiny sizes and repeats: checks that it runs")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.warmup = min(args.repeats, 3), 1
    if args.mode == "classify" and not args.model:
        args.model = "resnet50"
    return args


def main() -> None:
    args = parse_args()
    {"yolo": yolo, "classify": classify, "serve": serve}[args.mode](args)


if __name__ == "__main__":
    main()
