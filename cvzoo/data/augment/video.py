"""Clip transforms: uint8 frames ``[T, H, W, C]`` -> normalised float32 ``[C, T, H, W]``.

Every frame of a clip gets the *same* crop and flip: a crop that moved from frame to frame would add a
motion of its own, which is what a video model classifies. Training takes a random area fraction
``scale`` of the frame (the clip-level RandomResizedCrop of the two-stream and 3-D CNN recipes,
Simonyan & Zisserman 2014, Tran et al. 2018); evaluation resizes the whole frame. The horizontal flip is
off by default: it turns a leftward motion into a rightward one, so it suits only classes that a mirror
keeps (most actions), not the direction classes of the generated set.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torchvision.transforms.v2 import functional as TF

# The statistics torchvision's Kinetics-400 video weights were trained with (its VideoClassification preset).
KINETICS_MEAN: tuple[float, float, float] = (0.43216, 0.394666, 0.37645)
KINETICS_STD: tuple[float, float, float] = (0.22803, 0.22145, 0.216989)


class ClipTransform:
    """Resize (with a random crop when training), flip, scale to [0, 1] and normalise a clip.

    Args:
        size: output side (frames are square ``size x size``).
        mean, std: per-channel statistics (one value each for grey clips).
        train: random crop of area fraction in ``scale`` (aspect 3/4..4/3) and flip with ``hflip``.
        scale: area fraction range of the training crop.
        hflip: probability of mirroring the whole clip (training only).
    """

    def __init__(self, size: int, mean: Sequence[float], std: Sequence[float], train: bool = False,
                 scale: tuple[float, float] = (1.0, 1.0), hflip: float = 0.0) -> None:
        self.size, self.train, self.scale, self.hflip = size, train, tuple(scale), hflip
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1, 1)

    def _crop_box(self, height: int, width: int) -> tuple[int, int, int, int]:
        """``(top, left, h, w)``: the whole frame, or a random crop of area fraction in ``scale``."""
        if not self.train or self.scale == (1.0, 1.0):
            return 0, 0, height, width
        area = height * width
        for _ in range(10):  # as RandomResizedCrop: retry until the box fits, then fall back to the frame
            target = area * float(torch.empty(()).uniform_(*self.scale))
            log_ratio = torch.empty(()).uniform_(math.log(3 / 4), math.log(4 / 3))
            aspect = math.exp(float(log_ratio))
            w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
            if 0 < w <= width and 0 < h <= height:
                top = int(torch.randint(0, height - h + 1, ()))
                left = int(torch.randint(0, width - w + 1, ()))
                return top, left, h, w
        return 0, 0, height, width

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        if frames.dtype != torch.uint8 or frames.ndim != 4:
            raise ValueError(f"a clip must be uint8 [T, H, W, C], got {frames.dtype} {list(frames.shape)}")
        clip = frames.permute(0, 3, 1, 2)  # [T, C, H, W]: the frames are a batch for the resize
        top, left, h, w = self._crop_box(clip.shape[-2], clip.shape[-1])
        clip = clip[..., top:top + h, left:left + w]
        if (h, w) != (self.size, self.size):
            clip = TF.resize(clip, [self.size, self.size], antialias=True)
        if self.train and self.hflip > 0 and float(torch.rand(())) < self.hflip:
            clip = clip.flip(-1)
        clip = clip.permute(1, 0, 2, 3).float().div_(255)  # [C, T, H, W]
        return (clip - self.mean) / self.std


__all__ = ["KINETICS_MEAN", "KINETICS_STD", "ClipTransform"]
