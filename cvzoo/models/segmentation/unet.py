"""U-Net (Ronneberger, Fischer & Brox, 2015) in the padded form the notes use.

The contracting path repeats ``DoubleConv`` (two 3x3 conv + BN + ReLU) and 2x2 max-pooling, doubling
the width each time; the expanding path upsamples, concatenates the skip map of the same resolution and
applies a ``DoubleConv``; a 1x1 conv gives the class scores. Unlike the paper's unpadded convolutions
(which shrink 572 px to 388 px and need cropped skips), the convolutions are padded, so the output has
the input's size; an upsampled map that is one pixel short of its skip (odd input sizes) is zero-padded
around its border to the skip size.

Two upsampling choices (``bilinear``):

* ``True`` (the notes' default, registered as ``unet``): parameter-free bilinear upsampling. The deepest
  encoder stage and every decoder stage but the last output half the width, so that after the
  concatenation each decoder ``DoubleConv`` sees the same channel count as in the transposed version.
  With ``decoder_mid="out"`` (default) the decoder's first conv already outputs the stage width: base 64,
  3 input channels, 4 classes -> 13,391,556 parameters (the notes' 13.4M). ``decoder_mid="half_in"``
  gives its first conv half of its input channels instead (Pytorch-UNet's layout, 17.26M).
* ``False`` (``unet_deconv``, the paper's "up-convolution"): a 2x2 stride-2 transposed conv halves the
  channels before the concatenation; 31.04M parameters at base 64.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cvzoo.layers.conv_norm_act import ConvNormAct
from cvzoo.models.registry import register_model
from cvzoo.models.segmentation.base import Segmenter


class DoubleConv(nn.Sequential):
    """(3x3 conv -> BN -> ReLU) x 2; the first conv outputs ``mid_channels`` (default ``out_channels``)."""

    def __init__(self, in_channels: int, out_channels: int, mid_channels: int | None = None) -> None:
        mid = mid_channels or out_channels
        super().__init__(ConvNormAct(in_channels, mid, 3), ConvNormAct(mid, out_channels, 3))


class Down(nn.Sequential):
    """2x2 max-pool (stride 2), then ``DoubleConv``: half the resolution, new width."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(nn.MaxPool2d(2, 2), DoubleConv(in_channels, out_channels))


class Up(nn.Module):
    """Upsample 2x, pad to the skip's size, concatenate ``[skip, upsampled]``, ``DoubleConv``.

    Args:
        in_channels: channels after the concatenation (skip + upsampled).
        out_channels: output channels.
        bilinear: bilinear upsampling (``align_corners=True``, as the notes) instead of a transposed conv.
        mid_channels: width of the first conv of the ``DoubleConv`` (default ``out_channels``).
    """

    def __init__(self, in_channels: int, out_channels: int, bilinear: bool = True,
                 mid_channels: int | None = None) -> None:
        super().__init__()
        if bilinear:
            self.up: nn.Module = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
        else:
            # The deep map has in_channels channels; the up-convolution halves them to the skip's width.
            self.up = nn.ConvTranspose2d(in_channels, in_channels // 2, 2, stride=2)
        self.conv = DoubleConv(in_channels, out_channels, mid_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(x)
        dh, dw = skip.shape[-2] - x.shape[-2], skip.shape[-1] - x.shape[-1]
        if dh or dw:
            x = F.pad(x, [dw // 2, dw - dw // 2, dh // 2, dh - dh // 2])
        return self.conv(torch.cat([skip, x], dim=1))


class UNet(Segmenter):
    """U-Net with four down and four up stages.

    Args:
        num_classes: output classes (including background).
        in_channels: image channels.
        base_channels: width of the first stage (64 in the paper); stage ``i`` has ``base * 2**i``.
        bilinear: bilinear upsampling (True) or transposed convolutions (False).
        decoder_mid: ``"out"`` or ``"half_in"``: the first conv width of the bilinear decoder stages.

    Shapes:
        ``[B, in_channels, H, W] -> {"out": [B, num_classes, H, W]}`` for any ``H, W >= 16``.
    """

    def __init__(self, num_classes: int = 2, in_channels: int = 3, base_channels: int = 64, bilinear: bool = True,
                 decoder_mid: str = "out") -> None:
        super().__init__()
        if decoder_mid not in ("out", "half_in"):
            raise ValueError(f"decoder_mid must be 'out' or 'half_in', got {decoder_mid!r}")
        if base_channels < 2:
            raise ValueError(f"base_channels must be >= 2, got {base_channels}")
        self.num_classes = num_classes
        b = base_channels
        factor = 2 if bilinear else 1
        self.inc = DoubleConv(in_channels, b)
        self.down1 = Down(b, 2 * b)
        self.down2 = Down(2 * b, 4 * b)
        self.down3 = Down(4 * b, 8 * b)
        self.down4 = Down(8 * b, 16 * b // factor)

        def up(in_ch: int, out_ch: int) -> Up:
            mid = in_ch // 2 if (bilinear and decoder_mid == "half_in") else None
            return Up(in_ch, out_ch, bilinear, mid)

        self.up1 = up(16 * b, 8 * b // factor)
        self.up2 = up(8 * b, 4 * b // factor)
        self.up3 = up(4 * b, 2 * b // factor)
        self.up4 = up(2 * b, b)
        self.classifier = nn.Conv2d(b, num_classes, 1)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        x1 = self.inc(images)
        x2 = self.down1(x1)
        x3 = self.down2(x2)
        x4 = self.down3(x3)
        x = self.down4(x4)
        x = self.up1(x, x4)
        x = self.up2(x, x3)
        x = self.up3(x, x2)
        x = self.up4(x, x1)
        return {"out": self.classifier(x)}


register_model("unet", UNet, task="segment", bilinear=True, input_size=(3, 160, 160))
register_model("unet_deconv", UNet, task="segment", bilinear=False, input_size=(3, 160, 160))
