"""Loading one epoch of training samples with ``data.cache=false`` against ``ram`` (issue #22's figure for
the automatic rule of ``cvzoo/engine/image_cache.py``).

    .venv/bin/python benchmarks/bench_image_cache.py DATA [--task detect] [--model yolov8n] [--imgsz 320]
    .venv/bin/python benchmarks/bench_image_cache.py scenes/data.yaml
    .venv/bin/python benchmarks/bench_image_cache.py folder --task classify --model resnet18 --imgsz 64

The task builds its training set as ``cvzoo train`` does (augmentation included); the samples are loaded
in this process, one thread, batch 16, shuffled with a fixed seed, and the model never runs: the figure is
what the cache saves from the data side of an epoch. Rounds alternate false / ram; printed: each round,
the best of each side and their ratio, the cache's size and fill time, and the decoding share the
automatic rule measures (``decode_share``).
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.utils.data import DataLoader

from cvzoo.api import build_config
from cvzoo.engine.image_cache import MIN_DECODE_SHARE, decode_share, setup_image_cache
from cvzoo.tasks import task_class


def epoch_seconds(config, setting: bool | str, batch: int) -> tuple[float, str]:
    task = task_class(config.task)(config)
    train, _ = task.build_datasets()
    report = setup_image_cache(setting, train)
    torch.manual_seed(0)
    loader = DataLoader(train, batch_size=batch, shuffle=True, num_workers=0, collate_fn=task.collate)
    started = time.perf_counter()
    for _ in loader:
        pass
    return time.perf_counter() - started, report.describe()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", help="a dataset cvzoo train reads (data.yaml, an image folder, ...)")
    parser.add_argument("--task", default="detect")
    parser.add_argument("--model", default="yolov8n")
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = build_config(overrides=[f"task={args.task}", f"model.name={args.model}", f"data.source={args.data}",
                                     f"data.img_size={args.imgsz}"])
    train, _ = task_class(config.task)(config).build_datasets()
    shares = [decode_share(train) for _ in range(2)]
    print(f"decoding share of a sample's load (the auto rule caches at >= {MIN_DECODE_SHARE:.0%}): "
          + ", ".join(f"{s:.0%}" for s in shares))
    times: dict[bool | str, list[float]] = {False: [], "ram": []}
    for round_index in range(args.rounds):
        for setting in (False, "ram"):
            seconds, words = epoch_seconds(config, setting, args.batch)
            times[setting].append(seconds)
            print(f"round {round_index + 1} data.cache={str(setting).lower()}: {seconds:.1f} s ({words})", flush=True)
    off, on = min(times[False]), min(times["ram"])
    print(f"best of {args.rounds}: false {off:.1f} s, ram {on:.1f} s, ratio {off / on:.2f}x")


if __name__ == "__main__":
    main()
