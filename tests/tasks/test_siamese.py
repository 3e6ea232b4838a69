import numpy as np
import pytest
import torch

from cvzoo.data.datasets.pairs import sample_pairs, sample_triplets
from cvzoo.metrics.verification import retrieval_topk, verification_metrics


def test_pairs_are_balanced_and_correctly_labelled():
    labels = np.repeat(np.arange(5), 7)
    pairs, same = sample_pairs(labels, 200, seed=3)
    assert same.sum() == 100
    assert np.all((labels[pairs[:, 0]] == labels[pairs[:, 1]]) == same)
    assert np.all(pairs[:, 0] != pairs[:, 1])
    again, _ = sample_pairs(labels, 200, seed=3)
    np.testing.assert_array_equal(pairs, again)


def test_triplets_have_positive_and_negative():
    labels = np.repeat(np.arange(4), 5)
    t = sample_triplets(labels, 50, seed=0)
    assert np.all(labels[t[:, 0]] == labels[t[:, 1]]) and np.all(labels[t[:, 0]] != labels[t[:, 2]])
    assert np.all(t[:, 0] != t[:, 1])


def test_verification_metrics_match_sklearn_and_hand_values():
    from sklearn.metrics import roc_auc_score, roc_curve

    rng = np.random.default_rng(0)
    same = rng.random(400) < 0.5
    distances = np.where(same, rng.normal(0.8, 0.3, 400), rng.normal(1.4, 0.3, 400))
    m = verification_metrics(same, distances)
    assert m["auc"] == pytest.approx(roc_auc_score(same, -distances), abs=1e-12)
    fpr, tpr, _ = roc_curve(same, -distances)
    fnr = 1 - tpr
    i = np.argmin(np.abs(fnr - fpr))
    assert abs(m["eer"] - (fpr[i] + fnr[i]) / 2) < 0.01
    best = max(((distances <= t) == same).mean() for t in np.unique(distances))
    assert m["accuracy"] == pytest.approx(best)
    # Perfect separation: AUC 1, EER 0, accuracy 1.
    perfect = verification_metrics(np.array([1, 1, 0, 0], bool), np.array([0.1, 0.2, 0.8, 0.9]))
    assert perfect == {"auc": 1.0, "eer": 0.0, "accuracy": 1.0, "threshold": pytest.approx(0.2)}


def test_retrieval_recall_at_k():
    emb = np.array([[0.0], [0.1], [5.0], [5.2], [0.15]])
    labels = np.array([0, 0, 1, 1, 1])
    r = retrieval_topk(emb, labels, ks=(1, 2))
    # item 1's nearest is item 4 (other label), its second item 0 (same): miss at k=1, hit at k=2;
    # item 4's two nearest (items 1 and 0) both have the other label: miss at both.
    assert r["recall@1"] == pytest.approx(3 / 5) and r["recall@2"] == pytest.approx(4 / 5)


def test_siamese_task_trains_and_separates_heldout_classes(tmp_path):
    from cvzoo.config import Config, apply_overrides
    from cvzoo.engine.trainer import Trainer

    torch.manual_seed(0)
    config = apply_overrides(Config(), [
        "task=siamese", "model.name=lenet_mnist", "data.source=fashion_mnist_sample", "data.batch_size=64",
        "train.epochs=3", "optim.lr=0.05", "train.device=cpu", f"run.project={tmp_path}", "run.progress=false",
        "run.tensorboard=false", "siamese.heldout_classes=[1, 8]", "siamese.eval_pairs=1000",
    ])
    result = Trainer(config).fit()
    # trousers vs bags (never seen in training): clearly separable by a useful embedding.
    assert result.metrics["metrics/auc"] > 0.8
    assert result.metrics["metrics/num_samples"] == 40


def _tiny_mnist_json(root, per_digit=10):
    import json

    rng = np.random.default_rng(0)
    digits = root / "package" / "src" / "digits"
    digits.mkdir(parents=True)
    for digit in range(10):
        pixels = rng.integers(0, 256, (per_digit, 28, 28)) * (rng.random((per_digit, 28, 28)) < 0.2)
        (digits / f"{digit}.json").write_text(json.dumps({"data": (pixels / 255).round(3).ravel().tolist()}))
    return root / "package"


