"""PyTorch's CPU threads when another process wants a core: OpenMP's wait policy, measured.

    .venv/bin/python benchmarks/bench_omp_wait.py [--model yolov8n] [--imgsz 640] [--repeats 10]

PyTorch runs an operator's work on ``torch.get_num_threads()`` OpenMP threads; between operators the
threads wait for the next parallel region. With OpenMP's default wait policy a waiting thread spins for a
while before it sleeps, so when another process holds one of the cores (a data-loading worker, a second
job, a browser) a region cannot end until the descheduled thread gets its time slice back, and each of
the hundreds of regions of a forward pass pays for it. ``OMP_WAIT_POLICY=PASSIVE`` makes waiting threads
sleep at once, ``ACTIVE`` keeps them spinning. Which to use depends on the machine (results in the README's
"Defaults and options worth knowing"): cvzoo leaves the policy to the user.

Each configuration runs in its own Python process (the policy is read when OpenMP starts): batch-1 eval
forward passes of ``--model`` at ``--imgsz`` (random weights), median of ``--repeats`` after warm-up, at 1
and at all cores' threads, with the policy unset (OpenMP's default), ``PASSIVE`` and ``ACTIVE``; first with
the machine as it is, then with ``--busy`` processes spinning in pure Python (one core's worth each),
started before and stopped after each measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

CHILD = """
import json, statistics, sys, time, torch
from cvzoo.models.registry import create_model
model_name, imgsz, threads, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(threads)
model = create_model(model_name, num_classes=10).eval()
x = torch.rand(1, 3, imgsz, imgsz)
times = []
with torch.inference_mode():
    for _ in range(2):
        model(x)
    for _ in range(repeats):
        start = time.perf_counter()
        model(x)
        times.append(time.perf_counter() - start)
print(json.dumps(statistics.median(times)))
"""
SPIN = "while True:\n    pass\n"


def measure(args: argparse.Namespace, policy: str | None, threads: int) -> float:
    env = dict(os.environ)
    env.pop("OMP_WAIT_POLICY", None)
    if policy:
        env["OMP_WAIT_POLICY"] = policy
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.getcwd(), env.get("PYTHONPATH")]))
    out = subprocess.run([sys.executable, "-c", CHILD, args.model, str(args.imgsz), str(threads), str(args.repeats)],
                         env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="yolov8n")
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--busy", type=int, default=1, help="spinning processes in the contended rounds")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    print(f"{args.model}, batch 1, {args.imgsz} px, median of {args.repeats} forward passes, {cores} cores")
    for busy in (0, args.busy):
        spinners = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(busy)]
        try:
            time.sleep(0.5 if busy else 0)
            for threads in sorted({1, cores}):
                row = {policy or "default": measure(args, policy, threads) for policy in (None, "PASSIVE", "ACTIVE")}
                print(f"  {busy} busy process(es), {threads} thread(s): "
                      + ", ".join(f"{name} {seconds * 1e3:8.1f} ms" for name, seconds in row.items()))
        finally:
            for spinner in spinners:
                spinner.kill()
                spinner.wait()


if __name__ == "__main__":
    main()
