"""train -> val -> predict of the gan task on the bundled Fashion-MNIST sample, tiny networks, through the CLI."""

import csv
from pathlib import Path

import pytest

from cvzoo.api import build_config, evaluate, export, predict
from cvzoo.cli.main import main
from cvzoo.config import Config, ConfigError, apply_overrides
from cvzoo.engine.checkpoint import load_checkpoint

COMMON = ["--device", "cpu", "--set", "run.progress=false", "--set", "data.workers=0"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A small classifier (the FID features and the accuracy judge), then a conditional DCGAN judged by it."""
    root = tmp_path_factory.mktemp("gan")
    assert main(["train", "--model", "lenet_mnist", "--data", "fashion_mnist_sample", "--epochs", "1", "--batch",
                 "32", "--project", str(root), "--name", "judge", "--set", "run.plots=false",
                 "--set", "run.tensorboard=false", "--set", "data.limit_train=256", *COMMON]) == 0
    judge = root / "classify" / "judge" / "weights" / "best.pt"
    assert main(["train", "--task", "gan", "--model", "cdcgan_28", "--data", "fashion_mnist_sample", "--epochs", "2",
                 "--batch", "32", "--project", str(root), "--name", "e2e", "--set", "data.limit_train=128",
                 "--set", "data.limit_val=60", "--set", "model.kwargs={width: 8, latent_dim: 16}",
                 "--set", f"gan.features={judge}", *COMMON]) == 0
    return root / "gan" / "e2e"


def test_train_alternates_two_optimizers_and_writes_sample_grids(runs):
    with (runs / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2
    for key in ("train/discriminator_loss", "train/generator_loss", "lr/generator_pg0", "lr/discriminator_pg0",
                "metrics/fid", "metrics/kid", "metrics/cas"):
        assert key in rows[0], key
    assert float(rows[0]["lr/generator_pg0"]) == pytest.approx(2e-4)  # DCGAN's recipe, constant
    assert 0 <= float(rows[-1]["metrics/cas"]) <= 1 and float(rows[-1]["metrics/fid"]) > 0
    assert (runs / "samples" / "epoch1.png").exists() and (runs / "samples" / "epoch2.png").exists()
    assert (runs / "samples.png").exists() and list(runs.glob("events.out.tfevents.*"))
    state = load_checkpoint(runs / "weights" / "last.pt")
    assert set(state["optimizer"]) == {"discriminator", "generator"}
    assert state["optimizer"]["generator"]["param_groups"][0]["betas"] == (0.5, 0.999)
    # best.pt is the epoch of the lowest FID, with the generator's EMA weights.
    fids = [float(row["metrics/fid"]) for row in rows]
    assert load_checkpoint(runs / "weights" / "best.pt")["epoch"] == 1 + fids.index(min(fids))


def test_val_reports_fid_and_predict_generates(runs, tmp_path):
    metrics = evaluate(runs / "weights" / "best.pt", device="cpu", save_dir=tmp_path / "val")
    assert metrics["fid"] > 0 and "kid" in metrics and "cas" in metrics
    assert (tmp_path / "val" / "samples.png").exists()
    results = predict(runs / "weights" / "best.pt", [], device="cpu", save_dir=tmp_path / "out", samples=6)
    assert len(results) == 6 and all(r["class"] for r in results)
    for name in ("samples.png", "class_grid.png", "interpolation.png", "sample_0005.png"):
        assert (tmp_path / "out" / name).exists(), name
    with pytest.raises(ValueError, match="generates images and takes no source"):
        predict(runs / "weights" / "best.pt", ["x.png"], device="cpu")
    with pytest.raises(ValueError, match="exporting a GAN checkpoint .* is not available yet"):
        export(runs / "weights" / "best.pt", out=tmp_path / "gan.onnx")


def test_recipes_and_a_missing_optimizer_setting():
    wgan = build_config(overrides=["task=gan", "model.name=wgan_gp_32"])
    assert (wgan.gan.n_critic, wgan.gan.generator.lr, wgan.gan.discriminator.betas) == (5, 1e-4, (0.0, 0.9))
    assert wgan.data.img_size == 32
    dcgan = build_config(overrides=["task=gan"])
    assert (dcgan.gan.n_critic, dcgan.gan.discriminator.lr, dcgan.gan.generator.betas) == (1, 2e-4, (0.5, 0.999))
    # A config built without the model's recipe that sets only the generator's optimizer.
    half = apply_overrides(Config(), ["task=gan", "model.name=dcgan_28", "gan.generator.lr=0.0002",
                                      "gan.generator.betas=[0.5, 0.999]"])
    from cvzoo.tasks import build_task

    with pytest.raises(ConfigError, match=r"gan\.discriminator\.lr: not set"):
        build_task(half)
    # The run-wide optimizer settings (--lr) would be unused: an error pointing to the GAN's own.
    with pytest.raises(ConfigError, match=r"optim\.lr: the gan task does not read it; .* gan\.generator\.\*"):
        build_task(build_config(overrides=["task=gan", "optim.lr=0.001"]))


def test_predict_without_source_on_a_classifier_says_what_is_missing(runs):
    judge = Path(runs).parents[1] / "classify" / "judge" / "weights" / "best.pt"
    with pytest.raises(ValueError, match="no images given"):
        predict(judge, [], device="cpu")


def test_slerp_runs_along_the_great_circle():
    import torch

    from cvzoo.tasks.gan import slerp

    a, b = torch.tensor([2.0, 0.0]), torch.tensor([0.0, 2.0])
    path = slerp(a, b, 5)
    torch.testing.assert_close(path[0], a)
    torch.testing.assert_close(path[-1], b)
    torch.testing.assert_close(path.norm(dim=1), torch.full((5,), 2.0))  # a straight line would dip to 1.41
    torch.testing.assert_close(path[2], torch.tensor([2 ** 0.5, 2 ** 0.5]))
