"""RT-DETR beside transformers' ``RTDetrForObjectDetection`` (latency, training throughput with the same weights)
and beside ultralytics' RT-DETR (each trained from scratch by its own library: mAP and training speed).

``latency``: ``rtdetr_r18vd`` (or ``--model rtdetr_r50vd``) and transformers' model of the same configuration
with the same random weights (theirs, batch-norm statistics and scales spread, saved and loaded into cvzoo
through the ``transformers:rtdetr`` remap) on one 640 x 640 random image: cvzoo's ``predict`` (the fixed
640 x 640 resize, which keeps the size, the network, the top-300 (query, class) decoding at score 0.5)
against ``model(pixel_values)`` + ``post_process_object_detection(threshold=0.5)``. The outputs are
compared first (last-layer logits and boxes within 1e-4, else the script stops: the full-size parity
check); calls then alternate A B after a warm-up; the figure is the median of the per-pair ratios
cvzoo / transformers (target <= 1.0).
``throughput``: a bare training loop (forward with targets, backward, gradient clipping at 0.1, AdamW step:
cvzoo's through ``build_optimizer``, as ``cvzoo train`` builds it, PyTorch's fused CPU kernel on a CPU;
transformers' at PyTorch's default) over each model, both built as for fine-tuning (frozen backbone batch norms, transformers' weights in both),
in training mode with denoising (100 queries, each side drawing its own noise), on the same batches of two
synthetic scenes of ``--imgsz`` pixels (cvzoo's model at that fixed size, so its resize keeps them); the
same seed before each step. Iterations alternate A B after a warm-up; reports images/s of each and the
median ratio cvzoo / transformers (target >= 1.0).
``ultralytics``: ``rtdetr_r50vd`` beside ultralytics' ``RTDETR("rtdetr-resnet50.yaml")`` (issue #17), each
trained from scratch by its own library at its own recipe on the same synthetic scenes (square scenes of
``--imgsz`` pixels, ``write_yolo_dataset``: ultralytics layout + data YAML, written once under ``--workdir``),
with the same image size, epochs, batch and device (cpu), each in its own subprocess:
``cvzoo train --task detect --model rtdetr_r50vd`` (RT-DETR's registered recipe: AdamW 1e-4, EMA, the SSD-style
augmentation; ``model.kwargs.size`` set to ``--imgsz``, the fixed size the model resizes to) and ultralytics'
``RTDETR(...).train(...)`` at its defaults (nothing downloaded, ``YOLO_OFFLINE=1``; on a CPU ultralytics turns
AMP off and sets ``workers=0`` by itself, so a user passes neither; its torch thread count is pinned to
``--threads``, which it would otherwise set to ``cpus - 1``, and cvzoo gets ``OMP_NUM_THREADS=--threads``).
Each side validates only after its last epoch. Printed per side: parameters, training images/s (the train
images over the median training-epoch time, the first epoch a warm-up when there are more; cvzoo's epoch time
is the ``train Ns`` of the epoch lines ``cvzoo train`` prints, ultralytics' is read by callbacks from
``on_train_epoch_start`` to ``on_train_epoch_end``, which fires before its validation: validation, checkpoints
and plots excluded on both sides), and mAP50-95 / mAP50. The mAP is one evaluator for both: each side's
final weights (``last.pt``, its EMA) predict the val scenes through its own predictor at confidence 0.001 and
at most 300 boxes (cvzoo: ``cvzoo.api.predict``, the (query, class) pairs; ultralytics: ``predict``, one class
per query), and cvzoo's COCO evaluator (``DetectionEvaluator``, the same that ``cvzoo val`` runs) scores both
sets of boxes against the val labels as cvzoo reads them. One evaluator removes a difference of AP
interpolation between the two libraries (ultralytics' validator interpolates its own way); each library's own
validator figure after the last epoch is printed beside it as a check. The ratios are cvzoo / ultralytics
(target >= 1.0 on both). Trained from scratch for a few epochs on a CPU, both mAPs are low: the ratio is the
figure, and it compares two recipes as much as two implementations: ultralytics' defaults for a short run
are AdamW at ``0.002 * 5 / (4 + classes)``, a warm-up of at least 100 iterations (3 epochs) in which its
gradient accumulation ramps towards ``nbs / batch`` (16 batches of 4 per step), mosaic; cvzoo's RT-DETR
recipe is AdamW at 1e-4 (backbone 1e-5), one warm-up epoch, a step every batch, no mosaic.

    .venv-bench/bin/python benchmarks/bench_rtdetr.py latency
    .venv-bench/bin/python benchmarks/bench_rtdetr.py latency --model rtdetr_r50vd
    .venv-bench/bin/python benchmarks/bench_rtdetr.py latency --model rtdetr_r50vd --imgsz 128 --repeats 2  # parity only
    .venv-bench/bin/python benchmarks/bench_rtdetr.py throughput --imgsz 640
    .venv-bench/bin/python benchmarks/bench_rtdetr.py ultralytics --quick     # checks that it runs
    .venv-bench/bin/python benchmarks/bench_rtdetr.py ultralytics            # 64 + 32 scenes, 320 px, 4 epochs
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _timing import alternate, median, median_ratio, peak_rss_mib  # noqa: E402
from _ultralytics import (  # noqa: E402
    REPO,
    EpochTimer,
    import_ultralytics,
    offline_environment,
    offline_variables,
    report,
    run_child,
    synthetic_scenes,
)

from cvzoo.models import create_model  # noqa: E402

# transformers' configuration of each cvzoo variant (the published checkpoints' architectures).
BACKBONES = {
    "rtdetr_r18vd": {"layer_type": "basic", "depths": [2, 2, 2, 2], "hidden_sizes": [64, 128, 256, 512]},
    "rtdetr_r50vd": {"layer_type": "bottleneck", "depths": [3, 4, 6, 3], "hidden_sizes": [256, 512, 1024, 2048]},
}
HEADS = {"rtdetr_r18vd": {"hidden_expansion": 0.5, "decoder_layers": 3}, "rtdetr_r50vd": {}}


def reference_pair(name: str, num_classes: int, directory: Path, **ours_kwargs):
    """transformers' model of ``name``'s configuration with random weights (norm statistics and scales spread)
    and cvzoo's, loaded from its state dict."""
    from transformers import RTDetrConfig, RTDetrForObjectDetection, RTDetrResNetConfig

    backbone = RTDetrResNetConfig(embedding_size=64, out_features=["stage2", "stage3", "stage4"], **BACKBONES[name])
    config = RTDetrConfig(num_labels=num_classes, backbone_config=backbone,
                          encoder_in_channels=backbone.hidden_sizes[1:], **HEADS[name])
    torch.manual_seed(0)
    reference = RTDetrForObjectDetection(config)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for key, tensor in reference.state_dict().items():
            if key.endswith("running_var") or (key.endswith("weight") and tensor.ndim == 1):
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=generator))
            elif key.endswith("running_mean"):
                tensor.copy_(0.1 * torch.randn(tensor.shape, generator=generator))
    path = directory / f"{name}.pt"
    torch.save(reference.state_dict(), path)
    ours = create_model(name, num_classes=num_classes, weights=str(path), **ours_kwargs)
    return reference.eval(), ours.eval()


