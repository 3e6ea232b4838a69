"""Nothing lost under faults: signals at any batch, kills between the run's writes, resume's folder rules.

Each test compares a faulted-then-resumed run with an uninterrupted run of the same seed: the same
results.csv rows (every column but the wall time) and bit-identical weights.
"""

import csv
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from cvzoo.api import build_config_with_sources
from cvzoo.config import ConfigError
from cvzoo.engine import callbacks as cb
from cvzoo.engine.checkpoint import load_checkpoint
from cvzoo.engine.trainer import Trainer, TrainingInterrupted
from tests.engine.test_trainer import make_config
from tests.engine.toy_task import ToyTask, ToyTwoOptimizerTask

REPO = Path(__file__).resolve().parents[2]


def rows_without_time(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:  # the wall times: the epoch's and, in the row it fell in, the process's first step
        row.pop("time")
        row.pop("time/first_step", None)
    return rows


def assert_same_run(a: Path, b: Path) -> None:
    assert rows_without_time(a) == rows_without_time(b)
    wa, wb = load_checkpoint(a / "weights" / "last.pt"), load_checkpoint(b / "weights" / "last.pt")
    for key in wa["model"]:
        torch.testing.assert_close(wa["model"][key], wb["model"][key], rtol=0, atol=0)
    orphans = [p.name for p in (b / "weights").iterdir() if p.name.endswith(".tmp")]
    orphans += [p.name for p in b.iterdir() if p.name.endswith(".tmp")]
    assert not orphans


def full_run(tmp_path: Path, *extra: str) -> Path:
    config = make_config(tmp_path, "run.name=full", *extra)
    return Trainer(config, ToyTask(config)).fit().run_dir


class SignalledAt(ToyTask):
    """Sends itself ``signals`` (a list) during training batch ``at`` (0-based, over the whole run)."""

    def __init__(self, config, at: int, signals: list[int]):
        super().__init__(config)
        self.at, self.signals = at, signals

    def training_step(self, model, batch):
        out = super().training_step(model, batch)
        if self.steps - 1 == self.at:
            for signum in self.signals:
                os.kill(os.getpid(), signum)
        return out


def resume(tmp_path: Path, checkpoint: Path, *extra: str) -> Path:
    config = make_config(tmp_path, f"run.resume={checkpoint}", *extra)
    return Trainer(config, ToyTask(config)).fit().run_dir


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("at", [5, 8, 15])  # mid-epoch 1, first batch of epoch 2, last batch of epoch 2
def test_signal_mid_epoch_resumes_to_the_same_rows(tmp_path, signum, at):
    reference = full_run(tmp_path)
    config = make_config(tmp_path, "run.name=part")
    with pytest.raises(TrainingInterrupted) as info:
        Trainer(config, SignalledAt(config, at, [signum])).fit()
    state = load_checkpoint(info.value.checkpoint)
    # It stops right after the signalled batch's optimizer step (8 batches per epoch); at the last
    # batch of an epoch it finishes the epoch (validation, checkpoint) first.
    done = at + 1
    assert (state["epoch"], state["step_in_epoch"]) == ((done // 8, 0) if done % 8 == 0 else (done // 8, done % 8))
    assert_same_run(reference, resume(tmp_path, info.value.checkpoint))


def test_signal_inside_accumulation_window_waits_for_its_step(tmp_path):
    extra = ["train.accumulate=3"]
    reference = full_run(tmp_path, *extra)
    config = make_config(tmp_path, "run.name=part", *extra)
    with pytest.raises(TrainingInterrupted) as info:
        Trainer(config, SignalledAt(config, 3, [signal.SIGTERM])).fit()  # window = batches 3, 4, 5
    assert load_checkpoint(info.value.checkpoint)["step_in_epoch"] == 6
    assert_same_run(reference, resume(tmp_path, info.value.checkpoint, *extra))


def test_second_signal_stops_at_once_and_keeps_the_last_save(tmp_path):
    config = make_config(tmp_path, "run.name=part")
    with pytest.raises(TrainingInterrupted, match="second signal") as info:
        Trainer(config, SignalledAt(config, 10, [signal.SIGINT, signal.SIGINT])).fit()
    # Batch 10 is in epoch 2: the checkpoint of epoch 1 is what is kept, untouched.
    assert load_checkpoint(info.value.checkpoint)["epoch"] == 1
    reference = full_run(tmp_path)
    assert_same_run(reference, resume(tmp_path, info.value.checkpoint))


class Killed(BaseException):
    """Stands for SIGKILL in an in-process test: nothing after it runs, no handler catches it."""


def test_kill_between_checkpoint_and_results_csv(tmp_path, monkeypatch):
    reference = full_run(tmp_path)
    original = cb.write_results
    calls = {"n": 0}

    def dies_on_second_epoch(path, rows):
        calls["n"] += 1
        if len(rows) == 2:
            raise Killed
        original(path, rows)

    monkeypatch.setattr(cb, "write_results", dies_on_second_epoch)
    config = make_config(tmp_path, "run.name=part")
    with pytest.raises(Killed):
        Trainer(config, ToyTask(config)).fit()
    monkeypatch.setattr(cb, "write_results", original)
    part = tmp_path / "classify" / "part"
    assert len(rows_without_time(part)) == 1  # the file lags behind last.pt (epoch 2)
    assert load_checkpoint(part / "weights" / "last.pt")["epoch"] == 2
    assert_same_run(reference, resume(tmp_path, part / "weights" / "last.pt"))


def test_kill_while_a_file_before_last_pt_is_written(tmp_path, monkeypatch):
    """Epoch 2's commit writes best.pt (if it improved) and epoch2.pt before last.pt; a kill in the
    first of them leaves last.pt at epoch 1, half a file, and a run that redoes epoch 2 identically."""
    from cvzoo.engine import trainer as trainer_module

    reference = full_run(tmp_path)
    original = trainer_module.atomic_save
    killed_at: list[Path] = []

    def dies_in_epoch_2_commit(obj, path):
        if obj["epoch"] == 2 and obj.get("step_in_epoch", 0) == 0 and not killed_at:
            killed_at.append(Path(path))
            Path(path).with_name(f".{Path(path).name}.crash.tmp").write_bytes(b"half a checkpoint")
            raise Killed
        original(obj, path)

    monkeypatch.setattr(trainer_module, "atomic_save", dies_in_epoch_2_commit)
    config = make_config(tmp_path, "run.name=part", "run.save_period=1")
    with pytest.raises(Killed):
        Trainer(config, ToyTask(config)).fit()
    monkeypatch.setattr(trainer_module, "atomic_save", original)
    part = tmp_path / "classify" / "part"
    assert killed_at[0].name in ("best.pt", "epoch2.pt")
    assert load_checkpoint(part / "weights" / "last.pt")["epoch"] == 1
    # Resumed, the same file is written again, which also removes the orphan (checked in assert_same_run).
    assert_same_run(reference, resume(tmp_path, part / "weights" / "last.pt", "run.save_period=1"))


CHILD = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from cvzoo.engine import checkpoint
    from cvzoo.engine.trainer import Trainer
    from tests.engine.test_trainer import make_config
    from tests.engine.toy_task import ToyTask

    tmp, target, nth = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    seen = {"n": 0}
    real_replace = os.replace

    def die_before_rename(src, dst):
        if Path(dst).name == target:
            seen["n"] += 1
            if seen["n"] == nth:  # the temporary file is written and synced, the rename has not happened
                os.kill(os.getpid(), signal.SIGKILL)
        real_replace(src, dst)

    checkpoint.os.replace = die_before_rename
    config = make_config(tmp, "run.name=part", "run.save_period=1")
    Trainer(config, ToyTask(config)).fit()
""")


@pytest.mark.parametrize(("target", "nth"), [("last.pt", 2), ("epoch2.pt", 1)])
def test_sigkill_while_a_checkpoint_is_written(tmp_path, target, nth):
    child = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path), target, str(nth)], cwd=REPO,
                           capture_output=True, text=True, timeout=300)
    assert child.returncode == -signal.SIGKILL, child.stderr
    part = tmp_path / "classify" / "part"
    assert list((part / "weights").glob(f".{target}.*.tmp"))  # the orphan a kill leaves
    reference = full_run(tmp_path)
    assert_same_run(reference, resume(tmp_path, part / "weights" / "last.pt", "run.save_period=1"))


def test_resume_of_a_checkpoint_outside_a_run_folder_starts_a_new_one(tmp_path):
    config = make_config(tmp_path, "train.epochs=3", "run.name=part")
    with pytest.raises(TrainingInterrupted) as info:
        Trainer(config, SignalledAt(config, 5, [signal.SIGTERM])).fit()
    outside = tmp_path / "downloads" / "ckpt.pt"
    outside.parent.mkdir()
    shutil.copy(info.value.checkpoint, outside)
    run_dir = resume(tmp_path, outside)
    assert run_dir == tmp_path / "classify" / "part2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["classify", "downloads"]
    assert [p.name for p in outside.parent.iterdir()] == ["ckpt.pt"]
    assert_same_run(full_run(tmp_path), run_dir)


def test_resume_from_an_earlier_checkpoint_keeps_the_run_it_came_from(tmp_path):
    config = make_config(tmp_path, "run.name=part", "run.save_period=1")
    run_dir = Trainer(config, ToyTask(config)).fit().run_dir
    before = {name: (run_dir / name).read_bytes() for name in ("results.csv", "weights/last.pt")}
    resumed = resume(tmp_path, run_dir / "weights" / "epoch1.pt")
    assert resumed == tmp_path / "classify" / "part2"
    assert {name: (run_dir / name).read_bytes() for name in before} == before
    assert_same_run(full_run(tmp_path), resumed)


def test_resume_auto_matches_the_name_exactly(tmp_path):
    for name in ("toy", "toy_old"):  # toy_old is newer and starts with "toy"
        config = make_config(tmp_path, f"run.name={name}", "train.epochs=2")
        Trainer(config, ToyTask(config)).fit()
    config = make_config(tmp_path, "run.name=toy", "train.epochs=2", "run.resume=auto")
    assert Trainer(config, ToyTask(config)).resume_path == tmp_path / "classify" / "toy" / "weights" / "last.pt"
    config = make_config(tmp_path, "run.name=to", "run.resume=auto")
    with pytest.raises(FileNotFoundError, match="toy, toy_old"):
        Trainer(config, ToyTask(config))


def _sourced(tmp_path, *overrides):
    base = [f"run.project={tmp_path}", "run.name=toy", "run.progress=false", "run.tensorboard=false",
            "run.plots=false", "data.batch_size=32", "data.workers=0", "optim.lr=0.1", "train.device=cpu"]
    return build_config_with_sources(None, base + list(overrides))


def test_resume_with_more_epochs_extends_a_finished_run(tmp_path):
    config, sources = _sourced(tmp_path, "train.epochs=2")
    run_dir = Trainer(config, ToyTask(config), sources=sources).fit().run_dir
    last = run_dir / "weights" / "last.pt"
    # Resumed as it is, a finished run trains nothing, says how to extend it, and restores a results.csv
    # that a kill after its last checkpoint cut short.
    (run_dir / "results.csv").write_text("epoch,time\n1,0.5\n")
    config, sources = _sourced(tmp_path, f"run.resume={last}")
    trainer = Trainer(config, ToyTask(config), sources=sources)
    lines: list[str] = []
    trainer.log = lines.append
    assert trainer.fit().epochs_run == 2
    assert any("nothing to train" in line and "pass a larger --epochs" in line for line in lines)
    assert len(rows_without_time(run_dir)) == 2
    config, sources = _sourced(tmp_path, f"run.resume={last}", "train.epochs=4")
    result = Trainer(config, ToyTask(config), sources=sources).fit()
    assert result.run_dir == run_dir and [r["epoch"] for r in result.history] == [1, 2, 3, 4]
    assert len(rows_without_time(run_dir)) == 4


def test_resume_rejects_changed_settings_and_takes_machine_ones(tmp_path):
    config, sources = _sourced(tmp_path, "train.epochs=3")
    with pytest.raises(TrainingInterrupted) as info:
        Trainer(config, SignalledAt(config, 5, [signal.SIGTERM]), sources=sources).fit()
    last = info.value.checkpoint
    config, sources = _sourced(tmp_path, f"run.resume={last}", "optim.lr=0.5")
    with pytest.raises(ConfigError, match=r"optim.lr=0.5 \(saved 0.1\)"):
        Trainer(config, ToyTask(config), sources=sources)
    config, sources = _sourced(tmp_path, f"run.resume={last}", "data.workers=1")
    trainer = Trainer(config, ToyTask(config), sources=sources)
    assert trainer.config.data.workers == 1 and trainer.config.optim.lr == 0.1


def test_results_png_shows_the_headline_panels():
    rows = [{"epoch": e, "time": 1.0, "train/loss": 2.0 / e, "train/box": 1.0, "val/loss": 2.5 / e,
             "val/box": 1.1, "metrics/mAP50": 0.1 * e, "metrics/mAP50-95": 0.05 * e, "metrics/AP": 0.05 * e,
             "metrics/APl": -1.0, "metrics/precision": 0.5, "lr/pg0": 0.01, "lr/pg1": 0.02}
            for e in (1, 2, 3)]
    panels = cb.results_panels(rows, ("mAP50", "mAP50-95", "precision", "recall"))
    assert panels == [("loss", ["train/loss", "val/loss"]), ("box", ["train/box", "val/box"]),
                      ("mAP50", ["metrics/mAP50"]), ("mAP50-95", ["metrics/mAP50-95"]),
                      ("precision", ["metrics/precision"]), ("learning rate", ["lr/pg0", "lr/pg1"])]
    # Without a headline every metric column is drawn, except the -1 placeholder.
    assert [t for t, _ in cb.results_panels(rows)][2:-1] == ["mAP50", "mAP50-95", "AP", "precision"]


def test_run_header_says_what_the_run_will_do(tmp_path):
    config, sources = _sourced(tmp_path, "train.epochs=1")
    lines: list[str] = []
    trainer = Trainer(config, ToyTask(config), sources=sources)
    trainer.log = lines.append
    trainer.fit()
    text = "\n".join(lines)
    assert "device cpu (" in text and "threads), AMP off, data workers 0" in text
    # The toy task's MLP (8-32-3 with BatchNorm) under the config's model name; 8*32 + 32*3 MACs.
    assert "model resnet20_cifar: 451 parameters, 0.000704 MFLOPs at 8 (2 per multiply-add)" in text
    assert "data fashion_mnist_sample: train 256, val 64" in text
    assert "settings: --set: run.project=" in text and "train.epochs=1" in text


class TwoOptimizersSignalledAt(ToyTwoOptimizerTask):
    """SIGTERM during the discriminator's step of training batch ``at`` (0-based, over the run)."""

    def __init__(self, config, at: int):
        super().__init__(config)
        self.at = at

    def discriminator_step(self, model, batch):
        out = super().discriminator_step(model, batch)
        if self.steps - 1 == self.at:
            os.kill(os.getpid(), signal.SIGTERM)
        return out


def test_two_optimizers_resume_to_the_same_run(tmp_path):
    """A GAN-like task: two named optimizers (one every second batch), two schedules, clipping, EMA and a
    lower-is-better fitness; stopped mid-epoch and resumed, it ends bit-identical to an uninterrupted run."""
    at = 10  # epoch 2's third batch, where both optimizers step
    extra = ["train.ema=true", "train.ema_tau=5"]
    config = make_config(tmp_path, "run.name=full", *extra)
    reference = Trainer(config, ToyTwoOptimizerTask(config)).fit().run_dir
    config = make_config(tmp_path, "run.name=part", *extra)
    with pytest.raises(TrainingInterrupted) as info:
        Trainer(config, TwoOptimizersSignalledAt(config, at)).fit()
    state = load_checkpoint(info.value.checkpoint)
    assert (state["epoch"], state["step_in_epoch"]) == divmod(at + 1, 8)
    assert set(state["optimizer"]) == set(state["scheduler"]) == {"discriminator", "generator"}
    config = make_config(tmp_path, f"run.resume={info.value.checkpoint}", *extra)
    resumed = Trainer(config, ToyTwoOptimizerTask(config)).fit().run_dir
    assert_same_run(reference, resumed)
    a, b = load_checkpoint(reference / "weights" / "last.pt"), load_checkpoint(resumed / "weights" / "last.pt")
    for name in ("discriminator", "generator"):
        torch.testing.assert_close(a["optimizer"][name]["state"], b["optimizer"][name]["state"], rtol=0, atol=0)
        assert a["scheduler"][name] == b["scheduler"][name]
    torch.testing.assert_close(a["ema"]["module"], b["ema"]["module"], rtol=0, atol=0)
    header = rows_without_time(reference)[0]
    assert {"train/discriminator_loss", "train/generator_loss", "lr/generator_pg0", "metrics/gap"} <= set(header)
    # best.pt is the epoch with the lowest gap.
    gaps = [float(row["metrics/gap"]) for row in rows_without_time(reference)]
    assert load_checkpoint(reference / "weights" / "best.pt")["epoch"] == 1 + gaps.index(min(gaps))
