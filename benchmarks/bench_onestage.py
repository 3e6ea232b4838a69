"""RetinaNet / FCOS beside torchvision's: batch-1 CPU eval latency of the same weights.

``latency``: ``predict`` for cvzoo, ``model([image])`` for torchvision, both with their own resize /
normalisation / post-processing. torchvision's model is built as its builder builds it for pretrained
weights (frozen batch norm for v1 and FCOS), with random weights whose batch-norm statistics are spread and
whose class logits are sharpened (as test_onestage_parity.py does) so that there are many distinct
detections; it is saved and loaded into cvzoo through ``create_model(name, num_classes=91, weights=path)``.
One 800x1067 random image (min_size 800, max_size 1333). The detections are compared first (counts, max abs
difference of boxes and scores), then calls alternate A B, B A after a warm-up; the figure is the median of
the per-pair ratios cvzoo / torchvision (target <= 1.0).

    .venv/bin/python benchmarks/bench_onestage.py latency
    .venv/bin/python benchmarks/bench_onestage.py latency --models fcos_resnet50_fpn --repeats 4

``profile``: self CPU time and call count per operator of ``--repeats`` eval calls of each side (400x533
image, min_size 400), for telling a real difference from the machine's noise.

    .venv/bin/python benchmarks/bench_onestage.py profile --models retinanet_resnet50_fpn --repeats 3

``throughput``: a bare training loop (forward + backward + SGD step) over each model, both built for training
from scratch (torchvision's builder with ``weights=None, weights_backbone=None``: trainable batch norm, every
backbone stage trainable; cvzoo's same settings, carrying torchvision's init), on the same batches of 2
synthetic scenes of 320-480 px (min_size 320 / max_size 480) with the same seed before each forward;
iterations alternate A B, B A after a warm-up; images/s of each and the median per-iteration ratio cvzoo /
torchvision (target >= 1.0).

    .venv/bin/python benchmarks/bench_onestage.py throughput --repeats 8

``train-profile``: the operators of three training steps of each side (torch.profiler), largest differences
first.

    .venv/bin/python benchmarks/bench_onestage.py train-profile --models retinanet_resnet50_fpn

``train``: both models from the same random init trained by one SGD loop on the same batches, flips and
seeds, then evaluated by the same COCO evaluator on the validation scenes; mAP of each and the difference
(target: within 1 point). See ``_detector_loop.same_loop_training``.

    .venv/bin/python benchmarks/bench_onestage.py train --model retinanet_resnet50_fpn --epochs 6

``divergence``: where the two trainings of ``train`` part (the same arguments): both sides stepped in lockstep
on its first three batches, beside a control of torchvision against a copy of itself nudged by one ULP; see
``_detector_loop.divergence_check``.

    .venv/bin/python benchmarks/bench_onestage.py divergence --model retinanet_resnet50_fpn --min-size 160 --train-images 64 --lr 0.02 --epochs 4 --threads 1
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
    divergence_check,
    profile_training,
    same_loop_training,
    throughput_table,
)
from _timing import alternate_pairs, median, median_ratio, operator_self_times, peak_rss_mib  # noqa: E402

from cvzoo.models import create_model  # noqa: E402
from cvzoo.models.weights import load_weights  # noqa: E402

MODELS = ("retinanet_resnet50_fpn", "fcos_resnet50_fpn")
# Class-logit and box-offset weight factors giving distinct scores and boxes of many sizes (the parity test's).
SHARPEN = {"retinanet_resnet50_fpn": (1.0, 0.3), "retinanet_resnet50_fpn_v2": (3.0, 3.0),
           "fcos_resnet50_fpn": (3.0, 10.0)}


def pretrained_structure(name: str, **kwargs) -> nn.Module:
    """torchvision's ``name`` with random weights, 91 classes, frozen batch norm where its builder freezes it."""
    from torchvision.models import detection as tvd
    from torchvision.models import resnet50
    from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
    from torchvision.ops.feature_pyramid_network import LastLevelP6P7
    from torchvision.ops.misc import FrozenBatchNorm2d

    if name.endswith("_v2"):
        return getattr(tvd, name)(weights=None, weights_backbone=None, num_classes=91, **kwargs)
    backbone = _resnet_fpn_extractor(resnet50(norm_layer=FrozenBatchNorm2d), 3, returned_layers=[2, 3, 4],
                                     extra_blocks=LastLevelP6P7(256, 256))
    return (tvd.RetinaNet if name.startswith("retinanet") else tvd.FCOS)(backbone, 91, **kwargs)


@torch.no_grad()
def randomise(model: nn.Module, seed: int, sharpen: tuple[float, float]) -> None:
    generator = torch.Generator().manual_seed(seed)
    for key, tensor in model.state_dict().items():
        if key.endswith("running_var"):
            tensor.copy_(0.5 + torch.rand(tensor.shape, generator=generator))
        elif key.endswith("running_mean"):
            tensor.copy_(0.1 * torch.randn(tensor.shape, generator=generator))
        elif key.startswith("head.") and tensor.ndim == 1 and "conv" in key:
            tensor.add_(0.1 * torch.randn(tensor.shape, generator=generator))
    model.head.classification_head.cls_logits.weight.mul_(sharpen[0])
    model.head.regression_head.bbox_reg.weight.mul_(sharpen[1])


def eval_pair(name: str, min_size: int, max_size: int) -> tuple[nn.Module, nn.Module]:
    """(cvzoo, torchvision) in eval mode with the same randomised weights, loaded as a user loads a file."""
    torch.manual_seed(0)
    reference = pretrained_structure(name, min_size=min_size, max_size=max_size)
    randomise(reference, seed=1, sharpen=SHARPEN[name])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{name}.pth"
        torch.save(reference.state_dict(), path)
        ours = create_model(name, num_classes=91, min_size=min_size, max_size=max_size, weights=str(path))
    return ours.eval(), reference.eval()