def latency(args: argparse.Namespace) -> None:
    from transformers import RTDetrImageProcessor

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        reference, ours = reference_pair(args.model, 80, Path(tmp), size=args.imgsz)
    processor = RTDetrImageProcessor()
    size = args.imgsz
    image = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(1))

    def run_ours():
        with torch.no_grad():
            return ours.predict(image, conf_threshold=0.5)[0]

    def run_theirs():
        with torch.no_grad():
            out = reference(pixel_values=image)
            return processor.post_process_object_detection(out, threshold=0.5, target_sizes=[(size, size)])[0]

    with torch.no_grad():
        out = ours.forward_network(image)
        expected = reference(pixel_values=image)
    logits_diff = float((out["logits"][-1] - expected.logits).abs().max())
    boxes_diff = float((out["boxes"][-1] - expected.pred_boxes).abs().max())
    print(f"max |logits| diff {logits_diff:.2e}, max |boxes| diff {boxes_diff:.2e}")
    if max(logits_diff, boxes_diff) > 1e-4:  # the full-size parity check (the tests compare the reduced model)
        raise SystemExit(f"{args.model} and transformers' model differ by more than 1e-4 on the same weights")
    ours_detections, their_detections = run_ours(), run_theirs()
    print(f"detections at score 0.5: cvzoo {len(ours_detections)}, transformers {len(their_detections['scores'])}")
    times = alternate({"cvzoo": lambda: (run_ours(), None)[1], "transformers": lambda: (run_theirs(), None)[1]},
                      repeats=args.repeats, warmup=2)
    print(f"{args.model} {size}x{size}, {args.threads} threads: cvzoo {median(times['cvzoo']) * 1000:.0f} ms, "
          f"transformers {median(times['transformers']) * 1000:.0f} ms, "
          f"ratio {median_ratio(times['cvzoo'], times['transformers']):.3f} (target <= 1.0); "
          f"peak RSS {peak_rss_mib():.0f} MiB")


