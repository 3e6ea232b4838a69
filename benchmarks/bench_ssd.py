"""SSD300 / SSDlite320 beside torchvision's: batch-1 CPU eval latency of the same weights.

``latency``: torchvision's model (no pretrained weights; batch-norm statistics spread, class predictors
sharpened, as ``tests/models/detection/test_ssd_parity.py`` randomises them) is saved and loaded into cvzoo
through ``create_model(name, num_classes=90, weights=path)``. One random 480 x 640 image; each model with
its own resize, normalisation and post-processing (``predict`` for cvzoo, ``model([image])`` for
torchvision). The detections are compared first (counts, max abs difference of boxes and scores), then the
calls alternate A B, B A after a warm-up; the figure is the median of the per-pair ratios cvzoo /
torchvision (target <= 1.0).

    .venv-bench/bin/python benchmarks/bench_ssd.py latency
    .venv-bench/bin/python benchmarks/bench_ssd.py latency --models ssdlite320_mobilenet_v3_large --repeats 10

``throughput``: a bare training loop (forward + backward + SGD step) over each model, both built for training
from scratch (torchvision's builder without weights, every backbone stage trainable; cvzoo's carrying
torchvision's init), on the same batches of 2 synthetic scenes of 320-480 px with the same seed before each
forward; iterations alternate A B, B A after a warm-up; images/s of each and the median per-iteration ratio
cvzoo / torchvision (target >= 1.0).

    .venv-bench/bin/python benchmarks/bench_ssd.py throughput --repeats 8

``train``: both models from the same random init trained by one SGD loop on the same batches, flips and
seeds, then evaluated by the same COCO evaluator on the validation scenes; mAP of each and the difference
(target: within 1 point). See ``_detector_loop.same_loop_training``.

    .venv-bench/bin/python benchmarks/bench_ssd.py train --model ssdlite320_mobilenet_v3_large --epochs 6
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
from _timing import alternate_pairs, median, median_ratio, peak_rss_mib  # noqa: E402

from cvzoo.models import create_model  # noqa: E402
from cvzoo.models.weights import load_weights  # noqa: E402

MODELS = ("ssdlite320_mobilenet_v3_large", "ssd300_vgg16")


@torch.no_grad()
def randomise(model: nn.Module, seed: int, sharpen: float = 5.0) -> None:
    """Spread batch-norm statistics and sharpen the class predictors: many distinct detections."""
    generator = torch.Generator().manual_seed(seed)
    for key, tensor in model.state_dict().items():
        if key.endswith("running_var"):
            tensor.copy_(0.5 + torch.rand(tensor.shape, generator=generator))
        elif key.endswith("running_mean"):
            tensor.copy_(0.1 * torch.randn(tensor.shape, generator=generator))
    for module in model.head.classification_head.modules():
        if isinstance(module, nn.Conv2d) and module.groups == 1:
            module.weight.mul_(sharpen)


def eval_pair(name: str) -> tuple[nn.Module, nn.Module]:
    """(cvzoo, torchvision) in eval mode with the same randomised weights, loaded as a user loads a file."""
    from torchvision.models import detection as tvd

    torch.manual_seed(0)
    reference = getattr(tvd, name)(weights=None, weights_backbone=None, num_classes=91)
    randomise(reference, seed=1)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{name}.pth"
        torch.save(reference.state_dict(), path)
        ours = create_model(name, num_classes=90, weights=str(path))
    return ours.eval(), reference.eval()


def latency(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    image = torch.rand(3, 480, 640, generator=torch.Generator().manual_seed(3))
    batch = image[None]
    for name in args.models:
        ours, reference = eval_pair(name)
        with torch.no_grad():
            got, expected = ours.predict(batch)[0], reference([image])[0]
        same = len(got) == len(expected["boxes"])
        diff = (max(float((got.boxes - expected["boxes"]).abs().max()), float((got.scores - expected["scores"]).abs().max()))
                if same and len(got) else float("nan"))
        print(f"{name}: {len(got)} vs {len(expected['boxes'])} detections, max abs diff {diff:.3g}")

        with torch.no_grad():
            times = alternate_pairs({"cvzoo": partial(ours.predict, batch), "torchvision": partial(reference, [image])},
                                    args.repeats, args.warmup)
        print(f"  cvzoo {median(times['cvzoo']) * 1000:.1f} ms, torchvision {median(times['torchvision']) * 1000:.1f} ms, "
              f"ratio (median of pairs) {median_ratio(times['cvzoo'], times['torchvision']):.3f}; "
              f"peak RSS {peak_rss_mib():.0f} MiB")


def scratch_pair(name: str) -> Pair:
    """(cvzoo, torchvision) built for training from scratch, 3 classes, torchvision's init in both: its builder
    without weights (every backbone stage trainable), ours with the same settings. Both resize every image to
    the model's fixed size; torchvision's labels count the background as 0."""
    from torchvision.models import detection as tvd

    torch.manual_seed(0)
    reference = getattr(tvd, name)(weights=None, weights_backbone=None, num_classes=4)
    ours = create_model(name, num_classes=3)  # from scratch: every stage trains, as torchvision's
    load_weights(ours, reference.state_dict(), strict=True, remap="torchvision:ssd")
    check_same_trainable_size(ours, reference)

    def lower_threshold(model: nn.Module) -> None:
        model.score_thresh = 0.001  # ours: predict(conf_threshold=0.001)

    return Pair(ours, reference, label_offset=1, lower_reference_threshold=lower_threshold)


def throughput_mode(args: argparse.Namespace) -> None:
    throughput_table(args, args.models, scratch_pair, "each resized to the model's fixed size")


def train_mode(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    same_loop_training(args.model, partial(scratch_pair, args.model), args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    lat = sub.add_parser("latency", help="batch-1 CPU eval latency, cvzoo / torchvision")
    lat.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    lat.add_argument("--repeats", type=int, default=10)
    lat.add_argument("--warmup", type=int, default=2)
    lat.add_argument("--threads", type=int, default=2)
    thr = sub.add_parser("throughput", help="bare-loop training images/s, cvzoo / torchvision")
    thr.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    thr.add_argument("--repeats", type=int, default=8, help="timed iterations")
    thr.add_argument("--warmup", type=int, default=2)
    thr.add_argument("--threads", type=int, default=2)
    add_throughput_arguments(thr)
    trn = sub.add_parser("train", help="same init, batches and loop: mAP of each")
    trn.add_argument("--threads", type=int, default=2)
    add_train_arguments(trn, "ssdlite320_mobilenet_v3_large")
    args = parser.parse_args()
    {"latency": latency, "throughput": throughput_mode, "train": train_mode}[args.command](args)


if __name__ == "__main__":
    main()
