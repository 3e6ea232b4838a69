"""Moving Fashion-MNIST clips whose class is the motion: a video data set that needs time to solve.

Each clip shows one item of the bundled Fashion-MNIST sample (``train`` clips take the sample's train
items, ``val`` clips its val items) on a black canvas, as Moving MNIST does (Srivastava et al. 2015), and its
label is what the item *does*: moves left / right / up / down, rotates clockwise / counter-clockwise, zooms
in / out (``MOTIONS``). The garment's kind says nothing about the label.

The frames are drawn so that *the set of frames* of a clip says as little as possible about its class,
so that a model that averages per-frame features (a frame-average CNN) stays near chance and only a model
of the frames' order can score:

* the two motions of a pair (left/right, ...) are time reversals of each other with the same
  distribution of start and end states (positions, angles and sizes are drawn over the range the whole
  path covers), so their unordered frames have the same distribution;
* every clip, whatever its motion, has a random angle, size and position within the ranges the moving
  clips sweep, so that a rotated, small or off-centre item does not give away the pair either.

Same seed -> the same clips: clip ``i`` of a split draws from its own generator seeded by
``(seed, split, i)``, and its label is ``i % len(MOTIONS)`` (balanced classes).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cvzoo.data.bundled import load_fashion_sample
from cvzoo.data.synthetic import SPLITS, SyntheticConfigError

MOTIONS: tuple[str, ...] = ("left", "right", "up", "down", "rotate_cw", "rotate_ccw", "zoom_in", "zoom_out")
# Its own stream of seeds: clip i never shares a generator with scene i of cvzoo.data.synthetic.
_STREAM = 7
_SPLIT_CODE = {"train": 0, "val": 1}
SOURCE_NAME = "moving_fashion"  # ``data.source`` of the video task: the clips generated in memory


@dataclass(frozen=True)
class MotionConfig:
    """How the clips look.

    Attributes:
        frames: frames per clip.
        size: side of the square canvas, pixels.
        item_size: ``(min, max)`` side of the 28 px item when drawn, pixels.
        sweep: ``(min, max)`` fraction of the free range that a clip's motion covers: of the canvas left
            beside the item (translations), of the log-size range ``item_size`` (zooms).
        turn: ``(min, max)`` rotation over a whole clip, degrees.
        max_angle: static angles and rotation paths stay within +-this many degrees.

    The motions are set per clip, not per frame, so that any number of frames shows the same motions.
    """

    frames: int = 8
    size: int = 32
    item_size: tuple[int, int] = (8, 22)
    sweep: tuple[float, float] = (0.7, 1.0)
    turn: tuple[float, float] = (120.0, 160.0)
    max_angle: float = 90.0

    def __post_init__(self) -> None:
        lo, hi = self.item_size
        if self.frames < 2:
            raise SyntheticConfigError(f"MotionConfig.frames must be >= 2 (a motion needs two frames), got {self.frames}")
        if not 4 <= lo < hi <= self.size:
            raise SyntheticConfigError(f"MotionConfig.item_size must be 4 <= min < max <= size, got {self.item_size}")
        if not 0 < self.sweep[0] <= self.sweep[1] <= 1:
            raise SyntheticConfigError(f"MotionConfig.sweep must be 0 < min <= max <= 1, got {self.sweep}")
        if not 0 < self.turn[0] <= self.turn[1] <= 2 * self.max_angle:
            raise SyntheticConfigError(f"MotionConfig.turn must be 0 < min <= max <= 2 * max_angle "
                                       f"({2 * self.max_angle}), got {self.turn}")


def clip_rng(seed: int, split: str, index: int) -> np.random.Generator:
    if split not in SPLITS:
        raise SyntheticConfigError(f"split must be one of {SPLITS}, got {split!r}")
    return np.random.default_rng([int(seed), _STREAM, _SPLIT_CODE[split], int(index)])


def _draw(item: np.ndarray, size: int, centre: tuple[float, float], side: float, angle: float) -> np.ndarray:
    """``item`` (uint8 ``[28, 28]``) scaled to ``side`` px, turned ``angle`` degrees clockwise and centred at
    ``centre`` = (x, y) on a black ``size`` px canvas, in one bilinear affine warp (sub-pixel positions)."""
    from PIL import Image

    # PIL's AFFINE takes the inverse map, output (x, y) -> input (u, v): p_in = c_in + R(-angle) (p_out - c) / s.
    scale = side / item.shape[0]
    cos, sin = np.cos(np.radians(angle)) / scale, np.sin(np.radians(angle)) / scale
    cx, cy = centre
    half = item.shape[0] / 2
    a, b, d, e = cos, sin, -sin, cos
    coeffs = (a, b, half - a * cx - b * cy, d, e, half - d * cx - e * cy)
    return np.asarray(Image.fromarray(item).transform((size, size), Image.Transform.AFFINE, coeffs,
                                                      resample=Image.Resampling.BILINEAR))


def _path(rng: np.random.Generator, lo: float, hi: float, step: float, frames: int) -> np.ndarray:
    """``frames`` values moving by ``step`` per frame, the whole path inside ``[lo, hi]``, its start uniform
    over the starts that allow that (so a path and its reversal are equally likely)."""
    travel = step * (frames - 1)
    start = rng.uniform(lo, hi - travel) if step >= 0 else rng.uniform(lo - travel, hi)
    return start + step * np.arange(frames)


def generate_clip(rng: np.random.Generator, label: int, item: np.ndarray, config: MotionConfig) -> np.ndarray:
    """One clip of motion ``MOTIONS[label]`` of ``item``: uint8 ``[T, H, W]``."""
    motion = MOTIONS[label]
    t, size = config.frames, config.size
    lo_side, hi_side = config.item_size
    if motion.startswith("zoom"):
        # Geometric growth: the same ratio per frame, sides over the item_size range.
        ratio = (hi_side / lo_side) ** (rng.uniform(*config.sweep) / (t - 1))
        logs = _path(rng, np.log(lo_side), np.log(hi_side), np.log(ratio) * (1 if motion == "zoom_in" else -1), t)
        sides = np.exp(logs)
    else:
        sides = np.full(t, rng.uniform(lo_side, hi_side))
    if motion.startswith("rotate"):
        step = rng.uniform(*config.turn) / (t - 1) * (1 if motion == "rotate_cw" else -1)
        angles = _path(rng, -config.max_angle, config.max_angle, step, t)
    else:
        angles = np.full(t, rng.uniform(-config.max_angle, config.max_angle))
    # Centres keep the item's box (at its largest size in the clip) on the canvas.
    margin = sides.max() / 2
    xs = np.full(t, rng.uniform(margin, size - margin))
    ys = np.full(t, rng.uniform(margin, size - margin))
    if motion in ("left", "right", "up", "down"):
        room = size - 2 * margin  # the centre's free range
        step = rng.uniform(*config.sweep) * room / (t - 1) * (1 if motion in ("right", "down") else -1)
        travel = _path(rng, margin, size - margin, step, t)
        if motion in ("left", "right"):
            xs = travel
        else:
            ys = travel
    return np.stack([_draw(item, size, (x, y), s, a) for x, y, s, a in zip(xs, ys, sides, angles)])


def generate_clips(n: int, split: str = "train", config: MotionConfig | None = None,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` clips of ``split``: uint8 ``[N, T, H, W]`` and labels int64 ``[N]`` (clip ``i`` has label
    ``i % len(MOTIONS)``, its item drawn from the sample's ``split`` items)."""
    if n < 0:
        raise SyntheticConfigError(f"the number of clips must be >= 0, got {n}")
    config = config or MotionConfig()
    items = load_fashion_sample(split)[0]
    clips = np.zeros((n, config.frames, config.size, config.size), np.uint8)
    labels = np.arange(n, dtype=np.int64) % len(MOTIONS)
    for i in range(n):
        rng = clip_rng(seed, split, i)
        clips[i] = generate_clip(rng, int(labels[i]), items[int(rng.integers(0, len(items)))], config)
    return clips, labels


