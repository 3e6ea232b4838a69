"""Segmentation models: torchvision parity, parameter counts, the output contract, FCN/DeepLab details."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import segmentation as tvseg

from cvzoo.models import create_model, get_entry, list_models
from cvzoo.models.classification.vgg import VGG
from cvzoo.models.segmentation.base import bilinear_upsampler
from cvzoo.models.segmentation.fcn import ConvolutionalizedHead
from cvzoo.models.weights import load_weights

# Many small ops: one compute thread (see tests/conftest.py).
pytestmark = pytest.mark.usefixtures("one_thread")

SEGMENTERS = list_models(task="segment")


def _parity(name: str, size: tuple[int, int], random_norm_stats, aux: bool = True) -> None:
    torch.manual_seed(0)
    kwargs = {"aux_loss": True} if aux else {}
    reference = getattr(tvseg, name)(weights=None, weights_backbone=None, num_classes=5, **kwargs)
    random_norm_stats(reference).eval()
    ours = create_model(name, num_classes=5).eval()
    report = load_weights(ours, reference.state_dict(), strict=True)
    assert report.ok and report.remap.startswith("torchvision:")
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        expected, got = reference(x), ours(x)
    assert set(got) == set(expected)
    for key in expected:
        assert got[key].shape == expected[key].shape == (2, 5, *size)
        torch.testing.assert_close(got[key], expected[key], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", ["fcn_resnet50", "deeplabv3_resnet50", "deeplabv3_resnet101"])
def test_torchvision_parity(name, random_norm_stats):
    _parity(name, (72, 88), random_norm_stats)


def test_lraspp_torchvision_parity(random_norm_stats):
    _parity("lraspp_mobilenet_v3_large", (96, 80), random_norm_stats, aux=False)


@pytest.mark.parametrize("name", ["fcn_resnet101", "deeplabv3_resnet101", "fcn_resnet50", "deeplabv3_resnet50",
                                  "lraspp_mobilenet_v3_large"])
def test_parameter_counts_match_torchvision(name):
    kwargs = {} if name.startswith("lraspp") else {"aux_loss": True}
    with torch.device("meta"):
        reference = getattr(tvseg, name)(weights=None, weights_backbone=None, num_classes=21, **kwargs)
        ours = create_model(name, num_classes=21)
    assert get_entry(name).reference == f"torchvision:{name}"
    count = sum(p.numel() for p in ours.parameters())
    assert count == sum(p.numel() for p in reference.parameters())
    assert len(ours.state_dict()) == len(reference.state_dict())


def test_unet_parameter_counts():
    """The notes' U-Net (base 64, 4 classes, bilinear) has 13.4M parameters; the variants differ."""
    def count(**kwargs):
        with torch.device("meta"):
            return sum(p.numel() for p in create_model(**kwargs).parameters())

    assert count(name="unet", num_classes=4) == 13_391_556
    assert count(name="unet", num_classes=4, decoder_mid="half_in") == 17_263_172
    assert count(name="unet_deconv", num_classes=4) == 31_037_828


@pytest.mark.parametrize("name", SEGMENTERS)
def test_output_contract_shapes(name):
    """``forward -> {"out": [B, K, H, W]}`` (+ "aux") at the input size, for odd sizes too (meta device)."""
    with torch.device("meta"):
        model = create_model(name, num_classes=3)
        for train in (True, False):
            model.train(train)
            outputs = model(torch.empty(2, 3, 70, 94))
            assert isinstance(outputs, dict) and "out" in outputs
            assert set(outputs) <= {"out", "aux"}
            for value in outputs.values():
                assert tuple(value.shape) == (2, 3, 70, 94)


@pytest.mark.parametrize("name, kwargs", [
    ("unet", {"base_channels": 4}),
    ("unet_deconv", {"base_channels": 4}),
    ("deeplabv3plus_resnet50", {"backbone": "resnet18", "aux_head": True}),
    ("fcn8s", {"backbone": "resnet18", "hidden_channels": 16, "head_kernel": 3}),
])
def test_gradients_eval_equality_and_postprocess(name, kwargs):
    torch.manual_seed(0)
    model = create_model(name, num_classes=3, **kwargs)
    images = torch.randn(2, 3, 64, 64)
    targets = torch.randint(0, 3, (2, 64, 64))
    targets[:, :4] = 255
    outputs = model(images)
    parts = model.loss(outputs, targets, aux_weight=0.4)
    # The default criterion: cross-entropy with 255 ignored, the aux output's weighted by aux_weight.
    expected = F.cross_entropy(outputs["out"], targets, ignore_index=255)
    if "aux" in outputs:
        assert set(parts) == {"loss", "loss_main", "loss_aux"}
        expected = expected + 0.4 * F.cross_entropy(outputs["aux"], targets, ignore_index=255)
    else:
        assert set(parts) == {"loss"}
    torch.testing.assert_close(parts["loss"], expected)
    parts["loss"].backward()
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(p.grad is not None for p in model.parameters() if p.requires_grad)
    model.eval()
    with torch.no_grad():
        first, second = model(images), model(images)
    torch.testing.assert_close(first["out"], second["out"])
    maps = model.postprocess(first, [(32, 40), (64, 64)])
    assert [tuple(m.shape) for m in maps] == [(32, 40), (64, 64)] and maps[0].dtype == torch.int64


