"""YOLOv8n in cvzoo beside ultralytics' YOLOv8n (the reference), run by this one script (issue #6).

ultralytics is AGPL: it is never a dependency of cvzoo and never imported by cvzoo or its tests. It lives
in a separate benchmark venv that sees the project venv's packages (torch, torchvision, NumPy, OpenCV,
PyYAML, ...) through a ``.pth`` file, so nothing heavy is installed twice. Once, from the repository root:

    make bench-env     # .venv-bench: ultralytics 8.4.190 (--no-deps), polars, faster-coco-eval

(both venvs use the same Python). Nothing else is needed for predict, train and val:
ultralytics' other declared dependencies (psutil, requests, py-cpuinfo, ultralytics-thop, ...) are either
in the project venv or only imported by features this script does not use. The script keeps ultralytics
offline: ``YOLO_OFFLINE=1`` (no connectivity check, no analytics, no update check), ``YOLO_AUTOINSTALL=false``
(no pip installs of missing extras), its settings file in the work folder with ``sync`` off, ``plots=False``
(no font download), and every model is built from ``yolov8n.yaml`` (no weight download). All three modes
were checked to run inside a network namespace with no network at all (``unshare -n``).

Run from the repository root:

    .venv-bench/bin/python benchmarks/bench_yolo_vs_ultralytics.py latency
    .venv-bench/bin/python benchmarks/bench_yolo_vs_ultralytics.py train
    .venv-bench/bin/python benchmarks/bench_yolo_vs_ultralytics.py map
    .venv-bench/bin/python benchmarks/bench_yolo_vs_ultralytics.py loss
    .venv-bench/bin/python benchmarks/bench_yolo_vs_ultralytics.py train --quick   # any mode

Modes
    latency  Batch-1 CPU latency at 640 px, eager fp32, pre- and post-processing included, on ultralytics'
             ``assets/bus.jpg`` decoded once (not timed). cvzoo: ``DetectionTask._predict_array`` (the one-image
             path of ``cvzoo predict``: letterbox, forward, NMS, boxes back to the original image); ultralytics:
             ``YOLO("yolov8n.yaml").predict(array, imgsz=640, device="cpu", conf=0.25)``. Random weights by
             default (``--cvzoo-weights`` / ``--ultralytics-weights`` take trained checkpoints, e.g. the ones
             ``map`` prints). Calls alternate A B A B after a warm-up; the figure is the median of the per-pair
             ratios cvzoo / ultralytics (target <= 1.0). Each side's network input shape, detection count and
             whether BatchNorm was folded are printed, because they are part of what is timed.
    train    Training throughput (images/s) and peak RSS, each side in its own subprocess (so the RSS is per
             side): same data, batch, image size, SGD recipe and augmentation (mosaic on every epoch, HSV
             0.015/0.7/0.4, flip 0.5, translate 0.1, scale 0.5), workers=0, ``--threads`` threads. Only the
             training epochs are timed (no validation; ultralytics is stopped after its last training epoch);
             the first epoch is a warm-up when there are more. Rounds alternate cvzoo, ultralytics; the figure
             is the median of the per-round ratios cvzoo / ultralytics (target >= 1.0).
    map      Both trained from scratch for the same epochs on the same data and recipe, then each last.pt
             (EMA weights) validated by its own library on the same val split at the same size, conf 0.001,
             IoU 0.7, max 300 detections, rectangular batches of 2 x batch. Prints mAP50-95 and mAP50
             (target: cvzoo >= ultralytics). Each library computes its own mAP (cvzoo: COCO-style evaluator;
             ultralytics: its ``ap_per_class``, 101-point interpolation); then ultralytics' last.pt is loaded
             into cvzoo's YOLOv8n (``ultralytics:yolov8`` key remap) and validated by cvzoo too, which shows
             whether a gap comes from the evaluators or from the trained models.
    loss     ultralytics' ``v8DetectionLoss`` and cvzoo's ``YoloV8Loss`` on the same random weights (ultralytics'
             init, remapped into cvzoo) and the same batch: the loss values and the largest relative
             difference of any parameter's gradient.

Defaults: ``latency`` 640 px, 3 warm-up calls + 20 pairs; ``train`` the first 512 of the 2000 training
scenes (``--limit-train``), 640 px, batch 16, 2 epochs per run (the second is timed), 2 rounds; ``map`` all
2000 training scenes, 320 px, batch 16, 20 epochs, mosaic closed for the last 10. ``--threads 2`` everywhere:
ultralytics resets torch's thread count to ``min(8, cpus - 1)`` whenever it selects a device, which this
script overrides so that both sides use the same count (printed with the results).

The dataset is ``cvzoo.data.synthetic.write_yolo_dataset`` (Fashion-MNIST objects on textures, ultralytics
layout + data YAML), written once per configuration under ``--workdir`` and reused. ``--quick`` is a tiny
configuration (64 train / 16 val images of 128-192 px, 160 px training, 1 epoch, few latency repeats) for
checking that everything runs; its figures mean nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _timing import alternate, median, median_ratio, peak_rss_mib  # noqa: E402
from _ultralytics import (  # noqa: E402
    EpochTimer,
    StopAfterTraining,
    import_ultralytics,
    offline_environment,
    report,
    run_child,
    synthetic_scenes,
)

# The quick configuration: every mode runs in a minute or two; the numbers mean nothing.
QUICK = {"train_images": 64, "val_images": 16, "min_size": 128, "max_size": 192, "imgsz": 160, "epochs": 1,
         "batch": 8, "limit_train": 0, "rounds": 1, "repeats": 5, "warmup": 1}


# ------------------------------------------------------------------------------------------------- data
def dataset_yaml(args: argparse.Namespace) -> Path:
    """The synthetic YOLO dataset of this configuration (written once, then reused)."""
    from cvzoo.data.synthetic import SceneConfig

    root = Path(args.workdir) / (
        f"scenes_{args.train_images}_{args.val_images}_{args.min_size}-{args.max_size}_seed{args.seed}")
    config = SceneConfig(size_range=(args.min_size, args.max_size), seed=args.seed)
    return synthetic_scenes(root, args.train_images, args.val_images, config)


# ---------------------------------------------------------------------------------------------- latency
def cvzoo_predictor(args: argparse.Namespace):
    """``(task, model)`` of cvzoo's YOLOv8n: a training checkpoint, or 80 classes with random weights."""
    import torch

    from cvzoo.api import build_config, load_trained
    from cvzoo.layers.reparam import prepare_for_inference
    from cvzoo.models.registry import create_model
    from cvzoo.tasks.detection import DetectionTask

    if args.cvzoo_weights:
        task, model, _ = load_trained(args.cvzoo_weights, "cpu")
    else:
        task = DetectionTask(build_config(task="detect", imgsz=args.latency_imgsz))
        task.class_names = [f"class{i}" for i in range(80)]  # ultralytics' yolov8n.yaml has 80 classes
        torch.manual_seed(0)
        model = create_model("yolov8n", num_classes=80).eval()
    task.img_size = args.latency_imgsz
    prepare_for_inference(model, "cpu")  # as cvzoo.api.predict does: BN folded, channels-last weights
    return task, model


