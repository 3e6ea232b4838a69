"""`cvzoo models` and `cvzoo info` on tiny models registered by this test module."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from cvzoo.analysis import count_flops
from cvzoo.cli.main import main
from cvzoo.models.registry import create_model, list_models, register_model


class TinyPlainCNN(nn.Module):
    """conv3 -> pool2 -> conv3(dilation 2) -> global pool -> linear: receptive field 3 + 1 + 4*2 = 12."""

    def __init__(self, num_classes: int = 5, in_channels: int = 3, width: int = 8) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, width, 3, dilation=2, padding=2), nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.features(x)).flatten(1))


class TinyResidual(nn.Module):
    def __init__(self, num_classes: int = 5, in_channels: int = 3) -> None:
        super().__init__()
        self.stem = nn.Conv2d(in_channels, 8, 3, padding=1)
        self.block = nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Linear(8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        return self.head((x + self.block(x)).mean((2, 3)))


@pytest.fixture(scope="module", autouse=True)
def tiny_models():
    # The registry rejects duplicates, so register once per session.
    if "clitest_tiny_plain" not in list_models("clitest_*"):
        register_model("clitest_tiny_plain", TinyPlainCNN, input_size=(3, 32, 32))
        register_model("clitest_tiny_residual", TinyResidual, input_size=(3, 24, 24))


def test_models_json_lists_params_and_gflops(capsys):
    assert main(["models", "clitest_*", "--flops", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == {"clitest_tiny_plain", "clitest_tiny_residual"}
    plain = create_model("clitest_tiny_plain")
    assert rows["clitest_tiny_plain"]["params_m"] == round(sum(p.numel() for p in plain.parameters()) / 1e6, 3)
    assert rows["clitest_tiny_plain"]["gmacs"] == round(count_flops(plain, (3, 32, 32)).macs / 1e9, 3)
    assert rows["clitest_tiny_plain"]["gflops"] == round(2 * count_flops(plain, (3, 32, 32)).macs / 1e9, 3)
    assert rows["clitest_tiny_residual"]["input_size"] == [3, 24, 24]


def test_models_size_override_and_table(capsys):
    assert main(["models", "clitest_tiny_plain", "--flops", "--size", "64", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)[0]
    expected = count_flops(create_model("clitest_tiny_plain"), (3, 64, 64)).macs
    assert row["input_size"] == [3, 64, 64] and row["gmacs"] == round(expected / 1e9, 3)
    assert main(["models", "clitest_*"]) == 0
    table = capsys.readouterr().out
    assert "params (M)" in table and "clitest_tiny_residual" in table and "GFLOPs" not in table


def test_models_errors(capsys):
    assert main(["models", "clitest_nothing_*"]) == 2
    assert "no registered model" in capsys.readouterr().err
    assert main(["models", "clitest_*", "--task", "segment"]) == 2
    assert main(["models", "--flops", "--size", "0", "clitest_*"]) == 2


def test_info_table_and_receptive_field(capsys):
    assert main(["info", "clitest_tiny_plain", "--depth", "2"]) == 0
    out = capsys.readouterr().out
    assert "features.3 (Conv2d)" in out and "[1, 8, 16, 16]" in out
    params = sum(p.numel() for p in create_model("clitest_tiny_plain").parameters())
    assert f"Total params: {params:,}" in out
    assert "Receptive field of the last feature map: 12x12 px (effective stride 2x2" in out
    assert main(["info", "clitest_tiny_residual"]) == 0
    assert "Receptive field: n/a" in capsys.readouterr().out


def test_info_json_with_overrides(capsys):
    args = ["info", "clitest_tiny_plain", "--num-classes", "7", "--in-channels", "1", "--size", "40", "--json"]
    assert main(args) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["input_size"] == [1, 40, 40]
    assert info["layers"][-1]["output_shape"] == "[1, 7]"
    layers = {layer["name"]: layer for layer in info["layers"]}
    assert layers["features.0"]["params"] == 1 * 8 * 9 + 8 and layers["features.0"]["depth"] == 2
    assert info["receptive_field"] == [12, 12] and info["jump"] == [2, 2]
    assert info["total_params"] == sum(p.numel() for p in TinyPlainCNN(7, 1).parameters())


def test_info_errors(capsys):
    assert main(["info", "clitest_tiny_plan"]) == 2
    assert "did you mean clitest_tiny_plain" in capsys.readouterr().err
    assert main(["info", "clitest_tiny_plain", "--depth", "0"]) == 2
    assert main(["info", "clitest_tiny_plain", "--size", "1"]) == 2  # too small for the network


def test_train_set_takes_several_overrides_per_flag_and_repeats():
    from cvzoo.cli.main import build_parser

    args = build_parser().parse_args(["train", "--set", "optim.lr=0.1", "train.amp=true", "--set", "train.epochs=2"])
    assert args.overrides == ["optim.lr=0.1", "train.amp=true", "train.epochs=2"]


def test_models_of_a_task_that_runs_another_tasks_models(capsys):
    # Instance segmentation runs detectors: the list holds those with a mask head, not the box-only ones.
    assert main(["models", "*rcnn*", "--task", "instance", "--json"]) == 0
    names = {r["name"] for r in json.loads(capsys.readouterr().out)}
    assert names == {"maskrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn_v2"}
    assert main(["models", "yolov8*", "--task", "instance"]) == 2
    assert "for task 'instance'" in capsys.readouterr().err


def test_models_weights_lists_the_published_tags_default_first(capsys):
    assert main(["models", "resnet50", "--weights", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["weights"][0] == "tv_in1k_v2*" and "tv_in1k" in row["weights"] and "timm_a1_in1k" in row["weights"]
    assert main(["models", "lenet", "--weights"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].rstrip().endswith("-")