@torch.inference_mode()
def bench_latency(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    print(f"batch-1 CPU eval latency, {args.threads} threads, {args.warmup} warm-up + {args.repeats} "
          f"alternating pairs (A B, B A)")
    print(f"{'model':28s} {'input':>9s} {'dets':>9s} {'max|diff|':>9s} {'cvzoo ms':>9s} {'tv ms':>9s} {'ratio':>6s}")
    for name in args.models:
        ours, reference = eval_pair(name, 800, 1333)
        image = torch.rand(3, 800, 1067, generator=torch.Generator().manual_seed(0))
        batch, sizes = image[None], [tuple(image.shape[1:])]
        got, expected = ours.predict(batch, sizes)[0], reference([image])[0]
        counts = f"{len(got)}/{len(expected['boxes'])}"
        diff = float("inf")
        if len(got) == len(expected["boxes"]):
            diff = float(max((got.boxes - expected["boxes"]).abs().max(), (got.scores - expected["scores"]).abs().max()))

        times = alternate_pairs({"cvzoo": partial(ours.predict, batch, sizes), "tv": partial(reference, [image])},
                                args.repeats, args.warmup)
        ratio = median_ratio(times["cvzoo"], times["tv"])
        print(f"{name:28s} {'800x1067':>9s} {counts:>9s} {diff:9.1e} {1e3 * median(times['cvzoo']):9.1f} "
              f"{1e3 * median(times['tv']):9.1f} {ratio:6.3f}", flush=True)
        del ours, reference
    print(f"peak RSS {peak_rss_mib():.0f} MiB")


@torch.inference_mode()
def bench_profile(args: argparse.Namespace) -> None:
    from torch.profiler import ProfilerActivity, profile

    torch.set_num_threads(args.threads)
    for name in args.models:
        ours, reference = eval_pair(name, 400, 667)
        image = torch.rand(3, 400, 533, generator=torch.Generator().manual_seed(0))
        calls = {"cvzoo": lambda ours=ours, image=image: ours.predict(image[None]),
                 "tv": lambda reference=reference, image=image: reference([image])}
        for fn in calls.values():
            for _ in range(args.warmup):
                fn()
        tables = {}
        for key, fn in calls.items():
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                for _ in range(args.repeats):
                    fn()
            tables[key] = operator_self_times(prof)
        ops = sorted(set(tables["cvzoo"]) | set(tables["tv"]),
                     key=lambda k: -max(tables["cvzoo"].get(k, (0, 0.0))[1], tables["tv"].get(k, (0, 0.0))[1]))
        print(f"{name}: {args.repeats} eval calls, {args.threads} threads, self CPU ms (calls)")
        for op in ops[:15]:
            (n, a), (m, b) = tables["cvzoo"].get(op, (0, 0.0)), tables["tv"].get(op, (0, 0.0))
            print(f"  {op[:36]:36s} {a:10.1f} ({n:5d}) {b:10.1f} ({m:5d})")
        total = [sum(v[1] for v in tables[k].values()) for k in ("cvzoo", "tv")]
        print(f"  {'total':36s} {total[0]:10.1f}         {total[1]:10.1f}", flush=True)


def scratch_pair(name: str, min_size: int, max_size: int) -> Pair:
    """(cvzoo, torchvision) built for training from scratch, 3 classes, torchvision's init in both: its builder
    without weights (trainable batch norm, all five backbone stages trainable), ours with the same settings.
    RetinaNet and FCOS use the same label numbers on both sides (no background class)."""
    from torchvision.models import detection as tvd

    torch.manual_seed(0)
    reference = getattr(tvd, name)(weights=None, weights_backbone=None, num_classes=3, min_size=min_size,
                                   max_size=max_size)
    ours = create_model(name, num_classes=3, min_size=min_size, max_size=max_size, frozen_batch_norm=False,
                        trainable_backbone_layers=5)
    # Named, not "auto": see bench_rcnn.scratch_pair (trainable batch norms carry num_batches_tracked).
    load_weights(ours, reference.state_dict(), strict=True,
                 remap="torchvision:fcos" if name.startswith("fcos") else "torchvision:retinanet")
    check_same_trainable_size(ours, reference)

    def lower_threshold(model: nn.Module) -> None:
        model.score_thresh = 0.001  # ours: predict(conf_threshold=0.001)

    return Pair(ours, reference, label_offset=0, lower_reference_threshold=lower_threshold)


def bench_throughput(args: argparse.Namespace) -> None:
    throughput_table(args, args.models, partial(scratch_pair, min_size=320, max_size=480),
                     "min_size 320 / max_size 480")


def bench_train_profile(args: argparse.Namespace) -> None:
    for name in args.models:
        profile_training(name, partial(scratch_pair, min_size=320, max_size=480), args)


def bench_train(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    same_loop_training(args.model, partial(scratch_pair, args.model, args.min_size, args.min_size * 3 // 2), args)


def bench_divergence(args: argparse.Namespace) -> None:
    divergence_check(args.model, partial(scratch_pair, args.model, args.min_size, args.min_size * 3 // 2), args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["latency", "profile", "throughput", "train", "train-profile", "divergence"])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=sorted(SHARPEN))
    parser.add_argument("--repeats", type=int, default=10, help="A B pairs")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    add_throughput_arguments(parser)
    add_train_arguments(parser, "retinanet_resnet50_fpn")
    args = parser.parse_args()
    {"latency": bench_latency, "profile": bench_profile, "throughput": bench_throughput,
     "train": bench_train, "train-profile": bench_train_profile, "divergence": bench_divergence}[args.what](args)


if __name__ == "__main__":
    main()