def input_shape(module, call) -> tuple[int, ...]:
    """The shape of the tensor ``module`` receives during ``call()``."""
    seen: list[tuple[int, ...]] = []
    handle = module.register_forward_pre_hook(lambda _, inputs: seen.append(tuple(inputs[0].shape)))
    try:
        call()
    finally:
        handle.remove()
    return seen[0]


def shape_text(shape) -> str:
    return "x".join(map(str, shape))


def wall_clock(call):
    """``call`` returning None, so that ``_timing.alternate`` times it by wall clock."""

    def timed() -> None:
        call()

    return timed


def latency(args: argparse.Namespace) -> None:
    import numpy as np
    import torch

    ultralytics = import_ultralytics(args.threads)
    from ultralytics import YOLO

    from cvzoo.data.images import load_image

    torch.set_num_threads(args.threads)
    bus = Path(ultralytics.__file__).parent / "assets" / "bus.jpg"
    rgb = np.asarray(load_image(bus, mode="RGB"))  # decoded once, outside the timing, for both sides
    bgr = np.ascontiguousarray(rgb[..., ::-1])  # ultralytics reads NumPy arrays as OpenCV BGR

    task, model = cvzoo_predictor(args)
    cpu = torch.device("cpu")
    settings = (0.25, 0.7, 300, None, None)  # conf, iou, max_det, classes, soft_nms: predict's defaults

    def run_cvzoo():
        with torch.no_grad():  # as DetectionTask.predict_files, the path of `cvzoo predict`
            return task._predict_array(model, rgb, cpu, settings)

    reference = YOLO(args.ultralytics_weights or "yolov8n.yaml")  # from the YAML: no download

    def run_ultralytics():
        return reference.predict(bgr, imgsz=args.latency_imgsz, device="cpu", conf=0.25, iou=0.7, max_det=300,
                                 verbose=False)

    run_ultralytics()  # builds the predictor (select_device, AutoBackend with Conv+BN folding)
    torch.set_num_threads(args.threads)
    ours_shape = input_shape(model, run_cvzoo)
    ref_shape = input_shape(reference.predictor.model, run_ultralytics)
    ours_dets = len(run_cvzoo()["detections"])
    ref_dets = len(run_ultralytics()[0].boxes)
    fused = getattr(reference.predictor.model.model, "is_fused", lambda: None)()

    times = alternate({"cvzoo": wall_clock(run_cvzoo), "ultralytics": wall_clock(run_ultralytics)},
                      args.repeats, args.warmup)
    ours, ref = times["cvzoo"], times["ultralytics"]
    print(f"bus.jpg {rgb.shape[1]}x{rgb.shape[0]}, imgsz {args.latency_imgsz}, batch 1, eager fp32, CPU, "
          f"{torch.get_num_threads()} threads, {args.warmup} warm-up + {args.repeats} alternating pairs")
    ours_weights = Path(args.cvzoo_weights).name if args.cvzoo_weights else "random (seed 0)"
    ref_weights = Path(args.ultralytics_weights).name if args.ultralytics_weights else "yolov8n.yaml (random)"
    print(f"{'side':12s} {'weights':28s} {'net input':>16s} {'dets':>5s} {'median ms':>10s}")
    print(f"{'cvzoo':12s} {ours_weights:28s} {shape_text(ours_shape):>16s} {ours_dets:5d} {median(ours) * 1e3:10.2f}")
    print(f"{'ultralytics':12s} {ref_weights:28s} {shape_text(ref_shape):>16s} {ref_dets:5d} {median(ref) * 1e3:10.2f}")
    layout = "channels-last" if next(reference.predictor.model.model.parameters()).is_contiguous(
        memory_format=torch.channels_last) else "NCHW"
    print(f"ultralytics folded Conv+BN for inference: {fused}, {layout} weights; cvzoo: folded, channels-last "
          "(cvzoo.layers.reparam.prepare_for_inference, as cvzoo predict)")
    print(f"latency ratio cvzoo/ultralytics (median of per-pair ratios): {median_ratio(ours, ref):.3f} "
          "(target <= 1.0)")
    if args.breakdown:
        forward_breakdown(args, model, reference.predictor.model.model, ours_shape, ref_shape)