def scene_batches(count: int, size: int) -> list[tuple[torch.Tensor, list[dict[str, torch.Tensor]]]]:
    """``count`` batches of two ``size`` x ``size`` synthetic scenes: [0, 1] images and xyxy pixel targets."""
    from cvzoo.data.synthetic import SceneConfig, generate_dataset

    config = SceneConfig(image_size=(size, size), objects_per_image=(2, 5), scale_range=(0.15, 0.5))
    batches = []
    for index in range(count):
        pixels, annotations = generate_dataset(2, config, seed=index, split="train")
        images = torch.from_numpy(np.ascontiguousarray(pixels)).permute(0, 3, 1, 2).float() / 255
        targets = [{"boxes": torch.from_numpy(a.boxes).float(), "labels": torch.from_numpy(a.labels).long()}
                   for a in annotations.images]
        batches.append((images, targets))
    return batches


def throughput(args: argparse.Namespace) -> None:
    from cvzoo.ops import box_convert

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        reference, ours = reference_pair(args.model, 10, Path(tmp), size=args.imgsz)
    reference.train()
    ours.train()
    batches = scene_batches(args.batches, args.imgsz)
    scale = torch.tensor([args.imgsz] * 4, dtype=torch.float32)
    labels = [[{"class_labels": t["labels"], "boxes": box_convert(t["boxes"], "xyxy", "cxcywh") / scale} for t in targets]
              for _, targets in batches]
    from cvzoo.config import OptimConfig
    from cvzoo.engine.optim import build_optimizer

    # Each side's optimizer as its user gets it: cvzoo's training builds AdamW through build_optimizer (PyTorch's
    # fused CPU kernel on a CPU, optim.implementation=auto); a bare loop over transformers' model, PyTorch's default.
    optimizers = {
        "cvzoo": build_optimizer([{"params": [p for p in ours.parameters() if p.requires_grad]}],
                                 OptimConfig(name="adamw", lr=1e-4, weight_decay=1e-4)),
        "transformers": torch.optim.AdamW([p for p in reference.parameters() if p.requires_grad], lr=1e-4,
                                          weight_decay=1e-4),
    }
    step = {"cvzoo": 0, "transformers": 0}

    def train_step(name: str) -> float:
        index = step[name] % len(batches)
        step[name] += 1
        torch.manual_seed(index)
        images, targets = batches[index]
        start = time.perf_counter()
        if name == "cvzoo":
            loss = ours(images, targets)["loss"]
        else:
            loss = reference(pixel_values=images, labels=labels[index]).loss
        optimizers[name].zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(optimizers[name].param_groups[0]["params"], 0.1)
        optimizers[name].step()
        return images.shape[0] / (time.perf_counter() - start)

    rates = alternate({"cvzoo": lambda: train_step("cvzoo"), "transformers": lambda: train_step("transformers")},
                      repeats=args.repeats, warmup=1)
    print(f"{args.model} training, 2 images {args.imgsz}x{args.imgsz}, {args.threads} threads: cvzoo "
          f"{median(rates['cvzoo']):.2f} img/s, transformers {median(rates['transformers']):.2f} img/s, ratio "
          f"{median_ratio(rates['cvzoo'], rates['transformers']):.3f} (target >= 1.0); peak RSS {peak_rss_mib():.0f} MiB")


