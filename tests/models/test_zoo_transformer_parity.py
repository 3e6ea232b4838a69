"""ViT, Swin, ConvNeXt and MobileViT against their references (torchvision, timm).

Same weights -> same outputs (to 1e-4) for one representative of each family at the smallest input
that exercises its code paths, and, for every registered variant, the same parameter count and a
strict load of the reference's state dict through the auto-selected remap (on the meta device).
"""

from __future__ import annotations

import pytest
import torch
import torchvision

from cvzoo.models import create_model, get_entry
from cvzoo.models.weights import load_weights

timm = pytest.importorskip("timm")

VARIANTS = [
    ("vit_b_16", "vit:torchvision"),
    ("vit_b_32", "vit:torchvision"),
    ("vit_l_16", "vit:torchvision"),
    ("swin_t", "swin:torchvision"),
    ("swin_s", "swin:torchvision"),
    ("swin_b", "swin:torchvision"),
    ("convnext_tiny", "convnext:torchvision"),
    ("convnext_small", "convnext:torchvision"),
    ("convnext_base", "convnext:torchvision"),
    ("convnext_large", "convnext:torchvision"),
    ("mobilevit_xxs", "mobilevit:timm"),
    ("mobilevit_xs", "mobilevit:timm"),
    ("mobilevit_s", "mobilevit:timm"),
]

# (our name, input height x width, batch): each size is chosen for the code path it exercises.
OUTPUT_CASES = [
    ("vit_b_16", (224, 224), 1),  # torchvision's ViT runs at its training size only
    ("swin_t", (61, 47), 2),  # odd sizes: block padding, merging padding, shifted windows in stages 1-2
    ("swin_t", (28, 64), 1),  # stage 1 is one window tall: shifted along the width only
    ("convnext_tiny", (64, 64), 2),
    ("mobilevit_xxs", (64, 64), 2),
    ("mobilevit_xxs", (72, 40), 2),  # maps that are not multiples of the 2x2 patches: resized around attention
]

EXPECTED_REMAP = dict(VARIANTS)


def _build_reference(name: str) -> torch.nn.Module:
    library, _, reference = get_entry(name).reference.partition(":")
    if library == "torchvision":
        return torchvision.models.get_model(reference, weights=None)
    assert library == "timm", get_entry(name).reference
    return timm.create_model(reference, pretrained=False)


def _randomize(model: torch.nn.Module, seed: int = 0) -> None:
    """Random weights everywhere (including layer scales, position embeddings and zero-initialised
    heads) so that a tensor that failed to load or a mis-ordered reshape shows in the outputs."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.ndim >= 2:
                # Fan-in scaling keeps activations O(1); embeddings ([1, N, C]) get a fixed spread.
                std = 0.1 if param.shape[0] == 1 else param[0].numel() ** -0.5
                param.copy_(torch.randn(param.shape, generator=generator) * std)
            elif name.endswith("weight"):
                param.copy_(torch.rand(param.shape, generator=generator) + 0.5)
            else:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.1)


@pytest.mark.parametrize(("name", "expected_remap"), VARIANTS)
def test_reference_checkpoint_loads_strictly_and_counts_match(name, expected_remap):
    with torch.device("meta"):
        reference = _build_reference(name)
        ours = create_model(name)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in reference.parameters())
    report = load_weights(ours, reference.state_dict(), strict=True)
    assert report.ok and report.remap == expected_remap


@pytest.mark.parametrize(
    ("timm_name", "name", "expected_remap"),
    [
        ("vit_base_patch16_224", "vit_b_16", "identity"),  # our ViT keys are timm's
        ("vit_base_patch32_224", "vit_b_32", "identity"),
        ("convnext_tiny", "convnext_tiny", "convnext:timm"),
        ("swin_tiny_patch4_window7_224", "swin_t", "swin:timm"),
    ],
)
def test_timm_layouts_load_strictly(timm_name, name, expected_remap):
    with torch.device("meta"):
        reference = timm.create_model(timm_name, pretrained=False)
        ours = create_model(name)
    report = load_weights(ours, reference.state_dict(), strict=True)
    assert report.ok and report.remap == expected_remap


@pytest.mark.parametrize(("name", "size", "batch"), OUTPUT_CASES, ids=lambda v: str(v))
def test_same_weights_give_same_outputs(name, size, batch, skip_init, random_norm_stats):
    with skip_init():
        reference = _build_reference(name)
        ours = create_model(name)
    _randomize(reference)
    random_norm_stats(reference)
    report = load_weights(ours, reference.state_dict(), strict=True)
    assert report.remap == EXPECTED_REMAP[name]
    reference.eval()
    ours.eval()

    x = torch.randn(batch, 3, *size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = reference(x)
        got = ours(x)
    assert got.shape == expected.shape == (batch, 1000)
    assert expected.abs().max() > 0.1  # the comparison is not between two near-zero outputs
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-4)


def test_timm_swin_gives_the_same_outputs(skip_init):
    # timm's Swin-T (its own layout: merging at the start of each stage, head.fc) through swin:timm.
    with skip_init():
        reference = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False)
        ours = create_model("swin_t")
    _randomize(reference)
    report = load_weights(ours, reference.state_dict(), strict=True)
    assert report.ok and report.remap == "swin:timm"
    reference.eval()
    ours.eval()
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, got = reference(x), ours(x)
    assert expected.abs().max() > 0.1
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-4)
