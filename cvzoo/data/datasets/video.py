"""Video classification datasets: clips of ``T`` frames sampled from videos in the UCF101 / Kinetics layout.

Layout (``build_video_dataset``)::

    root/train/<class>/<clip>        a clip: a video file (.mp4, .avi, ...) or a folder of frame images
    root/val/<class>/<clip>          (``val``, ``valid``, ``validation`` or ``test``)

or ``"moving_fashion"``: the motion clips of ``cvzoo.data.synthetic_video`` generated in memory.

Temporal sampling (Simonyan & Zisserman 2014 and Feichtenhofer et al. 2019 sample this way): a clip is
``frames`` frames ``stride`` apart, i.e. it spans ``(frames - 1) * stride + 1`` frames of its video.

* ``train=True``: one clip per video and epoch, its start drawn uniformly (``torch.randint``, so the
  engine's seeding and resume cover it);
* ``train=False``: ``clips_per_video`` clips whose starts are evenly spaced over the video, always the
  same ones; item ``i`` is clip ``i % clips_per_video`` of video ``i // clips_per_video``, and each item
  carries its video's index so that an evaluator can average a video's clips (video-level accuracy).

Items are ``(clip, label, video_index)`` with ``clip`` float32 ``[C, T, H, W]`` from the transform (uint8
``[C, T, H, W]`` without one), so the default collate gives ``[B, C, T, H, W]`` batches.

Bad input: every video is opened once when the dataset is built (its frame count is needed to sample).
A video that cannot be decoded is a warning naming it and is left out, and one closing warning counts what
was left out (``strict=True``: ``CorruptVideoError`` instead). A video shorter than one clip is an error
naming it, its length and the span needed (``short="skip"``: left out with a warning and counted the same way).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from cvzoo.data.formats.image_folder import find_classes, find_val_dir
from cvzoo.data.images import CorruptVideoError, DatasetError, MissingDataError
from cvzoo.data.video import count_frames, is_clip_source, read_clip


class ClipTooShortError(CorruptVideoError):
    """A video with fewer frames than one clip spans (names the file, its length and the span needed).

    A ``CorruptVideoError`` for the callers that skip unusable videos (``cvzoo predict`` lists it as skipped).
    """

    def __init__(self, path: str | Path, length: int, frames: int, stride: int) -> None:
        self.path, self.length, self.frames, self.stride = str(path), length, frames, stride
        self.reason = (f"{length} frames, shorter than one clip of {frames} frames {stride} apart "
                       f"({clip_span(frames, stride)} frames)")
        DatasetError.__init__(self, f"{self.path}: {self.reason}")

    def __reduce__(self):
        return (type(self), (self.path, self.length, self.frames, self.stride))


def clip_span(frames: int, stride: int) -> int:
    """Frames of the video that one clip of ``frames`` frames ``stride`` apart covers."""
    return (frames - 1) * stride + 1


def clip_starts(length: int, span: int, count: int) -> list[int]:
    """``count`` start frames evenly spaced over a video of ``length`` frames (first at 0, last at
    ``length - span``; one clip is centred)."""
    if count == 1:
        return [(length - span) // 2]
    return np.linspace(0, length - span, count).round().astype(int).tolist()


@dataclass
class VideoSource:
    """Where the clips of one split come from: ``items`` (paths, or indices into ``arrays``), their labels,
    the class names and how to read a clip."""

    items: list[Any]
    labels: list[int]
    classes: list[str]
    arrays: np.ndarray | None = None  # in-memory clips uint8 [N, T, H, W, C]

    @property
    def targets(self) -> list[int]:
        return self.labels

    def count(self, item: Any) -> int:
        return self.arrays.shape[1] if self.arrays is not None else count_frames(item)

    def read(self, item: Any, indices: Sequence[int], mode: str) -> np.ndarray:
        if self.arrays is not None:
            frames = self.arrays[item][list(indices)]
            return np.repeat(frames, 3, axis=-1) if mode == "RGB" and frames.shape[-1] == 1 else frames
        return read_clip(item, indices, mode)

    def probe(self) -> tuple[str, int]:
        """``(mode, side)`` of the first decodable frame of the clips: ``"L"`` when it is grey (equal
        channels) else ``"RGB"``, and its longer side in pixels. Undecodable clips are passed over here
        (``VideoClipDataset`` reports them)."""
        if self.arrays is not None:
            return ("L" if self.arrays.shape[-1] == 1 else "RGB"), max(self.arrays.shape[2:4])
        for item in self.items:
            try:
                frame = read_clip(item, [0], "RGB")[0]
            except CorruptVideoError:
                continue
            grey = (frame[..., 0] == frame[..., 1]).all() and (frame[..., 1] == frame[..., 2]).all()
            return ("L" if grey else "RGB"), max(frame.shape[:2])
        raise DatasetError(f"none of the {len(self.items)} clips has a decodable first frame "
                           f"(first: {self.name(self.items[0])})")

    def name(self, item: Any) -> str:
        return f"clip {item}" if self.arrays is not None else str(item)


class VideoClipDataset(Dataset):
    """Clips sampled from the videos of a ``VideoSource`` (see the module docstring).

    Args:
        source: the split's videos.
        frames: frames per clip (``T``).
        stride: distance between the sampled frames.
        train: random clip starts (one clip per video) instead of ``clips_per_video`` fixed ones.
        clips_per_video: clips per video when ``train=False``.
        transform: callable on a uint8 ``[T, H, W, C]`` tensor; None returns it as ``[C, T, H, W]``.
        mode: "RGB" or "L" (decoded frames are converted).
        strict: a video that cannot be decoded raises instead of being left out.
        short: "error" (a video shorter than a clip raises) or "skip" (left out with a warning).

    Attributes:
        skipped: ``(name, reason)`` of every video left out.
    """

    def __init__(self, source: VideoSource, frames: int, stride: int = 1, train: bool = False,
                 clips_per_video: int = 1, transform: Callable | None = None, mode: str = "RGB",
                 strict: bool = False, short: str = "error") -> None:
        if frames < 1 or stride < 1 or clips_per_video < 1:
            raise ValueError(f"frames, stride and clips_per_video must be >= 1, got {frames}, {stride}, {clips_per_video}")
        if short not in ("error", "skip"):
            raise ValueError(f"short must be 'error' or 'skip', got {short!r}")
        self.source, self.frames, self.stride, self.train = source, frames, stride, train
        self.clips_per_video = 1 if train else clips_per_video
        self.transform, self.mode = transform, mode
        self.classes = list(source.classes)
        self.span = clip_span(frames, stride)
        self.skipped: list[tuple[str, str]] = []
        self.videos: list[tuple[Any, int, int]] = []  # (item, label, frame count)
        for item, label in zip(source.items, source.labels):
            length = self._probe(item, strict)
            if length is None:
                continue
            if length < self.span:
                error = ClipTooShortError(source.name(item), length, frames, stride)
                if short == "error":
                    error.args = (f"{error}; lower video.frames or video.stride, or set video.short=skip to "
                                  "leave such videos out",)
                    raise error
                warnings.warn(f"skipping {error}", UserWarning, stacklevel=2)
                self.skipped.append((error.path, error.reason))
                continue
            self.videos.append((item, label, length))
        if self.skipped:
            warnings.warn(f"left out {len(self.skipped)} of {len(source.items)} videos (listed above)",
                          UserWarning, stacklevel=2)
        if not self.videos:
            raise DatasetError(f"no usable video among the {len(source.items)} of the split")
        self.targets = [label for _, label, _ in self.videos]

    def _probe(self, item: Any, strict: bool) -> int | None:
        try:
            return self.source.count(item)
        except CorruptVideoError as error:
            if strict:
                raise
            warnings.warn(f"skipping video {error.path}: {error.reason}", UserWarning, stacklevel=3)
            self.skipped.append((error.path, error.reason))
            return None

    def __len__(self) -> int:
        return len(self.videos) * self.clips_per_video

    def starts(self, video: int) -> list[int]:
        """Start frames of the fixed (``train=False``) clips of video ``video``."""
        return clip_starts(self.videos[video][2], self.span, self.clips_per_video)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        video, clip = divmod(index, self.clips_per_video)
        item, label, length = self.videos[video]
        if self.train:
            start = int(torch.randint(0, length - self.span + 1, ()).item())
        else:
            start = self.starts(video)[clip]
        frames = torch.from_numpy(np.ascontiguousarray(
            self.source.read(item, range(start, start + self.span, self.stride), self.mode)))
        clip_tensor = self.transform(frames) if self.transform is not None else frames.permute(3, 0, 1, 2)
        return clip_tensor, label, video


# ------------------------------------------------------------------------------------------ sources
def scan_video_folder(root: str | Path, classes: list[str] | None = None) -> VideoSource:
    """The clips of ``root/<class>/<clip>``: video files and frame folders, sorted per class."""
    root = Path(root)
    classes = classes or find_classes(root)
    items, labels = [], []
    for index, name in enumerate(classes):
        folder = root / name
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            if not path.name.startswith(".") and is_clip_source(path):
                items.append(path)
                labels.append(index)
    if not items:
        raise DatasetError(f"{root}: no clips found (expected {root}/<class>/<video file or frame folder>)")
    return VideoSource(items, labels, classes)


def video_folder_split(root: str | Path, split: str) -> VideoSource:
    """One split of a ``root/{train,val}/<class>/<clip>`` tree (class order: the train folder's)."""
    root = Path(root)
    if not root.exists():
        raise MissingDataError(f"{root}: video dataset source does not exist")
    if not (root / "train").is_dir():
        raise MissingDataError(f"{root}: expected {root}/train/<class>/<clip> and {root}/val/<class>/<clip>")
    classes = find_classes(root / "train")
    if split == "train":
        return scan_video_folder(root / "train", classes)
    val_dir = find_val_dir(root)
    if val_dir is None:
        raise MissingDataError(f"{root}: has train/ but no val/ folder beside it")
    return scan_video_folder(val_dir, classes)


def generated_source(split: str, count: int, frames: int, seed: int = 0) -> VideoSource:
    """The moving Fashion-MNIST clips (``cvzoo.data.synthetic_video``) as a source, ``frames`` per clip."""
    from cvzoo.data.synthetic_video import MOTIONS, MotionConfig, generate_clips

    clips, labels = generate_clips(count, split, MotionConfig(frames=frames), seed)
    return VideoSource(list(range(count)), labels.tolist(), list(MOTIONS), arrays=clips[..., None])


__all__ = ["ClipTooShortError", "VideoClipDataset", "VideoSource", "clip_span", "clip_starts", "generated_source",
           "scan_video_folder", "video_folder_split"]
