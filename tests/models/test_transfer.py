"""Transfer-learning helpers: freezing stages, frozen BatchNorm, optimizer parameter groups."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cvzoo.models import create_model
from cvzoo.models.transfer import (
    FreezeError,
    freeze,
    keep_frozen_bn_eval,
    param_groups,
    replace_head,
    unfreeze,
)


def _frozen(model: nn.Module) -> set[str]:
    return {name for name, p in model.named_parameters() if not p.requires_grad}


def _params_under(model: nn.Module, *prefixes: str) -> set[str]:
    return {name for name, _ in model.named_parameters() if name.startswith(prefixes)}


def test_freeze_by_stage_count_includes_the_stem():
    model = create_model("resnet18", num_classes=3)
    assert freeze(model, 2) == ["conv1", "bn1", "act1", "maxpool", "layer1"]
    assert _frozen(model) == _params_under(model, "conv1.", "bn1.", "layer1.")
    assert freeze(model, 0) == []
    # Nested stage modules (features.N): everything up to and including the first pool.
    lenet = create_model("lenet")
    assert freeze(lenet, 1) == ["conv1", "act1", "pool1"]
    assert _frozen(lenet) == {"conv1.weight", "conv1.bias"}
    vgg_like = create_model("alexnet_half")
    freeze(vgg_like, 2)  # features.0 .. features.4 (conv1, conv2)
    assert _frozen(vgg_like) == _params_under(vgg_like, "features.0.", "features.3.")


def test_freeze_errors():
    model = create_model("resnet20_cifar")
    with pytest.raises(FreezeError, match="has 4"):
        freeze(model, 5)
    with pytest.raises(FreezeError, match="did you mean layer1"):
        freeze(model, ["layer_1"])
    with pytest.raises(FreezeError, match="not a bool"):
        freeze(model, True)


def test_frozen_batchnorm_stays_in_eval_and_keeps_its_statistics():
    torch.manual_seed(0)
    model = create_model("resnet20_cifar", num_classes=3)
    freeze(model, ["conv1", "bn1", "layer1"])
    model.train()  # puts every module in train mode, frozen BN included ...
    keep_frozen_bn_eval(model)  # ... so the trainer calls this right after
    assert not model.bn1.training and not model.layer1[0].bn1.training
    assert model.layer2[0].bn1.training and model.training

    frozen_mean = model.layer1[0].bn1.running_mean.clone()
    live_mean = model.layer2[0].bn1.running_mean.clone()
    out = model(torch.randn(4, 3, 32, 32))
    out.sum().backward()
    assert torch.equal(model.layer1[0].bn1.running_mean, frozen_mean)
    assert not torch.equal(model.layer2[0].bn1.running_mean, live_mean)
    assert model.layer1[0].conv1.weight.grad is None and model.layer2[0].conv1.weight.grad is not None

    unfreeze(model)
    assert not _frozen(model)
    model.train()
    keep_frozen_bn_eval(model)
    assert model.layer1[0].bn1.training  # no longer flagged


def test_unfreeze_selected_stages_only():
    model = create_model("resnet20_cifar")
    freeze(model, 3)
    unfreeze(model, ["layer1"])
    assert _frozen(model) == _params_under(model, "conv1.", "bn1.", "layer2.")


def test_param_groups_lrs_and_weight_decay():
    model = create_model("resnet20_cifar", num_classes=3)
    freeze(model, 1)
    groups = {g["name"]: g for g in param_groups(model, lr=0.1, backbone_lr_mult=0.1, weight_decay=5e-4)}
    assert set(groups) == {"head", "head_no_decay", "backbone", "backbone_no_decay"}
    names = {id(p): n for n, p in model.named_parameters()}

    def members(group):
        return {names[id(p)] for p in groups[group]["params"]}

    assert members("head") == {"fc.weight"} and members("head_no_decay") == {"fc.bias"}
    assert groups["head"]["lr"] == pytest.approx(0.1) and groups["head"]["weight_decay"] == 5e-4
    assert groups["backbone"]["lr"] == pytest.approx(0.01)
    assert all(".conv" in n for n in members("backbone"))
    assert all(".bn" in n for n in members("backbone_no_decay"))
    assert groups["backbone_no_decay"]["weight_decay"] == 0.0 and groups["head_no_decay"]["weight_decay"] == 0.0
    # Every trainable parameter exactly once; frozen ones (the stem) nowhere.
    listed = [n for g in groups.values() for n in members(g["name"])]
    assert sorted(listed) == sorted(n for n, p in model.named_parameters() if p.requires_grad)
    assert "conv1.weight" not in listed and "bn1.weight" not in listed
    optimizer = torch.optim.SGD(list(groups.values()), lr=1.0, momentum=0.9)
    assert sorted(g["lr"] for g in optimizer.param_groups) == pytest.approx([0.01, 0.01, 0.1, 0.1])

    flat = param_groups(model, lr=0.1, backbone_lr_mult=1.0, no_decay_norm_bias=False)
    assert [g["name"] for g in flat] == ["head", "backbone"]
    assert all(g["lr"] == pytest.approx(0.1) and g["weight_decay"] == 1e-4 for g in flat)


def test_norm_params_found_by_module_type():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, bias=False), nn.GroupNorm(2, 8), nn.Flatten(), nn.LayerNorm(8 * 30 * 30))
    groups = {g["name"]: g for g in param_groups(model, lr=1.0)}  # no get_classifier: all backbone
    assert set(groups) == {"backbone", "backbone_no_decay"}
    assert [p.shape for p in groups["backbone"]["params"]] == [torch.Size([8, 3, 3, 3])]
    assert len(groups["backbone_no_decay"]["params"]) == 4  # GroupNorm and LayerNorm weight + bias


def test_replace_head_keeps_dtype_and_drops_to_features():
    model = create_model("resnet20_cifar", num_classes=10).to(torch.float64).eval()
    head = replace_head(model, 4)
    assert head is model.get_classifier() and head.out_features == 4 and head.weight.dtype == torch.float64
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    assert model(x).shape == (2, 4)
    assert isinstance(replace_head(model, 0), nn.Identity)
    assert model(x).shape == (2, 64)
    with pytest.raises(ValueError, match=">= 0"):
        replace_head(model, -1)


def test_one_builder_serves_every_task_split():
    from cvzoo.config import Config, apply_overrides
    from cvzoo.tasks.base import Task
    from cvzoo.tasks.detection import DetectionTask
    from cvzoo.tasks.segmentation import SegmentationTask

    config = apply_overrides(Config(), ["optim.lr=0.1", "optim.backbone_lr_mult=0.5", "optim.weight_decay=0.01"])
    # Segmentation: model.backbone is the backbone part, everything else the head.
    seg = create_model("deeplabv3_resnet50", num_classes=3)
    groups = {g["name"]: g for g in SegmentationTask.param_groups(type("T", (), {"config": config})(), seg)}
    assert set(groups) == {"backbone", "backbone_no_decay", "head", "head_no_decay"}
    assert groups["backbone"]["lr"] == pytest.approx(0.05) and groups["head"]["lr"] == pytest.approx(0.1)
    backbone_ids = {id(p) for p in seg.backbone.parameters()}
    assert all(id(p) in backbone_ids for g in ("backbone", "backbone_no_decay") for p in groups[g]["params"])
    # YOLO (the detector's own groups): weights / norm / bias, the bias groups named for the warm-up; one
    # part, or backbone and head when optim.backbone_lr_mult is not 1.
    yolo = create_model("yolov8n", num_classes=2)
    biases = {id(m.bias) for m in yolo.modules() if getattr(m, "bias", None) is not None}
    plain = apply_overrides(config, ["optim.backbone_lr_mult=1.0"])
    groups = DetectionTask.param_groups(type("T", (), {"config": plain})(), yolo)
    assert [g["name"] for g in groups] == ["weights", "norm", "bias"]
    assert [g["weight_decay"] for g in groups] == [0.01, 0.0, 0.0]
    assert {id(p) for p in groups[2]["params"]} == biases
    groups = {g["name"]: g for g in DetectionTask.param_groups(type("T", (), {"config": config})(), yolo)}
    assert set(groups) == {"backbone", "backbone_norm", "backbone_bias", "head", "head_norm", "head_bias"}
    assert groups["backbone_bias"]["lr"] == pytest.approx(0.05) and groups["head_bias"]["lr"] == pytest.approx(0.1)
    assert {id(p) for g in ("backbone_bias", "head_bias") for p in groups[g]["params"]} == biases
    # The default of every task: one part, norm and 1-D parameters undecayed.
    groups = Task.param_groups(type("T", (), {"config": config})(), nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2)))
    assert [(g["name"], len(g["params"])) for g in groups] == [("weights", 1), ("no_decay", 3)]
