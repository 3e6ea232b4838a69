"""CNN zoo behaviour without a reference library: the papers' own numbers, RepVGG re-parameterisation,
channel shuffle, GoogLeNet's auxiliary heads, backbone strides and the attention ResNets."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cvzoo.models import create_model
from cvzoo.models.classification.attention_resnet import AttentionBlock, add_attention
from cvzoo.models.classification.mobilenet_v2 import InvertedResidual
from cvzoo.models.classification.repvgg import RepVGGBlock
from cvzoo.models.classification.shufflenet_v1 import ShuffleNetV1, channel_shuffle
from cvzoo.models.classification.shufflenet_v2 import ShuffleV2Block
from cvzoo.models.features import FeatureExtractor
from cvzoo.models.weights import load_weights


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Small models at 64 px: one thread avoids oversubscribing a shared 2-core machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _params_and_macs(name: str, size: int = 224, **kwargs) -> tuple[float, float]:
    """Millions of parameters and of multiply-accumulates at ``size`` px, counted on the meta device."""
    with torch.device("meta"):
        model = create_model(name, **kwargs).eval()
        counter = FlopCounterMode(display=False)
        with counter:
            model(torch.empty(1, 3, size, size))
    return sum(p.numel() for p in model.parameters()) / 1e6, counter.get_total_flops() / 2e6


def _randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random BN affine parameters, then running statistics measured on random inputs.

    Measured (not random) statistics keep the activations O(1) through twenty layers, so a 1e-5
    tolerance is a real test of the fused kernels rather than of float32 rounding on huge values.
    """
    generator = torch.Generator().manual_seed(seed)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        for norm in norms:
            norm.weight.copy_(torch.rand(norm.num_features, generator=generator) + 0.5)
            norm.bias.copy_(torch.randn(norm.num_features, generator=generator) * 0.2)
            norm.reset_running_stats()
            norm.momentum = None  # cumulative average over the calibration batches
        model.train()
        model(torch.randn(8, 3, 64, 64, generator=generator))
    for norm in norms:
        norm.momentum = 0.1
    return model.eval()


# ---------------------------------------------------------------------------------------------------
# The papers' own numbers
# ---------------------------------------------------------------------------------------------------

# Zhang et al., 2018, Table 1 (1x, MFLOPs = mult-adds at 224 px) and Table 2 / 8 (0.5x, 2x, g = 3).
SHUFFLENET_V1_MFLOPS = [
    ("shufflenet_v1_g1", 143), ("shufflenet_v1_g2", 140), ("shufflenet_v1_g3", 137),
    ("shufflenet_v1_g4", 133), ("shufflenet_v1_g8", 137),
    ("shufflenet_v1_g3_x0_5", 38), ("shufflenet_v1_g3_x2_0", 524),
]


@pytest.mark.parametrize(("name", "mflops"), SHUFFLENET_V1_MFLOPS)
def test_shufflenet_v1_complexity_matches_the_paper(name, mflops):
    _, macs = _params_and_macs(name)
    assert macs == pytest.approx(mflops, rel=0.02)


def test_shufflenet_v1_1x_g3_has_1_9m_parameters():
    params, _ = _params_and_macs("shufflenet_v1_g3")
    assert params == pytest.approx(1.87, abs=0.03)


# (params M, mult-adds M): MobileNet v1 Table 6 (width multipliers), MobileNet v2 Table 3 / Fig. 5,
# MobileNet v3 Table 3, EfficientNet Table 2, RepVGG Table 4 (deploy form, after re-parameterisation).
PAPER_COSTS = [
    ("mobilenet_v1_100", 4.2, 569), ("mobilenet_v1_075", 2.6, 325), ("mobilenet_v1_050", 1.3, 149),
    ("mobilenet_v1_025", 0.5, 41), ("mobilenet_v2", 3.5, 300), ("mobilenet_v3_large", 5.4, 219),
    ("mobilenet_v3_small", 2.5, 56), ("efficientnet_b0", 5.3, 390),
]


@pytest.mark.parametrize(("name", "params", "mflops"), PAPER_COSTS)
def test_parameters_and_mult_adds_match_the_papers(name, params, mflops):
    got_params, got_macs = _params_and_macs(name)
    assert got_params == pytest.approx(params, abs=0.1)  # the papers round to 0.1 M
    assert got_macs == pytest.approx(mflops, rel=0.02)


@pytest.mark.parametrize(("name", "params", "gmacs"), [("repvgg_a0", 8.30, 1.4), ("repvgg_b0", 14.33, 3.1)])
def test_repvgg_deploy_form_matches_the_paper(name, params, gmacs):
    with torch.device("meta"):
        model = create_model(name).eval().reparameterize()
        counter = FlopCounterMode(display=False)
        with counter:
            model(torch.empty(1, 3, 224, 224))
    assert sum(p.numel() for p in model.parameters()) / 1e6 == pytest.approx(params, abs=0.01)
    assert counter.get_total_flops() / 2e9 == pytest.approx(gmacs, abs=0.05)


