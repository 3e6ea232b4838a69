"""Faster / Mask R-CNN beside torchvision's: latency, training throughput, and mAP after the same training.

(a) ``latency``: batch-1 CPU eval latency (``predict`` for cvzoo, ``model([image])`` for torchvision, both
    with their own resize / normalisation / post-processing and mask pasting) of the same weights:
    torchvision's model built as its builder builds it for pretrained weights (frozen batch norm), random
    weights with spread batch-norm statistics and a sharpened classifier (as the parity test's
    ``randomise``) so that there are many distinct detections, saved and loaded into cvzoo through
    ``create_model(name, num_classes=90, weights=path)``. One 800x1067 random image (min_size 800; 320x427
    and min_size 320 for ``fasterrcnn_mobilenet_v3_large_320_fpn``). The detections are compared first
    (counts and max abs difference of boxes, scores and masks), then calls alternate A B, B A after a
    warm-up; the figure is the median of the per-pair ratios cvzoo / torchvision (target <= 1.0).
(b) ``throughput``: a bare training loop (forward + backward + SGD step) over each model, both built for
    training from scratch (torchvision's builder with ``weights=None, weights_backbone=None``: trainable
    batch norm, every backbone layer trainable; cvzoo's same settings, carrying torchvision's init), the
    same batches of synthetic scenes (2 images of 320-480 px, min_size 320 / max_size 480), the same seed
    before each forward. Iterations alternate A B, B A after a warm-up; reports images/s of each and the
    median of the per-iteration throughput ratios cvzoo / torchvision (target >= 1.0).
(c) ``train``: both models from the same random init (torchvision's, loaded into cvzoo), trained by one
    loop (SGD 0.9 momentum, wd 1e-4, warm-up then step decay) on the same batches in the same order with
    the same horizontal-flip draws and the same seed before each forward (same sampled anchors and
    proposals); then both are evaluated on the validation scenes in their original pixels with the same
    evaluator (``cvzoo.metrics.coco.coco_eval``, bbox and, for Mask R-CNN, segm). Epochs alternate A B,
    B A. Reports both mAPs and their difference (target: within 1 point).

    .venv-bench/bin/python benchmarks/bench_rcnn.py latency
    .venv-bench/bin/python benchmarks/bench_rcnn.py latency --models maskrcnn_resnet50_fpn --repeats 10
    .venv-bench/bin/python benchmarks/bench_rcnn.py throughput
    .venv-bench/bin/python benchmarks/bench_rcnn.py train
    .venv-bench/bin/python benchmarks/bench_rcnn.py profile --models fasterrcnn_resnet50_fpn
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import median, median_ratio, peak_rss_mib  # noqa: E402

from cvzoo.models import create_model  # noqa: E402
from cvzoo.models.weights import load_weights  # noqa: E402

LATENCY_MODELS = ("fasterrcnn_resnet50_fpn", "fasterrcnn_mobilenet_v3_large_320_fpn", "maskrcnn_resnet50_fpn")
THROUGHPUT_MODELS = ("fasterrcnn_mobilenet_v3_large_320_fpn", "fasterrcnn_resnet50_fpn")


# ------------------------------------------------------------------------------------------ model pairs
def pretrained_structure(name: str, num_classes: int, **kwargs) -> nn.Module:
    """torchvision's ``name`` as its builder makes it for pretrained weights (frozen batch norm, the v1 /
    mobile models), random weights; ``num_classes`` includes the background."""
    from torchvision.models import detection as tvd
    from torchvision.models import mobilenet_v3_large, resnet50
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.backbone_utils import _mobilenet_extractor, _resnet_fpn_extractor
    from torchvision.ops.misc import FrozenBatchNorm2d

    if name in ("fasterrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn"):
        backbone = _resnet_fpn_extractor(resnet50(norm_layer=FrozenBatchNorm2d), 3)
        cls = tvd.FasterRCNN if name.startswith("faster") else tvd.MaskRCNN
        return cls(backbone, num_classes, **kwargs)
    if name.startswith("fasterrcnn_mobilenet_v3_large"):
        backbone = _mobilenet_extractor(mobilenet_v3_large(norm_layer=FrozenBatchNorm2d), True, 3)
        anchors = AnchorGenerator(((32, 64, 128, 256, 512),) * 3, ((0.5, 1.0, 2.0),) * 3)
        extra = {"rpn_pre_nms_top_n_test": 150, "rpn_post_nms_top_n_test": 150} if "320" in name else {}
        return tvd.FasterRCNN(backbone, num_classes, rpn_anchor_generator=anchors, rpn_score_thresh=0.05,
                              **extra, **kwargs)
    return getattr(tvd, name)(weights=None, weights_backbone=None, num_classes=num_classes, **kwargs)


@torch.no_grad()
def randomise(model: nn.Module, seed: int, sharpen: float) -> None:
    """Spread batch-norm statistics and sharpen the classifier: many distinct, confident detections."""
    generator = torch.Generator().manual_seed(seed)
    for key, tensor in model.state_dict().items():
        if key.endswith("running_var"):
            tensor.copy_(0.5 + torch.rand(tensor.shape, generator=generator))
        elif key.endswith("running_mean"):
            tensor.copy_(0.1 * torch.randn(tensor.shape, generator=generator))
    model.roi_heads.box_predictor.cls_score.weight.mul_(sharpen)


def eval_pair(name: str, min_size: int, max_size: int) -> tuple[nn.Module, nn.Module]:
    """(cvzoo, torchvision) in eval mode with the same randomised weights, loaded as a user loads a file."""
    torch.manual_seed(0)
    reference = pretrained_structure(name, 91, min_size=min_size, max_size=max_size)
    randomise(reference, seed=1, sharpen=300.0 if "mobilenet" in name else 30.0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{name}.pth"
        torch.save(reference.state_dict(), path)
        ours = create_model(name, num_classes=90, min_size=min_size, max_size=max_size, weights=str(path))
    return ours.eval(), reference.eval()


def scratch_pair(name: str, num_classes: int, min_size: int, max_size: int) -> tuple[nn.Module, nn.Module]:
    """(cvzoo, torchvision) built for training from scratch with torchvision's init in both.

    torchvision's builder with ``weights=None, weights_backbone=None`` (trainable batch norm, all backbone
    layers trainable); cvzoo with ``frozen_batch_norm=False`` and every stage trainable. torchvision's
    detection builder gives MobileNet v3 plain ``nn.BatchNorm2d`` (eps 1e-5, momentum 0.1) while cvzoo's
    MobileNet v3 has the classifier's (eps 1e-3, momentum 0.01): cvzoo's are set to torchvision's so that
    both run the same arithmetic.
    """
    from torchvision.models import detection as tvd

    torch.manual_seed(0)
    reference = getattr(tvd, name)(weights=None, weights_backbone=None, num_classes=num_classes + 1,
                                   min_size=min_size, max_size=max_size)
    stages = 6 if "mobilenet" in name else 5
    ours = create_model(name, num_classes=num_classes, min_size=min_size, max_size=max_size,
                        frozen_batch_norm=False, trainable_backbone_layers=stages)
    # Named, not "auto": with trainable batch norms the identity layout matches the body's
    # num_batches_tracked entries (which the remap drops) and would outscore the remap for ResNet-50.
    load_weights(ours, reference.state_dict(), strict=True,
                 remap="torchvision:maskrcnn" if name.startswith("maskrcnn") else "torchvision:fasterrcnn")
    for module in ours.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.eps, module.momentum = 1e-5, 0.1
    for model in (ours, reference):
        bns = {(m.eps, m.momentum) for m in model.modules() if isinstance(m, nn.BatchNorm2d)}
        assert len(bns) <= 1, bns
    trainable = [sum(p.numel() for p in m.parameters() if p.requires_grad) for m in (ours, reference)]
    if trainable[0] != trainable[1]:
        raise RuntimeError(f"trainable parameters differ: cvzoo {trainable[0]}, torchvision {trainable[1]}")
    return ours, reference


# ------------------------------------------------------------------------------------------ (a) latency
def max_diff(got, expected) -> tuple[str, float]:
    """Detection counts and the largest abs difference of boxes, scores, masks (labels must be equal)."""
    counts = f"{len(got)}/{len(expected['boxes'])}"
    if len(got) != len(expected["boxes"]) or not torch.equal(got.labels + 1, expected["labels"]):
        return counts + " MISMATCH", float("inf")
    diffs = [(got.boxes - expected["boxes"]).abs().max(), (got.scores - expected["scores"]).abs().max()]
    if "masks" in expected:
        diffs.append((got.masks - expected["masks"][:, 0]).abs().max())
    return counts, float(max(diffs)) if len(got) else 0.0


@torch.inference_mode()
def bench_latency(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    print(f"batch-1 CPU eval latency, {args.threads} threads, {args.warmup} warm-up + {args.repeats} "
          f"alternating pairs (A B, B A)")
    print(f"{'model':38s} {'input':>9s} {'dets':>7s} {'max|diff|':>9s} {'cvzoo ms':>9s} {'tv ms':>9s} {'ratio':>6s}")
    for name in args.models:
        side = 320 if "320" in name else 800
        min_size, max_size = (320, 640) if "320" in name else (800, 1333)
        ours, reference = eval_pair(name, min_size, max_size)
        image = torch.rand(3, side, round(side * 4 / 3), generator=torch.Generator().manual_seed(0))
        batch, sizes = image[None], [tuple(image.shape[1:])]
        counts, diff = max_diff(ours.predict(batch, sizes)[0], reference([image])[0])

        def run_ours(ours=ours, batch=batch, sizes=sizes) -> None:
            ours.predict(batch, sizes)

        def run_reference(reference=reference, image=image) -> None:
            reference([image])

        for _ in range(args.warmup):
            run_ours(), run_reference()
        times: dict[str, list[float]] = {"cvzoo": [], "tv": []}
        for i in range(args.repeats):
            order = (("cvzoo", run_ours), ("tv", run_reference))
            for key, fn in order if i % 2 == 0 else order[::-1]:
                start = time.perf_counter()
                fn()
                times[key].append(time.perf_counter() - start)
        ratio = median_ratio(times["cvzoo"], times["tv"])
        print(f"{name:38s} {side}x{image.shape[2]:<5d} {counts:>7s} {diff:9.1e} {1e3 * median(times['cvzoo']):9.1f} "
              f"{1e3 * median(times['tv']):9.1f} {ratio:6.3f}", flush=True)
        del ours, reference
    print(f"peak RSS {peak_rss_mib():.0f} MiB")


# ----------------------------------------------------------------------------------------- shared data
def scenes(count: int, split: str, size_range: tuple[int, int], seed: int = 0):
    """``count`` synthetic scenes (3 classes, 1-4 objects, instance masks): (uint8 images, annotations)."""
    from cvzoo.data.synthetic import SceneConfig, generate_dataset

    config = SceneConfig(size_range=size_range, objects_per_image=(1, 4), scale_range=(0.2, 0.6),
                         classes=("trouser", "bag", "sneaker"))
    return generate_dataset(count, config, seed=seed, split=split)


def to_inputs(images: list[np.ndarray], annotations: list, flips: list[bool] | None = None, masks: bool = False):
    """Scenes -> (cvzoo padded batch, image sizes, cvzoo targets, torchvision images, torchvision targets),
    horizontally flipped where ``flips`` says so."""
    tensors, ours, theirs = [], [], []
    for k, (image, ann) in enumerate(zip(images, annotations)):
        x = torch.from_numpy(image).permute(2, 0, 1).float().div(255)
        boxes = torch.from_numpy(ann.boxes).float()
        target = {"boxes": boxes, "labels": torch.from_numpy(ann.labels).long()}
        if masks:
            target["masks"] = torch.from_numpy(ann.masks)
        if flips is not None and flips[k]:
            x = x.flip(-1)
            target["boxes"] = torch.stack((x.shape[-1] - boxes[:, 2], boxes[:, 1], x.shape[-1] - boxes[:, 0],
                                           boxes[:, 3]), dim=1)
            if masks:
                target["masks"] = target["masks"].flip(-1)
        tensors.append(x.contiguous())
        ours.append(target)
        theirs.append({**target, "labels": target["labels"] + 1})
    sizes = [tuple(x.shape[1:]) for x in tensors]
    batch = torch.zeros(len(tensors), 3, max(h for h, _ in sizes), max(w for _, w in sizes))
    for out, x in zip(batch, tensors):
        out[:, : x.shape[1], : x.shape[2]] = x
    return batch, sizes, ours, tensors, theirs


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, inputs, cvzoo: bool, seed: int) -> float:
    """One forward + backward + SGD step with ``seed`` set before the forward; returns the total loss."""
    batch, sizes, ours, tensors, theirs = inputs
    torch.manual_seed(seed)
    if cvzoo:
        loss = model(batch, ours, sizes)["loss"]
    else:
        loss = sum(model(tensors, theirs).values())
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def sgd(model: nn.Module, lr: float) -> torch.optim.Optimizer:
    return torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr, momentum=0.9, weight_decay=1e-4)


# --------------------------------------------------------------------------------------- (b) throughput
def bench_throughput(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    batch_size, min_size, max_size = 2, 320, 480
    print(f"training throughput, bare loop (forward + backward + SGD step), batch {batch_size} synthetic scenes "
          f"of 320-480 px, min_size {min_size} / max_size {max_size}, trained from scratch (trainable BN), "
          f"{args.threads} threads, A B / B A per iteration after {args.warmup} warm-up iterations")
    print(f"{'model':38s} {'iters':>5s} {'cvzoo img/s':>11s} {'tv img/s':>9s} {'ratio':>6s}  first-step losses")
    for name in args.models:
        iterations = args.repeats if "mobilenet" in name else max(args.repeats // 2, 4)
        total = args.warmup + iterations
        images, anns = scenes(total * batch_size, "train", (320, 480))
        batches = [to_inputs(images[i:i + batch_size], anns.images[i:i + batch_size])
                   for i in range(0, total * batch_size, batch_size)]
        ours, reference = scratch_pair(name, 3, min_size, max_size)
        ours.train(), reference.train()
        optimizers = {"cvzoo": sgd(ours, 0.01), "tv": sgd(reference, 0.01)}
        models = {"cvzoo": ours, "tv": reference}
        times: dict[str, list[float]] = {"cvzoo": [], "tv": []}
        losses: dict[str, float] = {}
        for i, inputs in enumerate(batches):
            for key in ("cvzoo", "tv") if i % 2 == 0 else ("tv", "cvzoo"):
                start = time.perf_counter()
                loss = train_step(models[key], optimizers[key], inputs, key == "cvzoo", seed=i)
                elapsed = time.perf_counter() - start
                losses.setdefault(key, loss)
                if i >= args.warmup:
                    times[key].append(elapsed)
        ratio = median_ratio(times["tv"], times["cvzoo"])  # per-iteration images/s ratio cvzoo / tv
        print(f"{name:38s} {iterations:5d} {batch_size / median(times['cvzoo']):11.2f} "
              f"{batch_size / median(times['tv']):9.2f} {ratio:6.3f}  {losses['cvzoo']:.6f} / {losses['tv']:.6f}",
              flush=True)
        del ours, reference, optimizers, models
    print(f"peak RSS {peak_rss_mib():.0f} MiB")


# -------------------------------------------------------------------------------------------- (c) train
@torch.inference_mode()
def coco_results(model: nn.Module, images: list[np.ndarray], annotations: list, cvzoo: bool,
                 masks: bool) -> list[dict]:
    """Detections of the validation scenes in their own pixels as COCO result dicts (image ids 1..N,
    category id = 0-based label + 1), score threshold 0.001 on both sides."""
    from cvzoo.ops.masks import rle_encode

    model.eval()
    results = []
    for start in range(0, len(images), 8):
        batch, sizes, _, tensors, _ = to_inputs(images[start:start + 8], annotations[start:start + 8])
        if cvzoo:
            found = [(d.boxes, d.scores, d.labels, d.masks) for d in model.predict(batch, sizes, conf_threshold=0.001)]
        else:
            found = [(d["boxes"], d["scores"], d["labels"] - 1, d["masks"][:, 0] if masks else None)
                     for d in model(tensors)]
        for k, (boxes, scores, labels, mask) in enumerate(found):
            rles = rle_encode((mask >= 0.5).to(torch.uint8)) if masks and len(boxes) else [None] * len(boxes)
            for box, score, label, rle in zip(boxes.tolist(), scores.tolist(), labels.tolist(), rles):
                row = {"image_id": start + k + 1, "category_id": int(label) + 1, "score": float(score),
                       "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]]}
                if rle is not None:
                    row["segmentation"] = rle
                results.append(row)
    return results


def evaluate(gt: dict, results: list[dict], iou_type: str) -> float:
    from cvzoo.metrics.coco import coco_eval

    if not results:
        return 0.0
    if iou_type == "segm":
        results = [{k: v for k, v in r.items() if k != "bbox"} for r in results]  # mask areas, not box areas
    return coco_eval(gt, results, iou_type=iou_type)["AP"]


def bench_train(args: argparse.Namespace) -> None:
    from cvzoo.data.formats.coco import coco_dict

    torch.set_num_threads(args.threads)
    name = args.model
    masks = name.startswith("maskrcnn")
    n_train, n_val, batch_size = args.train_images, args.val_images, args.batch
    min_size, max_size = args.min_size, args.min_size * 3 // 2
    train_images, train_anns = scenes(n_train, "train", (128, 192))
    val_images, val_anns = scenes(n_val, "val", (128, 192))
    gt = coco_dict(val_anns)
    assert [img["id"] for img in gt["images"]] == list(range(1, n_val + 1))
    ours, reference = scratch_pair(name, 3, min_size, max_size)
    reference.roi_heads.score_thresh = 0.001  # ours: predict(conf_threshold=0.001)
    models = {"cvzoo": ours, "tv": reference}
    optimizers = {key: sgd(model, args.lr) for key, model in models.items()}
    steps_per_epoch = n_train // batch_size
    warmup, drop = min(100, steps_per_epoch), int(steps_per_epoch * args.epochs * 0.8)

    def factor(step: int) -> float:  # linear warm-up from 0.001, x0.1 for the last fifth
        return (0.001 + (1 - 0.001) * step / warmup if step < warmup else 1.0) * (0.1 if step >= drop else 1.0)

    schedulers = {key: torch.optim.lr_scheduler.LambdaLR(opt, factor) for key, opt in optimizers.items()}
    print(f"{name}: {n_train} train / {n_val} val synthetic scenes of 128-192 px (3 classes, instance masks), "
          f"min_size {min_size} / max_size {max_size}, batch {batch_size}, {args.epochs} epochs, SGD lr {args.lr} "
          f"momentum 0.9 wd 1e-4, warm-up {warmup} steps, x0.1 from step {drop}, hflip 0.5 (shared draws), "
          f"from scratch (torchvision's init in both), {args.threads} threads")
    times: dict[str, list[float]] = {"cvzoo": [], "tv": []}
    for epoch in range(args.epochs):
        generator = torch.Generator().manual_seed(epoch)
        order = torch.randperm(n_train, generator=generator).tolist()
        flips = (torch.rand(n_train, generator=generator) < 0.5).tolist()
        batches = []
        for first in range(0, steps_per_epoch * batch_size, batch_size):
            idx = order[first:first + batch_size]
            batches.append(to_inputs([train_images[i] for i in idx], [train_anns.images[i] for i in idx],
                                     [flips[i] for i in idx], masks))
        for key in ("cvzoo", "tv") if epoch % 2 == 0 else ("tv", "cvzoo"):
            model = models[key]
            model.train()
            start, losses = time.perf_counter(), []
            for step, inputs in enumerate(batches):
                losses.append(train_step(model, optimizers[key], inputs, key == "cvzoo",
                                         seed=epoch * 100_000 + step))
                schedulers[key].step()
            times[key].append(time.perf_counter() - start)
            print(f"  epoch {epoch + 1} {key:5s} mean loss {sum(losses) / len(losses):.4f} (first {losses[0]:.6f}, "
                  f"last {losses[-1]:.4f})  {times[key][-1]:.0f}s", flush=True)
    stats = {}
    for key, model in models.items():
        results = coco_results(model, val_images, val_anns.images, key == "cvzoo", masks)
        stats[key] = {"bbox": evaluate(gt, results, "bbox")}
        if masks:
            stats[key]["segm"] = evaluate(gt, results, "segm")
        stats[key]["count"] = len(results)
    for iou_type in ("bbox", "segm") if masks else ("bbox",):
        a, b = stats["cvzoo"][iou_type], stats["tv"][iou_type]
        print(f"val {iou_type} mAP@[.5:.95]: cvzoo {100 * a:.2f}  torchvision {100 * b:.2f}  "
              f"difference {100 * (a - b):+.2f} points (target within 1)")
    print(f"detections (score >= 0.001): cvzoo {stats['cvzoo']['count']}, torchvision {stats['tv']['count']}")
    print(f"epoch time ratio cvzoo / torchvision {median_ratio(times['cvzoo'], times['tv']):.3f}; "
          f"peak RSS {peak_rss_mib():.0f} MiB")


# ---------------------------------------------------------------------------------------------- profile
@torch.inference_mode()
def bench_profile(args: argparse.Namespace) -> None:
    """The operators of ``--repeats`` eval calls of each side under ``torch.profiler``, side by side."""
    from torch.profiler import profile

    torch.set_num_threads(args.threads)
    for name in args.models:
        side = 320 if "320" in name else 800
        min_size, max_size = (320, 640) if "320" in name else (800, 1333)
        ours, reference = eval_pair(name, min_size, max_size)
        image = torch.rand(3, side, round(side * 4 / 3), generator=torch.Generator().manual_seed(0))
        calls = {"cvzoo": partial(ours.predict, image[None], [tuple(image.shape[1:])]),
                 "tv": partial(reference, [image])}
        table: dict[str, dict[str, tuple[int, float]]] = {}
        for key, fn in calls.items():
            fn()
            with profile() as prof:
                for _ in range(args.repeats):
                    fn()
            table[key] = {e.key: (e.count, e.self_cpu_time_total / 1e3) for e in prof.key_averages()}
        totals = {key: sum(ms for _, ms in ops.values()) for key, ops in table.items()}
        print(f"{name}: {args.repeats} eval calls, {args.threads} threads: self CPU {totals['cvzoo']:.0f} ms cvzoo, "
              f"{totals['tv']:.0f} ms torchvision")
        names = sorted(set(table["cvzoo"]) | set(table["tv"]),
                       key=lambda n: -abs(table["cvzoo"].get(n, (0, 0.0))[1] - table["tv"].get(n, (0, 0.0))[1]))
        print(f"{'operator':56s} {'calls':>11s} {'self ms cvzoo':>14s} {'self ms tv':>11s}")
        for op in names[:25]:
            (n_ours, ms_ours), (n_ref, ms_ref) = table["cvzoo"].get(op, (0, 0.0)), table["tv"].get(op, (0, 0.0))
            print(f"{op[:56]:56s} {n_ours:5d}/{n_ref:<5d} {ms_ours:14.1f} {ms_ref:11.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["latency", "throughput", "train", "profile"])
    parser.add_argument("--models", nargs="+", help="latency / throughput / profile: models (default: the issue's)")
    parser.add_argument("--repeats", type=int, default=10, help="latency: A B pairs; throughput: iterations")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", default="fasterrcnn_mobilenet_v3_large_320_fpn", help="train: the model")
    parser.add_argument("--epochs", type=int, default=6, help="train")
    parser.add_argument("--train-images", type=int, default=200, help="train")
    parser.add_argument("--val-images", type=int, default=50, help="train")
    parser.add_argument("--batch", type=int, default=4, help="train: images per batch")
    parser.add_argument("--min-size", type=int, default=320, help="train: the models' min_size (max_size 1.5x)")
    parser.add_argument("--lr", type=float, default=0.02, help="train: peak SGD learning rate")
    args = parser.parse_args()
    defaults = {"latency": LATENCY_MODELS, "throughput": THROUGHPUT_MODELS, "profile": LATENCY_MODELS}
    args.models = args.models or list(defaults.get(args.what, ()))
    {"latency": bench_latency, "throughput": bench_throughput, "train": bench_train,
     "profile": bench_profile}[args.what](args)


if __name__ == "__main__":
    main()
