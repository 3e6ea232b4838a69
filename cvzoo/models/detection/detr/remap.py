"""transformers' ``DetrForObjectDetection`` checkpoints -> cvzoo's :class:`DETR` keys.

Both of transformers' layouts load: version 5's (``mlp.fc1``, ``o_proj``, ``model.backbone.model.*``) and
the one of version 4 and of the files on the Hugging Face hub (``fc1``, ``out_proj``,
``model.backbone.conv_encoder.model.*``); the backbone may be timm's ResNet (``use_timm_backbone=True``,
the default and the hub's: the same module names as ours) or transformers' own ``ResNetBackbone``
(``embedder`` / ``encoder.stages``).

=========================================================  ===============================================
transformers                                               cvzoo
=========================================================  ===============================================
``model.backbone[.conv_encoder].model.*`` (timm)           ``backbone.body.*``
``...model.embedder.embedder.convolution/normalization``   ``backbone.body.conv1`` / ``bn1``
``...model.encoder.stages.s.layers.b.layer.i.*``           ``backbone.body.layer{s+1}.b.conv{i+1}/bn{i+1}``
``...model.encoder.stages.s.layers.b.shortcut.*``          ``backbone.body.layer{s+1}.b.downsample.0/1``
``model.input_projection``                                 ``input_proj``
``model.query_position_embeddings``                        ``query_embed``
``model.encoder.layers.i.self_attn.{q,k,v,o|out}_proj``    ``transformer.encoder.i.self_attn.{q,k,v,out}_proj``
``model.encoder.layers.i.self_attn_layer_norm``            ``transformer.encoder.i.norm1``
``model.encoder.layers.i.[mlp.]fc1 / fc2``                 ``transformer.encoder.i.mlp.fc1 / fc2``
``model.encoder.layers.i.final_layer_norm``                ``transformer.encoder.i.norm2``
``model.decoder.layers.i.encoder_attn[_layer_norm]``       ``transformer.decoder.i.cross_attn`` / ``norm2``
``model.decoder.layers.i.final_layer_norm``                ``transformer.decoder.i.norm3``
``model.decoder.layernorm``                                ``transformer.decoder_norm``
``class_labels_classifier``                                ``class_head``
``bbox_predictor.layers.i``                                ``box_head.layers.i``
=========================================================  ===============================================

The class rows keep their order: transformers' last class is "no object", as ours.
"""

from __future__ import annotations

import re

import torch

from cvzoo.models.weights import register_remap

StateDict = dict[str, torch.Tensor]

_BACKBONE = re.compile(r"^model\.backbone\.(?:conv_encoder\.)?model\.")
_HF_RESNET = [
    (r"^embedder\.embedder\.convolution\.", "conv1."),
    (r"^embedder\.embedder\.normalization\.", "bn1."),
    (r"^encoder\.stages\.(\d+)\.layers\.(\d+)\.shortcut\.convolution\.", "layer{s}.{b}.downsample.0."),
    (r"^encoder\.stages\.(\d+)\.layers\.(\d+)\.shortcut\.normalization\.", "layer{s}.{b}.downsample.1."),
    (r"^encoder\.stages\.(\d+)\.layers\.(\d+)\.layer\.(\d+)\.convolution\.", "layer{s}.{b}.conv{i}."),
    (r"^encoder\.stages\.(\d+)\.layers\.(\d+)\.layer\.(\d+)\.normalization\.", "layer{s}.{b}.bn{i}."),
]
_LAYER_PARTS = {
    "encoder": {"self_attn_layer_norm": "norm1", "final_layer_norm": "norm2"},
    "decoder": {"self_attn_layer_norm": "norm1", "encoder_attn_layer_norm": "norm2", "final_layer_norm": "norm3",
                "encoder_attn": "cross_attn"},
}
_TOP = {
    "model.input_projection.": "input_proj.",
    "model.query_position_embeddings.": "query_embed.",
    "model.decoder.layernorm.": "transformer.decoder_norm.",
    "class_labels_classifier.": "class_head.",
    "bbox_predictor.": "box_head.",
}


def _backbone_key(key: str) -> str:
    """A key of the backbone (after the prefix) in timm's names (= ours) or transformers' ResNet's."""
    for pattern, template in _HF_RESNET:
        match = re.match(pattern, key)
        if match:
            groups = match.groups()
            names = {"s": int(groups[0]) + 1, "b": groups[1]} if groups else {}
            if len(groups) == 3:
                names["i"] = int(groups[2]) + 1
            return template.format(**names) + key[match.end():]
    return key


def _transformer_key(key: str) -> str | None:
    match = re.match(r"^model\.(encoder|decoder)\.layers\.(\d+)\.(.+)$", key)
    if match is None:
        return None
    part, index, rest = match.groups()
    rest = re.sub(r"^(fc1|fc2)\.", r"mlp.\1.", rest)
    rest = re.sub(r"\.o_proj\.", ".out_proj.", rest)
    head, _, tail = rest.partition(".")
    rest = f"{_LAYER_PARTS[part].get(head, head)}.{tail}"
    return f"transformer.{part}.{index}.{rest}"


def transformers_detr_to_cvzoo(state: StateDict) -> StateDict:
    """Keys of a transformers ``DetrForObjectDetection`` state dict -> cvzoo's :class:`DETR` keys (see the
    module docstring). Shapes are checked when the result is loaded."""
    if "class_labels_classifier.weight" not in state or "model.query_position_embeddings.weight" not in state:
        raise KeyError("not a transformers DetrForObjectDetection state dict")
    out: StateDict = {}
    for key, value in state.items():
        if key.endswith("num_batches_tracked"):
            continue  # frozen batch norms keep none (a live one fills its own)
        backbone = _BACKBONE.match(key)
        if backbone:
            out["backbone.body." + _backbone_key(key[backbone.end():])] = value
            continue
        layer = _transformer_key(key)
        if layer is not None:
            out[layer] = value
            continue
        for theirs, ours in _TOP.items():
            if key.startswith(theirs):
                out[ours + key[len(theirs):]] = value
                break
        else:
            out[key] = value  # reported as unexpected by the load
    return out


register_remap("detr", transformers_detr_to_cvzoo, name="transformers:detr")
