"""Same weights -> same outputs: torchvision checkpoints load into our models and agree to 1e-5."""

from __future__ import annotations

import pytest
import torch
import torchvision

from cvzoo.models import create_model, get_entry, list_models
from cvzoo.models.weights import load_weights

# (our name, extra constructor kwargs for both, input size): the smallest sizes that work keep the
# large fully connected layers of AlexNet/VGG the only real cost.
CASES = [
    ("alexnet", {}, 63),
    ("vgg11", {}, 32),
    ("vgg11_bn", {}, 32),
    ("resnet18", {}, 64),
    ("resnet34", {}, 64),
    ("resnet50", {}, 64),
    ("resnet101", {}, 64),
    ("resnet152", {}, 64),
    ("resnext50_32x4d", {}, 64),
    ("resnext101_32x8d", {}, 64),
    # DeepLab-style output stride 8: dilation instead of stride in layer3/layer4.
    ("resnet50", {"replace_stride_with_dilation": [False, True, True]}, 64),
]


def _reference_name(name: str) -> str:
    library, _, reference = get_entry(name).reference.partition(":")
    assert library == "torchvision", f"{name} has no torchvision reference"
    return reference


@pytest.mark.parametrize(("name", "kwargs", "size"), CASES, ids=lambda v: v if isinstance(v, str) else None)
def test_torchvision_checkpoint_gives_same_outputs(name, kwargs, size, tmp_path, skip_init, random_norm_stats):
    torch.manual_seed(0)
    reference = torchvision.models.get_model(_reference_name(name), weights=None, **kwargs)
    random_norm_stats(reference)
    path = tmp_path / "reference.pth"
    torch.save(reference.state_dict(), path)

    with skip_init():  # every tensor comes from the checkpoint (strict load)
        ours = create_model(name, weights=str(path), **kwargs)
    reference.eval()
    ours.eval()
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in reference.parameters())

    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        expected = reference(x)
        got = ours(x)
    assert got.shape == expected.shape == (2, 1000)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


TORCHVISION_COVERED = [n for n in list_models(task="classify") if get_entry(n).reference.startswith("torchvision:")]


def test_reference_list_covers_the_classic_models():
    assert {"alexnet", "vgg11", "vgg19_bn", "resnet50", "resnext101_32x8d", "wide_resnet50_2"} <= set(
        TORCHVISION_COVERED
    )


@pytest.mark.parametrize("name", TORCHVISION_COVERED)
def test_torchvision_state_dict_loads_strictly(name):
    """Every covered variant, also those too big for the output check above, takes torchvision's
    state dict strictly (through the remaps) with equal parameter counts; on the meta device this
    costs neither memory nor time."""
    with torch.device("meta"):
        reference = torchvision.models.get_model(_reference_name(name), weights=None)
        ours = create_model(name)
    report = load_weights(ours, reference.state_dict(), strict=True)
    assert report.ok and report.loaded
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in reference.parameters())