def forward_breakdown(args: argparse.Namespace, model, reference, ours_shape, ref_shape) -> None:
    """Network forward alone (no pre/post-processing), alternating: where the end-to-end gap comes from."""
    import torch

    torch.manual_seed(0)
    inputs = {shape: torch.rand(shape) for shape in (ours_shape, ref_shape)}

    def forward(module, shape):
        def call() -> None:
            with torch.no_grad():
                module(inputs[shape])

        return call

    runs = {f"cvzoo {shape_text(ours_shape[2:])}": forward(model, ours_shape),
            f"cvzoo {shape_text(ref_shape[2:])}": forward(model, ref_shape),
            f"ultralytics {shape_text(ref_shape[2:])}": forward(reference, ref_shape)}
    times = alternate(runs, args.repeats, args.warmup)
    last = list(runs)[-1]
    print("forward pass only (same random input per shape):")
    for name, values in times.items():
        ratio = median_ratio(values, times[last])
        print(f"  {name:22s} {median(values) * 1e3:8.2f} ms  ratio to {last}: {ratio:.3f}")


# ----------------------------------------------------------------------------------- train / map (parent)
def child_spec(args: argparse.Namespace, side: str, job: str, data: Path, name: str) -> dict:
    # close_mosaic >= epochs would switch mosaic off from the first epoch (cvzoo, ultralytics 8.4; older
    # ultralytics tested epoch == epochs - close_mosaic and left it on): clip it so that both sides train
    # with mosaic at least in the first epoch. The throughput run keeps mosaic on throughout.
    close = 0 if job == "train" else max(0, min(args.close_mosaic, args.epochs - 1))
    return {"side": side, "job": job, "data": str(data), "imgsz": args.imgsz, "batch": args.batch,
            "epochs": args.epochs, "close_mosaic": close, "threads": args.threads, "device": args.device,
            "limit_train": args.limit_train, "seed": args.seed, "name": name, "workdir": str(args.workdir),
            "project": str(Path(args.workdir) / f"runs_{side}")}