# ------------------------------------------------------------------------------------------ ultralytics
# One cvzoo epoch line, as `cvzoo train` prints it: "epoch 3  train/loss=...  (41.2s, train 35.0s)".
EPOCH_LINE = re.compile(r"^epoch (\d+)\s.*\(([\d.]+)s, train ([\d.]+)s\)\s*$")
QUICK = {"imgsz": 160, "epochs": 2, "train_images": 8, "val_images": 4}
EPOCHS_DEFAULT, TRAIN_IMAGES_DEFAULT = 4, 64  # hours on a loaded 2-core CPU (docs/rtdetr.md: the --quick epoch)


def cvzoo_epoch_times(log: Path) -> list[float]:
    """The training-loop seconds of each epoch (validation excluded) from ``cvzoo train``'s output."""
    times = {}
    for line in log.read_text(errors="replace").splitlines():
        match = EPOCH_LINE.match(line.strip())
        if match:
            times[int(match.group(1))] = float(match.group(3))
    if not times:
        raise SystemExit(f"no epoch line ('epoch N ... (Xs, train Ys)') in {log}: has cvzoo train's output changed?")
    return [times[epoch] for epoch in sorted(times)]


def last_row(results_csv: Path) -> dict[str, str]:
    import csv

    with open(results_csv) as handle:
        return {key.strip(): value for key, value in list(csv.DictReader(handle))[-1].items()}


def train_cvzoo(args: argparse.Namespace, data: Path, env: dict[str, str]) -> dict:
    """``cvzoo train`` as a user runs it, in its own process; its epoch lines, results.csv and last.pt."""
    project = Path(args.workdir) / "runs"
    log = Path(args.workdir) / "logs" / "cvzoo.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "cvzoo.cli.main", "train", "--task", "detect", "--model", "rtdetr_r50vd",
               "--data", str(data), "--epochs", str(args.epochs), "--imgsz", str(args.imgsz), "--batch",
               str(args.batch), "--device", "cpu", "--project", str(project), "--name", "cvzoo",
               "--set", f"model.kwargs={{size: {args.imgsz}}}", "--set", f"train.val_interval={args.epochs}",
               "--set", "run.exist_ok=true", "--set", "run.progress=false", "--set", "run.plots=false",
               "--set", "run.tensorboard=false"]
    print(f"  cvzoo        train ... (log {log})", flush=True)
    start = time.perf_counter()
    with log.open("w") as out:
        code = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO).returncode
    if code:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        raise SystemExit(f"cvzoo train failed (exit {code}); end of {log}:\n{tail}")
    print(f"  cvzoo        done in {time.perf_counter() - start:.0f} s", flush=True)
    run = project / "detect" / "cvzoo"
    own = last_row(run / "results.csv")
    return {"epoch_times": cvzoo_epoch_times(log), "weights": str(run / "weights" / "last.pt"),
            "own_map50_95": float(own["metrics/mAP50-95"]), "own_map50": float(own["metrics/mAP50"])}


