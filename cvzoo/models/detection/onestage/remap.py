"""torchvision RetinaNet (v1, v2) and FCOS checkpoints -> cvzoo keys.

=====================================================  ================================================
torchvision                                            cvzoo
=====================================================  ================================================
``backbone.body.*``                                    ``backbone.body.*`` (same names)
``backbone.fpn.inner_blocks.i.0`` / ``layer_blocks``   ``backbone.fpn.laterals.i`` / ``outputs.i``
``backbone.fpn.extra_blocks.p6`` / ``p7``              ``backbone.fpn.p6`` / ``p7``
``head.classification_head.conv.i.0`` / ``.i.1``       ``head.classification.tower.i.conv`` / ``.bn``
  (RetinaNet; files before torchvision 0.13:
  ``conv.2i``; FCOS: ``conv.3i`` / ``conv.3i+1``)
``head.classification_head.cls_logits``                ``head.classification.predictions.cls_logits``
``head.regression_head.conv...``                       ``head.regression.tower...``
``head.regression_head.bbox_reg``                      ``head.regression.predictions.bbox_regression``
``head.regression_head.bbox_ctrness`` (FCOS)           ``head.regression.predictions.bbox_ctrness``
=====================================================  ================================================

The classifier's rows are unchanged (no background class to shift). ``num_batches_tracked`` entries are
dropped (frozen batch norms have none; a live batch norm fills its own).
"""

from __future__ import annotations

import re

import torch

from cvzoo.models.detection.rcnn.remap import fpn_rules
from cvzoo.models.weights import register_remap

StateDict = dict[str, torch.Tensor]

_BRANCHES = {"classification_head": "classification", "regression_head": "regression"}
_PREDICTIONS = {"cls_logits": "cls_logits", "bbox_reg": "bbox_regression", "bbox_ctrness": "bbox_ctrness"}


def _head_key(key: str, fcos: bool) -> str | None:
    match = re.match(r"^head\.(classification_head|regression_head)\.(.+)$", key)
    if match is None:
        return None
    branch, rest = _BRANCHES[match.group(1)], match.group(2)
    prefix = f"head.{branch}."
    nested = re.match(r"^conv\.(\d+)\.([01])\.(weight|bias)$", rest)  # Conv2dNormActivation: conv, norm
    if nested:
        part = "conv" if nested.group(2) == "0" else "bn"
        return f"{prefix}tower.{nested.group(1)}.{part}.{nested.group(3)}"
    flat = re.match(r"^conv\.(\d+)\.(weight|bias)$", rest)
    if flat:
        # FCOS: a flat Sequential of (conv, GroupNorm, ReLU); old RetinaNet files: (conv, ReLU).
        index = int(flat.group(1))
        layer, position = divmod(index, 3 if fcos else 2)
        return f"{prefix}tower.{layer}.{'conv' if position == 0 else 'bn'}.{flat.group(2)}"
    predictor = re.match(r"^(cls_logits|bbox_reg|bbox_ctrness)\.(weight|bias)$", rest)
    if predictor:
        return f"{prefix}predictions.{_PREDICTIONS[predictor.group(1)]}.{predictor.group(2)}"
    return key


def torchvision_onestage_to_cvzoo(state: StateDict) -> StateDict:
    """Keys of a torchvision ``retinanet_*`` / ``fcos_*`` state dict -> cvzoo's :class:`RetinaNet` / :class:`FCOS`
    keys (see the module docstring). Shapes are checked when the result is loaded."""
    if "head.classification_head.cls_logits.weight" not in state:
        raise KeyError("not a torchvision RetinaNet / FCOS state dict")
    fcos = "head.regression_head.bbox_ctrness.weight" in state
    rules = fpn_rules(False) + [(r"^backbone\.fpn\.extra_blocks\.(p6|p7)\.", r"backbone.fpn.\1.")]
    out = {}
    for key, value in state.items():
        if key.endswith("num_batches_tracked"):
            continue
        new = _head_key(key, fcos)
        if new is None:
            new = key
            for pattern, replacement in rules:
                new, count = re.subn(pattern, replacement, key)
                if count:
                    break
        out[new] = value
    return out


register_remap("retinanet", torchvision_onestage_to_cvzoo, name="torchvision:retinanet")
register_remap("fcos", torchvision_onestage_to_cvzoo, name="torchvision:fcos")
