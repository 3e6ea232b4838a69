"""model_summary / format_summary / count_flops / model_receptive_field on small and reference nets."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from cvzoo.analysis import (
    count_flops,
    empirical_receptive_field,
    format_summary,
    model_receptive_field,
    model_summary,
    receptive_field,
)


def small_cnn() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(inplace=True),
        nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 16, 3, dilation=2, padding=2),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10),
    )


def test_summary_rows_shapes_params_macs():
    torch.manual_seed(0)
    model = small_cnn()
    rows = model_summary(model, (3, 32, 32))
    assert [r.name for r in rows] == [str(i) for i in range(10)]
    assert rows[3].output_shape == (1, 16, 16, 16)
    assert rows[5].output_shape == (1, 16, 8, 8)
    assert rows[-1].output_shape == (1, 10)
    for row, module in zip(rows, model):
        assert row.params == sum(p.numel() for p in module.parameters())
    assert rows.total_params == sum(p.numel() for p in model.parameters())
    assert rows[0].macs == 3 * 8 * 9 * 32 * 32
    assert rows[3].macs == 8 * 16 * 9 * 16 * 16
    assert rows[9].macs == 16 * 10
    assert rows.total_macs == sum(r.macs for r in rows) == count_flops(model, (3, 32, 32)).macs
    assert model.training  # restored after the eval-mode pass


def test_summary_depth_nesting_shared_modules_and_containers():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU())
            self.shared = nn.Linear(4, 4)
            self.frozen = nn.Linear(4, 2)
            self.frozen.requires_grad_(False)

        def forward(self, x):
            y = self.stem(x).mean((2, 3))
            y = self.shared(self.shared(y))
            return {"logits": self.frozen(y), "maps": [x, self.stem[0](x)]}

    net = Net()
    rows = model_summary(net, (1, 10, 10), depth=1)
    assert [(r.name, r.repeat) for r in rows] == [("stem", False), ("shared", False), ("shared", True),
                                                  ("frozen", False)]
    assert rows[2].params == 0 and rows[2].macs == 16
    deep = model_summary(net, (1, 10, 10), depth=2)
    assert [r.name for r in deep] == ["stem", "stem.0", "stem.1", "shared", "shared", "frozen", "stem.0"]
    assert deep.output_shape == {"logits": (1, 2), "maps": [(1, 1, 10, 10), (1, 4, 8, 8)]}
    assert deep.trainable_params == deep.total_params - 10
    text = format_summary(deep)
    assert "Total params: 70" in text and "Non-trainable params: 10" in text
    assert "[1, 4, 8, 8]" in text and "* repeated call" in text


def test_format_summary_of_plain_row_list_sums_top_rows():
    rows = model_summary(small_cnn(), (3, 16, 16))
    text = format_summary(list(rows))
    assert f"Total params: {rows.total_params:,}" in text
    assert "Layer (type)" in text and "Output Shape" in text


def test_count_flops_matches_torchvision_reference_numbers():
    # torchvision's docs list 1.81 "GFLOPS" (multiply-adds) for resnet18 and 0.71 for alexnet.
    with torch.device("meta"):
        resnet = torchvision.models.resnet18()
        alexnet = torchvision.models.alexnet()
    report = count_flops(resnet, (3, 224, 224))
    assert round(report.gmacs, 2) == 1.81 and report.flops == 2 * report.macs and report.gflops == 2 * report.gmacs
    assert set(report.by_operator) == {"convolution", "addmm"}
    assert round(count_flops(alexnet, (3, 224, 224)).gmacs, 2) == 0.71


def test_plain_cnn_receptive_fields():
    with torch.device("meta"):
        alexnet = torchvision.models.alexnet()
        vgg16 = torchvision.models.vgg16()
    assert model_receptive_field(alexnet, (3, 224, 224)).size == (195, 195)
    field = model_receptive_field(vgg16, (3, 224, 224))
    assert field.size == (212, 212) and field.jump == (32, 32) and len(field.layers) == 18


def test_non_plain_models_return_none():
    with torch.device("meta"):
        resnet = torchvision.models.resnet18()
        mobilenet = torchvision.models.mobilenet_v3_small()  # squeeze-excitation gates
    assert model_receptive_field(resnet, (3, 64, 64)) is None
    assert model_receptive_field(mobilenet, (3, 64, 64)) is None

    class FunctionalPool(nn.Module):  # a pool the hooks cannot see: refuse rather than be wrong
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 5)

        def forward(self, x):
            return F.max_pool2d(F.relu(self.conv(x)), 2).flatten(1)

    assert model_receptive_field(FunctionalPool(), (1, 28, 28)) is None
    upsample = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Upsample(scale_factor=2), nn.Conv2d(2, 2, 3))
    assert model_receptive_field(upsample, (1, 16, 16)) is None
    assert model_receptive_field(nn.Sequential(nn.Flatten(), nn.Linear(16, 2)), (1, 4, 4)) is None


def test_functional_pointwise_ops_keep_the_chain():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.c2, self.pool = nn.Conv2d(1, 4, 5), nn.Conv2d(4, 4, 5), nn.MaxPool2d(2)

        def forward(self, x):
            x = self.pool(F.relu(self.c1(x - 0.5)))
            x = self.pool(torch.relu_(self.c2(x)))
            return torch.flatten(x, 1)

    field = model_receptive_field(Net(), (1, 28, 28))
    assert field.size == (16, 16) and field.layers == ("c1", "pool", "c2", "pool")


@pytest.mark.parametrize(
    "layers",
    [
        [nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3)],
        [nn.Conv2d(2, 4, 7, stride=2, padding=3), nn.ReLU(), nn.MaxPool2d(3, 2, 1), nn.Conv2d(4, 4, 3, padding=1)],
        [nn.Conv2d(2, 4, 3), nn.Conv2d(4, 4, 3, dilation=2), nn.AvgPool2d(2), nn.Conv2d(4, 4, (3, 5), dilation=(1, 3))],
        [nn.Conv2d(2, 4, 5, stride=3), nn.ReLU(), nn.Conv2d(4, 4, 3, stride=2, padding="valid"), nn.MaxPool2d(3, 1)],
    ],
)
def test_analytic_receptive_field_agrees_with_gradients(layers):
    torch.manual_seed(0)
    model = nn.Sequential(*layers)
    field = model_receptive_field(model, (2, 64, 64))
    assert field.size == empirical_receptive_field(model, (2, 64, 64), trials=6)


def test_receptive_field_composition_matches_sequence_helper():
    field = model_receptive_field(small_cnn(), (3, 64, 64))
    expected = receptive_field([(3, 1, 1, 1), (3, 2, 1, 1), (2, 2, 1, 0), (3, 1, 2, 2)])
    assert field.height == expected and field.width == expected
