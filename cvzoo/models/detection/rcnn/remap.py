"""torchvision R-CNN checkpoints -> cvzoo keys (Faster / Mask R-CNN, v1 and v2, ResNet and MobileNet v3).

torchvision's modules and ours line up one to one; only names differ:

===========================================  =============================================
torchvision                                  cvzoo
===========================================  =============================================
``backbone.body.*`` (ResNet)                 ``backbone.body.*`` (same names)
``backbone.body.N.*`` (MobileNet v3)         ``backbone.body.*`` via the classifier's remap
``backbone.fpn.inner_blocks.i[.0|.1].*``     ``backbone.fpn.laterals.i[.conv|.bn].*``
``backbone.fpn.layer_blocks.i[.0|.1].*``     ``backbone.fpn.outputs.i[.conv|.bn].*``
``rpn.head.conv[.j.0].*``                    ``rpn.head.convs.j.conv.*``
``rpn.head.cls_logits / bbox_pred``          ``rpn.head.objectness / deltas``
``roi_heads.box_head.fc6 / fc7``             ``roi_heads.box_head.fc6 / fc7``
``roi_heads.box_head.i.0 / i.1`` (v2 convs)  ``roi_heads.box_head.convs.i.conv / bn``
``roi_heads.box_head.5`` (v2 fc)             ``roi_heads.box_head.fc``
``roi_heads.box_predictor.*``                ``roi_heads.box_predictor.*``
``roi_heads.mask_head.i.0 / i.1``            ``mask_branch.head.convs.i.conv / bn``
  (old files: ``mask_fcn{i+1}``)
``roi_heads.mask_predictor.conv5_mask``      ``mask_branch.predictor.upsample``
``roi_heads.mask_predictor.mask_fcn_logits`` ``mask_branch.predictor.logits``
===========================================  =============================================

The predictors keep their rows: torchvision's class 0 is background, as ours. ``num_batches_tracked``
entries are dropped (frozen batch norms have none; a live batch norm fills its own).
"""

from __future__ import annotations

import re

import torch

from cvzoo.models.classification.mobilenet_v3 import remap_torchvision_mobilenet_v3
from cvzoo.models.weights import register_remap

StateDict = dict[str, torch.Tensor]

_BODY = "backbone.body."


def fpn_rules(normed: bool) -> list[tuple[str, str]]:
    """Renaming rules of torchvision's FPN keys (``inner_blocks`` / ``layer_blocks``, with or without a norm)."""
    conv = ".conv" if normed else ""
    rules = []
    for theirs, ours in (("inner_blocks", "laterals"), ("layer_blocks", "outputs")):
        rules += [
            (rf"^backbone\.fpn\.{theirs}\.(\d+)\.0\.", rf"backbone.fpn.{ours}.\1{conv}."),
            (rf"^backbone\.fpn\.{theirs}\.(\d+)\.1\.", rf"backbone.fpn.{ours}.\1.bn."),
            (rf"^backbone\.fpn\.{theirs}\.(\d+)\.(weight|bias)$", rf"backbone.fpn.{ours}.\1{conv}.\2"),
        ]
    return rules


_HEAD_RULES = [
    (r"^rpn\.head\.conv\.(weight|bias)$", r"rpn.head.convs.0.conv.\1"),
    (r"^rpn\.head\.conv\.(\d+)\.0\.", r"rpn.head.convs.\1.conv."),
    (r"^rpn\.head\.cls_logits\.", "rpn.head.objectness."),
    (r"^rpn\.head\.bbox_pred\.", "rpn.head.deltas."),
    (r"^roi_heads\.box_head\.(\d+)\.0\.", r"roi_heads.box_head.convs.\1.conv."),
    (r"^roi_heads\.box_head\.(\d+)\.1\.", r"roi_heads.box_head.convs.\1.bn."),
    (r"^roi_heads\.box_head\.\d+\.(weight|bias)$", r"roi_heads.box_head.fc.\1"),
    (r"^roi_heads\.mask_head\.(\d+)\.0\.", r"mask_branch.head.convs.\1.conv."),
    (r"^roi_heads\.mask_head\.(\d+)\.1\.", r"mask_branch.head.convs.\1.bn."),
    (r"^roi_heads\.mask_predictor\.conv5_mask\.", "mask_branch.predictor.upsample."),
    (r"^roi_heads\.mask_predictor\.mask_fcn_logits\.", "mask_branch.predictor.logits."),
]


def _rename(key: str, rules: list[tuple[str, str]]) -> str:
    for pattern, replacement in rules:
        new, count = re.subn(pattern, replacement, key)
        if count:
            return new
    old_mask = re.match(r"^roi_heads\.mask_head\.mask_fcn(\d+)\.(weight|bias)$", key)
    if old_mask:  # files saved before torchvision 0.13
        return f"mask_branch.head.convs.{int(old_mask.group(1)) - 1}.conv.{old_mask.group(2)}"
    return key


def torchvision_rcnn_to_cvzoo(state: StateDict) -> StateDict:
    """Keys of a torchvision ``fasterrcnn_*`` / ``maskrcnn_*`` state dict -> cvzoo's :class:`FasterRCNN` /
    :class:`MaskRCNN` keys (see the module docstring). Shapes are checked when the result is loaded."""
    if "rpn.head.cls_logits.weight" not in state or not any(k.startswith(_BODY) for k in state):
        raise KeyError("not a torchvision R-CNN state dict")
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    body = {k[len(_BODY):]: v for k, v in state.items() if k.startswith(_BODY)}
    if any(".block." in k for k in body):  # MobileNet v3: torchvision's features.N
        body = remap_torchvision_mobilenet_v3({f"features.{k}": v for k, v in body.items()})
    out = {_BODY + k: v for k, v in body.items()}
    normed_fpn = any(re.match(r"^backbone\.fpn\.inner_blocks\.\d+\.1\.", k) for k in state)
    rules = fpn_rules(normed_fpn) + _HEAD_RULES
    for key, value in state.items():
        if not key.startswith(_BODY):
            out[_rename(key, rules)] = value
    return out


register_remap("fasterrcnn", torchvision_rcnn_to_cvzoo, name="torchvision:fasterrcnn")
register_remap("maskrcnn", torchvision_rcnn_to_cvzoo, name="torchvision:maskrcnn")
