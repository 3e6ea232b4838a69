"""YOLO detectors: published parameter counts and GFLOPs, the Detector contract, backbone replacement."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cvzoo.analysis.flops import count_flops
from cvzoo.models import create_model, get_entry, list_models
from cvzoo.models.detection.base import Detections, Detector
from cvzoo.models.detection.yolov3 import YOLOv3
from cvzoo.models.detection.yolov8 import ultralytics_yolov8_to_cvzoo

YOLO_MODELS = [
    "yolov3", "yolov3_spp", "yolov3_tiny",
    "yolov5n", "yolov5s", "yolov5m", "yolov5l", "yolov5x",
    "yolov8n", "yolov8s", "yolov8m", "yolov8l", "yolov8x",
]
SMALL_MODELS = ["yolov8n", "yolov5n", "yolov3_tiny"]

# Parameters of the published models at 80 classes, as their model summaries print them (BatchNorm not
# fused). YOLOv8's summary also counts the 16 fixed weights of its DFL conv, which here is a buffer.
PUBLISHED_PARAMS = {
    "yolov3": 61_949_149,
    "yolov3_tiny": 8_852_366,
    "yolov5n": 1_872_157,
    "yolov5s": 7_235_389,
    "yolov5m": 21_190_557,
    "yolov5l": 46_563_709,
    "yolov5x": 86_749_405,
    "yolov8n": 3_157_200 - 16,
    "yolov8s": 11_166_560 - 16,
    "yolov8m": 25_902_640 - 16,
    "yolov8l": 43_691_520 - 16,
    "yolov8x": 68_229_648 - 16,
}


def _meta_model(name: str, **kwargs) -> nn.Module:
    with torch.device("meta"):
        return create_model(name, **kwargs)


def _num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _bn_channels(model: nn.Module) -> int:
    return sum(m.num_features for m in model.modules() if isinstance(m, nn.BatchNorm2d))


def test_registered_as_detectors():
    detectors = list_models(task="detect")
    assert set(YOLO_MODELS) <= set(detectors)
    for name in YOLO_MODELS:
        assert get_entry(name).input_size == (3, 640, 640)
    assert get_entry("darknet53").task == "classify"


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS))
def test_parameter_counts_match_the_published_models(name):
    assert _num_params(_meta_model(name)) == PUBLISHED_PARAMS[name]


def test_darknet53_matches_the_paper():
    # Redmon & Farhadi 2018, table 2: Darknet-53 at 256 x 256 needs 18.7 billion operations; 41.6M
    # parameters with the 1000-class head.
    model = _meta_model("darknet53")
    assert _num_params(model) == 41_609_928
    assert count_flops(model.eval(), (3, 256, 256)).flops / 1e9 == pytest.approx(18.7, rel=0.01)


def test_yolov8n_and_yolov5n_fused_counts():
    # The model tables quote the BatchNorm-fused counts: each conv+BN pair keeps one bias per channel
    # instead of BN's two parameters, so fused = params - BN channels (+ 16 DFL weights for YOLOv8).
    v8n = _meta_model("yolov8n")
    fused = _num_params(v8n) - _bn_channels(v8n) + 16
    assert fused == 3_151_904
    assert abs(_num_params(v8n) - 3_151_904) / 3_151_904 < 0.01
    v5n = _meta_model("yolov5n")
    assert _num_params(v5n) - _bn_channels(v5n) == 1_867_405  # YOLOv5n: 1.9M
    # YOLOv3-SPP = YOLOv3 + the 1x1 conv fusing the 4 x 512 pooled channels (darknet's yolov3-spp.cfg).
    assert _num_params(_meta_model("yolov3_spp")) == 61_949_149 + 2048 * 512 + 2 * 512


@pytest.mark.parametrize("name, gflops", [("yolov8n", 8.7), ("yolov5n", 4.5)])
def test_gflops_at_640(name, gflops):
    # GFLOPs as the YOLO tables report them: 2 x multiply-accumulates of the convolutions at 640 x 640.
    report = count_flops(_meta_model(name).eval(), (3, 640, 640))
    assert round(report.flops / 1e9, 1) == gflops


def test_num_classes_changes_only_the_prediction_layers():
    # YOLOv8's class branch is max(C_3, min(K, 100)) wide: 80 for COCO, 64 (= C_3 of v8n) for 3 classes.
    assert _meta_model("yolov8n").head.cls_branches[0][0].conv.out_channels == 80
    assert _meta_model("yolov8n", num_classes=3).head.cls_branches[0][0].conv.out_channels == 64
    # YOLOv5n: only the 1x1 prediction convs (64/128/256 inputs, 3 anchors) depend on K.
    v5 = _num_params(_meta_model("yolov5n")) - _num_params(_meta_model("yolov5n", num_classes=3))
    assert v5 == 3 * (64 + 128 + 256 + 3) * (80 - 3)


@pytest.mark.parametrize("name", SMALL_MODELS)
def test_forward_decode_and_postprocess_shapes(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=3)
    assert isinstance(model, Detector) and model.num_classes == 3
    x = torch.rand(2, 3, 64, 96)
    outputs = model.train()(x)
    strides = model.strides
    assert list(outputs) == [f"p{s.bit_length() - 1}" for s in strides]
    for raw, stride in zip(outputs.values(), strides):
        if name.startswith("yolov8"):
            assert raw.shape == (2, 4 * 16 + 3, 64 // stride, 96 // stride)
        else:
            assert raw.shape == (2, 3, 64 // stride, 96 // stride, 5 + 3)
    model.eval()
    with torch.no_grad():
        outputs = model(x)
        decoded = model.decode(outputs)
        anchors_per_cell = 1 if name.startswith("yolov8") else 3
        num = sum(anchors_per_cell * (64 // s) * (96 // s) for s in strides)
        assert decoded.shape == (2, num, 4 + 3)
        assert torch.isfinite(decoded).all()
        scores = decoded[..., 4:]
        assert scores.min() >= 0 and scores.max() <= 1
        detections = model.postprocess(outputs, conf_threshold=0.0, max_detections=5)
    assert len(detections) == 2 and all(isinstance(d, Detections) and len(d) <= 5 for d in detections)


@pytest.mark.parametrize("name", SMALL_MODELS)
def test_gradients_reach_every_parameter(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=3).train()
    targets = [
        {"boxes": torch.tensor([[4.0, 6.0, 30.0, 40.0], [30.0, 10.0, 60.0, 28.0]]), "labels": torch.tensor([0, 2])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},
    ]
    losses = model.compute_loss(model(torch.rand(2, 3, 64, 64)), targets)
    assert set(losses) >= {"loss", "box", "cls"} and torch.isfinite(losses["loss"])
    losses["loss"].backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, missing[:5]
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    head = model.head.cls_branches[0][-1] if name == "yolov8n" else model.head.convs[-1]
    assert head.weight.grad.abs().sum() > 0


def test_set_anchors_sorts_by_area_and_checks_the_count():
    model = create_model("yolov3_tiny", num_classes=2)
    model.set_anchors([[200, 100], [10, 10], [40, 30], [300, 300], [20, 20], [100, 90]])
    assert model.anchors.shape == (2, 3, 2)
    assert model.anchors[0].tolist() == [[10, 10], [20, 20], [40, 30]]
    assert model.anchors[1, 2].tolist() == [300, 300]
    with pytest.raises(ValueError, match="need 6 anchors"):
        model.set_anchors([[1, 2]])
    assert "anchors" in model.state_dict()


def test_classifier_backbone_replaces_the_yolo_backbone(tmp_path):
    torch.manual_seed(0)
    resnet = create_model("resnet18")
    path = tmp_path / "resnet18.pt"
    torch.save(resnet.state_dict(), path)
    model = create_model("yolov8n", num_classes=3, backbone="resnet18", backbone_weights=str(path))
    torch.testing.assert_close(model.backbone.body.layer2[0].conv1.weight, resnet.layer2[0].conv1.weight)
    # ResNet-18 gives 128/256/512 channels at strides 8/16/32; 1x1 convs adapt them to YOLOv8n's 64/128/256.
    assert [a.conv.out_channels for a in model.backbone.adapters] == [64, 128, 256]
    outputs = model(torch.rand(1, 3, 64, 64))
    assert [o.shape[-1] for o in outputs.values()] == [8, 4, 2]
    targets = [{"boxes": torch.tensor([[8.0, 8.0, 40.0, 48.0]]), "labels": torch.tensor([1])}]
    model.compute_loss(outputs, targets)["loss"].backward()
    assert model.backbone.body.layer1[0].conv1.weight.grad is not None
    v3 = create_model("yolov3_tiny", num_classes=3, backbone="resnet18")
    assert v3(torch.rand(1, 3, 64, 64))["p4"].shape == (1, 3, 4, 4, 8)


def test_bad_backbones_are_rejected():
    with pytest.raises(ValueError, match="not a classifier"):
        create_model("yolov5n", backbone="yolov8n")
    with pytest.raises(ValueError, match="no stage at stride 8"):
        create_model("yolov8n", backbone="lenet")
    with pytest.raises(ValueError, match="not to tiny"):
        YOLOv3(tiny=True, spp=True)
    with pytest.raises(ValueError, match="same even number"):
        YOLOv3(anchors=((10, 13, 16), (30, 61, 62), (116, 90, 156)))


@pytest.mark.parametrize("channels_last", [False, True])
def test_yolov8_postprocess_decodes_only_candidates_with_the_same_detections(channels_last):
    from cvzoo.models.detection.dense import nms_postprocess
    from tests.models.detection.helpers import calibrated_detector

    model = calibrated_detector("yolov8n", num_classes=3).eval()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    with torch.no_grad():
        outputs = model(torch.rand(2, 3, 64, 96))
        full = model.decode(outputs)
        for conf in (0.05, 0.3, 0.99):
            partial = model.decode(outputs, min_score=conf)
            keep = full[..., 4:].amax(-1) > conf
            torch.testing.assert_close(partial[keep], full[keep])  # the candidates: decoded exactly
            torch.testing.assert_close(partial[..., 4:], full[..., 4:])  # scores of all points
            fast = model.postprocess(outputs, conf, 0.6, 50)
            reference = nms_postprocess(full, conf, 0.6, 50)
            for a, b in zip(fast, reference):
                torch.testing.assert_close(a.boxes, b.boxes)
                torch.testing.assert_close(a.scores, b.scores)
                assert a.labels.tolist() == b.labels.tolist()
        assert int((full[..., 4:].amax(-1) > 0.3).sum()) > 0  # the check is not vacuous


def test_ultralytics_yolov8_state_dict_loads_through_the_remap(tmp_path):
    """Key names and shapes of a real ultralytics 8.4 YOLOv8n (10 classes) checkpoint, recorded as JSON
    (ultralytics itself is never imported): every tensor lands on a cvzoo key of the same shape."""
    import json
    from pathlib import Path

    from cvzoo.models.weights import load_weights

    layout = json.loads((Path(__file__).parent / "data" / "ultralytics_yolov8n_nc10_keys.json").read_text())
    assert "model.22.dfl.conv.weight" in layout and "model.2.m.0.cv1.conv.weight" in layout
    generator = torch.Generator().manual_seed(0)
    theirs = {k: (torch.randn(shape, generator=generator) if shape else torch.tensor(3)) for k, shape in layout.items()}
    model = create_model("yolov8n", num_classes=10)
    ours = model.state_dict()
    converted = ultralytics_yolov8_to_cvzoo(theirs)
    assert set(converted) == set(ours)  # nothing missing, nothing left over (the fixed DFL conv is dropped)
    assert all(converted[k].shape == ours[k].shape for k in ours)
    assert torch.equal(converted["neck.bottom_up4.blocks.0.conv1.conv.weight"], theirs["model.18.m.0.cv1.conv.weight"])
    assert torch.equal(converted["backbone.body.stage4.2.reduce.conv.weight"], theirs["model.9.cv1.conv.weight"])
    assert torch.equal(converted["head.cls_branches.2.2.bias"], theirs["model.22.cv3.2.2.bias"])
    # remap="auto" finds it from the key names alone
    path = tmp_path / "ultralytics_state.pt"
    torch.save(theirs, path)
    report = load_weights(model, path)
    assert report.remap == "ultralytics:yolov8"
    torch.testing.assert_close(model.state_dict()["head.box_branches.0.2.weight"], theirs["model.22.cv2.0.2.weight"])
    with pytest.raises(KeyError, match="not an ultralytics YOLOv8 key"):
        ultralytics_yolov8_to_cvzoo({"backbone.stem.weight": torch.zeros(1)})
