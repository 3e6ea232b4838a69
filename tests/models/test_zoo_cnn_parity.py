"""CNN zoo parity: reference checkpoints (torchvision, timm) load into our models and give the same outputs.

Each case builds the reference with random weights and random BN statistics, saves its state dict,
loads it with ``create_model(name, weights=path)`` (strict, through the family's remap) and compares
eval-mode logits to 1e-5. Parameter counts of the larger variants are compared on the meta device,
where building costs nothing.
"""

from __future__ import annotations

import re

import pytest
import torch
import torchvision

from cvzoo.models import create_model, get_entry
from cvzoo.models.weights import load_weights


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Small models at 64 px: one thread avoids oversubscribing a shared 2-core machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _reference(name: str) -> tuple[str, str]:
    library, _, reference = get_entry(name).reference.partition(":")
    return library, reference


def _num_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _assert_same_outputs(reference, ours, size: int) -> None:
    reference.eval()
    ours.eval()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        expected, got = reference(x), ours(x)
    assert got.shape == expected.shape == (2, 1000)
    assert expected.abs().max() > 1e-3  # the comparison means something
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


TORCHVISION_CASES = [
    ("googlenet", {"init_weights": True}, 64),
    ("mobilenet_v2", {}, 64),
    ("mobilenet_v3_large", {}, 64),
    ("mobilenet_v3_small", {}, 64),
    ("shufflenet_v2_x0_5", {}, 64),
    ("shufflenet_v2_x1_0", {}, 64),
    ("shufflenet_v2_x1_5", {}, 64),
    ("shufflenet_v2_x2_0", {}, 64),
    ("efficientnet_b0", {}, 64),
    ("efficientnet_b3", {}, 64),
    ("efficientnet_v2_s", {}, 64),
    ("densenet121", {}, 64),
]


@pytest.mark.parametrize(("name", "reference_kwargs", "size"), TORCHVISION_CASES, ids=[c[0] for c in TORCHVISION_CASES])
def test_torchvision_checkpoint_gives_same_outputs(name, reference_kwargs, size, tmp_path, skip_init, random_norm_stats):
    library, reference_name = _reference(name)
    assert library == "torchvision"
    torch.manual_seed(0)
    reference = random_norm_stats(torchvision.models.get_model(reference_name, weights=None, **reference_kwargs))
    path = tmp_path / "reference.pth"
    torch.save(reference.state_dict(), path)
    with skip_init():  # every tensor comes from the checkpoint (strict load)
        ours = create_model(name, weights=str(path))
    assert _num_params(ours) == _num_params(reference)
    _assert_same_outputs(reference, ours, size)


def test_googlenet_auxiliary_heads_match_torchvision(random_norm_stats):
    torch.manual_seed(0)
    reference = random_norm_stats(torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=True)).eval()
    ours = create_model("googlenet").eval()
    load_weights(ours, reference.state_dict())
    x = torch.randn(2, 512, 4, 4), torch.randn(2, 528, 4, 4)
    with torch.no_grad():
        torch.testing.assert_close(ours.aux1(x[0]), reference.aux1(x[0]), rtol=0, atol=1e-5)
        torch.testing.assert_close(ours.aux2(x[1]), reference.aux2(x[1]), rtol=0, atol=1e-5)


PARAM_COUNT_CASES = [
    *(f"efficientnet_b{i}" for i in range(8)),
    "efficientnet_v2_s", "efficientnet_v2_m", "efficientnet_v2_l",
    "densenet121", "densenet161", "densenet169", "densenet201",
    "mobilenet_v3_large", "mobilenet_v3_small", "googlenet",
]


