"""DETR beside transformers' ``DetrForObjectDetection``: latency, training throughput, and a learning check.

(a) ``latency``: batch-1 CPU eval latency of ``detr_resnet50`` and transformers' model with the same random
    weights (theirs, batch-norm statistics spread, saved and loaded into cvzoo through the
    ``transformers:detr`` remap) on one 640x640 random image: cvzoo's ``predict`` (normalisation, the resize
    at ``min_size = max_size = 640``, which keeps the size, the network, decoding at score 0.5) against
    normalisation + ``model(pixel_values)`` + ``post_process_object_detection(threshold=0.5)``. The outputs
    are compared first (logits and boxes within 1e-4, else the script stops: the full-size parity check);
    calls then alternate A B after a warm-up; the figure is the median of the per-pair
    ratios cvzoo / transformers (target <= 1.0).
(b) ``throughput``: a bare training loop (forward with targets, backward, AdamW step) over each model, both
    built as for fine-tuning (frozen batch norm, stem and ``layer1`` fixed, transformers' weights in both),
    in training mode (each with its own dropout), on the same batches of two synthetic scenes of 384x512 and
    384x448 (padded to one batch with a mask; cvzoo's resize at ``min_size`` 384 keeps their size); the
    same seed before each step. Iterations alternate A B after a warm-up; reports images/s of each and the
    median ratio cvzoo / transformers (target >= 1.0).
(c) ``overfit``: the learning check. ``detr_resnet18_tiny`` from scratch (random init, live batch norms)
    trained by ``cvzoo train`` on 32 synthetic scenes and validated on the same 32 (memorisation, the
    check that the set loss, the matching and the decoding fit together); DETR's recipe except: lr 1e-4 on
    the backbone too (it starts untrained), no dropout and no flips (memorising), a constant lr. Prints
    the mAP50 curve (every ``--val-interval`` epochs) and whether it reached 0.9.

    .venv-bench/bin/python benchmarks/bench_detr.py latency
    .venv-bench/bin/python benchmarks/bench_detr.py throughput
    .venv-bench/bin/python benchmarks/bench_detr.py overfit --epochs 300
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import alternate, median, median_ratio, peak_rss_mib  # noqa: E402

from cvzoo.models import create_model  # noqa: E402
from cvzoo.models.detection.transform import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402


def reference_pair(num_classes: int, directory: Path, **ours_kwargs):
    """transformers' DETR-R50 with random weights (batch-norm statistics spread) and cvzoo's, loaded from it."""
    from transformers import DetrConfig, DetrForObjectDetection

    torch.manual_seed(0)
    reference = DetrForObjectDetection(DetrConfig(num_labels=num_classes, use_pretrained_backbone=False))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, tensor in reference.state_dict().items():
            if name.endswith("running_var"):
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=generator))
            elif name.endswith("running_mean"):
                tensor.copy_(0.1 * torch.randn(tensor.shape, generator=generator))
    path = directory / "detr_r50.pt"
    torch.save(reference.state_dict(), path)
    ours = create_model("detr_resnet50", num_classes=num_classes, weights=str(path), **ours_kwargs)
    return reference, ours


def normalize(images: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
    std = torch.tensor(IMAGENET_STD)[:, None, None]
    return (images - mean) / std


# -------------------------------------------------------------------------------------------- latency
def latency(args: argparse.Namespace) -> None:
    from transformers import DetrImageProcessor

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        reference, ours = reference_pair(91, Path(tmp), min_size=640, max_size=640)
    reference.eval()
    ours.eval()
    processor = DetrImageProcessor()
    image = torch.rand(1, 3, 640, 640, generator=torch.Generator().manual_seed(1))

    def run_ours():
        with torch.no_grad():
            return ours.predict(image, conf_threshold=0.5)[0]

    def run_theirs():
        with torch.no_grad():
            out = reference(pixel_values=normalize(image[0])[None])
            return processor.post_process_object_detection(out, threshold=0.5, target_sizes=[(640, 640)])[0]

    with torch.no_grad():
        logits, boxes = ours.forward_network(normalize(image[0])[None])
        out = reference(pixel_values=normalize(image[0])[None])
    logits_diff = float((logits[-1] - out.logits).abs().max())
    boxes_diff = float((boxes[-1] - out.pred_boxes).abs().max())
    print(f"max |logits| diff {logits_diff:.2e}, max |boxes| diff {boxes_diff:.2e}")
    if max(logits_diff, boxes_diff) > 1e-4:  # the full-size parity check (the tests compare the reduced model)
        raise SystemExit("detr_resnet50 and transformers' model differ by more than 1e-4 on the same weights")
    times = alternate({"cvzoo": lambda: (run_ours(), None)[1], "transformers": lambda: (run_theirs(), None)[1]},
                      repeats=args.repeats, warmup=2)
    print(f"detr_resnet50 640x640, {args.threads} threads: cvzoo {median(times['cvzoo']) * 1000:.0f} ms, "
          f"transformers {median(times['transformers']) * 1000:.0f} ms, "
          f"ratio {median_ratio(times['cvzoo'], times['transformers']):.3f} (target <= 1.0); "
          f"peak RSS {peak_rss_mib():.0f} MiB")


# ----------------------------------------------------------------------------------------- throughput
def scene_batches(count: int) -> list[tuple[torch.Tensor, list[tuple[int, int]], list[dict[str, torch.Tensor]]]]:
    """``count`` batches of two scenes (384x512 and 384x448): padded [0, 1] images, sizes, xyxy targets."""
    from cvzoo.data.synthetic import SceneConfig, generate_dataset

    batches = []
    for index in range(count):
        images, targets, sizes = [], [], []
        for width in (512, 448):
            config = SceneConfig(image_size=(384, width), objects_per_image=(2, 5), scale_range=(0.15, 0.5))
            pixels, annotations = generate_dataset(1, config, seed=index, split="train")
            images.append(torch.from_numpy(np.ascontiguousarray(pixels[0])).permute(2, 0, 1).float() / 255)
            ann = annotations.images[0]
            targets.append({"boxes": torch.from_numpy(ann.boxes).float(), "labels": torch.from_numpy(ann.labels).long()})
            sizes.append((384, width))
        batch = torch.zeros(2, 3, 384, 512)
        for out, image in zip(batch, images):
            out[:, :, : image.shape[-1]] = image
        batches.append((batch, sizes, targets))
    return batches


def throughput(args: argparse.Namespace) -> None:
    from cvzoo.ops import box_convert

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        reference, ours = reference_pair(10, Path(tmp), min_size=384, max_size=512)
    reference.train()
    ours.train()
    batches = scene_batches(args.batches)
    optimizers = {name: torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, weight_decay=1e-4)
                  for name, model in (("cvzoo", ours), ("transformers", reference))}
    step = {"cvzoo": 0, "transformers": 0}

    def their_inputs(batch, sizes, targets):
        pixels = normalize(batch)
        mask = torch.zeros(batch.shape[0], *batch.shape[-2:], dtype=torch.long)
        labels = []
        for i, ((h, w), target) in enumerate(zip(sizes, targets)):
            pixels[i, :, h:, :] = 0
            pixels[i, :, :, w:] = 0
            mask[i, :h, :w] = 1
            scale = torch.tensor([w, h, w, h], dtype=torch.float32)
            labels.append({"class_labels": target["labels"], "boxes": box_convert(target["boxes"], "xyxy", "cxcywh") / scale})
        return pixels, mask, labels

    prepared = [their_inputs(*b) for b in batches]

    def train_step(name: str) -> float:
        index = step[name] % len(batches)
        step[name] += 1
        torch.manual_seed(index)
        start = time.perf_counter()
        if name == "cvzoo":
            batch, sizes, targets = batches[index]
            loss = ours(batch, targets, sizes)["loss"]
        else:
            pixels, mask, labels = prepared[index]
            loss = reference(pixel_values=pixels, pixel_mask=mask, labels=labels).loss
        optimizers[name].zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(optimizers[name].param_groups[0]["params"], 0.1)
        optimizers[name].step()
        return batches[index][0].shape[0] / (time.perf_counter() - start)

    rates = alternate({"cvzoo": lambda: train_step("cvzoo"), "transformers": lambda: train_step("transformers")},
                      repeats=args.repeats, warmup=2)
    print(f"detr_resnet50 training, 2 images 384x512 + 384x448, {args.threads} threads: cvzoo "
          f"{median(rates['cvzoo']):.2f} img/s, transformers {median(rates['transformers']):.2f} img/s, ratio "
          f"{median_ratio(rates['cvzoo'], rates['transformers']):.3f} (target >= 1.0); peak RSS {peak_rss_mib():.0f} MiB")


# -------------------------------------------------------------------------------------------- overfit
def overfit(args: argparse.Namespace) -> None:
    import yaml

    from cvzoo import api
    from cvzoo.data.synthetic import SceneConfig, write_yolo_dataset

    torch.set_num_threads(args.threads)
    root = Path(args.out)
    scenes = SceneConfig(image_size=(args.imgsz, args.imgsz), objects_per_image=(1, 3), scale_range=(0.25, 0.6),
                         classes=["trouser", "bag", "sneaker"])
    data = write_yolo_dataset(root / "data", n_train=32, n_val=0, config=scenes, seed=0)
    spec = yaml.safe_load(data.read_text())
    spec["val"] = spec["train"]  # memorisation: validated on the 32 training scenes
    data.write_text(yaml.safe_dump(spec, sort_keys=False))
    result = api.train(overrides=[
        "model.kwargs={dropout: 0.0}", "optim.backbone_lr_mult=1.0", "scheduler.name=constant",
        "detect.augment.hflip=0.0", f"train.val_interval={args.val_interval}", "run.progress=false",
        "run.tensorboard=false", "data.workers=0", "run.exist_ok=true"],
        task="detect", model="detr_resnet18_tiny", data=str(data), epochs=args.epochs, batch=args.batch,
        imgsz=args.imgsz, device="cpu", project=str(root / "runs"), name="overfit")
    rows = list(csv.DictReader(open(Path(result.run_dir) / "results.csv")))
    curve = [(int(r["epoch"]), float(r["metrics/mAP50"])) for r in rows if r.get("metrics/mAP50") not in (None, "")]
    print("epoch,mAP50")
    for epoch, value in curve:
        print(f"{epoch},{value:.4f}")
    best = max(v for _, v in curve)
    print(f"best mAP50 {best:.3f} ({'reached' if best >= 0.9 else 'did not reach'} 0.9) in {args.epochs} epochs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=("latency", "throughput", "overfit"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--imgsz", type=int, default=128)
    parser.add_argument("--val-interval", type=int, default=10)
    parser.add_argument("--out", default="runs/bench_detr")
    args = parser.parse_args()
    {"latency": latency, "throughput": throughput, "overfit": overfit}[args.mode](args)


if __name__ == "__main__":
    main()