def train(args: argparse.Namespace) -> None:
    data = dataset_yaml(args)
    images = min(args.limit_train or args.train_images, args.train_images)
    print(f"training throughput: yolov8n, {images} images, imgsz {args.imgsz}, batch {args.batch}, "
          f"{args.epochs} epoch(s) per run, mosaic on, workers 0, {args.threads} threads, device {args.device}")
    rows: dict[str, list[dict]] = {"cvzoo": [], "ultralytics": []}
    for index in range(args.rounds):
        print(f"round {index + 1}/{args.rounds}")
        for side in rows:
            spec = child_spec(args, side, "train", data, f"train_r{index}")
            rows[side].append(run_child(HERE / "bench_yolo_vs_ultralytics.py", spec,
                                         Path(args.workdir) / "logs" / f"train_{side}_r{index}.log"))
    print(f"{'side':12s} {'images/s':>9s} {'epoch s':>8s} {'peak RSS MiB':>13s} {'threads':>8s}   epoch times (s)")
    for side, results in rows.items():
        speed = median([r["images_per_s"] for r in results])
        epoch = median([r["epoch_s"] for r in results])
        rss = median([r["peak_rss_mib"] for r in results])
        times = "; ".join(" ".join(f"{t:.1f}" for t in r["epoch_times"]) for r in results)
        print(f"{side:12s} {speed:9.2f} {epoch:8.1f} {rss:13.0f} {results[0]['threads']:8d}   {times}")
    speeds = {side: [r["images_per_s"] for r in results] for side, results in rows.items()}
    rss = {side: [r["peak_rss_mib"] for r in results] for side, results in rows.items()}
    print(f"throughput ratio cvzoo/ultralytics (median of per-round ratios): "
          f"{median_ratio(speeds['cvzoo'], speeds['ultralytics']):.3f} (target >= 1.0)")
    print(f"peak RSS ratio cvzoo/ultralytics: {median_ratio(rss['cvzoo'], rss['ultralytics']):.3f}")


def map_mode(args: argparse.Namespace) -> None:
    data = dataset_yaml(args)
    close = max(0, min(args.close_mosaic, args.epochs - 1))
    images = min(args.limit_train or args.train_images, args.train_images)
    print(f"mAP after training from scratch: yolov8n, {images} train / {args.val_images} val images, "
          f"imgsz {args.imgsz}, batch {args.batch}, {args.epochs} epoch(s), mosaic closed for the last {close}, "
          f"{args.threads} threads, device {args.device}")
    results = {}
    for side in ("cvzoo", "ultralytics"):
        spec = child_spec(args, side, "map", data, "map")
        log = Path(args.workdir) / "logs" / f"map_{side}.log"
        record = log.with_suffix(".json")  # the spec and result of the last completed run of this side
        if side == "ultralytics" and args.reuse_reference and record.exists():
            saved = json.loads(record.read_text())
            if saved["spec"] == spec:
                print(f"  {side:12s} reused from {record} (same settings; --reuse-reference)")
                results[side] = saved["result"]
                continue
            print(f"  {side:12s} {record} was run with other settings: running it again")
        results[side] = run_child(HERE / "bench_yolo_vs_ultralytics.py", spec, log)
        record.write_text(json.dumps({"spec": spec, "result": results[side]}))
    print(f"{'side':12s} {'mAP50-95':>9s} {'mAP50':>7s} {'train s':>8s} {'peak RSS MiB':>13s}   last.pt")
    for side, r in results.items():
        print(f"{side:12s} {r['map50_95']:9.4f} {r['map50']:7.4f} {r['train_s']:8.0f} {r['peak_rss_mib']:13.0f}   "
              f"{r['weights']}")
    ours, ref = results["cvzoo"], results["ultralytics"]
    print(f"mAP50-95 cvzoo - ultralytics: {ours['map50_95'] - ref['map50_95']:+.4f}, mAP50: "
          f"{ours['map50'] - ref['map50']:+.4f} (target >= 0)")
    print(f"latency with these weights: PYTHONPATH=. {sys.executable} benchmarks/bench_yolo_vs_ultralytics.py "
          f"latency --cvzoo-weights {ours['weights']} --ultralytics-weights {ref['weights']}")
    cross = cross_evaluate(args, ref["weights"], ours["weights"])
    print(f"ultralytics' last.pt validated by cvzoo (weights loaded through the ultralytics:yolov8 remap): "
          f"mAP50-95 {cross['mAP50-95']:.4f}, mAP50 {cross['mAP50']:.4f} (ultralytics' own validator: "
          f"{ref['map50_95']:.4f}, {ref['map50']:.4f}): the two evaluators agree, so a gap is in the training")


