"""Shared by the benchmarks that run ultralytics beside cvzoo (``bench_yolo_vs_ultralytics.py``,
``bench_train_defaults.py``, ``bench_rtdetr.py ultralytics``): keeping ultralytics offline, importing it with
the thread count pinned, the synthetic scenes written once in its layout, one side run in its own
subprocess, and the training-epoch timer of an ultralytics trainer.

ultralytics is AGPL: it lives in ``.venv-bench`` only (``make bench-env``) and is imported here, on the
benchmark side, never by cvzoo.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULT_TAG = "BENCH_RESULT "
SETUP_HINT = """ultralytics is not importable from this Python ({python}).
It is the reference of this benchmark and lives in its own venv (never a cvzoo dependency). Once, from
the repository root: `make bench-env`; then run this script as
.venv-bench/bin/python benchmarks/{script} MODE
(import error: {error})"""


def offline_variables(workdir: Path) -> dict[str, str]:
    """Environment variables that keep ultralytics off the network (set before it is imported)."""
    return {
        "YOLO_OFFLINE": "1",  # is_online() -> False: no analytics, no update checks
        "YOLO_AUTOINSTALL": "false",  # never pip-install a missing extra
        "YOLO_CONFIG_DIR": str(Path(workdir) / "ultralytics_config"),  # its settings.json
    }


def offline_environment(workdir: Path) -> None:
    """:func:`offline_variables` into this process's environment, where not already set."""
    for key, value in offline_variables(workdir).items():
        os.environ.setdefault(key, value)


def import_ultralytics(threads: int):
    """Import ultralytics (exit with the setup commands when it is missing) and pin its thread count.

    ultralytics' ``select_device`` calls ``torch.set_num_threads(NUM_THREADS)`` with
    ``NUM_THREADS = min(8, cpu_count - 1)`` (1 on a 2-core machine) whenever it sets up a predictor,
    trainer or validator; the benchmarks give both sides the same thread count.
    """
    try:
        import ultralytics
        from ultralytics.utils import SETTINGS, torch_utils
    except ImportError as err:
        sys.exit(SETUP_HINT.format(python=sys.executable, script=Path(sys.argv[0]).name, error=err))
    torch_utils.NUM_THREADS = threads
    if SETTINGS.get("sync"):
        SETTINGS.update(sync=False)  # no analytics events (already off while offline)
    return ultralytics


def synthetic_scenes(root: Path, train_images: int, val_images: int, config) -> Path:
    """``write_yolo_dataset``'s scenes (ultralytics layout + data YAML) under ``root``, written once: a
    marker file says the folder is complete, so a later call (or an interrupted one's rerun) reuses or
    rewrites it. Returns the data YAML."""
    from cvzoo.data.synthetic import write_yolo_dataset

    done = Path(root) / ".complete"
    if not done.exists():
        start = time.perf_counter()
        write_yolo_dataset(root, train_images, val_images, config)
        done.write_text("ok\n")
        print(f"wrote {train_images} train / {val_images} val scenes to {root} in {time.perf_counter() - start:.1f} s")
    return Path(root) / "data.yaml"


def run_child(script: Path, spec: dict, log: Path, env: dict[str, str] | None = None) -> dict:
    """Run ``script _child SPEC`` (one side) in its own Python process, output to ``log``; its last
    ``RESULT_TAG`` line is the result. A failure stops the benchmark with the end of the log."""
    env = dict(env or os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"  {spec['side']:12s} {spec['job']} ... (log {log})", flush=True)
    start = time.perf_counter()
    with log.open("w") as out:
        code = subprocess.run([sys.executable, str(script), "_child", json.dumps(spec)],
                              stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO).returncode
    lines = log.read_text(errors="replace").splitlines()
    results = [line[len(RESULT_TAG):] for line in lines if line.startswith(RESULT_TAG)]
    if code != 0 or not results:
        tail = "\n".join(lines[-30:])
        raise SystemExit(f"{spec['side']} {spec['job']} failed (exit {code}); end of {log}:\n{tail}")
    print(f"  {spec['side']:12s} done in {time.perf_counter() - start:.0f} s", flush=True)
    return json.loads(results[-1])


def report(result: dict) -> None:
    """A child's result, as the line :func:`run_child` reads."""
    print(RESULT_TAG + json.dumps(result), flush=True)


class StopAfterTraining(Exception):
    """Raised by :class:`EpochTimer` after the last training epoch: skips ultralytics' final validation."""


class EpochTimer:
    """Times the training part of each epoch of an ultralytics trainer, through its callbacks.

    ``on_train_epoch_start`` fires before the epoch's batches and ``on_train_epoch_end`` after the last
    optimizer step and before validation (``BaseTrainer._do_train``), so ``epoch_times`` excludes
    validation, checkpoints and plots. Also records the torch thread count the trainer set and the size of
    its training set. ``stop_after``: raise :class:`StopAfterTraining` after that many epochs.
    """

    def __init__(self, stop_after: int = 0) -> None:
        self.stop_after = stop_after
        self.epoch_times: list[float] = []
        self.threads = 0
        self.images: int | None = None
        self._start = 0.0

    def attach(self, model) -> None:
        model.add_callback("on_train_epoch_start", self._on_start)
        model.add_callback("on_train_epoch_end", self._on_end)

    def _on_start(self, trainer) -> None:
        import torch

        self.threads = torch.get_num_threads()
        self._start = time.perf_counter()

    def _on_end(self, trainer) -> None:
        self.epoch_times.append(time.perf_counter() - self._start)
        self.images = len(trainer.train_loader.dataset)
        if self.stop_after and len(self.epoch_times) == self.stop_after:
            raise StopAfterTraining