def test_bilinear_upsampler_matches_interpolate_inside():
    x = torch.randn(1, 3, 6, 7)
    for factor in (2, 8):
        up = bilinear_upsampler(3, factor)
        y = up(x)
        assert y.shape[-2:] == (6 * factor, 7 * factor)
        ref = F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
        inner = slice(factor, -factor)
        torch.testing.assert_close(y[..., inner, inner], ref[..., inner, inner], atol=1e-5, rtol=1e-5)
    assert not bilinear_upsampler(3, 4, learnable=False).weight.requires_grad


def test_fcn_convolutionalized_head_equals_vgg_classifier():
    """fc6 as a 7x7 conv over pool5 is the linear layer on the flattened 7x7 map (Long et al., §3.1)."""
    torch.manual_seed(0)
    vgg = VGG(blocks=((4,), (4,), (8,), (8,), (8,)), num_classes=5, hidden_dim=16, drop_rate=0.0).eval()
    head = ConvolutionalizedHead(8, 5, hidden_channels=16, kernel_size=7, dropout=0.0).eval()
    assert head.load_vgg_classifier(vgg)
    pool5 = torch.randn(2, 8, 7, 7)
    with torch.no_grad():
        expected = vgg.classifier[:5](torch.flatten(pool5, 1))  # fc6, ReLU, dropout, fc7, ReLU
        got = head.act(head.fc7(head.act(head.fc6(pool5))))[:, :, 3, 3]
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert not ConvolutionalizedHead(8, 5, hidden_channels=32).load_vgg_classifier(vgg)  # shapes differ


@pytest.mark.parametrize("variant, skips", [(32, 0), (16, 1), (8, 2)])
def test_fcn_variants_fuse_pool4_and_pool3(variant, skips):
    with torch.device("meta"):
        model = create_model(f"fcn{variant}s", num_classes=21)
    assert len(model.skip_scores) == skips
    assert [model.backbone.feature_info[i].reduction for i in model.skip_indices] == [16, 8][:skips]
    assert model.final_upsampler.stride == (variant, variant) and not model.final_upsampler.weight.requires_grad
    # Paper, Table 1: FCN-VGG16 has 134M (learned) parameters; the fixed final upsampler is not one.
    assert 133e6 < sum(p.numel() for p in model.parameters() if p.requires_grad) < 135e6


def test_deeplab_output_stride_and_multi_grid():
    with torch.device("meta"):
        os16 = create_model("deeplabv3_resnet50", num_classes=3, output_stride=16, multi_grid=(1, 2, 4))
        os8 = create_model("deeplabv3_resnet50", num_classes=3)
        plus = create_model("deeplabv3plus_resnet50", num_classes=3)
        x = torch.empty(1, 3, 64, 64)
        assert os16.backbone(x)[-1].shape[-1] == 4 and os8.backbone(x)[-1].shape[-1] == 8
    assert [b.conv2.dilation[0] for b in os16.backbone.body.layer4] == [2, 4, 8]
    assert [b.conv2.padding[0] for b in os16.backbone.body.layer4] == [2, 4, 8]
    assert [m.conv.dilation[0] for m in list(os16.head.aspp.branches)[1:]] == [6, 12, 18]
    assert [m.conv.dilation[0] for m in list(os8.head.aspp.branches)[1:]] == [12, 24, 36]
    assert plus.output_stride == 16 and plus.backbone.feature_info[plus.low_index].reduction == 4
    assert plus.decoder.low_project.conv.out_channels == 48
    with pytest.raises(ValueError, match="cannot dilate"):
        create_model("deeplabv3_resnet50", num_classes=3, backbone="vgg11", output_stride=8)
    with pytest.raises(ValueError, match="multi_grid"):
        create_model("deeplabv3_resnet50", num_classes=3, backbone="resnet18", multi_grid=(1, 2, 4))


def test_backbone_by_name_and_bad_backbone():
    model = create_model("deeplabv3_resnet50", num_classes=3, backbone="resnet18", aux_head=False)
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 48, 48))["out"].shape == (1, 3, 48, 48)
    assert isinstance(model.backbone.body.fc, nn.Identity)
    with pytest.raises(ValueError, match="not a classifier"):
        create_model("fcn_resnet50", num_classes=3, backbone="unet")