def cross_evaluate(args: argparse.Namespace, ultralytics_weights: str, cvzoo_weights: str) -> dict:
    """ultralytics' trained weights in cvzoo's YOLOv8n, validated by cvzoo on the same data: separates a
    difference of the evaluators from a difference of the trained models."""
    import torch

    from cvzoo.api import evaluate
    from cvzoo.models import create_model
    from cvzoo.models.weights import load_weights

    import_ultralytics(args.threads)  # unpickling ultralytics' checkpoint needs its classes
    saved = torch.load(ultralytics_weights, map_location="cpu", weights_only=False)
    reference = (saved.get("ema") or saved["model"]).float()
    model = create_model("yolov8n", num_classes=int(reference.nc))
    report = load_weights(model, reference.state_dict(), remap="ultralytics:yolov8")  # strict: every key
    checkpoint = torch.load(cvzoo_weights, map_location="cpu", weights_only=False)  # cvzoo's, as a template
    checkpoint["model"] = model.state_dict()
    if checkpoint.get("ema"):
        checkpoint["ema"] = {**checkpoint["ema"], "module": model.state_dict()}
    path = Path(args.workdir) / "ultralytics_weights_in_cvzoo.pt"
    torch.save(checkpoint, path)
    print(f"  {report.summary()}")
    return evaluate(path, device=args.device, plots=False, save_dir=Path(args.workdir) / "val_cross")


def loss_parity(args: argparse.Namespace) -> None:
    """Same weights, same batch: ultralytics' v8DetectionLoss and cvzoo's YoloV8Loss, value and gradients."""
    import torch

    import_ultralytics(args.threads)
    from ultralytics.cfg import get_cfg
    from ultralytics.nn.tasks import DetectionModel
    from ultralytics.utils import DEFAULT_CFG
    from ultralytics.utils.loss import v8DetectionLoss

    from cvzoo.models import create_model
    from cvzoo.models.detection.yolov8 import ultralytics_yolov8_to_cvzoo

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    reference = DetectionModel("yolov8n.yaml", nc=10, verbose=False)
    reference.args = get_cfg(DEFAULT_CFG)  # the loss reads its gains (box 7.5, cls 0.5, dfl 1.5) from here
    ours = create_model("yolov8n", num_classes=10)
    ours.load_state_dict(ultralytics_yolov8_to_cvzoo(reference.state_dict()))
    reference.train()
    ours.train()
    size = args.imgsz or 320
    images = torch.rand(2, 3, size, size)
    boxes = [torch.tensor([[50.0, 60.0, 150.0, 200.0], [200.0, 100.0, 300.0, 180.0]]),
             torch.tensor([[10.0, 20.0, 90.0, 120.0]])]
    labels = [torch.tensor([1, 3]), torch.tensor([7])]
    every = torch.cat(boxes)
    batch = {"batch_idx": torch.cat([torch.full((len(b),), float(i)) for i, b in enumerate(boxes)]),
             "cls": torch.cat(labels)[:, None].float(), "img": images,
             "bboxes": torch.cat([(every[:, :2] + every[:, 2:]) / 2, every[:, 2:] - every[:, :2]], 1) / size}
    theirs, _ = v8DetectionLoss(reference)(reference(images), batch)
    mine = ours.compute_loss(ours(images), [{"boxes": b, "labels": lab} for b, lab in zip(boxes, labels)])
    theirs.sum().backward()
    mine["loss"].backward()
    worst = 0.0
    our_params = dict(ours.named_parameters())
    for name, param in reference.named_parameters():
        (key,) = ultralytics_yolov8_to_cvzoo({name: param}).keys() or (None,)
        if key is None or param.grad is None:
            continue
        mine_grad = our_params[key].grad
        worst = max(worst, float((mine_grad - param.grad).norm() / (param.grad.norm() + 1e-12)))
    print(f"yolov8n (10 classes), same random weights, one batch of 2 images at {size} px with 3 boxes")
    print(f"loss x batch: ultralytics {theirs.detach().sum().item():.6f}  cvzoo {mine['loss'].item():.6f}")
    print(f"largest relative gradient difference over all parameters: {worst:.2e}")