# ---------------------------------------------------------------------------------------------------
# RepVGG re-parameterisation
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("in_channels", "out_channels", "stride", "groups"),
    [(8, 8, 1, 1), (8, 16, 2, 1), (3, 8, 2, 1), (16, 16, 1, 4), (16, 32, 2, 4)],
    ids=["identity", "strided", "stem", "grouped_identity", "grouped_strided"],
)
def test_repvgg_block_fuses_to_one_conv(in_channels, out_channels, stride, groups):
    torch.manual_seed(0)
    block = RepVGGBlock(in_channels, out_channels, stride, groups)
    assert (block.identity is not None) == (in_channels == out_channels and stride == 1)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for norm in [m for m in block.modules() if isinstance(m, nn.BatchNorm2d)]:
            norm.running_mean.copy_(torch.randn(norm.num_features, generator=generator) * 0.3)
            norm.running_var.copy_(torch.rand(norm.num_features, generator=generator) + 0.5)
            norm.weight.copy_(torch.rand(norm.num_features, generator=generator) + 0.5)
            norm.bias.copy_(torch.randn(norm.num_features, generator=generator) * 0.3)
    block.eval()
    x = torch.randn(2, in_channels, 9, 9)
    with torch.no_grad():
        expected = block(x)
        block.reparameterize()
        got = block(x)
    assert isinstance(block.fused, nn.Conv2d) and block.fused.kernel_size == (3, 3)
    assert {name for name, _ in block.named_children()} == {"fused", "act"}
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_repvgg_model_reparameterizes_to_a_plain_conv_stack():
    torch.manual_seed(0)
    model = _randomize_bn(create_model("repvgg_a0", num_classes=10))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
        features = model.forward_features(x)
    assert expected.abs().max() > 0.1
    assert model.reparameterize() is model
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert {m.kernel_size for m in model.modules() if isinstance(m, nn.Conv2d)} == {(3, 3)}
    with torch.no_grad():
        got = model(x)
        got_features = model.forward_features(x)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    for a, b in zip(got_features, features):  # float32 rounding relative to each map's scale
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5 * b.abs().max().item())
    model.reparameterize()  # idempotent
    with torch.no_grad():
        torch.testing.assert_close(model(x), got, rtol=0, atol=0)


def test_repvgg_reparameterize_is_exact_in_float64():
    torch.manual_seed(0)
    model = _randomize_bn(create_model("repvgg_a0", num_classes=10)).double()
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        expected = model(x)
        got = model.reparameterize()(x)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-10)


def test_reparameterized_repvgg_exports_to_onnx():
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = _randomize_bn(create_model("repvgg_a0", num_classes=10)).reparameterize()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
    buffer = io.BytesIO()
    torch.onnx.export(model, (x,), buffer, input_names=["images"], output_names=["logits"], dynamo=False)
    graph = onnx.load_from_string(buffer.getvalue()).graph
    assert {node.op_type for node in graph.node} <= {"Conv", "Relu", "ReduceMean", "Gemm", "Constant", "Flatten"}
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"images": x.numpy()})
    torch.testing.assert_close(torch.from_numpy(got), expected, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------------------------------
# Channel shuffle and ShuffleNet units
# ---------------------------------------------------------------------------------------------------


def test_channel_shuffle_interleaves_groups():
    x = torch.arange(6.0).reshape(1, 6, 1, 1)
    assert channel_shuffle(x, 2).flatten().tolist() == [0, 3, 1, 4, 2, 5]
    assert channel_shuffle(x, 3).flatten().tolist() == [0, 2, 4, 1, 3, 5]
    assert channel_shuffle(x, 1).flatten().tolist() == [0, 1, 2, 3, 4, 5]
    # Shuffling by g and then by C/g restores the order; spatial positions never move.
    y = torch.randn(2, 12, 3, 5)
    torch.testing.assert_close(channel_shuffle(channel_shuffle(y, 3), 4), y, rtol=0, atol=0)
    with pytest.raises(ValueError, match="cannot be shuffled"):
        channel_shuffle(torch.zeros(1, 5, 2, 2), 2)


def test_shufflenet_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="groups must be one of"):
        ShuffleNetV1(groups=5)
    with pytest.raises(ValueError, match="keeps its width"):
        ShuffleV2Block(32, 64, stride=1)
    with pytest.raises(ValueError, match="stride must be 1 or 2"):
        InvertedResidual(16, 16, 64, stride=3)


# ---------------------------------------------------------------------------------------------------
# GoogLeNet auxiliary classifiers
# ---------------------------------------------------------------------------------------------------