def test_siamese_supcon_two_views_and_affine_augmentation_on_mnist_json(tmp_path):
    from cvzoo.config import Config, apply_overrides
    from cvzoo.engine.trainer import Trainer
    from cvzoo.tasks import build_task

    source = _tiny_mnist_json(tmp_path)
    overrides = [
        "task=siamese", "model.name=lenet_mnist", f"data.source={source}", "data.batch_size=16", "data.workers=0",
        "siamese.augment.hflip=0", "siamese.augment.degrees=10", "siamese.augment.shear=10",
        "siamese.augment.affine_scale=0.1",
        "siamese.loss=supcon", "siamese.temperature=0.2", "siamese.instance_weight=0.5", "siamese.eval_pairs=100",
        "train.epochs=1",
        "train.device=cpu", f"run.project={tmp_path / 'runs'}", "run.progress=false", "run.tensorboard=false",
        "run.plots=false",
    ]
    config = apply_overrides(Config(), overrides)
    task = build_task(config)
    train, val = task.build_datasets()
    # 10 images per digit, 2 of each to val (the fixed 0.2 split); digits 7-9 held out of training.
    assert len(train) == 7 * 8 and len(val) == 3 * 2
    image, label = train[0]
    assert image.shape == (2, 1, 28, 28) and image.dtype == torch.float32 and label < 7  # two views
    batch = (torch.stack([train[i][0] for i in range(8)]), torch.tensor([train[i][1] for i in range(8)]))
    out = task.training_step(task.build_model(), batch)
    assert torch.isfinite(out["loss"]) and out["loss"].requires_grad
    assert out["loss"].item() == pytest.approx(out["class_loss"].item() + 0.5 * out["instance_loss"].item(), rel=1e-5)
    result = Trainer(config).fit()
    assert result.metrics["metrics/num_samples"] == 6
    assert 0.0 <= result.metrics["metrics/auc"] <= 1.0


def test_siamese_batch_augmentation_follows_the_config():
    import torch.nn.functional as F

    from cvzoo.config import Config, apply_overrides
    from cvzoo.tasks import build_task

    def task_with(*overrides):
        task = build_task(apply_overrides(Config(), ["task=siamese", "siamese.augment.degrees=0", *overrides]))
        task.mean, task.std = [0.1307], [0.3081]
        return task

    images = torch.rand(4, 1, 28, 28)
    assert torch.equal(task_with()._augment_batch(images), images)  # nothing asked: untouched
    torch.manual_seed(0)
    dilated = task_with("siamese.augment.dilate=1")._augment_batch(images)
    assert torch.equal(dilated, F.max_pool2d(images, 3, stride=1, padding=1))
    elastic = task_with("siamese.augment.elastic_alpha=34", "siamese.augment.elastic_sigma=4")._augment_batch(images)
    assert elastic.shape == images.shape and (elastic - images).abs().mean() > 0.05


def test_a_siamese_run_trains_and_validates_on_the_limited_images(tmp_path):
    """``data.limit_train`` / ``data.limit_val`` cap the images (each class's first in turn), as in the other
    tasks: 14 of the 56 training digits 0-6 (2 of each), 5 of the 6 held-out 7-9."""
    from cvzoo.config import Config, apply_overrides
    from cvzoo.engine.trainer import Trainer

    config = apply_overrides(Config(), [
        "task=siamese", "model.name=lenet_mnist", f"data.source={_tiny_mnist_json(tmp_path)}", "data.batch_size=8",
        "data.workers=0", "data.limit_train=14", "data.limit_val=5", "siamese.eval_pairs=20", "train.epochs=1",
        "train.device=cpu", f"run.project={tmp_path / 'runs'}", "run.progress=false", "run.tensorboard=false",
        "run.plots=false",
    ])
    trainer = Trainer(config)
    lines: list[str] = []
    trainer.log = lines.append
    result = trainer.fit()
    assert any(": train 14, val 5;" in line for line in lines), lines
    assert result.metrics["metrics/num_samples"] == 5
