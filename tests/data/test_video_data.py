"""Video clips: frame folders and video files, temporal sampling, the generated motion set, bad input."""

from __future__ import annotations

import sys
import warnings

import numpy as np
import pytest
import torch

from cvzoo.cli.main import main
from cvzoo.data.augment.video import ClipTransform
from cvzoo.data.datasets.video import (
    ClipTooShortError,
    VideoClipDataset,
    VideoSource,
    clip_starts,
    generated_source,
    video_folder_split,
)
from cvzoo.data.images import CorruptVideoError, DatasetError
from cvzoo.data.synthetic_video import MOTIONS, MotionConfig, generate_clips, write_motion_dataset
from cvzoo.data.video import count_frames, read_clip, require_av, write_video


@pytest.fixture(scope="module")
def frames_root(tmp_path_factory):
    # 8 train + 8 val clips: one of each motion per split.
    return write_motion_dataset(tmp_path_factory.mktemp("frames"), 8, 8, format="frames")


@pytest.fixture(scope="module")
def mp4_root(tmp_path_factory):
    return write_motion_dataset(tmp_path_factory.mktemp("mp4"), 8, 8, format="mp4")


def test_generated_clips_are_deterministic_balanced_and_split_apart():
    clips, labels = generate_clips(16, "train", seed=3)
    again, _ = generate_clips(16, "train", seed=3)
    assert clips.shape == (16, 8, 32, 32) and clips.dtype == np.uint8
    np.testing.assert_array_equal(clips, again)
    assert np.bincount(labels).tolist() == [2] * len(MOTIONS)
    assert not np.array_equal(clips, generate_clips(16, "train", seed=4)[0])
    assert not np.array_equal(clips, generate_clips(16, "val", seed=3)[0])


