"""The Inception-v3 of the standard FID: the network whose pool3 features FID and KID are defined on.

Heusel et al. (2017) compute FID in the 2048-d pool features of the TensorFlow Inception-v3 graph of
2015-12-05; pytorch-fid ports that graph's weights to a PyTorch state dict, the file
``pt_inception-2015-12-05-6726825d.pth``, and its numbers are the ones papers report. This module
rebuilds the network that file belongs to, so a user who has the file gets the same features without
pytorch-fid or a download (the file is only ever read from a local path).

The ported graph is Szegedy et al. (2016)'s Inception-v3 as torchvision builds it, except for what the
TensorFlow graph did differently, each of which changes the features:

- 1008 output classes (the 2015 graph's label map), not 1000;
- the average pools inside the 35x35, 17x17 and first 8x8 blocks (A, C, first E) ignore the padded
  zeros (TensorFlow's ``SAME`` average pooling divides by the number of real pixels):
  ``count_include_pad=False``;
- the last 8x8 block pools its fourth branch by max, not average (so the graph has it; pytorch-fid
  notes it as the graph's own quirk, kept because the weights were trained with it).

Module names are the file's (torchvision's layout: ``Conv2d_1a_3x3``, ``Mixed_5b.branch1x1.conv``...),
so it loads as it is, strictly. It is a measuring instrument, not a zoo model to train: it is not
registered (``create_model`` / ``cvzoo models`` do not list it) and has no classifier contract;
``cvzoo.tasks.gan`` builds it from ``gan.features`` (docs/gan.md).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cvzoo.layers import ConvNormAct
from cvzoo.models.weights import (
    WeightsMismatchError,
    compare_state_dicts,
    extract_state_dict,
    load_weights,
    read_checkpoint,
)

FID_WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"  # the name pytorch-fid gives its weights file
FID_INPUT_SIZE = 299  # the graph's input side; pytorch-fid resizes every image to it
FID_FEATURES = 2048  # pool3 width


def _conv(in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
          stride: int = 1, padding: int | tuple[int, int] = 0) -> ConvNormAct:
    # Conv (no bias) -> BN (TensorFlow's epsilon, 0.001) -> ReLU; the padding is explicit because the
    # stem's 3x3 convs are unpadded ("VALID" in the graph).
    return ConvNormAct(in_channels, out_channels, kernel_size, stride, padding,  # type: ignore[arg-type]
                       norm_layer=partial(nn.BatchNorm2d, eps=0.001))


def _average_of_real_pixels(x: torch.Tensor) -> torch.Tensor:
    """3x3 average pool, stride 1, whose border windows average only the pixels inside the image."""
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):
    """35x35 block: 1x1 | 1x1 -> 5x5 | 1x1 -> 3x3 -> 3x3 | avg pool -> 1x1 (Szegedy et al. 2016, Fig. 5)."""

    def __init__(self, in_channels: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = _conv(in_channels, 64, 1)
        self.branch5x5_1 = _conv(in_channels, 48, 1)
        self.branch5x5_2 = _conv(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = _conv(in_channels, 64, 1)
        self.branch3x3dbl_2 = _conv(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _conv(96, 96, 3, padding=1)
        self.branch_pool = _conv(in_channels, pool_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([
            self.branch1x1(x),
            self.branch5x5_2(self.branch5x5_1(x)),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            self.branch_pool(_average_of_real_pixels(x)),
        ], 1)


class InceptionB(nn.Module):
    """35x35 -> 17x17 reduction: strided 3x3 | 1x1 -> 3x3 -> strided 3x3 | strided max pool."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3 = _conv(in_channels, 384, 3, stride=2)
        self.branch3x3dbl_1 = _conv(in_channels, 64, 1)
        self.branch3x3dbl_2 = _conv(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _conv(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([
            self.branch3x3(x),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            F.max_pool2d(x, kernel_size=3, stride=2),
        ], 1)


class InceptionC(nn.Module):
    """17x17 block with factorised 7x7 convs (1x7 then 7x1; Szegedy et al. 2016, Fig. 6)."""

    def __init__(self, in_channels: int, channels_7x7: int) -> None:
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = _conv(in_channels, 192, 1)
        self.branch7x7_1 = _conv(in_channels, c7, 1)
        self.branch7x7_2 = _conv(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = _conv(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = _conv(in_channels, c7, 1)
        self.branch7x7dbl_2 = _conv(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = _conv(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = _conv(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = _conv(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = _conv(in_channels, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        double = x
        for step in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4,
                     self.branch7x7dbl_5):
            double = step(double)
        return torch.cat([
            self.branch1x1(x),
            self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x))),
            double,
            self.branch_pool(_average_of_real_pixels(x)),
        ], 1)


class InceptionD(nn.Module):
    """17x17 -> 8x8 reduction: 1x1 -> strided 3x3 | 1x1 -> 1x7 -> 7x1 -> strided 3x3 | strided max pool."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3_1 = _conv(in_channels, 192, 1)
        self.branch3x3_2 = _conv(192, 320, 3, stride=2)
        self.branch7x7x3_1 = _conv(in_channels, 192, 1)
        self.branch7x7x3_2 = _conv(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = _conv(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = _conv(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seven = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([
            self.branch3x3_2(self.branch3x3_1(x)),
            seven,
            F.max_pool2d(x, kernel_size=3, stride=2),
        ], 1)


class InceptionE(nn.Module):
    """8x8 block whose 3x3 convs fan out into parallel 1x3 and 3x1 (Szegedy et al. 2016, Fig. 7).

    Args:
        in_channels: input channels.
        max_pool: pool the fourth branch by max (the graph's last block) instead of averaging the real
            pixels (its first).
    """

    def __init__(self, in_channels: int, max_pool: bool) -> None:
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = _conv(in_channels, 320, 1)
        self.branch3x3_1 = _conv(in_channels, 384, 1)
        self.branch3x3_2a = _conv(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = _conv(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = _conv(in_channels, 448, 1)
        self.branch3x3dbl_2 = _conv(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = _conv(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = _conv(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = _conv(in_channels, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        single = self.branch3x3_1(x)
        double = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1) if self.max_pool else _average_of_real_pixels(x)
        return torch.cat([
            self.branch1x1(x),
            self.branch3x3_2a(single), self.branch3x3_2b(single),
            self.branch3x3dbl_3a(double), self.branch3x3dbl_3b(double),
            self.branch_pool(pooled),
        ], 1)


class FIDInceptionV3(nn.Module):
    """Inception-v3 as in the FID graph; ``forward`` gives the pool3 features FID is computed on.

    ``forward`` takes RGB images ``[B, 3, H, W]`` in [-1, 1] (the range the graph was trained on) at any
    size and resizes them to 299 x 299 first, bilinearly without antialiasing (``align_corners=False``),
    as pytorch-fid's ``InceptionV3`` does by default. ``fc`` (1008 classes) is part of the weights file
    and is not used for the features.
    """

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = _conv(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = _conv(32, 32, 3)
        self.Conv2d_2b_3x3 = _conv(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = _conv(64, 80, 1)
        self.Conv2d_4a_3x3 = _conv(80, 192, 3)
        self.Mixed_5b = InceptionA(192, pool_features=32)
        self.Mixed_5c = InceptionA(256, pool_features=64)
        self.Mixed_5d = InceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, channels_7x7=128)
        self.Mixed_6c = InceptionC(768, channels_7x7=160)
        self.Mixed_6d = InceptionC(768, channels_7x7=160)
        self.Mixed_6e = InceptionC(768, channels_7x7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, max_pool=False)
        self.Mixed_7c = InceptionE(2048, max_pool=True)
        self.fc = nn.Linear(FID_FEATURES, 1008)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``images [B, 3, H, W]`` in [-1, 1] -> pool3 features ``[B, 2048]``."""
        # pytorch-fid takes [0, 1] images, resizes them and maps them to [-1, 1] by 2x - 1. A bilinear resize
        # is a weighted mean, so resizing the [-1, 1] images directly is the same in exact arithmetic; the
        # round trip is kept to give the network pytorch-fid's float inputs bit for bit (the direct route's
        # rounding moves pool3 features by up to ~2e-4: tests/models/test_inception_fid.py).
        x = F.interpolate((images + 1) / 2, size=(FID_INPUT_SIZE, FID_INPUT_SIZE), mode="bilinear",
                          align_corners=False)
        x = 2 * x - 1
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c,
                      self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):
            x = block(x)
        return F.adaptive_avg_pool2d(x, 1).flatten(1)  # the global average pool: pool3


def load_fid_inception(path: str | os.PathLike[str], checkpoint: Mapping[str, Any] | None = None) -> FIDInceptionV3:
    """The FID Inception-v3 with the weights of ``path`` (pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth``),
    in eval mode without gradients.

    Args:
        path: the weights file (a plain state dict in torchvision's key layout).
        checkpoint: the file's content when the caller has read it already (``path`` then only names it).

    Raises:
        WeightsFileError: the file cannot be read or holds no tensors.
        WeightsMismatchError: any key or shape differs from the FID network's (every one listed): the file
            is not that network's weights.
    """
    model = FIDInceptionV3()
    state, _ = extract_state_dict(read_checkpoint(path) if checkpoint is None else checkpoint, str(path))
    report = compare_state_dicts(state, model.state_dict())
    if not report.ok:
        raise WeightsMismatchError(f"{path} is not the FID Inception-v3's weights (pytorch-fid's {FID_WEIGHTS_FILE}): "
                                   f"{report.summary()}")
    load_weights(model, state, strict=True, remap=None)
    return model.eval().requires_grad_(False)


__all__ = ["FID_FEATURES", "FID_WEIGHTS_FILE", "FIDInceptionV3", "load_fid_inception"]
