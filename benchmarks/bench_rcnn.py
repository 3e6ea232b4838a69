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
from functools import partial
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _detector_loop import (  # noqa: E402
    Pair,
    add_throughput_arguments,
    add_train_arguments,
    check_same_trainable_size,
    same_loop_training,
    throughput_table,
)
from _timing import (  # noqa: E402
    alternate_pairs,
    median,
    median_ratio,
    operator_self_times,
    peak_rss_mib,
    print_operator_comparison,
)

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
    check_same_trainable_size(ours, reference)
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

        times = alternate_pairs({"cvzoo": partial(ours.predict, batch, sizes), "tv": partial(reference, [image])},
                                args.repeats, args.warmup)
        ratio = median_ratio(times["cvzoo"], times["tv"])
        print(f"{name:38s} {side}x{image.shape[2]:<5d} {counts:>7s} {diff:9.1e} {1e3 * median(times['cvzoo']):9.1f} "
              f"{1e3 * median(times['tv']):9.1f} {ratio:6.3f}", flush=True)
        del ours, reference
    print(f"peak RSS {peak_rss_mib():.0f} MiB")


# --------------------------------------------------------------------------------------- (b) throughput
def rcnn_pair(name: str, min_size: int, max_size: int) -> Pair:
    def lower_threshold(reference: nn.Module) -> None:
        reference.roi_heads.score_thresh = 0.001  # ours: predict(conf_threshold=0.001)

    return Pair(*scratch_pair(name, 3, min_size, max_size), label_offset=1, lower_reference_threshold=lower_threshold)


def bench_throughput(args: argparse.Namespace) -> None:
    throughput_table(args, args.models, partial(rcnn_pair, min_size=320, max_size=480), "min_size 320 / max_size 480",
                     iterations=lambda name: args.repeats if "mobilenet" in name else max(args.repeats // 2, 4))


# -------------------------------------------------------------------------------------------- (c) train
def bench_train(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    min_size = args.min_size
    same_loop_training(args.model, partial(rcnn_pair, args.model, min_size, min_size * 3 // 2), args,
                       masks=args.model.startswith("maskrcnn"))


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
            table[key] = operator_self_times(prof)
        print_operator_comparison(table, f"{name}: {args.repeats} eval calls, {args.threads} threads")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["latency", "throughput", "train", "profile"])
    parser.add_argument("--models", nargs="+", help="latency / throughput / profile: models (default: the issue's)")
    parser.add_argument("--repeats", type=int, default=10, help="latency: A B pairs; throughput: iterations")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    add_throughput_arguments(parser)
    add_train_arguments(parser, "fasterrcnn_mobilenet_v3_large_320_fpn")
    args = parser.parse_args()
    defaults = {"latency": LATENCY_MODELS, "throughput": THROUGHPUT_MODELS, "profile": LATENCY_MODELS}
    args.models = args.models or list(defaults.get(args.what, ()))
    {"latency": bench_latency, "throughput": bench_throughput, "train": bench_train,
     "profile": bench_profile}[args.what](args)


if __name__ == "__main__":
    main()