# ---------------------------------------------------------------------------------------- children
def cvzoo_child(spec: dict) -> dict:
    """Train (and for ``map`` validate) cvzoo's YOLOv8n; never imports ultralytics."""
    import torch

    from cvzoo.api import build_config, evaluate
    from cvzoo.engine.trainer import Trainer
    from cvzoo.tasks.detection import DetectionTask

    class BenchTask(DetectionTask):
        """The detection task, remembering its training-set size; for ``train`` without a validation split
        (the trainer then runs no validation)."""

        def build_datasets(self):
            train_set, val_set = super().build_datasets()
            self.train_size = len(train_set)
            return train_set, (None if spec["job"] == "train" else val_set)

    torch.set_num_threads(spec["threads"])
    overrides = [
        f"data.source={spec['data']}", f"data.img_size={spec['imgsz']}", f"data.batch_size={spec['batch']}",
        "data.workers=0", f"data.limit_train={spec['limit_train']}",
        f"detect.augment.close_mosaic={spec['close_mosaic']}", f"train.epochs={spec['epochs']}",
        f"train.device={spec['device']}", f"train.seed={spec['seed']}", f"train.val_interval={spec['epochs']}",
        f"run.project={spec['project']}", f"run.name={spec['name']}", "run.exist_ok=true", "run.progress=false",
        "run.tensorboard=false", "run.plots=false",
    ]
    config = build_config(None, overrides, task="detect")
    task = BenchTask(config)
    start = time.perf_counter()
    result = Trainer(config, task).fit()
    train_s = time.perf_counter() - start
    # The trainer's per-epoch "time" is the training loop (validation, when it runs, follows it; with the
    # ``train`` job there is none).
    epoch_times = [row["time"] for row in result.history]
    out = {"epoch_times": epoch_times, "train_s": train_s, "threads": torch.get_num_threads(),
           "images": task.train_size}
    if spec["job"] == "map":
        metrics = evaluate(result.last_checkpoint, device=spec["device"], plots=False,
                           save_dir=Path(spec["project"]) / "val_map")
        out.update(map50_95=float(metrics["mAP50-95"]), map50=float(metrics["mAP50"]),
                   weights=str(result.last_checkpoint))
    return out


def ultralytics_child(spec: dict) -> dict:
    """Train (and for ``map`` validate) ultralytics' YOLOv8n with the settings that match cvzoo's recipe."""
    offline_environment(Path(spec["workdir"]))
    import_ultralytics(spec["threads"])
    import torch
    from ultralytics import YOLO

    torch.set_num_threads(spec["threads"])
    timer = EpochTimer(stop_after=spec["epochs"] if spec["job"] == "train" else 0)

    model = YOLO("yolov8n.yaml")  # built from the YAML: random init, nothing downloaded
    timer.attach(model)
    device = "cpu" if spec["device"] == "cpu" else spec["device"].replace("cuda:", "").replace("cuda", "0")
    recipe = dict(  # cvzoo's detection defaults (cvzoo.config.tasks.TASKS["detect"]), spelled out
        optimizer="SGD", lr0=0.01, lrf=0.01, momentum=0.937, weight_decay=0.0005, warmup_epochs=3.0,
        warmup_momentum=0.8, warmup_bias_lr=0.1, nbs=64, cos_lr=False, box=7.5, cls=0.5, dfl=1.5,
        hsv_h=0.015, hsv_s=0.7, hsv_v=0.4, degrees=0.0, translate=0.1, scale=0.5, shear=0.0, perspective=0.0,
        flipud=0.0, fliplr=0.5, mosaic=1.0, mixup=0.0, cutmix=0.0, copy_paste=0.0, bgr=0.0, multi_scale=0.0,
        close_mosaic=spec["close_mosaic"], rect=False, cache=False, amp=False, deterministic=False,
    )
    start = time.perf_counter()
    try:
        model.train(data=spec["data"], epochs=spec["epochs"], imgsz=spec["imgsz"], batch=spec["batch"],
                    fraction=spec["limit_train"] or 1.0,  # an int: the first N sorted images, as cvzoo's limit
                    workers=0, device=device, seed=spec["seed"], val=False, plots=False, project=spec["project"],
                    name=spec["name"], exist_ok=True, pretrained=False, **recipe)
    except StopAfterTraining:
        pass
    train_s = time.perf_counter() - start
    out = {"epoch_times": timer.epoch_times, "train_s": train_s, "threads": timer.threads, "images": timer.images}
    if spec["job"] == "map":
        weights = Path(model.trainer.save_dir) / "weights" / "last.pt"
        metrics = YOLO(str(weights)).val(
            data=spec["data"], imgsz=spec["imgsz"], batch=2 * spec["batch"], conf=0.001, iou=0.7, max_det=300,
            rect=True, device=device, plots=False, project=spec["project"], name="val_map", exist_ok=True,
            verbose=False)
        out.update(map50_95=float(metrics.box.map), map50=float(metrics.box.map50), weights=str(weights))
    return out