@pytest.mark.parametrize("name", PARAM_COUNT_CASES)
def test_parameter_count_and_bn_settings_match_torchvision(name):
    _, reference_name = _reference(name)
    kwargs = {"init_weights": True} if name == "googlenet" else {}  # silences torchvision's init warning
    with torch.device("meta"):
        reference = torchvision.models.get_model(reference_name, weights=None, **kwargs)
        ours = create_model(name)
    assert _num_params(ours) == _num_params(reference)
    norms = [(m.eps, m.momentum) for m in ours.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    expected = [(m.eps, m.momentum) for m in reference.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms == expected
    # Same tensor names and shapes after the remap: the full checkpoint loads strictly.
    assert load_weights(ours, reference.state_dict()).ok


def test_densenet_loads_the_original_norm_dot_1_keys(random_norm_stats):
    torch.manual_seed(0)
    reference = random_norm_stats(torchvision.models.densenet121(weights=None))
    # The first torchvision release named the layer parts "norm.1", "conv.2" instead of "norm1", "conv2".
    old_style = {
        re.sub(r"(denselayer\d+\.(?:norm|conv))([12])\.", r"\1.\2.", key): value
        for key, value in reference.state_dict().items()
    }
    assert "features.denseblock1.denselayer1.norm.1.weight" in old_style
    ours = create_model("densenet121")
    assert load_weights(ours, old_style).ok
    _assert_same_outputs(reference, ours, 64)


# ---------------------------------------------------------------------------------------------------
# timm references
# ---------------------------------------------------------------------------------------------------

TIMM_CASES = [("mobilenet_v1_100", 64), ("repvgg_a0", 64), ("se_resnet50", 64)]


@pytest.mark.parametrize(("name", "size"), TIMM_CASES, ids=[c[0] for c in TIMM_CASES])
def test_timm_checkpoint_gives_same_outputs(name, size, tmp_path, skip_init, random_norm_stats):
    timm = pytest.importorskip("timm")
    library, reference_name = _reference(name)
    assert library == "timm"
    torch.manual_seed(0)
    reference = random_norm_stats(timm.create_model(reference_name, pretrained=False))
    path = tmp_path / "reference.pth"
    torch.save(reference.state_dict(), path)
    with skip_init():
        ours = create_model(name, weights=str(path))
    assert _num_params(ours) == _num_params(reference)
    _assert_same_outputs(reference, ours, size)


@pytest.mark.parametrize("name", ["repvgg_a1", "repvgg_a2", "repvgg_b0", "repvgg_b1", "repvgg_b1g4", "repvgg_b3"])
def test_repvgg_parameter_counts_match_timm(name):
    timm = pytest.importorskip("timm")
    with torch.device("meta"):
        reference = timm.create_model(_reference(name)[1], pretrained=False)
        ours = create_model(name)
    assert _num_params(ours) == _num_params(reference)


# timm's EfficientNet builder layouts (conv_stem / blocks.S.J.conv_pw ... / conv_head). timm's mobilenetv3_*
# use BN eps 1e-5: our mobilenet_v3_*_100 variants; torchvision's eps 1e-3 models take them with norm_eps.
TIMM_BN = {"norm_eps": 1e-5, "norm_momentum": 0.1}
TIMM_BUILDER_CASES = [
    ("efficientnet_b0", "efficientnet_b0", {}),
    ("mobilenetv3_large_100", "mobilenet_v3_large_100", {}),
    ("mobilenetv3_small_100", "mobilenet_v3_small_100", {}),
    ("mobilenetv3_small_100", "mobilenet_v3_small", TIMM_BN),
    ("mobilenetv2_050", "mobilenet_v2_050", {}),
    ("mobilenetv2_100", "mobilenet_v2", {}),
]


@pytest.mark.parametrize(("timm_name", "name", "kwargs"), TIMM_BUILDER_CASES,
                         ids=[f"{c[0]}-{c[1]}" for c in TIMM_BUILDER_CASES])
def test_timm_efficientnet_builder_checkpoint_gives_same_outputs(timm_name, name, kwargs, tmp_path, skip_init,
                                                                 random_norm_stats):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    reference = random_norm_stats(timm.create_model(timm_name, pretrained=False))
    path = tmp_path / "reference.pth"
    torch.save(reference.state_dict(), path)
    with skip_init():  # strict load: every tensor comes from the timm file
        ours = create_model(name, weights=str(path), **kwargs)
    assert _num_params(ours) == _num_params(reference)
    _assert_same_outputs(reference, ours, 32)


@pytest.mark.parametrize("timm_name", ["efficientnet_b1", "efficientnet_b2", "efficientnet_b3", "efficientnet_b4",
                                       "efficientnet_b5"])
def test_timm_efficientnet_variants_load_strictly(timm_name):
    timm = pytest.importorskip("timm")
    with torch.device("meta"):
        reference = timm.create_model(timm_name, pretrained=False)
        ours = create_model(timm_name)
    assert _num_params(ours) == _num_params(reference)
    report = load_weights(ours, reference.state_dict(), strict=True)
    assert report.ok and report.remap == "efficientnet:timm"


def test_timm_builder_weight_sets_are_listed_by_name():
    from cvzoo.models.pretrained import default_tag, weight_sets

    # Written by tools/gen_pretrained_table.py once these layouts loaded strictly (they did not before).
    assert "timm_ra_in1k" in weight_sets("efficientnet_b0")
    assert "timm_ra_in1k" in weight_sets("mobilenet_v3_large_100")
    assert "timm_lamb_in1k" in weight_sets("mobilenet_v3_small_100")
    assert "timm_ra_in1k" in weight_sets("mobilenet_v2_140")
    # Width 1.0 is torchvision's mobilenet_v2 to cvzoo and mobilenetv2_100 to timm (its registered timm_name);
    # its file loads as the mobilenetv2_100 case above does.
    assert get_entry("mobilenet_v2").timm_arch == "mobilenetv2_100"
    assert get_entry("mobilenet_v2_140").timm_arch == "mobilenetv2_140" and get_entry("resnet50").timm_arch == "resnet50"
    assert "timm_ra_in1k" in weight_sets("mobilenet_v2") and default_tag("mobilenet_v2") == "tv_in1k_v2"
    assert not any(tag.startswith("timm_") for tag in weight_sets("mobilenet_v3_large"))  # eps 1e-3: not timm's
