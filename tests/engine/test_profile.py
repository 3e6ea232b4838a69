"""``train.profile``: a line per epoch saying where its time went (cvzoo/engine/profile.py)."""

from __future__ import annotations

import re

import torch

from cvzoo.engine.profile import EpochProfiler
from cvzoo.engine.trainer import Trainer
from tests.engine.test_trainer import make_config
from tests.engine.toy_task import ToyTask


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