def child(spec: dict) -> None:
    out = (cvzoo_child if spec["side"] == "cvzoo" else ultralytics_child)(spec)
    times = out["epoch_times"]
    timed = times[1:] or times  # the first epoch is the warm-up when there are more
    out["epoch_s"] = median(timed)
    if out.get("images"):
        out["images_per_s"] = out["images"] / out["epoch_s"]
    out["peak_rss_mib"] = peak_rss_mib()
    report(out)


# ------------------------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=("latency", "train", "map", "loss"))
    parser.add_argument("--quick", action="store_true", help="tiny configuration to check that it runs")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of both sides")
    parser.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "cvzoo_bench_yolo"),
                        help="datasets, runs and logs (reused between calls)")
    data = parser.add_argument_group("data (train, map)")
    data.add_argument("--train-images", type=int, default=2000)
    data.add_argument("--val-images", type=int, default=500)
    data.add_argument("--min-size", type=int, default=320, help="scene sides are drawn in [min-size, max-size]")
    data.add_argument("--max-size", type=int, default=640)
    data.add_argument("--seed", type=int, default=0)
    data.add_argument("--limit-train", type=int,
                      help="train on the first N (sorted) training images; 0 = all (default: train 512, map 0)")
    run = parser.add_argument_group("training (train, map)")
    run.add_argument("--imgsz", type=int, help="training/validation size (default: train 640, map 320)")
    run.add_argument("--epochs", type=int, help="default: train 2 (the first is a warm-up), map 20")
    run.add_argument("--batch", type=int, default=16)
    run.add_argument("--close-mosaic", type=int, default=10, help="map: no mosaic in the last N epochs")
    run.add_argument("--rounds", type=int, default=2, help="train: alternating cvzoo/ultralytics runs")
    run.add_argument("--reuse-reference", action="store_true",
                     help="map: reuse ultralytics' result of an earlier run with the same settings (the reference "
                          "does not change when cvzoo does; its seeded run is repeatable)")
    run.add_argument("--device", default="cpu", help="train/map device: cpu, cuda, cuda:N")
    lat = parser.add_argument_group("latency")
    lat.add_argument("--latency-imgsz", type=int, default=640)
    lat.add_argument("--repeats", type=int, default=20, help="alternating pairs")
    lat.add_argument("--warmup", type=int, default=3)
    lat.add_argument("--cvzoo-weights", help="a cvzoo training checkpoint (default: random weights)")
    lat.add_argument("--breakdown", action="store_true",
                     help="also time the bare forward passes (cvzoo at both input shapes, "
                          "ultralytics' folded model)")
    lat.add_argument("--ultralytics-weights", help="an ultralytics .pt (default: yolov8n.yaml, random weights)")
    args = parser.parse_args(argv)
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    if args.imgsz is None:
        args.imgsz = 640 if args.mode == "train" else 320
    if args.epochs is None:
        args.epochs = 2 if args.mode == "train" else 20
    if args.limit_train is None:
        args.limit_train = 512 if args.mode == "train" else 0
    args.workdir = str(Path(args.workdir).resolve())
    return args


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "_child":
        child(json.loads(sys.argv[2]))
        return
    args = parse_args()
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    offline_environment(Path(args.workdir))
    if args.mode != "latency":  # fail early, before the children start
        import_ultralytics(args.threads)
    {"latency": latency, "train": train, "map": map_mode, "loss": loss_parity}[args.mode](args)


if __name__ == "__main__":
    main()
