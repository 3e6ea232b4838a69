import math
from dataclasses import replace

import pytest
import torch

from cvzoo.config import Config, apply_overrides
from cvzoo.engine.callbacks import Callback
from cvzoo.engine.checkpoint import load_checkpoint
from cvzoo.engine.ema import ModelEMA
from cvzoo.engine.trainer import NonFiniteLossError, Trainer, TrainingInterrupted
from tests.engine.toy_task import ToyTask


def make_config(tmp_path, *overrides):
    base = [
        f"run.project={tmp_path}", "run.name=toy", "run.progress=false", "run.tensorboard=false",
        "run.plots=false", "data.batch_size=32", "data.workers=0", "optim.lr=0.1", "train.epochs=3",
        "train.device=cpu",
    ]
    return apply_overrides(Config(), base + list(overrides))


def test_fit_learns_and_writes_run_outputs(tmp_path):
    config = make_config(tmp_path, "run.tensorboard=true", "run.plots=true")
    result = Trainer(config, ToyTask(config)).fit()
    assert result.run_dir == tmp_path / "classify" / "toy"
    assert result.metrics["metrics/acc"] > 0.6  # a 3-class linear rule; chance is ~0.33
    header = (result.run_dir / "results.csv").read_text().splitlines()[0].split(",")
    assert header[:4] == ["epoch", "time", "train/loss", "val/loss"]
    assert "metrics/acc" in header and "lr/pg0" in header
    assert (result.run_dir / "args.yaml").exists()
    assert (result.run_dir / "results.png").exists()
    assert list(result.run_dir.glob("events.out.tfevents.*"))
    assert result.best_checkpoint is not None and result.best_checkpoint.exists()


def test_best_pt_keeps_only_what_inference_needs_and_refuses_to_resume(tmp_path):
    config = make_config(tmp_path, "train.ema=true", "train.epochs=2")
    result = Trainer(config, ToyTask(config)).fit()
    best, last = load_checkpoint(result.best_checkpoint), load_checkpoint(result.last_checkpoint)
    assert "optimizer" not in best and "rng" not in best and best["ema"] is None
    assert {"config", "task", "extras", "model_name", "metrics", "epoch"} <= set(best)
    if best["epoch"] == last["epoch"]:  # the weights that validated: the EMA's
        for name, value in last["ema"]["module"].items():
            torch.testing.assert_close(best["model"][name], value, rtol=0, atol=0)
    assert result.best_checkpoint.stat().st_size < last_size(result)
    resume = apply_overrides(config, [f"run.resume={result.best_checkpoint}"])
    with pytest.raises(ValueError, match="holds the weights only .* resume from last.pt, or start a new run"):
        Trainer(resume, ToyTask(resume))


def last_size(result):
    return result.last_checkpoint.stat().st_size


def test_existing_run_folder_is_never_overwritten(tmp_path):
    config = make_config(tmp_path, "train.epochs=1")
    first = Trainer(config, ToyTask(config)).fit()
    second = Trainer(config, ToyTask(config)).fit()
    assert first.run_dir.name == "toy" and second.run_dir.name == "toy2"
    assert (first.run_dir / "weights" / "last.pt").exists()


def _weights(path):
    return load_checkpoint(path)["model"]


@pytest.mark.parametrize("extra", [
    [],
    # YOLO's schedule: nominal-batch ramp across the epoch boundary, whole-run decay held per epoch.
    ["train.nominal_batch_size=128", "scheduler.warmup_epochs=1.5", "scheduler.warmup_prefix=false",
     "scheduler.per_epoch=true", "scheduler.name=linear", "scheduler.warmup_bias_lr=0.1",
     "scheduler.warmup_momentum=0.8"],
], ids=["plain", "yolo_schedule"])
def test_resume_after_epoch_equals_uninterrupted_run(tmp_path, extra):
    full_cfg = make_config(tmp_path, "run.name=full", "train.ema=true", *extra)
    full = Trainer(full_cfg, ToyTask(full_cfg)).fit()

    class Killed(Exception):
        pass

    class KillAfterFirstEpoch(Callback):
        def on_epoch_end(self, trainer, epoch, row):
            if epoch == 1:
                raise Killed  # like a SIGKILL right after epoch 1's checkpoint was written

    part_cfg = make_config(tmp_path, "run.name=part", "train.ema=true", *extra)
    part = Trainer(part_cfg, ToyTask(part_cfg), callbacks=[KillAfterFirstEpoch()])
    with pytest.raises(Killed):
        part.fit()
    last = part.run_dir / "weights" / "last.pt"
    assert load_checkpoint(last)["epoch"] == 1
    resume_cfg = make_config(tmp_path, f"run.resume={last}", *extra)
    resumed = Trainer(resume_cfg, ToyTask(resume_cfg)).fit()

    assert resumed.run_dir == part.run_dir
    a, b = _weights(full.last_checkpoint), _weights(resumed.last_checkpoint)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    ema_a = load_checkpoint(full.last_checkpoint)["ema"]["module"]
    ema_b = load_checkpoint(resumed.last_checkpoint)["ema"]["module"]
    for key in ema_a:
        torch.testing.assert_close(ema_a[key], ema_b[key], rtol=0, atol=0)
    rows = (part.run_dir / "results.csv").read_text().splitlines()
    assert len(rows) == 4  # header + 3 epochs in one continuous file


