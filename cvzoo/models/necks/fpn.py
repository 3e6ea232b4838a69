"""Top-down feature pyramids: the FPN of Lin et al. (2017) and the concatenating neck of YOLOv3.

Both take backbone maps finest first (e.g. strides 8, 16, 32) and return maps finest first. The blocks
(convolutions, SPP) are injected by the model that builds the neck, so the neck stays independent of a
detector family.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cvzoo.layers import ConvNormAct

ConvFactory = Callable[[int, int, int, int], nn.Module]  # (in_channels, out_channels, kernel_size, stride)


class FeaturePyramidNetwork(nn.Module):
    """Feature Pyramid Network (Lin et al. 2017, "Feature Pyramid Networks for Object Detection").

    Each backbone map goes through a 1x1 lateral conv to ``out_channels``; from the coarsest level down,
    the running map is upsampled (nearest, to the finer map's size) and added to the finer lateral; a 3x3
    conv then smooths every merged map. ``extra_block`` adds coarser levels: ``"pool"`` a stride-2
    1x1 max pool of the last output (Faster R-CNN's P6), ``"p6p7"`` two stride-2 3x3 convs on the last
    output with a ReLU between them (RetinaNet's P6/P7, Lin et al. 2017b); ``"p6p7_c5"`` the same two convs
    with P6 computed from the last *input* map (C5), as the RetinaNet paper does (sec. 4, "P6 is obtained
    via a 3x3 stride-2 conv on C5"; torchvision's RetinaNet v2) rather than from P5 (torchvision's v1, FCOS).

    With ``norm_layer`` every lateral and output conv is followed by that norm (and has no bias), as in
    the v2 R-CNN recipe (Li et al. 2021, "Benchmarking Detection Transfer Learning with Vision
    Transformers"); their keys then read ``laterals.i.conv.weight`` / ``laterals.i.bn.*``.

    Args:
        in_channels: channels of the input maps, finest first.
        out_channels: channels of every output map.
        extra_block: ``None``, ``"pool"``, ``"p6p7"`` or ``"p6p7_c5"``.
        norm_layer: norm after each lateral / output conv (e.g. ``nn.BatchNorm2d``), or None.
    """

    def __init__(self, in_channels: Sequence[int], out_channels: int = 256, extra_block: str | None = None,
                 norm_layer: Callable[[int], nn.Module] | None = None) -> None:
        super().__init__()
        if extra_block not in (None, "pool", "p6p7", "p6p7_c5"):
            raise ValueError("FeaturePyramidNetwork: extra_block must be None, 'pool', 'p6p7' or 'p6p7_c5', "
                             f"got {extra_block!r}")

        def conv(channels: int, kernel_size: int) -> nn.Module:
            if norm_layer is None:
                return nn.Conv2d(channels, out_channels, kernel_size, padding=kernel_size // 2)
            return ConvNormAct(channels, out_channels, kernel_size, norm_layer=norm_layer, act_layer=None)

        self.laterals = nn.ModuleList(conv(c, 1) for c in in_channels)
        self.outputs = nn.ModuleList(conv(out_channels, 3) for _ in in_channels)
        self.extra_block = extra_block
        if extra_block in ("p6p7", "p6p7_c5"):
            p6_in = in_channels[-1] if extra_block == "p6p7_c5" else out_channels
            self.p6 = nn.Conv2d(p6_in, out_channels, 3, stride=2, padding=1)
            self.p7 = nn.Conv2d(out_channels, out_channels, 3, stride=2, padding=1)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_uniform_(module.weight, a=1)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Maps finest first -> ``len(features)`` (+ extra) maps of ``out_channels``, finest first."""
        running = self.laterals[-1](features[-1])
        results = [self.outputs[-1](running)]
        for level in range(len(features) - 2, -1, -1):
            lateral = self.laterals[level](features[level])
            running = lateral + F.interpolate(running, size=lateral.shape[-2:], mode="nearest")
            results.insert(0, self.outputs[level](running))
        if self.extra_block == "pool":
            results.append(F.max_pool2d(results[-1], kernel_size=1, stride=2))
        elif self.extra_block in ("p6p7", "p6p7_c5"):
            p6 = self.p6(features[-1] if self.extra_block == "p6p7_c5" else results[-1])
            results += [p6, self.p7(F.relu(p6))]
        return results


class YoloV3FPN(nn.Module):
    """YOLOv3's neck (Redmon & Farhadi 2018, sec. 2.3; darknet's yolov3.cfg).

    From the coarsest level down, each level runs a "conv set" of alternating 1x1 (``hidden``) and 3x3
    (``2 * hidden``) convolutions. Its result feeds (a) a 3x3 conv to ``2 * hidden`` channels, the map the
    level's prediction layer sees, and (b) a 1x1 conv to ``hidden / 2`` channels, upsampled 2x and
    concatenated with the next finer backbone map. Unlike FPN the merge is a concatenation.

    YOLOv3 uses five convs per set with hidden ``(128, 256, 512)``; YOLOv3-tiny ``(0, 1)`` convs with hidden
    ``(128, 256)``. With ``spp``, an SPP block (pools + 1x1 fuse) follows the third conv of the coarsest set,
    as in darknet's yolov3-spp.cfg.

    Args:
        in_channels: backbone channels, finest first.
        hidden_channels: the 1x1 width of each level's conv set, finest first.
        num_convs: convs in each level's set, finest first.
        conv: factory ``(in, out, kernel_size, stride) -> module``.
        spp: factory ``(in, out) -> module`` for the SPP block, or None.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        hidden_channels: Sequence[int],
        num_convs: Sequence[int],
        conv: ConvFactory,
        spp: Callable[[int, int], nn.Module] | None = None,
    ) -> None:
        super().__init__()
        if not len(in_channels) == len(hidden_channels) == len(num_convs):
            raise ValueError("YoloV3FPN: in_channels, hidden_channels and num_convs need one entry per level")
        self.out_channels = [2 * h for h in hidden_channels]
        self.conv_sets = nn.ModuleList()
        self.out_convs = nn.ModuleList()
        self.laterals = nn.ModuleList()
        coarsest = len(in_channels) - 1
        incoming = 0  # channels arriving from the coarser level
        for level in range(coarsest, -1, -1):
            channels = in_channels[level] + incoming
            layers: list[nn.Module] = []
            for i in range(num_convs[level]):
                hidden = hidden_channels[level]
                kernel, out = (1, hidden) if i % 2 == 0 else (3, 2 * hidden)
                layers.append(conv(channels, out, kernel, 1))
                channels = out
                if spp is not None and level == coarsest and i == 2:
                    layers.append(spp(channels, channels))
            self.conv_sets.insert(0, nn.Sequential(*layers))
            self.out_convs.insert(0, conv(channels, self.out_channels[level], 3, 1))
            if level > 0:
                incoming = hidden_channels[level] // 2
                self.laterals.insert(0, conv(channels, incoming, 1, 1))

    def forward(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Backbone maps finest first -> neck maps finest first (``out_channels``)."""
        results: list[torch.Tensor] = []
        running: torch.Tensor | None = None
        for level in range(len(features) - 1, -1, -1):
            x = features[level]
            if running is not None:
                up = F.interpolate(self.laterals[level](running), scale_factor=2.0, mode="nearest")
                x = torch.cat((up, x), dim=1)
            running = self.conv_sets[level](x)
            results.insert(0, self.out_convs[level](running))
        return results
