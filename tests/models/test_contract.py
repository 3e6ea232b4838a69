"""The classification contract (DESIGN.md), checked for every registered classifier.

Parametrised over ``list_models(task="classify")``, so models added later are covered automatically.
"""

from __future__ import annotations

import contextlib
import functools
import io
import math

import numpy as np
import pytest
import torch
from torch import nn

from cvzoo.models import create_model, get_entry, list_models
from cvzoo.models.classification.base import Classifier
from cvzoo.models.features import FeatureExtractor

NUM_CLASSES = 7
# Inputs are the model's own size capped at 32 px (every stride up to 32 still shows), except where a
# model needs more (AlexNet's three unpadded max-pools need 63 px).
MAX_TEST_SIZE = 32
TEST_INPUT_SIZE: dict[str, int] = {"alexnet": 63, "alexnet_half": 63}
# Building, back-propagating and saving a 100M-parameter model takes seconds each on a small CPU.
# Models above BIG_MODEL_PARAMS therefore get the numeric checks only when no smaller model of their
# class has them (the smallest big one is then the representative); the others -- vgg13..vgg19 next
# to vgg11_bn, resnet152 next to resnet50 -- get the shape checks, run on the meta device for free.
BIG_MODEL_PARAMS = 50e6
# A few representatives for the (slower) TorchScript and ONNX export checks.
EXPORT_MODELS = ("lenet", "resnet20_cifar", "resnet18", "alexnet_half")
# ONNX's AdaptiveAvgPool2d needs an output size that divides the input: AlexNet exports at 224 px.
EXPORT_INPUT_SIZE = {"alexnet_half": 224}

CLASSIFIERS = list_models(task="classify")


@functools.cache
def _num_params(name: str) -> int:
    with torch.device("meta"):  # no memory, no init
        return sum(p.numel() for p in create_model(name).parameters())


def _numeric_checks(name: str) -> bool:
    """Numeric checks for every model up to BIG_MODEL_PARAMS, and for the smallest big model of a
    builder (class) that has no smaller model; shape checks only for the other big ones."""
    if _num_params(name) <= BIG_MODEL_PARAMS:
        return True
    builder = get_entry(name).builder
    siblings = sorted((_num_params(n), n) for n in CLASSIFIERS if get_entry(n).builder is builder)
    return siblings[0][0] > BIG_MODEL_PARAMS and siblings[0][1] == name


def _input_size(name: str) -> int:
    return TEST_INPUT_SIZE.get(name, min(get_entry(name).input_size[1], MAX_TEST_SIZE))


def _check_features(model: Classifier, features: list[torch.Tensor], size: int) -> None:
    infos = model.feature_info
    assert len(features) == len(infos), f"{len(features)} feature maps for {len(infos)} feature_info entries"
    module_names = {name for name, _ in model.named_modules()}
    previous = 0
    for feature, info in zip(features, infos):
        assert info.module in module_names, f"feature_info names unknown module {info.module!r}"
        assert feature.shape[0] == 2 and feature.shape[1] == info.channels, (info, tuple(feature.shape))
        assert info.reduction >= previous, f"reductions must not decrease: {infos}"
        previous = info.reduction
        # The measured stride is within a factor of 2 of the nominal one (borders without padding,
        # e.g. AlexNet's unpadded pools, make small maps a little smaller than size / reduction).
        measured = size / feature.shape[-1]
        assert abs(math.log2(measured) - math.log2(info.reduction)) <= 1.0, (info, tuple(feature.shape))