class InterruptedAtBatch5(ToyTask):
    """Ctrl-C arrives before the sixth training batch (index 5) of the run."""

    def training_step(self, model, batch):
        if self.steps == 5:
            self.steps += 1
            raise KeyboardInterrupt
        return super().training_step(model, batch)


def test_interrupt_saves_resumable_checkpoint_mid_epoch(tmp_path):
    config = make_config(tmp_path, "train.epochs=2")
    with pytest.raises(TrainingInterrupted) as info:
        Trainer(config, InterruptedAtBatch5(config)).fit()
    state = load_checkpoint(info.value.checkpoint)
    assert state["epoch"] == 0 and state["step_in_epoch"] == 5
    resume_cfg = make_config(tmp_path, f"run.resume={info.value.checkpoint}")
    task = ToyTask(resume_cfg)
    result = Trainer(resume_cfg, task).fit()
    # 8 batches per epoch: 3 left in epoch 1, then 8 in epoch 2.
    assert task.steps == 3 + 8
    assert result.epochs_run == 2


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    config = make_config(tmp_path, "train.epochs=3")
    task = ToyTask(config, poison_at_step=12)  # epoch 1 has 8 steps: the NaN comes in epoch 2
    with pytest.raises(NonFiniteLossError, match="epoch 2"):
        Trainer(config, task).fit()
    state = load_checkpoint(tmp_path / "classify" / "toy" / "weights" / "last.pt")
    assert state["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.dtype.is_floating_point)


def test_early_stopping(tmp_path):
    # lr 1e-12 (0 is rejected as a config error): nothing improves after the first epoch, so patience 2
    # stops after epoch 3 of 10.
    config = make_config(tmp_path, "train.epochs=10", "optim.lr=1e-12", "train.early_stop_patience=2")
    result = Trainer(config, ToyTask(config)).fit()
    assert result.epochs_run == 3


def test_gradient_accumulation_matches_large_batch(tmp_path):
    # Without dropout/BN randomness differences: compare one epoch of batch 64 vs 2 x 32 accumulated.
    def run(batch, accumulate, name):
        cfg = make_config(tmp_path, f"run.name={name}", f"data.batch_size={batch}", f"train.accumulate={accumulate}",
                          "train.epochs=1", "optim.momentum=0.0", "optim.weight_decay=0.0")

        class NoNoise(ToyTask):
            def build_model(self):
                return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))

            def training_step(self, model, batch):
                x, y = batch
                return {"loss": torch.nn.functional.cross_entropy(model(x), y)}

        return _weights(Trainer(cfg, NoNoise(cfg)).fit().last_checkpoint)

    big, acc = run(64, 1, "big"), run(32, 2, "acc")
    for key in big:
        torch.testing.assert_close(big[key], acc[key], rtol=1e-5, atol=1e-6)



def test_gradient_accumulation_adds_batch_sum_losses(tmp_path):
    # A task whose loss is a sum over the batch (YOLO's mean x batch size) accumulates by adding: 2 x 32
    # accumulated equals one batch of 64 with the same sum loss.
    def run(batch, accumulate, name):
        cfg = make_config(tmp_path, f"run.name={name}", f"data.batch_size={batch}", f"train.accumulate={accumulate}",
                          "train.epochs=1", "optim.momentum=0.0", "optim.weight_decay=0.0", "optim.lr=0.001")

        class SumLoss(ToyTask):
            loss_is_batch_sum = True

            def build_model(self):
                return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))

            def training_step(self, model, batch):
                x, y = batch
                return {"loss": torch.nn.functional.cross_entropy(model(x), y, reduction="sum")}

        return _weights(Trainer(cfg, SumLoss(cfg)).fit().last_checkpoint)

    big, acc = run(64, 1, "big"), run(32, 2, "acc")
    for key in big:
        torch.testing.assert_close(big[key], acc[key], rtol=1e-5, atol=1e-6)

