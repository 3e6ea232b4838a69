"""GoogLeNet / Inception v1 (Szegedy et al., 2015, "Going Deeper with Convolutions").

An Inception module runs 1x1, 3x3 and 5x5 convs and a 3x3 max-pool side by side and concatenates them,
with 1x1 convs reducing the width before the expensive branches and after the pool (§4, Fig. 2b), so
the network can widen and deepen at a fixed budget. Two auxiliary classifiers on inception 4a and 4d
add gradient to the middle of the 22-layer network while training (§5); their losses count 0.3 each
(the classification task applies the weight), and they are skipped in eval mode.

torchvision-compatible (identical module names, so its checkpoints load as they are): every conv is
followed by BN (eps 0.001), which the 2015 network predates, and, as in torchvision's checkpoint, the
"5x5" branch uses a 3x3 kernel. torchvision's ``transform_input`` (re-normalising inputs for weights
ported from TensorFlow) is left out: inputs are normalised by the data pipeline.

Stages (``feature_info``): conv1 at stride 2, conv3 at 4, inception 3b at 8, 4e at 16 and 5b at 32.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from cvzoo.layers import ConvNormAct
from cvzoo.models.classification.base import Classifier
from cvzoo.models.features import FeatureInfo
from cvzoo.models.registry import register_model


def _conv(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> ConvNormAct:
    return ConvNormAct(in_channels, out_channels, kernel_size, stride, norm_layer=partial(nn.BatchNorm2d, eps=0.001))


class Inception(nn.Module):
    """Four parallel branches concatenated along channels (Szegedy et al., Table 1 columns).

    Args:
        in_channels: input channels.
        ch1x1: width of the 1x1 branch.
        ch3x3_reduce, ch3x3: 1x1 reduction and 3x3 conv widths.
        ch5x5_reduce, ch5x5: 1x1 reduction and "5x5" conv widths (a 3x3 kernel, see the module docstring).
        pool_proj: width of the 1x1 conv after the 3x3 max-pool.
    """

    def __init__(
        self, in_channels: int, ch1x1: int, ch3x3_reduce: int, ch3x3: int, ch5x5_reduce: int, ch5x5: int, pool_proj: int
    ) -> None:
        super().__init__()
        self.branch1 = _conv(in_channels, ch1x1, 1)
        self.branch2 = nn.Sequential(_conv(in_channels, ch3x3_reduce, 1), _conv(ch3x3_reduce, ch3x3, 3))
        self.branch3 = nn.Sequential(_conv(in_channels, ch5x5_reduce, 1), _conv(ch5x5_reduce, ch5x5, 3))
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True), _conv(in_channels, pool_proj, 1))
        self.out_channels = ch1x1 + ch3x3 + ch5x5 + pool_proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], dim=1)


class AuxClassifier(nn.Module):
    """Average pool to 4x4 -> 1x1 conv (128) -> FC 1024 -> ReLU -> dropout 0.7 -> FC (Szegedy et al., §5).

    The paper pools 5x5 with stride 3, which gives 4x4 on the 14x14 maps of a 224 px input; an adaptive
    pool gives 4x4 at any input size.
    """

    def __init__(self, in_channels: int, num_classes: int, drop_rate: float = 0.7) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.conv = _conv(in_channels, 128, 1)
        self.fc1 = nn.Linear(128 * 4 * 4, 1024)
        self.act = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(drop_rate)
        self.fc2: nn.Module = nn.Linear(1024, num_classes) if num_classes > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.conv(self.pool(x)), 1)
        return self.fc2(self.dropout(self.act(self.fc1(x))))


class GoogLeNet(Classifier):
    """GoogLeNet with optional auxiliary classifiers.

    In training mode with ``aux_logits`` the forward returns ``(logits, aux1, aux2)``; otherwise (and
    always in eval mode) the main logits only.

    Args:
        num_classes: classifier outputs; 0 makes ``forward`` return the pooled 1024-d features.
        in_channels: image channels.
        aux_logits: build the two auxiliary classifiers.
        drop_rate: dropout before the main classifier (0.4 in the paper, 0.2 in torchvision).
        aux_drop_rate: dropout inside the auxiliary classifiers.
    """

    def __init__(
        self,
        num_classes: int = 1000,
        in_channels: int = 3,
        aux_logits: bool = True,
        drop_rate: float = 0.2,
        aux_drop_rate: float = 0.7,
    ) -> None:
        super().__init__()
        self.aux_logits = aux_logits
        self.conv1 = _conv(in_channels, 64, 7, stride=2)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = _conv(64, 64, 1)
        self.conv3 = _conv(64, 192, 3)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        # Widths: Szegedy et al., Table 1.
        self.inception3a = Inception(192, 64, 96, 128, 16, 32, 32)
        self.inception3b = Inception(256, 128, 128, 192, 32, 96, 64)
        self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception4a = Inception(480, 192, 96, 208, 16, 48, 64)
        self.inception4b = Inception(512, 160, 112, 224, 24, 64, 64)
        self.inception4c = Inception(512, 128, 128, 256, 24, 64, 64)
        self.inception4d = Inception(512, 112, 144, 288, 32, 64, 64)
        self.inception4e = Inception(528, 256, 160, 320, 32, 128, 128)
        self.maxpool4 = nn.MaxPool2d(2, stride=2, ceil_mode=True)
        self.inception5a = Inception(832, 256, 160, 320, 32, 128, 128)
        self.inception5b = Inception(832, 384, 192, 384, 48, 128, 128)
        if aux_logits:
            self.aux1 = AuxClassifier(512, num_classes, aux_drop_rate)
            self.aux2 = AuxClassifier(528, num_classes, aux_drop_rate)
        self.feature_info = [
            FeatureInfo(64, 2, "conv1"), FeatureInfo(192, 4, "conv3"), FeatureInfo(480, 8, "inception3b"),
            FeatureInfo(832, 16, "inception4e"), FeatureInfo(1024, 32, "inception5b"),
        ]
        self.num_features = 1024
        self.dropout = nn.Dropout(drop_rate)
        self.num_classes = num_classes
        self.fc: nn.Module = self._make_classifier(num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        # torchvision's scheme: truncated normal (std 0.01) for convs and linears, BN at identity.
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(module.weight, mean=0.0, std=0.01, a=-2, b=2)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def _forward_stages(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The five stage maps, and the inputs of the two auxiliary classifiers (4a and 4d outputs)."""
        stride2 = self.conv1(x)
        stride4 = self.conv3(self.conv2(self.maxpool1(stride2)))
        stride8 = self.inception3b(self.inception3a(self.maxpool2(stride4)))
        aux1_input = self.inception4a(self.maxpool3(stride8))
        aux2_input = self.inception4d(self.inception4c(self.inception4b(aux1_input)))
        stride16 = self.inception4e(aux2_input)
        stride32 = self.inception5b(self.inception5a(self.maxpool4(stride16)))
        return [stride2, stride4, stride8, stride16, stride32], [aux1_input, aux2_input]

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self._forward_stages(x)[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        features, (aux1_input, aux2_input) = self._forward_stages(x)
        logits = self.forward_head(features)
        if self.training and self.aux_logits:
            return logits, self.aux1(aux1_input), self.aux2(aux2_input)
        return logits

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the main classifier and, keeping their outputs in step, the auxiliary ones."""
        super().reset_classifier(num_classes)
        if self.aux_logits:
            for aux in (self.aux1, self.aux2):
                aux.fc2 = nn.Linear(1024, num_classes) if num_classes > 0 else nn.Identity()


register_model("googlenet", GoogLeNet, reference="torchvision:googlenet")
