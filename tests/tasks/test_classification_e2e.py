"""train -> val -> predict -> export on the bundled Fashion-MNIST sample, through the CLI."""

import json
from pathlib import Path

import numpy as np
import pytest

from cvzoo.cli.main import main


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("cls")
    code = main([
        "train", "--model", "lenet_mnist", "--data", "fashion_mnist_sample", "--epochs", "4", "--batch", "32",
        "--lr", "0.05", "--project", str(root), "--name", "e2e", "--device", "cpu",
        "--set", "run.progress=false", "--set", "classify.augment.hflip=0.0", "--set", "scheduler.warmup_epochs=0.5",
    ])
    assert code == 0
    return root / "classify" / "e2e"


def test_train_writes_the_run_folder(trained_run):
    for name in ("args.yaml", "results.csv", "results.png", "confusion_matrix.png",
                 "confusion_matrix_normalized.png", "per_class.csv", "weights/last.pt", "weights/best.pt"):
        assert (trained_run / name).exists(), name
    header = (trained_run / "results.csv").read_text().splitlines()[0].split(",")
    assert {"epoch", "time", "train/loss", "val/loss", "metrics/top1", "metrics/top5", "lr/pg0"} <= set(header)
    from PIL import Image

    # The first training batch, 16 of 32 digits in 4 rows of 96 px cells with a caption line each, not blank.
    batch = Image.open(trained_run / "train_batch0.jpg")
    assert batch.size == (4 * 96, 4 * 110)
    assert np.asarray(batch, np.float32).std() > 20


def test_val_reaches_clearly_better_than_chance(trained_run, capsys, tmp_path):
    assert main(["val", str(trained_run / "weights/best.pt"), "--json", "--device", "cpu",
                 "--save-dir", str(tmp_path / "val")]) == 0
    from cvzoo.api import evaluate

    metrics = evaluate(trained_run / "weights/best.pt", device="cpu", save_dir=tmp_path / "val2")
    assert metrics["top1"] > 0.5  # 10 classes: chance is 0.1
    assert metrics["num_samples"] == 200
    assert (tmp_path / "val2" / "confusion_matrix.png").exists()