def test_warmup_and_cosine_floor():
    from cvzoo.config import SchedulerConfig
    from cvzoo.engine.optim import lr_factor_fn

    cfg = SchedulerConfig(name="cosine", warmup_epochs=1, warmup_start_factor=0.1, min_lr_ratio=0.05)
    f = lr_factor_fn(cfg, total_steps=100, warmup_steps=10)
    assert f(0) == pytest.approx(0.1)
    assert f(5) == pytest.approx(0.55)
    assert f(10) == pytest.approx(1.0)
    assert f(55) == pytest.approx(0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert f(100) == pytest.approx(0.05)
    assert min(f(t) for t in range(10, 200)) >= 0.05 - 1e-12


@pytest.mark.parametrize("name", ["step", "multistep", "poly", "onecycle", "linear", "constant"])
def test_every_scheduler_builds_and_stays_positive(name):
    from cvzoo.config import SchedulerConfig
    from cvzoo.engine.optim import build_scheduler

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    cfg = SchedulerConfig(name=name, step_size=2, milestones=(2, 4), min_lr_ratio=0.01)
    sched = build_scheduler(opt, cfg, epochs=6, steps_per_epoch=5)
    lrs = []
    for _ in range(30):
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert all(lr > 0 for lr in lrs)
    if name in ("step", "multistep"):
        assert lrs[-1] == pytest.approx(0.01)  # two decays of 0.1 each


@pytest.mark.parametrize("bias_group", ["bias", "head_bias"])  # YOLO's groups with a backbone lr factor: <part>_bias
def test_yolo_style_bias_lr_and_momentum_warmup(bias_group):
    from cvzoo.config import SchedulerConfig
    from cvzoo.engine.optim import apply_warmup_overrides, build_scheduler

    weights, bias = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.SGD([{"params": [weights], "name": "weights"}, {"params": [bias], "name": bias_group}],
                          lr=0.01, momentum=0.937)
    cfg = SchedulerConfig(name="constant", warmup_epochs=1, warmup_start_factor=0.0, warmup_bias_lr=0.1,
                          warmup_momentum=0.8)
    sched = build_scheduler(opt, cfg, epochs=2, steps_per_epoch=10)
    apply_warmup_overrides(opt, sched, 10, cfg, 0.937)
    assert opt.param_groups[1]["lr"] == pytest.approx(0.1)  # bias starts high
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0)  # weights start at 0
    assert opt.param_groups[0]["momentum"] == pytest.approx(0.8)
    for _ in range(5):
        opt.step()
        sched.step()
        apply_warmup_overrides(opt, sched, 10, cfg, 0.937)
    # Half-way: half-way from 0.1 to the scheduled 0.01 (not to the warmed-up weights' lr, 0.005).
    assert opt.param_groups[1]["lr"] == pytest.approx(0.1 + (0.01 - 0.1) * 0.5)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.005)
    assert opt.param_groups[0]["momentum"] == pytest.approx(0.8 + 0.137 * 0.5)
    for _ in range(5):
        opt.step()
        sched.step()
        apply_warmup_overrides(opt, sched, 10, cfg, 0.937)
    assert opt.param_groups[1]["lr"] == pytest.approx(0.01)  # warm-up over: back on the schedule
    assert opt.param_groups[0]["momentum"] == pytest.approx(0.937)


