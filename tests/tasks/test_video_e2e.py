"""``--task video`` end to end on tiny generated clips: train -> val -> predict (frame folders, video files)
-> export, and the video-level evaluator on hand-made numbers."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cvzoo.api import evaluate, export, predict, train
from cvzoo.cli.main import main
from cvzoo.data.synthetic_video import MOTIONS, write_motion_dataset
from cvzoo.data.video import write_video
from cvzoo.tasks.video import VideoEvaluator


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_motion_dataset(tmp_path_factory.mktemp("moving"), 16, 8, format="frames")


@pytest.fixture(scope="module")
def run(dataset, tmp_path_factory):
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny batches: a second thread only adds barriers on a busy 2-core machine
    try:
        result = train(task="video", model="cnn_gru", data=str(dataset), epochs=1, batch=8, workers=0,
                       project=str(tmp_path_factory.mktemp("runs")), overrides=[
                           "model.backbone=lenet", "video.frames=6", "video.stride=1", "video.clips_per_video=2",
                           "run.tensorboard=false", "run.progress=false"])
    finally:
        torch.set_num_threads(previous)
    return result


def test_train_logs_clip_and_video_level_metrics(run):
    last = run.history[-1]
    for key in ("train/loss", "val/loss", "metrics/top1", "metrics/top5", "metrics/video_top1"):
        assert np.isfinite(last[key]), key
    assert last["metrics/num_samples"] == 16 and last["metrics/num_videos"] == 8  # 8 val videos x 2 clips
    assert (run.run_dir / "confusion_matrix.png").is_file() and (run.run_dir / "per_class.csv").is_file()
    checkpoint = torch.load(run.best_checkpoint, weights_only=False)
    assert checkpoint["extras"]["frames"] == 6 and checkpoint["extras"]["classes"] == sorted(MOTIONS)


def test_val_reproduces_the_last_validation(run):
    metrics = evaluate(run.last_checkpoint, device="cpu", plots=False, save_dir=run.run_dir / "val")
    assert metrics["video_top1"] == pytest.approx(run.history[-1]["metrics/video_top1"])
    assert metrics["top1"] == pytest.approx(run.history[-1]["metrics/top1"])


def test_predict_frame_folders_and_video_files(run, dataset, tmp_path, capsys):
    from PIL import Image

    folder = dataset / "val" / "up"
    clip = sorted(folder.iterdir())[0]
    frames = np.stack([np.asarray(Image.open(p)) for p in sorted(clip.iterdir())])
    video = write_video(tmp_path / "up.mp4", frames)
    short = write_video(tmp_path / "short.mp4", frames[:2])
    results = predict(run.best_checkpoint, [clip, folder, video, short], device="cpu", topk=len(MOTIONS))
    ok = [r for r in results if "error" not in r]
    assert [r["image"] for r in ok] == [str(clip), str(clip), str(video)]  # the folder lists its clip folders
    for result in ok:
        assert sorted(t["class"] for t in result["topk"]) == sorted(MOTIONS)
        assert sum(t["prob"] for t in result["topk"]) == pytest.approx(1, abs=1e-5)
    # The frame folder and its video hold the same frames (H.264 changes them by a few grey levels).
    from_frames = {t["class"]: t["prob"] for t in ok[0]["topk"]}
    from_video = {t["class"]: t["prob"] for t in ok[2]["topk"]}
    assert max(abs(from_frames[c] - from_video[c]) for c in MOTIONS) < 0.05
    assert results[-1]["image"] == str(short) and "2 frames, shorter than one clip of 6 frames" in results[-1]["error"]
    assert main(["predict", str(run.best_checkpoint), str(clip), "--format", "json", "--device", "cpu"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["rows"][0]["video"] == str(clip)


def test_export_onnx_matches(run):
    (path,) = export(run.best_checkpoint, format="onnx")  # checked against the torch model in onnxruntime
    assert path.suffix == ".onnx" and path.stat().st_size > 0


def test_a_classifier_as_model_name_says_where_it_goes():
    from cvzoo.api import build_config
    from cvzoo.config import ConfigError

    with pytest.raises(ConfigError, match=r"model.name: 'lenet' is a classify model, not a video model.*"
                                          r"model.backbone=lenet"):
        build_config(task="video", model="lenet")
    with pytest.raises(ConfigError, match="model.backbone: .*r3d_18"):
        build_config(task="video", model="r3d_18", overrides=["model.backbone=lenet"])


def test_video_evaluator_averages_clips_per_video():
    evaluator = VideoEvaluator(3, ["a", "b", "c"])
    # Video 0 (label 0): clip 1 wrong but confident-ish, clip 2 right and sure -> the video is right.
    logits = torch.log(torch.tensor([[0.3, 0.6, 0.1], [0.9, 0.05, 0.05], [0.2, 0.3, 0.5], [0.1, 0.8, 0.1]]))
    evaluator.update(logits[:2], (None, torch.tensor([0, 0]), torch.tensor([0, 0])))
    other = VideoEvaluator(3, ["a", "b", "c"])  # video 1 (label 2) split over two ranks: wrong either way
    other.update(logits[2:], (None, torch.tensor([2, 2]), torch.tensor([1, 1])))
    evaluator.load_states([evaluator.state(), other.state()])
    metrics = evaluator.compute()
    assert metrics["top1"] == pytest.approx(2 / 4)  # clips: 0 wrong, 1 right, 2 right, 3 wrong
    assert metrics["video_top1"] == pytest.approx(1 / 2) and metrics["num_videos"] == 2