def test_predict_table_json_csv_and_saved_images(trained_run, tmp_path, capsys):
    from cvzoo.data.bundled import export_sample_to_folder

    folder = export_sample_to_folder(tmp_path / "fm", splits=("val",))
    images = sorted((folder / "val" / "trouser").glob("*.png"))[:3]
    assert main(["predict", str(trained_run / "weights/best.pt"), *map(str, images), "--topk", "3",
                 "--format", "json", "--save", str(tmp_path / "pred"), "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    results = json.loads(captured.out)  # stdout is the JSON alone; the note about --save goes to stderr
    assert "saved to" in captured.err
    assert len(results) == 3 and all(len(r["topk"]) == 3 for r in results)
    probs = [t["prob"] for t in results[0]["topk"]]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
    assert len(list((tmp_path / "pred").glob("*_pred.png"))) == 3
    glob_arg = str(folder / "val" / "trouser" / "*.png")
    assert main(["predict", str(trained_run / "weights/best.pt"), glob_arg, "--topk", "1", "--format", "csv",
                 "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "image,rank,class,index,prob" and len(lines) == 1 + 20


def test_a_folder_with_a_corrupt_image_and_a_video_predicts_the_rest(trained_run, tmp_path, capsys):
    from cvzoo.data.bundled import export_sample_to_folder

    folder = export_sample_to_folder(tmp_path / "fm", splits=("val",))
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for image in sorted((folder / "val" / "bag").glob("*.png"))[:2]:
        (mixed / image.name).write_bytes(image.read_bytes())
    (mixed / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (mixed / "clip.mp4").write_bytes(b"not looked at: classification predicts on images")
    assert main(["predict", str(trained_run / "weights/best.pt"), str(mixed), "--format", "json",
                 "--device", "cpu"]) == 1  # something was skipped: the exit code says so
    captured = capsys.readouterr()
    results = json.loads(captured.out)
    assert sorted(Path(r["image"]).name for r in results if "topk" in r) == sorted(
        p.name for p in mixed.glob("*.png") if p.name != "broken.png")
    errors = {Path(r["image"]).name: r["error"] for r in results if "error" in r}
    assert set(errors) == {"broken.png", "clip.mp4"}
    assert "cannot decode image" in errors["broken.png"] and "predicts on images" in errors["clip.mp4"]
    assert "skipped" in captured.err and "broken.png" in captured.err
    # Nothing predictable at all: the error itself, exit code 2.
    assert main(["predict", str(trained_run / "weights/best.pt"), str(mixed / "broken.png"), "--device", "cpu"]) == 2
    assert "cannot decode image" in capsys.readouterr().err


def test_export_onnx_matches_and_onnxruntime_backend_agrees(trained_run, tmp_path):
    from cvzoo import api

    weights = trained_run / "weights/best.pt"
    paths = api.export(weights, format="all", out=tmp_path / "model")
    assert {p.suffix for p in paths} == {".onnx", ".torchscript"}
    from cvzoo.data.bundled import export_sample_to_folder

    folder = export_sample_to_folder(tmp_path / "fm", splits=("val",))
    images = sorted((folder / "val").glob("*/*.png"))[::25]
    torch_results = api.predict(weights, images, device="cpu", topk=3)
    ort_results = api.predict(weights, images, device="cpu", topk=3, backend="onnxruntime",
                              onnx=tmp_path / "model.onnx")
    # The ONNX file alone: task, class names, size and normalisation come from its metadata.
    alone = api.predict(tmp_path / "model.onnx", images, device="cpu", topk=3)
    for a, b, c in zip(torch_results, ort_results, alone):
        assert [t["index"] for t in a["topk"]] == [t["index"] for t in b["topk"]] == [t["index"] for t in c["topk"]]
        assert [t["class"] for t in a["topk"]] == [t["class"] for t in c["topk"]]
        np.testing.assert_allclose([t["prob"] for t in a["topk"]], [t["prob"] for t in b["topk"]], atol=1e-5)
        np.testing.assert_allclose([t["prob"] for t in a["topk"]], [t["prob"] for t in c["topk"]], atol=1e-5)
    import json

    import onnx

    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "model.onnx")).metadata_props}
    assert meta["task"] == "classify" and len(json.loads(meta["names"])) == 10 and meta["imgsz"] == "28"
    assert len(json.loads(meta["mean"])) == len(json.loads(meta["std"])) == 1
    # A file without cvzoo's metadata says how to run it instead.
    stripped = onnx.load(str(tmp_path / "model.onnx"))
    del stripped.metadata_props[:]
    onnx.save(stripped, str(tmp_path / "bare.onnx"))
    with pytest.raises(ValueError, match=r"bare.onnx records no cvzoo task .*--onnx"):
        api.predict(tmp_path / "bare.onnx", images, device="cpu")


def test_flip_test_time_augmentation_averages_image_and_mirror_logits(trained_run, tmp_path):
    import torch

    from cvzoo.api import evaluate, load_trained

    plain = evaluate(trained_run / "weights/best.pt", device="cpu", plots=False)
    augmented = evaluate(trained_run / "weights/best.pt", device="cpu", plots=False, augment=True)
    assert augmented["num_samples"] == plain["num_samples"] == 200
    assert augmented["top1"] > 0.5
    task, model, _ = load_trained(trained_run / "weights/best.pt")
    task.augment = True
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        expected = (model(x) + model(x.flip(-1))) / 2
        torch.testing.assert_close(task._logits(model, x), expected)
        # A mirror-symmetric input gives the plain logits.
        symmetric = x + x.flip(-1)
        torch.testing.assert_close(task._logits(model, symmetric), model(symmetric), rtol=1e-5, atol=1e-5)


def test_detection_only_options_are_clear_errors(trained_run, tmp_path, capsys):
    weights = str(trained_run / "weights/best.pt")
    assert main(["export", weights, "--nms", "--out", str(tmp_path / "m")]) == 2
    assert "'classify' task has no NMS" in capsys.readouterr().err


def test_missing_source_and_unknown_model_are_one_line_errors(tmp_path, capsys):
    code = main(["train", "--model", "resnet1", "--data", "fashion_mnist_sample", "--epochs", "1",
                 "--project", str(tmp_path), "--set", "run.progress=false"])
    assert code == 2
    err = capsys.readouterr().err
    assert "unknown model 'resnet1'" in err and "resnet18" in err
    code = main(["predict", str(tmp_path / "missing.pt"), "x.png"])
    assert code == 2 and "missing.pt" in capsys.readouterr().err


def test_yaml_recipe_rejects_unknown_key(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model:\n  name: lenet_mnist\noptim:\n  learning_rate: 0.1\n")
    assert main(["train", "--config", str(recipe), "--project", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "r.yaml" in err and "optim.learning_rate" in err


def test_val_augment_switches_tta_on_for_training_validation_or_fails_early(tmp_path):
    from cvzoo.api import build_config
    from cvzoo.engine.trainer import Trainer

    common = ["run.progress=false", f"run.project={tmp_path}", "train.val_augment=true"]
    cfg = build_config(overrides=["task=classify", "model.name=lenet_mnist", "data.source=fashion_mnist_sample",
                                  *common])
    assert Trainer(cfg).task.augment is True
    cfg = build_config(overrides=["task=segment", "model.name=unet", *common])
    with pytest.raises(ValueError, match="'segment' task"):
        Trainer(cfg)
