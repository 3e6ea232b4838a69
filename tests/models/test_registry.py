"""The model registry: listing, tags, duplicates, unknown names, and the entries of this family set."""

from __future__ import annotations

import pytest
import torch

from cvzoo.models import create_model, get_entry, list_models, register_model
from cvzoo.models import registry as registry_module
from cvzoo.models.classification.cifar_resnet import CifarResNet
from cvzoo.models.classification.lenet import LeNet
from cvzoo.models.registry import ModelArgumentError, UnknownModelError, accepted_keywords

FAMILY_MODELS = [
    "lenet", "lenet_mnist", "alexnet", "alexnet_half",
    "vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn",
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d", "resnext101_32x8d",
    "wide_resnet50_2", "resnet18_cifar", "resnet20_cifar", "resnet32_cifar", "resnet44_cifar",
    "resnet56_cifar", "resnet110_cifar",
]


def test_family_models_are_registered_as_classifiers():
    names = list_models(task="classify")
    assert set(FAMILY_MODELS) <= set(names)
    assert names == sorted(names)
    assert list_models("vgg1[19]*") == ["vgg11", "vgg11_bn", "vgg19", "vgg19_bn"]
    assert "resnet18" not in list_models(task="detect")


def test_entries_record_input_size_and_reference():
    assert get_entry("lenet_mnist").input_size == (1, 28, 28)
    assert get_entry("resnet20_cifar").input_size == (3, 32, 32)
    assert get_entry("resnet50").input_size == (3, 224, 224)
    assert get_entry("resnet50").reference == "torchvision:resnet50"
    assert get_entry("alexnet_half").reference == ""  # the notes' own variant


def test_default_kwargs_and_overrides():
    model = create_model("lenet_mnist")
    assert isinstance(model, LeNet) and model.conv1.in_channels == 1 and model.num_classes == 10
    assert model(torch.randn(1, 1, 28, 28)).shape == (1, 10)
    cifar = create_model("resnet20_cifar", num_classes=100, in_channels=1)
    assert isinstance(cifar, CifarResNet) and cifar.fc.out_features == 100 and cifar.conv1.in_channels == 1
    # He et al. (2016) §4.2: ResNet-20 has 0.27M parameters.
    assert sum(p.numel() for p in cifar.parameters()) == pytest.approx(0.27e6, rel=0.03)


def test_a_tag_names_a_weight_set_and_an_unknown_one_is_an_error():
    """A tag is never ignored: ``resnet20_cifar.fashion_mnist`` would otherwise give random weights under a
    weight set's name (tests/models/test_pretrained.py loads real ones)."""
    from cvzoo.models.pretrained import UnknownWeightsError

    assert get_entry("resnet20_cifar.fashion_mnist").builder is CifarResNet  # the architecture is the part before
    with pytest.raises(UnknownWeightsError, match="no weight set resnet20_cifar.fashion_mnist; .*none are published"):
        create_model("resnet20_cifar.fashion_mnist", num_classes=3)


def test_unknown_name_and_duplicates(monkeypatch):
    with pytest.raises(UnknownModelError, match="did you mean .*resnet18"):
        get_entry("resnet_18")
    # Work on a copy so the throw-away registration does not leak into other tests.
    monkeypatch.setattr(registry_module, "_REGISTRY", dict(registry_module._REGISTRY))
    register_model("tiny_lenet_test", LeNet, num_classes=2)
    assert create_model("tiny_lenet_test").num_classes == 2
    with pytest.raises(ValueError, match="already registered"):
        register_model("tiny_lenet_test", LeNet)
    with pytest.raises(ValueError, match="snake_case"):
        register_model("Bad.Name", LeNet)


def test_constructor_argument_errors():
    with pytest.raises(ValueError, match="4 stage depths"):
        create_model("resnet18", layers=(2, 2, 2))
    with pytest.raises(ValueError, match="3 flags"):
        create_model("resnet50", replace_stride_with_dilation=(True,))
    with pytest.raises(ValueError, match="shortcut"):
        create_model("resnet20_cifar", shortcut="C")
    with pytest.raises(ValueError, match="groups=1"):
        create_model("resnet18", groups=32, width_per_group=4)
    with pytest.raises(ValueError, match="28x28"):
        create_model("lenet_mnist")(torch.randn(1, 1, 32, 32))


def test_unknown_keyword_names_the_model_and_lists_accepted_ones():
    with pytest.raises(ModelArgumentError, match=r"model 'resnet20_cifar' takes no argument 'nonexistent'; "
                                                 r"it accepts: .*num_classes") as info:
        create_model("resnet20_cifar", nonexistent=1)
    assert isinstance(info.value, TypeError) and isinstance(info.value, ValueError)
    assert info.value.unexpected == ["nonexistent"]


@pytest.mark.parametrize("name", ["se_resnet18", "efficientnet_b0", "efficientnet_v2_s"])
def test_builders_passing_kwargs_on_are_checked_against_their_target(name):
    # These builders take **kwargs and hand them to a class (forwards_kwargs_to): still checked.
    with pytest.raises(ModelArgumentError, match=f"model {name!r} takes no argument 'nonexistent'"):
        create_model(name, nonexistent=1)
    assert "num_classes" in accepted_keywords(get_entry(name).builder)


def test_every_registered_builder_has_a_checkable_signature():
    for name in list_models():
        entry = get_entry(name)
        accepted = accepted_keywords(entry.builder)
        assert accepted is not None, name
        assert set(entry.defaults) <= accepted, name


def test_a_type_error_inside_a_constructor_is_not_reported_as_a_wrong_keyword(monkeypatch):
    def broken(num_classes: int = 10) -> torch.nn.Module:
        raise TypeError("a bug inside the constructor")

    monkeypatch.setattr(registry_module, "_REGISTRY", dict(registry_module._REGISTRY))
    register_model("broken_builder_test", broken)
    with pytest.raises(TypeError, match="a bug inside the constructor") as info:
        create_model("broken_builder_test", num_classes=3)
    assert not isinstance(info.value, ModelArgumentError)


def test_zero_init_residual_starts_blocks_as_identity():
    model = create_model("resnet50", zero_init_residual=True)
    assert all(float(block.bn3.weight.abs().sum()) == 0.0 for layer in (model.layer1, model.layer4) for block in layer)
    cifar = create_model("resnet20_cifar", zero_init_residual=True)
    assert float(cifar.layer2[1].bn2.weight.abs().sum()) == 0.0
    assert float(create_model("resnet20_cifar").layer2[1].bn2.weight.abs().sum()) > 0.0


def test_dilation_keeps_output_stride_and_feature_info():
    model = create_model("resnet18", replace_stride_with_dilation=(False, False, True)).eval()
    assert [info.reduction for info in model.feature_info] == [2, 4, 8, 16, 16]
    with torch.no_grad():
        features = model.forward_features(torch.randn(1, 3, 64, 64))
    assert [f.shape[-1] for f in features] == [32, 16, 8, 4, 4]
    assert model.layer4[1].conv1.dilation == (2, 2)
