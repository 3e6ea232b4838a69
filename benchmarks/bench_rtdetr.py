"""RT-DETR beside transformers' ``RTDetrForObjectDetection``: batch-1 CPU latency with the same weights.

``latency``: ``rtdetr_r18vd`` (or ``--model rtdetr_r50vd``) and transformers' model of the same configuration
with the same random weights (theirs, batch-norm statistics and scales spread, saved and loaded into cvzoo
through the ``transformers:rtdetr`` remap) on one 640 x 640 random image: cvzoo's ``predict`` (the fixed
640 x 640 resize, which keeps the size, the network, the top-300 (query, class) decoding at score 0.5)
against ``model(pixel_values)`` + ``post_process_object_detection(threshold=0.5)``. The outputs are
compared first (last-layer logits and boxes within 1e-4, else the script stops: the full-size parity
check); calls then alternate A B after a warm-up; the figure is the median of the per-pair ratios
cvzoo / transformers (target <= 1.0).
``throughput``: a bare training loop (forward with targets, backward, gradient clipping at 0.1, AdamW step)
over each model, both built as for fine-tuning (frozen backbone batch norms, transformers' weights in both),
in training mode with denoising (100 queries, each side drawing its own noise), on the same batches of two
synthetic scenes of ``--imgsz`` pixels (cvzoo's model at that fixed size, so its resize keeps them); the
same seed before each step. Iterations alternate A B after a warm-up; reports images/s of each and the
median ratio cvzoo / transformers (target >= 1.0).

    .venv-bench/bin/python benchmarks/bench_rtdetr.py latency
    .venv-bench/bin/python benchmarks/bench_rtdetr.py latency --model rtdetr_r50vd
    .venv-bench/bin/python benchmarks/bench_rtdetr.py latency --model rtdetr_r50vd --imgsz 128 --repeats 2  # parity only
    .venv-bench/bin/python benchmarks/bench_rtdetr.py throughput --imgsz 640
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import alternate, median, median_ratio, peak_rss_mib  # noqa: E402

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
    optimizers = {name: torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, weight_decay=1e-4)
                  for name, model in (("cvzoo", ours), ("transformers", reference))}
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=("latency", "throughput"))
    parser.add_argument("--model", choices=sorted(BACKBONES), default="rtdetr_r18vd")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--batches", type=int, default=2)
    parser.add_argument("--imgsz", type=int, default=640, help="image side (a multiple of 32; 640 is the figure)")
    args = parser.parse_args()
    {"latency": latency, "throughput": throughput}[args.mode](args)


if __name__ == "__main__":
    main()