def ultralytics_child(spec: dict) -> None:
    """Train ultralytics' RT-DETR-R50 from its YAML at its defaults, then predict the val scenes with last.pt."""
    offline_environment(Path(spec["workdir"]))
    import_ultralytics(spec["threads"])
    from ultralytics import RTDETR

    torch.set_num_threads(spec["threads"])
    timer = EpochTimer()
    model = RTDETR("rtdetr-resnet50.yaml")  # built from the YAML: random init, nothing downloaded
    timer.attach(model)
    model.train(data=spec["data"], epochs=spec["epochs"], imgsz=spec["imgsz"], batch=spec["batch"], device="cpu",
                val=False, plots=False, project=spec["project"], name="ultralytics", exist_ok=True, pretrained=False)
    trainer = model.trainer
    own = trainer.metrics
    weights = Path(trainer.save_dir) / "weights" / "last.pt"
    detections = {}
    for result in RTDETR(str(weights)).predict(spec["val_images"], imgsz=spec["imgsz"], conf=0.001, max_det=300,
                                               device="cpu", verbose=False, stream=True):
        boxes = result.boxes
        detections[Path(result.path).name] = {"boxes": boxes.xyxy.tolist(), "scores": boxes.conf.tolist(),
                                              "labels": boxes.cls.int().tolist()}
    predictions = Path(spec["workdir"]) / "ultralytics_predictions.json"
    predictions.write_text(json.dumps(detections))
    report({"epoch_times": timer.epoch_times, "threads": timer.threads, "images": timer.images,
            "params": sum(p.numel() for p in trainer.model.parameters()), "weights": str(weights),
            "predictions": str(predictions), "own_map50_95": float(own["metrics/mAP50-95(B)"]),
            "own_map50": float(own["metrics/mAP50(B)"])})


def cvzoo_detections(weights: str, images: list[Path], threads: int) -> dict[str, dict]:
    """cvzoo's last.pt (its EMA) on ``images`` through ``cvzoo.api.predict`` at confidence 0.001."""
    from cvzoo.api import predict

    torch.set_num_threads(threads)
    detections = {}
    for result in predict(weights, images, device="cpu", conf=0.001, max_det=300):
        rows = result["detections"]
        detections[Path(result["image"]).name] = {"boxes": [row["box"] for row in rows],
                                                  "scores": [row["score"] for row in rows],
                                                  "labels": [row["label"] for row in rows]}
    return detections


def coco_map(detections: dict[str, dict], data: Path) -> tuple[float, float]:
    """mAP50-95 and mAP50 of ``detections`` (per image file name: xyxy pixel boxes, scores, 0-based labels) on
    the val split of ``data``, by cvzoo's COCO evaluator; an image without an entry has no detections."""
    from cvzoo.data.formats.auto import load_detection_dataset
    from cvzoo.metrics.detection import DetectionEvaluator

    annotations = load_detection_dataset(str(data), "val")
    evaluator = DetectionEvaluator(annotations.class_names)
    empty = {"boxes": np.zeros((0, 4)), "scores": np.zeros(0), "labels": np.zeros(0, np.int64)}
    for image in annotations.images:
        found = detections.get(Path(image.file).name, empty)
        predicted = {key: np.asarray(value, dtype=np.int64 if key == "labels" else np.float64)
                     for key, value in found.items()}
        evaluator.update([predicted], [{"boxes": image.boxes, "labels": image.labels}])
    metrics = evaluator.compute()
    return float(metrics["AP"]), float(metrics["AP50"])


def ratio_text(ours: float, theirs: float) -> str:
    return f"{ours / theirs:.3f}" if theirs > 0 else "n/a (ultralytics at 0)"


