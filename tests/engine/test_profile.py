"""``train.profile``: a line per epoch saying where its time went (cvzoo/engine/profile.py)."""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import cvzoo.engine.trainer as trainer_module
from cvzoo.engine.profile import EpochProfiler
from cvzoo.engine.trainer import Trainer
from tests.engine.test_trainer import make_config
from tests.engine.toy_task import ToyTask

REPO = Path(__file__).resolve().parents[2]


def test_a_profiled_run_prints_every_stage_of_each_epoch(tmp_path, capsys):
    config = make_config(tmp_path, "train.profile=true", "train.epochs=2")
    Trainer(config, ToyTask(config)).fit()
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("profile epoch")]
    assert [line.split(":")[0] for line in lines] == ["profile epoch 1", "profile epoch 2"]
    for line in lines:
        stages = dict(re.findall(r"(\w+) ([\d.]+) s \(\d+%\)", line))
        assert set(stages) == {"data", "to_device", "forward", "backward", "optimizer", "schedule_ema",
                               "validation", "checkpoint"}
        total = float(re.search(r"total ([\d.]+) s", line).group(1))
        assert abs(sum(map(float, stages.values())) - total) < 0.05


def test_unprofiled_runs_print_nothing_and_a_disabled_profiler_records_nothing(tmp_path, capsys):
    config = make_config(tmp_path, "train.epochs=1")
    Trainer(config, ToyTask(config)).fit()
    assert "profile epoch" not in capsys.readouterr().out
    profiler = EpochProfiler(False, torch.device("cpu"))
    with profiler.stage("forward"):
        pass
    profiler.add("data", 1.0)
    assert profiler.seconds == {}


def test_every_run_records_its_time_to_first_step_from_the_process_start(tmp_path, capsys, monkeypatch):
    # The process "started" 100 s ago: the record counts from the process start, not from the trainer.
    started = time.perf_counter() - 100.0
    monkeypatch.setattr(trainer_module, "seconds_since_process_start", lambda: time.perf_counter() - started)
    monkeypatch.setattr(trainer_module.Trainer, "_first_in_process", True)
    config = make_config(tmp_path, "train.epochs=2")
    before = time.perf_counter() - started
    result = Trainer(config, ToyTask(config)).fit()
    after_fit = time.perf_counter() - started
    assert before < result.first_step_seconds < after_fit
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("first optimizer step"))
    assert line == f"first optimizer step {result.first_step_seconds:.2f} s after the process started"
    with (result.run_dir / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert float(rows[0]["time/first_step"]) == pytest.approx(result.first_step_seconds, abs=1e-3)
    assert rows[1]["time/first_step"] == ""  # once per process, in the row of the epoch it fell in


def test_a_later_run_in_the_same_process_counts_from_its_own_start(tmp_path, capsys, monkeypatch):
    # The demo and the API train several models in one process: the process start would count the earlier runs.
    monkeypatch.setattr(trainer_module.Trainer, "_first_in_process", True)
    first = make_config(tmp_path / "a", "train.epochs=1")
    Trainer(first, ToyTask(first)).fit()
    config = make_config(tmp_path / "b", "train.epochs=1")
    started = time.perf_counter()
    result = Trainer(config, ToyTask(config)).fit()
    assert 0 < result.first_step_seconds < time.perf_counter() - started
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("first optimizer step")]
    assert lines[0].endswith("after the process started")
    assert lines[1] == f"first optimizer step {result.first_step_seconds:.2f} s after the run started"


def test_a_profiled_run_says_where_the_time_to_first_step_went(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(trainer_module.Trainer, "_first_in_process", True)
    config = make_config(tmp_path, "train.profile=true", "train.epochs=1")
    result = Trainer(config, ToyTask(config)).fit()
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("profile start-up"))
    body, total_text = line.split(": ", 1)[1].split("; total ")
    phases = dict(re.fullmatch(r"(.+) ([\d.]+) s \(\d+%?\)?", part).groups() for part in body.split("%), "))
    assert list(phases) == ["imports, config", "task", "run folder", "datasets", "model", "loaders", "run summary",
                            "optimizer, loggers", "first batch", "train_batch0 plot", "first step"]
    total = float(total_text.removesuffix(" s"))
    assert abs(sum(map(float, phases.values())) - total) < 0.05
    assert total == pytest.approx(result.first_step_seconds, abs=0.05)  # the phases account for all of it


def test_seconds_since_process_start_counts_from_the_fork(tmp_path):
    # A child that sleeps before importing cvzoo: the figure includes the sleep and stays within the
    # wall time the parent measured around the whole child.
    code = ("import time; time.sleep(0.5); from cvzoo.engine.profile import seconds_since_process_start; "
            "print(seconds_since_process_start())")
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)}).stdout
    wall = time.perf_counter() - started
    if sys.platform != "linux":
        assert out.strip() == "None"
        return
    assert 0.5 <= float(out) <= wall + 0.02  # + one clock tick of /proc's resolution
