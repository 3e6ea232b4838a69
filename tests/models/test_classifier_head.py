"""The head methods live once, in ``Classifier``; a family overrides only what really differs.

Fails when a family carries its own copy of a head method again (or drops an override it needs):
add a family here only with the methods whose behaviour differs from the base class.
"""

from __future__ import annotations

import pytest

from cvzoo.models import list_models
from cvzoo.models.classification.alexnet import AlexNet
from cvzoo.models.classification.base import Classifier
from cvzoo.models.classification.convnext import ConvNeXt
from cvzoo.models.classification.efficientnet import EfficientNet
from cvzoo.models.classification.googlenet import GoogLeNet
from cvzoo.models.classification.lenet import LeNet
from cvzoo.models.classification.mobilenet_v3 import MobileNetV3
from cvzoo.models.classification.resnet9 import ResNet9
from cvzoo.models.classification.swin import SwinTransformer
from cvzoo.models.classification.vgg import VGG
from cvzoo.models.classification.vit import VisionTransformer
from cvzoo.models.video.resnet3d import VideoResNet

HEAD_METHODS = ("forward_head", "forward_pre_logits", "get_classifier", "reset_classifier", "_make_classifier")

# The families whose head differs from the default, and the methods that say how.
OVERRIDES: dict[type[Classifier], set[str]] = {
    AlexNet: {"forward_pre_logits"},  # avgpool to 6x6, flatten, fc6/fc7 before the last layer
    VGG: {"forward_pre_logits"},  # avgpool to 7x7, flatten, fc6/fc7 before the last layer
    LeNet: {"forward_pre_logits"},  # flatten, fc1/fc2
    ResNet9: {"forward_pre_logits"},  # global max pool
    MobileNetV3: {"forward_pre_logits"},  # pooled -> Linear + Hardswish -> dropout
    ConvNeXt: {"forward_pre_logits"},  # LayerNorm after the pool
    SwinTransformer: {"forward_pre_logits"},  # LayerNorm before the pool (channels last)
    VisionTransformer: {"forward_pre_logits"},  # the class token, no pooling
    EfficientNet: {"_make_classifier"},  # uniform(+-1/sqrt(num_classes)) init of a fresh layer
    GoogLeNet: {"reset_classifier"},  # resets the auxiliary classifiers in step
    VideoResNet: {"forward_pre_logits", "_make_classifier"},  # pools T, H, W; the reference's N(0, 0.01) fc init
}


def _families() -> list[type[Classifier]]:
    list_models()  # imports every family module (detection's Darknet classifiers included)
    found, stack = [], list(Classifier.__subclasses__())
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        if cls.__module__.startswith("cvzoo.") and cls not in found:
            found.append(cls)
    return sorted(found, key=lambda cls: cls.__qualname__)


FAMILIES = _families()


def test_families_are_found():
    names = {cls.__name__ for cls in FAMILIES}
    assert set(OVERRIDES) <= set(FAMILIES)
    assert {"ResNet", "CifarResNet", "DenseNet", "MobileNetV2", "MobileViT", "ShuffleNetV2", "Darknet53"} <= names


@pytest.mark.parametrize("cls", FAMILIES, ids=lambda cls: cls.__name__)
def test_family_overrides_only_what_differs(cls):
    overridden = {name for name in HEAD_METHODS if getattr(cls, name) is not getattr(Classifier, name)}
    assert overridden == OVERRIDES.get(cls, set()), (
        f"{cls.__name__} should use Classifier's defaults for {sorted(overridden - OVERRIDES.get(cls, set()))}"
    )