def write_motion_dataset(root: str | Path, n_train: int, n_val: int, format: str = "frames",
                         config: MotionConfig | None = None, seed: int = 0) -> Path:
    """Write clips in the UCF101 / Kinetics layout ``root/<split>/<motion>/<clip>`` and return ``root``.

    ``format="frames"``: each clip a folder of PNG frames (``clip_000012/000000.png`` ..., lossless);
    ``"mp4"``: each clip an H.264 file ``clip_000012.mp4`` (needs PyAV, the ``video`` extra; lossy).
    """
    from cvzoo.data.video import write_frame_folder, write_video

    if format not in ("frames", "mp4"):
        raise ValueError(f"format must be 'frames' or 'mp4', got {format!r}")
    root = Path(root)
    for split, count in (("train", n_train), ("val", n_val)):
        clips, labels = generate_clips(count, split, config, seed)
        for i, (clip, label) in enumerate(zip(clips, labels)):
            folder = root / split / MOTIONS[label]
            if format == "frames":
                write_frame_folder(folder / f"clip_{i:06d}", clip)
            else:
                write_video(folder / f"clip_{i:06d}.mp4", clip)
    return root


__all__ = ["MOTIONS", "SOURCE_NAME", "MotionConfig", "clip_rng", "generate_clip", "generate_clips",
           "write_motion_dataset"]