def test_yolo_schedule_spans_warmup():
    # warmup_prefix=False (YOLO): the linear decay runs from step 0 and warm-up ramps towards it.
    from cvzoo.config import SchedulerConfig
    from cvzoo.engine.optim import lr_factor_fn

    cfg = SchedulerConfig(name="linear", warmup_epochs=1, warmup_start_factor=0.0, min_lr_ratio=0.01,
                          warmup_prefix=False)
    f = lr_factor_fn(cfg, total_steps=100, warmup_steps=10)
    lf = lambda t: 0.01 + 0.99 * (1 - t / 100)  # noqa: E731  YOLO's lf, per step
    assert f(0) == pytest.approx(0.0)
    assert f(5) == pytest.approx(0.5 * lf(5))
    assert f(10) == pytest.approx(lf(10))
    assert f(60) == pytest.approx(lf(60))
    assert f.schedule(5) == pytest.approx(lf(5))
    per_epoch = lr_factor_fn(replace(cfg, per_epoch=True), total_steps=100, warmup_steps=10, steps_per_epoch=10)
    assert per_epoch(5) == pytest.approx(0.5 * lf(0))  # the ramp moves every step, towards lf(epoch 0)
    assert per_epoch(60) == per_epoch(69) == pytest.approx(lf(60))  # held through epoch 6
    prefixed = lr_factor_fn(SchedulerConfig(name="linear", warmup_epochs=1, min_lr_ratio=0.01), 100, 10)
    assert prefixed(10) == pytest.approx(1.0) and prefixed(55) == pytest.approx(0.01 + 0.99 * 0.5)


def test_nominal_batch_accumulation_ramps_in_warmup():
    from cvzoo.engine.optim import nominal_accumulate

    # YOLOv8, nbs 64 at batch 16 with 189 warm-up iterations: round(interp(i, [0, 189], [1, 4])).
    assert [nominal_accumulate(64, 16, i, 189) for i in (0, 31, 32, 94, 95, 157, 158, 188, 189, 500)] == [
        1, 1, 2, 2, 3, 3, 4, 4, 4, 4]
    assert nominal_accumulate(64, 16, 0, 0) == 4  # no warm-up: the full accumulation from the start
    assert nominal_accumulate(64, 128, 0, 0) == 1


def _ramp_config(tmp_path, *overrides):
    # 256 samples, batch 32: 8 batches per epoch; nbs 128 -> 4 batches per step after one warm-up epoch.
    return make_config(tmp_path, "train.epochs=2", "train.nominal_batch_size=128", "scheduler.warmup_epochs=1",
                       "train.ema=true", *overrides)


def test_nominal_batch_ramp_optimizer_steps(tmp_path):
    # Warm-up batches 0-7 accumulate round(1 + 3 b / 8) = 1 1 2 2 2 3 3 4: steps after batches 0, 1, 3, 6
    # and 7 (the end of the epoch); then one step per 4 batches: 11 and 15. 7 steps in all (EMA counts them).
    config = _ramp_config(tmp_path)
    result = Trainer(config, ToyTask(config)).fit()
    assert load_checkpoint(result.last_checkpoint)["ema"]["updates"] == 7


def test_ema_decay_ramp_length_comes_from_the_config(tmp_path):
    # 7 updates with tau 2 -> decay 0.9 * (1 - e^-3.5); the default tau 2000 would leave it at 0.003.
    config = _ramp_config(tmp_path, "train.ema_decay=0.9", "train.ema_tau=2")
    result = Trainer(config, ToyTask(config)).fit()
    state = load_checkpoint(result.last_checkpoint)["ema"]
    assert state["tau"] == 2 and state["updates"] == 7
    ema = ModelEMA(torch.nn.Linear(1, 1), state["decay"], state["tau"], updates=state["updates"])
    assert ema.current_decay() == pytest.approx(0.9 * (1 - math.exp(-3.5)))


def test_interrupt_in_nominal_batch_ramp_resumes_at_window_start(tmp_path):
    config = _ramp_config(tmp_path)
    with pytest.raises(TrainingInterrupted) as info:  # batches 0-4 done; the last step followed batch 3
        Trainer(config, InterruptedAtBatch5(config)).fit()
    state = load_checkpoint(info.value.checkpoint)
    assert state["step_in_epoch"] == 4 and state["ema"]["updates"] == 3
    resume_cfg = _ramp_config(tmp_path, f"run.resume={info.value.checkpoint}")
    result = Trainer(resume_cfg, ToyTask(resume_cfg)).fit()
    assert load_checkpoint(result.last_checkpoint)["ema"]["updates"] == 7  # the same steps as uninterrupted


def test_task_memory_format_follows_train_channels_last(tmp_path):
    images = torch.randn(2, 3, 8, 8)
    on = make_config(tmp_path, "train.channels_last=true")
    converted = ToyTask(on).memory_format(images)
    assert converted.is_contiguous(memory_format=torch.channels_last) and torch.equal(converted, images)
    assert ToyTask(on).memory_format(torch.randn(4, 8)).shape == (4, 8)  # not an image batch: unchanged
    off = make_config(tmp_path)
    assert ToyTask(off).memory_format(images) is images


