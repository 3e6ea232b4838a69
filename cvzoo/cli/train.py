"""``cvzoo train``: train a model for a task from flags, a recipe and --set overrides."""

from __future__ import annotations

import argparse
import sys

from cvzoo.cli._common import add_config_arguments
from cvzoo.config.tasks import TASKS


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train", help="train a model",
        description="Train a model. Flags override the recipe (--config); --set overrides both.",
        epilog="example: cvzoo train --model resnet20_cifar --data fashion_mnist_sample --epochs 5",
    )
    parser.add_argument("--task", choices=list(TASKS), help="task (default: the model's own, e.g. detect for yolov8n, instance for maskrcnn_*; classify "
                        "without a model)")
    parser.add_argument("--model", help="registered model name (see `cvzoo models`)")
    parser.add_argument("--data", help="dataset path or bundled name (fashion_mnist_sample)")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--batch", type=int, help="batch size per process")
    parser.add_argument("--imgsz", type=int, help="input size (default: native / task default)")
    parser.add_argument("--lr", type=float, help="base learning rate")
    parser.add_argument("--optimizer", choices=["sgd", "adam", "adamw"])
    parser.add_argument("--device", help="auto | cpu | cuda | cuda:N | mps")
    parser.add_argument("--workers", type=int, help="DataLoader workers (-1 = auto)")
    parser.add_argument("--weights", help="local checkpoint to start from (transfer learning)")
    parser.add_argument("--name", help="run name (runs/<task>/<name>, numbered if it exists)")
    parser.add_argument("--project", help="runs root folder (default runs)")
    parser.add_argument("--resume", metavar="LAST_PT", help="resume from a last.pt (or 'auto')")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                        help="mixed precision (fp16 on CUDA, bf16 on CPU)")
    parser.add_argument("--profile", action="store_true", default=None,
                        help="print after each epoch where its time went (data, forward, backward, optimizer, "
                             "validation, checkpoint)")
    add_config_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cvzoo.api import SHORTCUTS, build_config_with_sources
    from cvzoo.cli.main import CliError
    from cvzoo.config import ConfigError
    from cvzoo.engine.trainer import NonFiniteLossError, Trainer, TrainingInterrupted

    shortcuts = {key: getattr(args, key, None) for key in SHORTCUTS if key != "exist_ok"}
    try:
        config, sources = build_config_with_sources(args.config, args.overrides, **shortcuts)
        result = Trainer(config, sources=sources).fit()
    except (ConfigError, FileNotFoundError, ValueError, NonFiniteLossError) as err:
        raise CliError(str(err)) from err
    except TrainingInterrupted as err:
        print(f"cvzoo train: {err}", file=sys.stderr)
        return 128 + err.signum if err.signum else 130
    print(f"Results saved to {result.run_dir}")
    print(f"  weights: {result.best_checkpoint or result.last_checkpoint}")
    print(f"  plots:   {result.run_dir / 'results.png'}")
    return 0
