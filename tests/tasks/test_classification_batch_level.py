"""The batch-level augmentation path of the classification task and the engine's torch.compile switch."""

import torch

from cvzoo.config import Config, apply_overrides
from cvzoo.data.augment.classify import SmallImageTransform
from cvzoo.engine.trainer import Trainer
from cvzoo.tasks.classification import ClassificationTask


def _config(tmp_path, *overrides):
    base = [
        f"run.project={tmp_path}", "run.name=b", "run.progress=false", "run.tensorboard=false", "run.plots=false",
        "data.source=fashion_mnist_sample", "data.batch_size=50", "data.workers=0", "model.name=lenet_mnist",
        "train.epochs=1", "train.device=cpu",
    ]
    return apply_overrides(Config(), base + list(overrides))


def test_in_memory_small_images_load_as_uint8_batches_and_train(tmp_path):
    task = ClassificationTask(_config(tmp_path))
    train, val = task.build_datasets()
    image, _ = train[0]
    assert image.dtype == torch.uint8 and list(image.shape) == [1, 28, 28]
    assert task.batch_train_transform is not None and task.batch_eval_transform is not None
    assert task.batch_train_transform.padding == 4  # round(28 / 8), as the per-sample preset
    model = task.build_model()
    batch = (torch.stack([train[i][0] for i in range(8)]), torch.tensor([train[i][1] for i in range(8)]))
    out = task.training_step(model, batch)
    assert out["loss"].ndim == 0 and torch.isfinite(out["loss"])
    out["loss"].backward()
    assert all(p.grad is not None for p in model.parameters())


def test_batch_level_validation_equals_the_per_sample_eval_transform(tmp_path):
    task = ClassificationTask(_config(tmp_path))
    _, val = task.build_datasets()
    images = torch.stack([val[i][0] for i in range(16)])
    per_sample = SmallImageTransform(28, task.mean, task.std, 1, padding=0, hflip=0.0, random=False)
    expected = torch.stack([per_sample(img) for img in images])
    torch.testing.assert_close(task._to_float(images, train=False), expected, rtol=0, atol=1e-6)


def test_padding_option_reaches_both_paths(tmp_path):
    task = ClassificationTask(_config(tmp_path, "classify.augment.padding=2"))
    task.build_datasets()
    assert task.batch_train_transform.padding == 2
    task = ClassificationTask(_config(tmp_path, "classify.augment.padding=2", "classify.augment.randaugment=true"))
    train, _ = task.build_datasets()
    assert task.batch_train_transform is None
    image, _ = train[0]
    assert image.dtype == torch.float32  # per-sample pipeline: RandAugment is not batch-level


def test_uint8_batch_without_batch_level_dataset_is_a_clear_error(tmp_path):
    task = ClassificationTask(_config(tmp_path, "classify.augment.color_jitter=0.2"))
    task.build_datasets()
    try:
        task._to_float(torch.zeros(2, 1, 28, 28, dtype=torch.uint8), train=True)
    except RuntimeError as exc:
        assert "batch-level" in str(exc)
    else:
        raise AssertionError("expected a RuntimeError")


def test_train_compile_wraps_the_training_model(tmp_path, monkeypatch):
    calls = []

    def fake_compile(model, *args, **kwargs):
        calls.append(type(model).__name__)
        return model

    monkeypatch.setattr(torch, "compile", fake_compile)
    config = _config(tmp_path, "train.compile=true", "data.limit_train=100", "data.limit_val=50")
    result = Trainer(config, ClassificationTask(config)).fit()
    assert calls == ["LeNet"]
    assert result.last_checkpoint.exists()