def test_googlenet_returns_auxiliary_logits_only_in_training():
    torch.manual_seed(0)
    model = create_model("googlenet", num_classes=5)
    x = torch.randn(2, 3, 64, 64)
    outputs = model.train()(x)
    assert isinstance(outputs, tuple) and [tuple(o.shape) for o in outputs] == [(2, 5)] * 3
    # Main loss + 0.3 x each auxiliary loss reaches every parameter, the auxiliary heads included.
    main, aux1, aux2 = (nn.functional.cross_entropy(o, torch.tensor([0, 3])) for o in outputs)
    (main + 0.3 * (aux1 + aux2)).backward()
    assert all(p.grad is not None for p in model.parameters())
    with torch.no_grad():
        logits = model.eval()(x)
    assert isinstance(logits, torch.Tensor) and logits.shape == (2, 5)

    model.reset_classifier(3)
    assert [tuple(o.shape) for o in model.train()(x)] == [(2, 3)] * 3


def test_googlenet_without_auxiliary_heads():
    model = create_model("googlenet", aux_logits=False, num_classes=5).train()
    assert not any(name.startswith("aux") for name, _ in model.named_parameters())
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 5)
    # A checkpoint with auxiliary heads loads with strict=False; only the aux tensors are left over.
    report = load_weights(model, create_model("googlenet", num_classes=5).state_dict(), strict=False)
    assert report.unexpected and all(key.startswith("aux") for key in report.unexpected)
    assert not report.missing


# ---------------------------------------------------------------------------------------------------
# Backbones: strides 4/8/16/32 for necks, one input channel
# ---------------------------------------------------------------------------------------------------

BACKBONES = [
    "googlenet", "mobilenet_v1_100", "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small",
    "shufflenet_v1_g3", "shufflenet_v2_x1_0", "efficientnet_b0", "efficientnet_v2_s", "densenet121",
    "repvgg_a0", "se_resnet18",
]


@pytest.mark.parametrize("name", BACKBONES)
def test_features_only_gives_strides_4_to_32(name):
    torch.manual_seed(0)
    model = create_model(name, in_channels=1).eval()
    assert model.feature_info[0].reduction == 2
    extractor = FeatureExtractor(model, out_indices=(1, 2, 3, 4))
    assert extractor.reductions == [4, 8, 16, 32]
    with torch.no_grad():
        maps = extractor(torch.randn(1, 1, 64, 64))
    assert [m.shape[1] for m in maps] == extractor.channels
    assert [m.shape[-1] for m in maps] == [16, 8, 4, 2]


def test_mobilenet_v3_dilated_keeps_output_stride_16():
    model = create_model("mobilenet_v3_large", dilated=True).eval()
    assert [info.reduction for info in model.feature_info] == [2, 4, 8, 16]
    with torch.no_grad():
        assert model.forward_features(torch.randn(1, 3, 64, 64))[-1].shape[-1] == 4


def test_efficientnet_stochastic_depth_grows_linearly():
    model = create_model("efficientnet_b0")
    blocks = [block for stage in model.stages for block in stage]
    assert len(blocks) == 16
    for index, block in enumerate(blocks):
        if block.use_residual and index > 0:
            assert block.drop_path.drop_prob == pytest.approx(0.2 * index / 16)
        else:  # no residual branch to drop (stride 2 or a width change), or rate 0
            assert isinstance(block.drop_path, nn.Identity)


# ---------------------------------------------------------------------------------------------------
# Attention ResNets
# ---------------------------------------------------------------------------------------------------


def test_attention_block_with_identity_attention_is_the_plain_block():
    torch.manual_seed(0)
    plain = _randomize_bn(create_model("resnet18", num_classes=10))
    wrapped = create_model("resnet18", num_classes=10)
    wrapped.load_state_dict(plain.state_dict())
    for stage in (wrapped.layer1, wrapped.layer2, wrapped.layer3, wrapped.layer4):
        for index, block in enumerate(stage):
            stage[index] = AttentionBlock(block, nn.Identity())
    wrapped.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(wrapped(x), plain(x), rtol=0, atol=0)


@pytest.mark.parametrize("kind", ["se", "cbam", "srm"])
def test_add_attention_keeps_resnet_weights_loadable(kind):
    torch.manual_seed(0)
    plain_state = create_model("resnet18").state_dict()
    model = add_attention(create_model("resnet18"), kind)
    assert model.attention_kind == kind
    blocks = [b for stage in (model.layer1, model.layer2, model.layer3, model.layer4) for b in stage]
    assert all(isinstance(b, AttentionBlock) for b in blocks)
    report = load_weights(model, plain_state, strict=False)
    assert not report.unexpected and not report.mismatched_shapes
    assert report.missing and all(".attention." in key for key in report.missing)
    model.train()
    model(torch.randn(2, 3, 64, 64)).sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_add_attention_rejects_other_models_and_double_insertion():
    with pytest.raises(TypeError, match="expects a ResNet"):
        add_attention(create_model("mobilenet_v2"), "se")
    model = create_model("se_resnet18")
    with pytest.raises(ValueError, match="already has attention"):
        add_attention(model, "cbam")
    with pytest.raises(ValueError, match="unknown attention"):
        add_attention(create_model("resnet18"), "eca")
