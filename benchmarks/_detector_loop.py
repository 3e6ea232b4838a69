"""Shared by the benchmarks that train a cvzoo detector beside torchvision's in one bare loop
(``bench_rcnn.py``, ``bench_onestage.py``, ``bench_ssd.py``): the synthetic batches, one training step,
the throughput comparison and the same-loop training comparison.

A :class:`Pair` is the two models built for training from scratch with torchvision's init in both, plus
what differs between the two label conventions: torchvision's R-CNN and SSD reserve label 0 for the
background (``label_offset=1``), RetinaNet and FCOS do not (``label_offset=0``).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
from _timing import median, median_ratio, operator_self_times, peak_rss_mib, print_operator_comparison
from torch import nn


@dataclass
class Pair:
    ours: nn.Module
    reference: nn.Module
    label_offset: int  # torchvision label = cvzoo label + label_offset
    lower_reference_threshold: Callable[[nn.Module], None]  # torchvision's score threshold -> 0.001, as ours


def check_same_trainable_size(ours: nn.Module, reference: nn.Module) -> None:
    trainable = [sum(p.numel() for p in m.parameters() if p.requires_grad) for m in (ours, reference)]
    if trainable[0] != trainable[1]:
        raise RuntimeError(f"trainable parameters differ: cvzoo {trainable[0]}, torchvision {trainable[1]}")


def scenes(count: int, split: str, size_range: tuple[int, int], seed: int = 0):
    """``count`` synthetic scenes (3 classes, 1-4 objects, instance masks): (uint8 images, annotations)."""
    from cvzoo.data.synthetic import SceneConfig, generate_dataset

    config = SceneConfig(size_range=size_range, objects_per_image=(1, 4), scale_range=(0.2, 0.6),
                         classes=("trouser", "bag", "sneaker"))
    return generate_dataset(count, config, seed=seed, split=split)


def to_inputs(images: list[np.ndarray], annotations: list, flips: list[bool] | None = None, masks: bool = False,
              label_offset: int = 1):
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
        theirs.append({**target, "labels": target["labels"] + label_offset})
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


# --------------------------------------------------------------------------------------------- throughput
def add_throughput_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch-size", type=int, default=2, help="throughput: images per iteration")


def throughput(name: str, build_pair: Callable[[], Pair], args: argparse.Namespace, iterations: int,
               size_range: tuple[int, int] = (320, 480)) -> None:
    """A bare training loop (forward + backward + SGD step) over each model of the pair on the same batches
    of synthetic scenes, the same seed before each forward; iterations alternate A B, B A after
    ``args.warmup``; prints images/s of each, the median per-iteration ratio cvzoo / torchvision and the
    first-step losses (equal when both start from the same weights)."""
    batch_size = args.batch_size
    total = args.warmup + iterations
    pair = build_pair()
    images, anns = scenes(total * batch_size, "train", size_range)
    masks = name.startswith("maskrcnn")  # Mask R-CNN trains on instance masks too
    batches = [to_inputs(images[i:i + batch_size], anns.images[i:i + batch_size], masks=masks,
                         label_offset=pair.label_offset) for i in range(0, total * batch_size, batch_size)]
    models = {"cvzoo": pair.ours.train(), "tv": pair.reference.train()}
    optimizers = {key: sgd(model, 0.01) for key, model in models.items()}
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


def throughput_table(args: argparse.Namespace, names: list[str], build_pair: Callable[[str], Pair], setting: str,
                     iterations: Callable[[str], int] | None = None) -> None:
    """:func:`throughput` of each model in ``names`` as one table; ``setting`` describes the input sizes."""
    torch.set_num_threads(args.threads)
    print(f"training throughput, bare loop (forward + backward + SGD step), batch {args.batch_size} synthetic "
          f"scenes of 320-480 px, {setting}, trained from scratch, {args.threads} threads, A B / B A per "
          f"iteration after {args.warmup} warm-up iterations")
    print(f"{'model':38s} {'iters':>5s} {'cvzoo img/s':>11s} {'tv img/s':>9s} {'ratio':>6s}  first-step losses")
    for name in names:
        throughput(name, partial(build_pair, name), args, iterations(name) if iterations else args.repeats)
    print(f"peak RSS {peak_rss_mib():.0f} MiB")


# -------------------------------------------------------------------------------------- same-loop training
def add_train_arguments(parser: argparse.ArgumentParser, default_model: str) -> None:
    parser.add_argument("--model", default=default_model, help="train: the model")
    parser.add_argument("--epochs", type=int, default=6, help="train")
    parser.add_argument("--train-images", type=int, default=200, help="train")
    parser.add_argument("--val-images", type=int, default=50, help="train")
    parser.add_argument("--batch", type=int, default=4, help="train: images per batch")
    parser.add_argument("--min-size", type=int, default=320, help="train: the models' min_size (max_size 1.5x)")
    parser.add_argument("--lr", type=float, default=0.02, help="train: peak SGD learning rate")
    parser.add_argument("--map-every-epoch", action="store_true",
                        help="train: evaluate both sides after every epoch, not only after the last")


@torch.inference_mode()
def coco_results(model: nn.Module, images: list[np.ndarray], annotations: list, cvzoo: bool, masks: bool,
                 label_offset: int) -> list[dict]:
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
            found = [(d["boxes"], d["scores"], d["labels"] - label_offset, d["masks"][:, 0] if masks else None)
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


def evaluate(gt: dict, results: list[dict], iou_type: str) -> tuple[float, float]:
    """(mAP@[.5:.95], mAP@.5) of ``results``; (0, 0) without any."""
    from cvzoo.metrics.coco import coco_eval

    if not results:
        return 0.0, 0.0
    if iou_type == "segm":
        results = [{k: v for k, v in r.items() if k != "bbox"} for r in results]  # mask areas, not box areas
    stats = coco_eval(gt, results, iou_type=iou_type)
    return stats["AP"], stats["AP50"]


def compare_maps(models: dict[str, nn.Module], gt: dict, val_images: list[np.ndarray], val_annotations: list,
                 masks: bool, label_offset: int, when: str) -> None:
    """Evaluate both sides on the validation scenes and print both mAPs and their difference."""
    stats = {}
    for key, model in models.items():
        results = coco_results(model, val_images, val_annotations, key == "cvzoo", masks, label_offset)
        stats[key] = {"bbox": evaluate(gt, results, "bbox"), "count": len(results)}
        if masks:
            stats[key]["segm"] = evaluate(gt, results, "segm")
    for iou_type in ("bbox", "segm") if masks else ("bbox",):
        (a, a50), (b, b50) = stats["cvzoo"][iou_type], stats["tv"][iou_type]
        print(f"{when} val {iou_type} mAP@[.5:.95]: cvzoo {100 * a:.2f}  torchvision {100 * b:.2f}  "
              f"difference {100 * (a - b):+.2f} points (target within 1); mAP@.5: cvzoo {100 * a50:.2f}  "
              f"torchvision {100 * b50:.2f}  difference {100 * (a50 - b50):+.2f}", flush=True)
    print(f"{when} detections (score >= 0.001): cvzoo {stats['cvzoo']['count']}, torchvision "
          f"{stats['tv']['count']}", flush=True)


def schedule(steps_per_epoch: int, epochs: int) -> tuple[int, int, Callable[[int], float]]:
    """(warm-up steps, step of the x0.1 drop, LR factor per step): linear warm-up from 0.001 over at most 100
    steps, x0.1 for the last fifth."""
    warmup, drop = min(100, steps_per_epoch), int(steps_per_epoch * epochs * 0.8)

    def factor(step: int) -> float:
        return (0.001 + (1 - 0.001) * step / warmup if step < warmup else 1.0) * (0.1 if step >= drop else 1.0)

    return warmup, drop, factor


def epoch_batches(epoch: int, images: list[np.ndarray], annotations: list, batch_size: int, masks: bool,
                  label_offset: int) -> list:
    """The epoch's batches (inputs of :func:`train_step`): its own shuffle and flip draws, the last partial
    batch dropped."""
    generator = torch.Generator().manual_seed(epoch)
    order = torch.randperm(len(images), generator=generator).tolist()
    flips = (torch.rand(len(images), generator=generator) < 0.5).tolist()
    batches = []
    for first in range(0, len(images) // batch_size * batch_size, batch_size):
        idx = order[first:first + batch_size]
        batches.append(to_inputs([images[i] for i in idx], [annotations[i] for i in idx], [flips[i] for i in idx],
                                 masks, label_offset))
    return batches


def same_loop_training(name: str, build_pair: Callable[[], Pair], args: argparse.Namespace,
                       masks: bool = False) -> None:
    """Both models from the same random init (torchvision's, loaded into cvzoo), trained by one loop (SGD 0.9
    momentum, wd 1e-4, linear warm-up then x0.1 for the last fifth) on the same batches in the same order,
    the same horizontal-flip draws and the same seed before each forward; then both evaluated on the
    validation scenes in their own pixels by the same evaluator (bbox and, with ``masks``, segm). Epochs
    alternate A B, B A. Prints both mAP@[.5:.95] and mAP@.5 and their differences (the issues' target: within
    1 point), after the last epoch or, with ``--map-every-epoch``, after each (eval mode leaves the
    batch-norm statistics alone and every training forward is seeded anew, so evaluating does not change the
    training)."""
    from cvzoo.data.formats.coco import coco_dict

    n_train, n_val, batch_size = args.train_images, args.val_images, args.batch
    train_images, train_anns = scenes(n_train, "train", (128, 192))
    val_images, val_anns = scenes(n_val, "val", (128, 192))
    gt = coco_dict(val_anns)
    assert [img["id"] for img in gt["images"]] == list(range(1, n_val + 1))
    pair = build_pair()
    pair.lower_reference_threshold(pair.reference)
    models = {"cvzoo": pair.ours, "tv": pair.reference}
    optimizers = {key: sgd(model, args.lr) for key, model in models.items()}
    steps_per_epoch = n_train // batch_size
    warmup, drop, factor = schedule(steps_per_epoch, args.epochs)
    schedulers = {key: torch.optim.lr_scheduler.LambdaLR(opt, factor) for key, opt in optimizers.items()}
    print(f"{name}: {n_train} train / {n_val} val synthetic scenes of 128-192 px (3 classes"
          f"{', instance masks' if masks else ''}), batch {batch_size}, {args.epochs} epochs, SGD lr {args.lr} "
          f"momentum 0.9 wd 1e-4, warm-up {warmup} steps, x0.1 from step {drop}, hflip 0.5 (shared draws), "
          f"from scratch (torchvision's init in both), {args.threads} threads")
    times: dict[str, list[float]] = {"cvzoo": [], "tv": []}
    for epoch in range(args.epochs):
        batches = epoch_batches(epoch, train_images, train_anns.images, batch_size, masks, pair.label_offset)
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
        if args.map_every_epoch and epoch + 1 < args.epochs:
            compare_maps(models, gt, val_images, val_anns.images, masks, pair.label_offset, f"  epoch {epoch + 1}")
    compare_maps(models, gt, val_images, val_anns.images, masks, pair.label_offset, f"epoch {args.epochs}")
    print(f"epoch time ratio cvzoo / torchvision {median_ratio(times['cvzoo'], times['tv']):.3f}; "
          f"peak RSS {peak_rss_mib():.0f} MiB")


def divergence_check(name: str, build_pair: Callable[[], Pair], args: argparse.Namespace, steps: int = 3) -> None:
    """Where the two trainings of :func:`same_loop_training` part: cvzoo and torchvision stepped in lockstep on
    that loop's first batches with its optimiser and schedule, and as the control torchvision beside a copy of
    itself nudged by one float32 ULP on 0.1 % of its weights after the first step. Prints per step both losses,
    the norm of the gradient difference and of the weight difference after the step (parameters paired in
    order). If the control parts as fast as cvzoo from torchvision, the gap is rounding (another summation
    order in some kernel) amplified by the training, not different arithmetic."""
    import copy

    torch.set_num_threads(args.threads)
    images, anns = scenes(args.train_images, "train", (128, 192))
    noise = torch.Generator().manual_seed(1)

    def nudge(model: nn.Module) -> None:
        with torch.no_grad():
            for p in model.parameters():
                step_up = torch.nextafter(p, torch.full_like(p, float("inf")))
                p.copy_(torch.where(torch.rand(p.shape, generator=noise) < 0.001, step_up, p))

    def lockstep(label: str, sides: tuple[tuple[nn.Module, bool], ...], label_offset: int, nudged: bool) -> None:
        batches = epoch_batches(0, images, anns.images, args.batch, False, label_offset)[:steps]
        _, _, factor = schedule(args.train_images // args.batch, args.epochs)
        params = [[p for p in m.parameters() if p.requires_grad] for m, _ in sides]
        assert [p.shape for p in params[0]] == [p.shape for p in params[1]], "parameters not in the same order"
        optimizers = [sgd(m, args.lr) for m, _ in sides]
        schedulers = [torch.optim.lr_scheduler.LambdaLR(o, factor) for o in optimizers]
        print(f"{name}, {label}: lockstep steps on the same-loop batches (lr {args.lr}, its warm-up), "
              f"{args.threads} threads")
        for step, (batch, sizes, ours, tensors, theirs) in enumerate(batches):
            losses = []
            for (model, is_cvzoo), optimizer in zip(sides, optimizers):
                model.train()
                torch.manual_seed(step)
                loss = model(batch, ours, sizes)["loss"] if is_cvzoo else sum(model(tensors, theirs).values())
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                losses.append(float(loss.detach()))
            grad_gap = torch.sqrt(sum(((a.grad - b.grad).double() ** 2).sum() for a, b in zip(*params)))
            grad_norm = torch.sqrt(sum((b.grad.double() ** 2).sum() for b in params[1]))
            for optimizer, scheduler in zip(optimizers, schedulers):
                optimizer.step()
                scheduler.step()
            if nudged and step == 0:
                nudge(sides[1][0])
            with torch.no_grad():
                weight_gap = torch.sqrt(sum(((a - b).double() ** 2).sum() for a, b in zip(*params)))
            print(f"  step {step + 1}: losses {losses[0]:.8f} / {losses[1]:.8f}; |gradient difference| "
                  f"{float(grad_gap):.3e} of |gradient| {float(grad_norm):.3e}; |weight difference| after the "
                  f"step {float(weight_gap):.3e}", flush=True)

    pair = build_pair()
    lockstep("cvzoo / torchvision", ((pair.ours, True), (pair.reference, False)), pair.label_offset, False)
    control = build_pair().reference  # from the init again
    lockstep("torchvision / torchvision nudged after step 1", ((control, False), (copy.deepcopy(control), False)),
             pair.label_offset, True)


def profile_training(name: str, build_pair: Callable[[str], Pair], args: argparse.Namespace, steps: int = 3) -> None:
    """Self CPU time and call count per operator of ``steps`` training steps of each side (torch.profiler,
    the same batches after one warm-up step), largest differences first: tells extra work (other operators
    or counts) from the same work run slower."""
    from torch.profiler import profile

    torch.set_num_threads(args.threads)
    pair = build_pair(name)
    images, anns = scenes((steps + 1) * 2, "train", (320, 480))
    batches = [to_inputs(images[i:i + 2], anns.images[i:i + 2], label_offset=pair.label_offset)
               for i in range(0, (steps + 1) * 2, 2)]
    models = {"cvzoo": pair.ours.train(), "tv": pair.reference.train()}
    table: dict[str, dict[str, tuple[int, float]]] = {}
    for key, model in models.items():
        optimizer = sgd(model, 0.01)
        train_step(model, optimizer, batches[0], key == "cvzoo", seed=0)
        with profile() as prof:
            for step, inputs in enumerate(batches[1:], start=1):
                train_step(model, optimizer, inputs, key == "cvzoo", seed=step)
        table[key] = operator_self_times(prof)
    print_operator_comparison(table, f"{name}: {steps} training steps, {args.threads} threads")