def _centroid_and_ink(clip: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    weights = clip.astype(np.float64)
    ink = weights.sum((1, 2))
    ys, xs = np.mgrid[: clip.shape[1], : clip.shape[2]]
    return (weights * xs).sum((1, 2)) / ink, (weights * ys).sum((1, 2)) / ink, ink


def test_each_class_is_the_motion_it_names():
    clips, labels = generate_clips(32, "val", MotionConfig(), seed=0)
    for clip, label in zip(clips, labels):
        x, y, ink = _centroid_and_ink(clip)
        motion = MOTIONS[label]
        dx, dy, growth = x[-1] - x[0], y[-1] - y[0], ink[-1] / ink[0]
        if motion in ("left", "right"):
            assert (dx > 5) == (motion == "right") and abs(dx) > 5 and abs(dy) < 1.5, (motion, dx, dy)
        elif motion in ("up", "down"):
            assert (dy > 5) == (motion == "down") and abs(dy) > 5 and abs(dx) < 1.5, (motion, dx, dy)
        elif motion.startswith("zoom"):
            assert (growth > 1.5) if motion == "zoom_in" else (growth < 1 / 1.5), (motion, growth)
        else:  # rotation about the item's centre (not its centre of mass): it stays near and keeps its size
            assert abs(dx) < 3 and abs(dy) < 3 and 0.7 < growth < 1.4, (motion, dx, dy, growth)


def test_frame_folder_layout_and_uniform_val_clips(frames_root):
    source = video_folder_split(frames_root, "val")
    assert source.classes == sorted(MOTIONS) and len(source.items) == 8
    assert source.probe() == ("L", 32)
    dataset = VideoClipDataset(source, frames=3, stride=2, clips_per_video=2, mode="L")
    assert len(dataset) == 16 and dataset.span == 5
    assert dataset.starts(0) == [0, 3]  # evenly spaced over 8 frames: first at 0, last at 8 - 5
    clip, label, video = dataset[1]
    assert clip.shape == (1, 3, 32, 32) and clip.dtype == torch.uint8 and (label, video) == (source.labels[0], 0)
    expected = read_clip(source.items[0], [3, 5, 7], "L")  # the second clip: frames 3, 5, 7
    np.testing.assert_array_equal(clip.permute(1, 2, 3, 0).numpy(), expected)


def test_random_train_clips_stay_inside_the_video():
    source = generated_source("train", 8, frames=10)
    dataset = VideoClipDataset(source, frames=4, stride=2, train=True, clips_per_video=5, mode="L")
    assert len(dataset) == 8  # one clip per video and epoch when training
    torch.manual_seed(0)
    starts = set()
    for _ in range(30):
        clip, _, _ = dataset[0]
        frames = clip.permute(1, 2, 3, 0).numpy()
        start = next(s for s in range(4) if np.array_equal(frames, source.arrays[0][s:s + 7:2]))
        starts.add(start)
    assert starts == {0, 1, 2, 3}  # every start that fits (10 frames, span 7) is drawn


def test_clip_transform_shapes_and_normalisation():
    frames = torch.full((4, 20, 30, 3), 255, dtype=torch.uint8)
    clip = ClipTransform(16, [0.5, 0.5, 0.5], [0.25, 0.25, 0.25])(frames)
    assert clip.shape == (3, 4, 16, 16)
    torch.testing.assert_close(clip, torch.full_like(clip, 2.0))
    with pytest.raises(ValueError, match=r"uint8 \[T, H, W, C\]"):
        ClipTransform(16, [0.5], [0.5])(frames.float())


def test_video_files_decode_like_their_frames(frames_root, mp4_root):
    video = sorted((mp4_root / "val" / "left").iterdir())[0]
    folder = sorted((frames_root / "val" / "left").iterdir())[0]
    assert count_frames(video) == count_frames(folder) == 8
    decoded, exact = read_clip(video, None, "L").astype(float), read_clip(folder, None, "L").astype(float)
    assert decoded.shape == exact.shape == (8, 32, 32, 1)
    assert np.abs(decoded - exact).mean() < 4  # H.264 is lossy, but the frames are the same frames
    source = video_folder_split(mp4_root, "train")
    batch = torch.utils.data.default_collate([VideoClipDataset(source, 8, mode="RGB")[i] for i in range(2)])
    assert batch[0].shape == (2, 3, 8, 32, 32)


def test_undecodable_video_is_named_skipped_and_counted(mp4_root, tmp_path):
    bad = mp4_root / "train" / "left" / "broken.mp4"
    bad.write_bytes(b"not a video at all" * 10)
    try:
        source = video_folder_split(mp4_root, "train")
        with pytest.warns(UserWarning) as record:
            dataset = VideoClipDataset(source, frames=4)
        messages = [str(w.message) for w in record]
        assert any("broken.mp4" in m and "skipping video" in m for m in messages)
        assert any(f"left out 1 of {len(source.items)} videos" in m for m in messages)
        assert len(dataset) == len(source.items) - 1 and [s[0] for s in dataset.skipped] == [str(bad)]
        with pytest.raises(CorruptVideoError, match="broken.mp4"):
            VideoClipDataset(source, frames=4, strict=True)
        first_broken = VideoSource([bad, *source.items], [0, *source.labels], source.classes)
        assert first_broken.probe() == ("L", 32)  # the task's probe passes over it; the dataset reports it
    finally:
        bad.unlink()


def test_short_videos_say_so(frames_root):
    source = video_folder_split(frames_root, "val")
    with pytest.raises(ClipTooShortError, match=r"8 frames, shorter than one clip of 5 frames 2 apart \(9 frames\)"):
        VideoClipDataset(source, frames=5, stride=2)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        with pytest.raises(DatasetError, match="no usable video among the 8"):
            VideoClipDataset(source, frames=5, stride=2, short="skip")
    assert sum("shorter than one clip" in str(w.message) for w in record) == 8
    assert any("left out 8 of 8 videos" in str(w.message) for w in record)


def test_missing_pyav_names_the_package(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "av", None)  # import av -> ImportError
    with pytest.raises(ImportError, match=r"pip install 'cvzoo\[video\]'"):
        require_av()
    with pytest.raises(ImportError, match="PyAV"):
        write_video(tmp_path / "x.mp4", np.zeros((2, 8, 8), np.uint8))


def test_cli_synth_video_writes_the_layout(tmp_path, capsys):
    out = tmp_path / "moving"
    assert main(["data", "synth-video", str(out), "--train", "8", "--val", "8", "--frames", "4"]) == 0
    assert sorted(p.name for p in (out / "train").iterdir()) == sorted(MOTIONS)
    assert count_frames(out / "val" / "zoom_in" / "clip_000006") == 4
    assert main(["data", "synth-video", str(out)]) == 2  # an existing folder is refused


def test_clip_starts_edge_cases():
    assert clip_starts(10, 10, 3) == [0, 0, 0]
    assert clip_starts(11, 5, 1) == [3]