def versus_ultralytics(args: argparse.Namespace) -> None:
    from cvzoo.data.synthetic import SceneConfig

    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    scenes = workdir / f"scenes_{args.train_images}_{args.val_images}_{args.imgsz}"
    data = synthetic_scenes(scenes, args.train_images, args.val_images, SceneConfig(image_size=(args.imgsz,) * 2))
    val_images = sorted((scenes / "images" / "val").glob("*.jpg"))
    # Unbuffered: the logs show each epoch as it ends (an R50 epoch on a CPU takes minutes).
    env = {**os.environ, **offline_variables(workdir), "OMP_NUM_THREADS": str(args.threads), "PYTHONUNBUFFERED": "1"}
    print(f"RT-DETR-R50 from scratch: {args.train_images} train / {args.val_images} val scenes of {args.imgsz} px, "
          f"{args.epochs} epochs, batch {args.batch}, cpu, {args.threads} threads, each library's own recipe")
    ours = train_cvzoo(args, data, env)
    spec = {"side": "ultralytics", "job": "train", "data": str(data), "imgsz": args.imgsz, "epochs": args.epochs,
            "batch": args.batch, "threads": args.threads, "workdir": str(workdir), "project": str(workdir / "runs"),
            "val_images": [str(path) for path in val_images]}
    theirs = run_child(HERE / "bench_rtdetr.py", spec, workdir / "logs" / "ultralytics.log", env)

    num_classes = len(load_names(data))
    ours["params"] = sum(p.numel() for p in create_model("rtdetr_r50vd", num_classes=num_classes).parameters())
    ours["map50_95"], ours["map50"] = coco_map(cvzoo_detections(ours["weights"], val_images, args.threads), data)
    theirs["map50_95"], theirs["map50"] = coco_map(json.loads(Path(theirs["predictions"]).read_text()), data)
    print(f"{'side':12s} {'params':>8s} {'img/s':>7s} {'mAP50-95':>9s} {'mAP50':>7s}   {'own validator':>17s}   "
          "training epoch times (s)")
    for side, result in (("cvzoo", ours), ("ultralytics", theirs)):
        times = result["epoch_times"]
        result["images_per_s"] = args.train_images / median(times[1:] or times)
        print(f"{side:12s} {result['params'] / 1e6:7.2f}M {result['images_per_s']:7.3f} {result['map50_95']:9.4f} "
              f"{result['map50']:7.4f}   {result['own_map50_95']:8.4f} {result['own_map50']:8.4f}   "
              + " ".join(f"{t:.1f}" for t in times))
    print(f"ratios cvzoo / ultralytics (target >= 1.0): mAP50-95 {ratio_text(ours['map50_95'], theirs['map50_95'])}, "
          f"mAP50 {ratio_text(ours['map50'], theirs['map50'])}, "
          f"training img/s {ratio_text(ours['images_per_s'], theirs['images_per_s'])}")
    print("mAP: both sides' last.pt predictions scored by cvzoo's COCO evaluator; 'own validator': each library's "
          f"validation after its last epoch (mAP50-95, mAP50). ultralytics ran {theirs['threads']} torch threads")


def load_names(data: Path) -> list[str]:
    import yaml

    names = yaml.safe_load(data.read_text())["names"]
    return list(names.values()) if isinstance(names, dict) else list(names)


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "_child":
        ultralytics_child(json.loads(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=("latency", "throughput", "ultralytics"))
    parser.add_argument("--model", choices=sorted(BACKBONES), default="rtdetr_r18vd")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--batches", type=int, default=2)
    parser.add_argument("--imgsz", type=int,
                        help="image side, a multiple of 32 (default 640, the figure; ultralytics mode 320)")
    versus = parser.add_argument_group("ultralytics mode (rtdetr_r50vd, trained from scratch by each library)")
    versus.add_argument("--epochs", type=int, default=EPOCHS_DEFAULT)
    versus.add_argument("--batch", type=int, default=4, help="RT-DETR's recipe's batch")
    versus.add_argument("--train-images", type=int, default=TRAIN_IMAGES_DEFAULT)
    versus.add_argument("--val-images", type=int, default=32)
    versus.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "cvzoo_bench_rtdetr_ultralytics"),
                        help="scenes (reused between calls), runs, logs")
    versus.add_argument("--quick", action="store_true", help="2 epochs on 8 + 4 scenes of 160 px: checks that it runs")
    args = parser.parse_args()
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    if args.imgsz is None:
        args.imgsz = 320 if args.mode == "ultralytics" else 640
    {"latency": latency, "throughput": throughput, "ultralytics": versus_ultralytics}[args.mode](args)


if __name__ == "__main__":
    main()
