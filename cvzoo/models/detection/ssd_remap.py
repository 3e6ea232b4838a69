"""torchvision SSD checkpoints -> cvzoo keys (``ssd300_vgg16``, ``ssdlite320_mobilenet_v3_large``).

The modules line up one to one; torchvision nests them differently:

==================================================  ==================================================
torchvision                                         cvzoo
==================================================  ==================================================
``backbone.features.i`` (VGG, up to conv4_3)        ``backbone.features.i``
``backbone.extra.0.j`` (pool4 .. conv5_3), j < 7    ``backbone.features.{23 + j}``
``backbone.extra.0.7.k`` (pool5, fc6, fc7)          ``backbone.fc.k``
``backbone.extra.n`` (n >= 1, VGG)                  ``backbone.extra.{n - 1}``
``backbone.scale_weight``                           ``backbone.l2norm.weight``
``backbone.features.0.i`` (MobileNet, i < c4)       ``backbone.body.*`` of MobileNet's ``features.i``
``backbone.features.0.{c4}`` (C4 expansion)         ``backbone.body.blocks.{c4 - 1}.expand``
``backbone.features.1.0.j`` (C4 depthwise, SE, ...) ``backbone.body.blocks.{c4 - 1}.*``
``backbone.features.1.k`` (k >= 1)                  ``backbone.body.*`` of ``features.{c4 + k}``
``backbone.extra.n.m.{0,1}`` (SSDlite)              ``backbone.extra.n.m.{conv,bn}``
``head.classification_head.module_list.i``          ``head.classification.i``
``head.regression_head.module_list.i``              ``head.regression.i``
``....i.0.{0,1}`` (SSDlite predictor's depthwise)   ``....i.0.{conv,bn}``
==================================================  ==================================================

Class rows keep their order: torchvision's class 0 is background, as ours. ``num_batches_tracked`` entries are
dropped (a live batch norm fills its own).
"""

from __future__ import annotations

import re

import torch

from cvzoo.models.classification.mobilenet_v3 import remap_torchvision_mobilenet_v3
from cvzoo.models.weights import register_remap

StateDict = dict[str, torch.Tensor]

_HEAD_RULES = [
    (r"^head\.(classification|regression)_head\.module_list\.(\d+)\.0\.0\.", r"head.\1.\2.0.conv."),
    (r"^head\.(classification|regression)_head\.module_list\.(\d+)\.0\.1\.", r"head.\1.\2.0.bn."),
    (r"^head\.(classification|regression)_head\.module_list\.", r"head.\1."),
]


def _rename(key: str, rules: list[tuple[str, str]]) -> str:
    for pattern, replacement in rules:
        new, count = re.subn(pattern, replacement, key)
        if count:
            return new
    return key


def _vgg_backbone(state: StateDict) -> StateDict:
    out = {}
    for key, value in state.items():
        if key == "backbone.scale_weight":
            out["backbone.l2norm.weight"] = value
            continue
        match = re.match(r"^backbone\.extra\.(\d+)\.(\d+)\.(.*)$", key)
        if match is None:
            out[key] = value  # backbone.features.i: torchvision's vgg16 indices, as ours
            continue
        block, layer, rest = int(match.group(1)), int(match.group(2)), match.group(3)
        if block > 0:
            out[f"backbone.extra.{block - 1}.{layer}.{rest}"] = value
        elif layer < 7:  # pool4 .. conv5_3's ReLU
            out[f"backbone.features.{23 + layer}.{rest}"] = value
        else:  # the fc Sequential: 7.k.weight
            out[f"backbone.fc.{rest}"] = value
    return out


def _mobilenet_backbone(state: StateDict) -> StateDict:
    first = {int(m.group(1)) for k in state if (m := re.match(r"^backbone\.features\.0\.(\d+)\.", k))}
    c4 = max(first)  # the last entry of features.0 is C4's expansion conv
    features, out = {}, {}
    for key, value in state.items():
        if m := re.match(r"^backbone\.features\.0\.(\d+)\.(.*)$", key):
            index, rest = int(m.group(1)), m.group(2)
            features[f"features.{index}.{rest}" if index < c4 else f"features.{c4}.block.0.{rest}"] = value
        elif m := re.match(r"^backbone\.features\.1\.0\.(.*)$", key):
            features[f"features.{c4}.block.{m.group(1)}"] = value
        elif m := re.match(r"^backbone\.features\.1\.(\d+)\.(.*)$", key):
            features[f"features.{c4 + int(m.group(1))}.{m.group(2)}"] = value
        elif m := re.match(r"^backbone\.extra\.(\d+)\.(\d+)\.([01])\.(.*)$", key):
            out[f"backbone.extra.{m.group(1)}.{m.group(2)}.{('conv', 'bn')[int(m.group(3))]}.{m.group(4)}"] = value
        else:
            out[key] = value
    out.update({f"backbone.body.{k}": v for k, v in remap_torchvision_mobilenet_v3(features).items()})
    return out


def torchvision_ssd_to_cvzoo(state: StateDict) -> StateDict:
    """Keys of a torchvision ``ssd300_vgg16`` / ``ssdlite320_mobilenet_v3_large`` state dict -> cvzoo's
    :class:`~cvzoo.models.detection.ssd.SSD` / :class:`~cvzoo.models.detection.ssdlite.SSDLite` keys (see the
    module docstring). Shapes are checked when the result is loaded."""
    if not any(k.startswith("head.classification_head.module_list.") for k in state):
        raise KeyError("not a torchvision SSD state dict")
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    backbone = {k: v for k, v in state.items() if k.startswith("backbone.")}
    rest = {_rename(k, _HEAD_RULES): v for k, v in state.items() if not k.startswith("backbone.")}
    if not backbone:  # a head alone
        return rest
    vgg = "backbone.scale_weight" in backbone
    return {**(_vgg_backbone(backbone) if vgg else _mobilenet_backbone(backbone)), **rest}


register_remap("ssd", torchvision_ssd_to_cvzoo, name="torchvision:ssd")
