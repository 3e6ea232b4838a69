"""Video classification: does time matter on the generated motion clips, and how fast is our R(2+1)D?

Part 1 (``accuracy``): on the moving Fashion-MNIST clips (``data.source=moving_fashion``, the class is the
motion), train CNN + LSTM (LRCN) and the frame-average baseline of the *same* backbone with the same
recipe, and print their clip- and video-level top-1 side by side. Targets (issue 18): CNN + LSTM >= 95%,
frame average < 40% (chance is 12.5%).

Part 2 (``speed``): ``r2plus1d_18`` against torchvision's with the same weights: batch-1 latency (eval) and
training throughput (clips/s of forward + backward + SGD step), alternating A B A B after a warm-up, medians
and the median ratio (cvzoo / torchvision: latency <= 1.0 and throughput >= 1.0 are the targets).

    .venv/bin/python benchmarks/bench_video.py                       # both parts
    .venv/bin/python benchmarks/bench_video.py accuracy --epochs 6 --train 4096
    .venv/bin/python benchmarks/bench_video.py speed --frames-speed 16 --size 112 --threads 2
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import alternate, median, median_ratio, peak_rss_mib  # noqa: E402


def run_accuracy(args: argparse.Namespace) -> None:
    from cvzoo.api import train

    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as project:
        for model in ("cnn_lstm", "frame_average"):
            result = train(task="video", model=model, epochs=args.epochs, batch=args.batch, workers=0,
                           project=project, name=model, lr=args.lr, seed=args.seed, overrides=[
                               f"model.backbone={args.backbone}", f"video.synthetic_train={args.train}",
                               f"video.synthetic_val={args.val}", f"video.frames={args.frames}",
                               "run.tensorboard=false", "run.plots=false", "run.progress=false",
                               f"model.kwargs={{dropout: {args.dropout}}}",
                           ])
            best = max(result.history, key=lambda row: row["metrics/video_top1"])
            last = result.history[-1]
            rows.append((model, last["metrics/top1"], last["metrics/video_top1"], best["metrics/video_top1"],
                         sum(row["time"] for row in result.history)))
    print(f"\nmoving_fashion, backbone {args.backbone}, {args.train} train / {args.val} val clips of {args.frames} "
          f"frames, {args.epochs} epochs, batch {args.batch}, AdamW lr {args.lr}, dropout {args.dropout}, "
          f"{args.threads} thread(s); chance 12.5%")
    print(f"{'model':<15}{'clip top-1':>12}{'video top-1':>13}{'best video top-1':>18}{'train+val s':>13}")
    for model, clip, video, best, seconds in rows:
        print(f"{model:<15}{clip:>12.4f}{video:>13.4f}{best:>18.4f}{seconds:>13.1f}")


def run_speed(args: argparse.Namespace) -> None:
    from torchvision.models.video import r2plus1d_18

    from cvzoo.models import create_model

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    reference = r2plus1d_18(num_classes=args.classes)
    ours = create_model("r2plus1d_18", num_classes=args.classes)
    ours.load_state_dict(reference.state_dict())  # the same keys: same weights, same outputs
    clip = torch.randn(1, 3, args.frames, args.size, args.size)
    batch = torch.randn(args.batch, 3, args.frames, args.size, args.size)
    labels = torch.randint(0, args.classes, (args.batch,))

    def latency(model: torch.nn.Module):
        model.eval()

        def run() -> None:
            with torch.no_grad():
                model(clip)
        return run

    def throughput(model: torch.nn.Module):
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

        def run() -> float:
            model.train()
            start = time.perf_counter()
            for _ in range(args.steps):
                optimizer.zero_grad(set_to_none=True)
                torch.nn.functional.cross_entropy(model(batch), labels).backward()
                optimizer.step()
            return args.steps * args.batch / (time.perf_counter() - start)
        return run

    with torch.no_grad():
        difference = (ours.eval()(clip) - reference.eval()(clip)).abs().max().item()
    lat = alternate({"cvzoo": latency(ours), "torchvision": latency(reference)}, repeats=args.repeats)
    thr = alternate({"cvzoo": throughput(ours), "torchvision": throughput(reference)}, repeats=args.repeats)
    print(f"\nr2plus1d_18, clip 3x{args.frames}x{args.size}x{args.size}, {args.threads} thread(s), {args.repeats} "
          f"alternating rounds after a warm-up; same weights, max abs output difference {difference:.2e}")
    print(f"batch-1 latency (ms):   cvzoo {1000 * median(lat['cvzoo']):.1f}  torchvision "
          f"{1000 * median(lat['torchvision']):.1f}  ratio {median_ratio(lat['cvzoo'], lat['torchvision']):.3f}")
    print(f"train throughput (clips/s, batch {args.batch}):   cvzoo {median(thr['cvzoo']):.2f}  torchvision "
          f"{median(thr['torchvision']):.2f}  ratio {median_ratio(thr['cvzoo'], thr['torchvision']):.3f}")
    print(f"peak RSS {peak_rss_mib():.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("part", nargs="?", default="all", choices=["all", "accuracy", "speed"])
    parser.add_argument("--threads", type=int, default=1)
    accuracy = parser.add_argument_group("accuracy")
    accuracy.add_argument("--backbone", default="lenet")
    accuracy.add_argument("--epochs", type=int, default=6)
    accuracy.add_argument("--train", type=int, default=4096, help="generated training clips")
    accuracy.add_argument("--val", type=int, default=512, help="generated validation clips")
    accuracy.add_argument("--frames", type=int, default=8)
    accuracy.add_argument("--batch", type=int, default=32)
    accuracy.add_argument("--lr", type=float, default=0.003)
    accuracy.add_argument("--dropout", type=float, default=0.2, help="before the classifier, both models")
    accuracy.add_argument("--seed", type=int, default=0)
    speed = parser.add_argument_group("speed")
    speed.add_argument("--size", type=int, default=112)
    speed.add_argument("--classes", type=int, default=400)
    speed.add_argument("--steps", type=int, default=1, help="training steps per measurement")
    speed.add_argument("--repeats", type=int, default=5)
    speed.add_argument("--frames-speed", dest="frames_speed", type=int, default=16, help="clip length of the speed part")
    speed.add_argument("--speed-batch", dest="batch_speed", type=int, default=2)
    args = parser.parse_args()
    if args.part in ("all", "accuracy"):
        run_accuracy(args)
    if args.part in ("all", "speed"):
        speed_args = argparse.Namespace(**{**vars(args), "batch": args.batch_speed, "frames": args.frames_speed})
        run_speed(speed_args)


if __name__ == "__main__":
    main()