def test_epoch_line_shows_losses_and_the_headline_metrics():
    from cvzoo.engine.trainer import _epoch_line

    row = {"epoch": 2, "time": 1.5, "train/loss": 0.5, "val/loss": 0.6, "metrics/mAP50": 0.4,
           "metrics/APl": -1.0, "lr/pg0": 0.01}
    line = _epoch_line(row, 1.0, ("mAP50",))
    assert "train/loss=0.5" in line and "val/loss=0.6" in line and "metrics/mAP50=0.4" in line
    assert "APl" not in line and "lr/" not in line
    assert "metrics/APl=-1" in _epoch_line(row, 1.0)  # a task without headline metrics shows them all


def test_checkpoints_of_the_one_optimizer_layout_still_resume():
    """Before tasks could have several optimizers a checkpoint held the one state itself; it is the only
    optimizer's. A layout that does not fit the task's optimizers is an error naming them."""
    from cvzoo.engine.trainer import _by_name

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1)
    old = optimizer.state_dict()
    assert _by_name(old, ["model"], "optimizer", None) == {"model": old}
    assert _by_name(None, ["model"], "scaler", None) == {"model": None}
    named = {"discriminator": old, "generator": old}
    assert _by_name(named, ["discriminator", "generator"], "optimizer", None) is named
    with pytest.raises(ValueError, match=r"last.pt: its optimizer states are those of the optimizers one, unnamed; "
                                         r"this task has \['discriminator', 'generator'\]"):
        _by_name(old, ["discriminator", "generator"], "optimizer", "last.pt")


def test_accumulation_with_several_optimizers_is_an_error_naming_the_key(tmp_path):
    from tests.engine.toy_task import ToyTwoOptimizerTask

    config = make_config(tmp_path, "train.accumulate=2")
    with pytest.raises(ValueError, match="train.accumulate: gradient accumulation needs a task with one optimizer"):
        Trainer(config, ToyTwoOptimizerTask(config)).fit()


def test_without_validation_several_optimizers_keep_the_latest_epoch_as_best(tmp_path):
    """No val split and no single ``loss`` (a GAN's two losses): best.pt follows the latest epoch, rather than
    never being written."""
    from tests.engine.toy_task import ToyTwoOptimizerTask

    config = make_config(tmp_path, "train.epochs=2")
    task = ToyTwoOptimizerTask(config)
    task.build_datasets = lambda: (task.train_set, None)
    result = Trainer(config, task).fit()
    best = load_checkpoint(result.run_dir / "weights" / "best.pt")
    assert result.best_checkpoint is not None and best["epoch"] == 2


class PhasedData(torch.utils.data.Dataset):
    """Each sample carries the dataset's phase, as a loading worker's copy of the dataset sees it."""

    def __init__(self, base) -> None:
        self.base, self.phase = base, 0

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index):
        x, y = self.base[index]
        return x, y, torch.tensor(self.phase)


class PhaseChangingTask(ToyTask):
    """Changes its training data from epoch 1 on (as close-mosaic does) and records what the batches saw."""

    def __init__(self, config) -> None:
        super().__init__(config)
        self.train_set = PhasedData(self.train_set)
        self.phases_seen: dict[int, set[int]] = {}
        self.epoch = 0

    def on_epoch_start(self, epoch, train_dataset) -> bool:
        self.epoch = epoch
        before, train_dataset.phase = train_dataset.phase, int(epoch >= 1)
        return train_dataset.phase != before

    def training_step(self, model, batch):
        x, y, phase = batch
        self.phases_seen.setdefault(self.epoch, set()).update(phase.tolist())
        return super().training_step(model, (x, y))


def test_a_data_change_at_an_epoch_start_reaches_the_loading_workers(tmp_path):
    # Persistent workers keep the dataset copy they started with; without new workers for the changed
    # dataset, epoch 1 would still see phase 0 (close-mosaic would never close with data.workers > 0).
    config = make_config(tmp_path, "data.workers=2", "train.epochs=2")
    task = PhaseChangingTask(config)
    Trainer(config, task).fit()
    assert task.phases_seen == {0: {0}, 1: {1}}