def _check_structure(name: str, size: int, channels: int) -> None:
    """Shapes only, on the meta device (no memory, no compute): output, features, in_channels=1."""
    with torch.device("meta"):
        model = create_model(name, num_classes=NUM_CLASSES).eval()
        features = model.forward_features(torch.empty(2, channels, size, size))
        _check_features(model, features, size)
        assert model.forward_head(features).shape == (2, NUM_CLASSES)
        grey = create_model(name, num_classes=NUM_CLASSES, in_channels=1).eval()
        assert grey(torch.empty(2, 1, size, size)).shape == (2, NUM_CLASSES)
        grey.reset_classifier(0)
        pooled = grey(torch.empty(2, 1, size, size))
        assert pooled.ndim == 2 and pooled.shape[0] == 2


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_classifier_contract(name, tmp_path, skip_init):
    size = _input_size(name)
    channels = get_entry(name).input_size[0]
    if not _numeric_checks(name):
        _check_structure(name, size, channels)  # a big model whose class is checked numerically
        return

    torch.manual_seed(0)
    model = create_model(name, num_classes=NUM_CLASSES)
    assert isinstance(model, Classifier)
    assert model.num_classes == NUM_CLASSES
    x = torch.randn(2, channels, size, size)

    # Training forward/backward: shape, finiteness, and a gradient for every trainable parameter.
    model.train()
    out = model(x)
    outputs = out if isinstance(out, tuple) else (out,)  # GoogLeNet trains with (logits, aux1, aux2)
    for o in outputs:
        assert o.shape == (2, NUM_CLASSES)
        assert torch.isfinite(o).all()
    sum((o * torch.randn_like(o)).sum() for o in outputs).backward()
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not no_grad, f"parameters without gradient: {no_grad[:10]}"
    bad_grad = [n for n, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    assert not bad_grad, f"non-finite gradients: {bad_grad[:10]}"
    model.zero_grad(set_to_none=True)

    # Eval: features match feature_info; the head applied to them reproduces forward.
    model.eval()
    with torch.no_grad():
        features = model.forward_features(x)
        _check_features(model, features, size)
        logits = model.forward_head(features)
        assert torch.isfinite(logits).all()
        torch.testing.assert_close(model(x), logits, rtol=0, atol=0)

    # State-dict round trip through a file, into a model whose tensors start uninitialised.
    restored_path = tmp_path / f"{name}.pt"
    torch.save(model.state_dict(), restored_path)
    with skip_init():
        restored = create_model(name, num_classes=NUM_CLASSES, weights=str(restored_path))
    restored.eval()
    with torch.no_grad():
        torch.testing.assert_close(restored(x), logits, rtol=0, atol=1e-6)
    del restored

    # Features-only wrapper: drops the head (reset_classifier(0)) and returns the same maps.
    extractor = FeatureExtractor(model, out_indices=(-1,))
    with torch.no_grad():
        (last,) = extractor(x)
        torch.testing.assert_close(last, features[-1])
        assert isinstance(model.get_classifier(), nn.Identity) and model.num_classes == 0
        pooled = model.forward_head(features)  # identity head: the pooled (pre-logits) features
        assert pooled.ndim == 2 and pooled.shape[0] == 2
        model.reset_classifier(3)
        assert model.forward_head(features).shape == (2, 3)

    # One input channel (MNIST-style images): finite outputs (shape only for big models, whose
    # initialisation alone takes seconds).
    del model, extractor, restored_path
    torch.manual_seed(0)
    big = _num_params(name) > BIG_MODEL_PARAMS
    with skip_init() if big else contextlib.nullcontext():
        grey = create_model(name, num_classes=NUM_CLASSES, in_channels=1).eval()
    with torch.no_grad():
        grey_out = grey(torch.randn(2, 1, size, size))
    assert grey_out.shape == (2, NUM_CLASSES)
    assert big or torch.isfinite(grey_out).all()


@pytest.mark.parametrize("name", EXPORT_MODELS)
def test_export_trace_and_onnx(name):
    import onnx
    import onnxruntime as ort

    torch.manual_seed(0)
    model = create_model(name, num_classes=NUM_CLASSES).eval()
    c = get_entry(name).input_size[0]
    size = EXPORT_INPUT_SIZE.get(name, _input_size(name))
    x = torch.randn(2, c, size, size)
    with torch.no_grad():
        expected = model(x)
        traced = torch.jit.trace(model, x)
        torch.testing.assert_close(traced(x), expected)

    buffer = io.BytesIO()
    torch.onnx.export(
        model, (x,), buffer, input_names=["images"], output_names=["logits"],
        dynamic_axes={"images": {0: "batch"}}, dynamo=False,
    )
    onnx.checker.check_model(onnx.load_from_string(buffer.getvalue()))
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"images": x.numpy()})
    np.testing.assert_allclose(got, expected.numpy(), rtol=1e-4, atol=1e-4)


def test_resnet9_layout_matches_the_dawnbench_network():
    from cvzoo.models import create_model

    model = create_model("resnet9", num_classes=10, in_channels=3)
    # Page (2018): 8 conv 3x3 layers (prep, layer1 + 2 residual, layer2, layer3 + 2 residual) and a linear.
    widths = [(3, 64), (64, 128), (128, 128), (128, 128), (128, 256), (256, 512), (512, 512), (512, 512)]
    convs = sum(9 * i * o for i, o in widths)
    bns = sum(2 * o for _, o in widths)
    assert sum(p.numel() for p in model.parameters()) == convs + bns + 512 * 10 + 10
    features = model.forward_features(torch.randn(2, 3, 32, 32))
    assert [f.shape[-1] for f in features] == [32, 16, 8, 4]
