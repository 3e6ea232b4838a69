"""Kill-and-resume soak: interrupt a real ``cvzoo train`` at random moments, resume it, compare.

One uninterrupted 6-epoch run is the reference. Then each of ``--runs`` runs of the same command is
interrupted ``--kills-per-run`` times at a random moment (uniform over the reference's wall time, so
start-up, training, validation and checkpoint writes are all hit; a run that ends before its signal is
started again with a moment drawn within its real duration, so every run is interrupted) by a signal drawn from SIGKILL,
SIGTERM and SIGINT, and resumed each time with ``--resume <run>/weights/last.pt`` (or started again in
its folder when the kill came before the first checkpoint). A run passes when it ends with results.csv
equal to the reference's in every column but the wall time, the same final weights bit for bit, and
no temporary file left in the run folder.

    make soak                                              # = the command below
    .venv/bin/python benchmarks/soak_kill_resume.py --runs 30
    .venv/bin/python benchmarks/soak_kill_resume.py --runs 3 --epochs 2   # a quick look

Exit status 0 when every run passes.
"""

from __future__ import annotations

import argparse
import csv
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import torch

SIGNALS = (signal.SIGKILL, signal.SIGTERM, signal.SIGINT)


def train_command(root: Path, name: str, epochs: int, extra: list[str]) -> list[str]:
    return [
        sys.executable, "-m", "cvzoo", "train", "--model", "resnet20_cifar", "--data", "fashion_mnist_sample",
        "--epochs", str(epochs), "--batch", "32", "--workers", "0", "--project", str(root), "--name", name,
        "--lr", "0.05", "--set", "data.limit_train=256", "data.limit_val=64", "run.progress=false",
        "scheduler.warmup_epochs=1", *extra,
    ]


def run_to_end(command: list[str], log: Path) -> float:
    started = time.perf_counter()
    with log.open("a") as handle:
        subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, check=True)
    return time.perf_counter() - started


def interrupt(command: list[str], after: float, signum: int, log: Path) -> int | None:
    """Start ``command``, send ``signum`` after ``after`` seconds; its exit code (None: it had finished)."""
    with log.open("a") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT)
        try:
            process.wait(timeout=after)
            return None  # finished before the signal
        except subprocess.TimeoutExpired:
            pass
        process.send_signal(signum)
        try:
            return process.wait(timeout=120)
        except subprocess.TimeoutExpired:  # a stop request must end the run; say so rather than hang
            process.kill()
            raise RuntimeError(f"run did not stop within 120 s of {signal.Signals(signum).name}") from None


def rows_without_time(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        row.pop("time", None)
    return rows


def model_state(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "weights" / "last.pt", map_location="cpu", weights_only=False)["model"]


def compare(reference: Path, run_dir: Path) -> list[str]:
    problems = []
    if not (run_dir / "results.csv").exists():
        return ["no results.csv"]
    if rows_without_time(run_dir) != rows_without_time(reference):
        problems.append("results.csv differs")
    ref, got = model_state(reference), model_state(run_dir)
    if any(not torch.equal(ref[k], got[k]) for k in ref):
        problems.append("final weights differ")
    orphans = [str(p.relative_to(run_dir)) for p in run_dir.rglob("*.tmp")]
    if orphans:
        problems.append(f"orphan files {orphans}")
    return problems


def where(run_dir: Path) -> str:
    last = run_dir / "weights" / "last.pt"
    if not last.exists():
        return "before the first checkpoint"
    state = torch.load(last, map_location="cpu", weights_only=False)
    return f"checkpoint at epoch {state['epoch']} batch {state.get('step_in_epoch', 0)}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--kills-per-run", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments and signals")
    parser.add_argument("--root", default="runs/soak", help="work folder (emptied first)")
    args = parser.parse_args(argv)
    root = Path(args.root).resolve()
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    log = root / "soak.log"
    rng = random.Random(args.seed)

    reference_time = run_to_end(train_command(root, "reference", args.epochs, []), log)
    reference = root / "classify" / "reference"
    print(f"reference: {args.epochs} epochs in {reference_time:.1f} s")

    signals_sent: Counter[str] = Counter()
    failures = 0
    for index in range(args.runs):
        name = f"run{index:03d}"
        run_dir = root / "classify" / name
        notes = []
        kills = 0
        window = reference_time
        while kills < args.kills_per_run:
            signum = rng.choice(SIGNALS)
            after = rng.uniform(0.0, window)
            last = run_dir / "weights" / "last.pt"
            extra = ["--resume", str(last)] if last.exists() else ["--set", "run.exist_ok=true"]
            started = time.perf_counter()
            code = interrupt(train_command(root, name, args.epochs, extra), after, signum, log)
            if code is None:
                # The run ended before the signal (the machine was quicker than for the reference): it is
                # started again from scratch and the moment drawn again within its real duration.
                shutil.rmtree(run_dir)
                window = time.perf_counter() - started
                continue
            kills += 1
            signals_sent[signal.Signals(signum).name] += 1
            notes.append(f"{signal.Signals(signum).name} at {after:.1f} s (exit {code}): {where(run_dir)}")
        last = run_dir / "weights" / "last.pt"
        if last.exists() and len(rows_without_time(run_dir) if (run_dir / "results.csv").exists() else []) < args.epochs:
            run_to_end(train_command(root, name, args.epochs, ["--resume", str(last)]), log)
        elif not last.exists():
            run_to_end(train_command(root, name, args.epochs, ["--set", "run.exist_ok=true"]), log)
        problems = compare(reference, run_dir)
        failures += bool(problems)
        print(f"{name}: {'; '.join(notes)} -> {'FAIL: ' + ', '.join(problems) if problems else 'equal'}", flush=True)
    print(f"{args.runs - failures} of {args.runs} runs equal to the uninterrupted run after "
          f"{sum(signals_sent.values())} interruptions ({dict(signals_sent)}); log: {log}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
