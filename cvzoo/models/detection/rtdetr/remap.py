"""transformers' ``RTDetrForObjectDetection`` and ``RTDetrV2ForObjectDetection`` checkpoints -> cvzoo's
:class:`RTDETR` keys.

Both of transformers' layouts load: version 5's (``mlp.fc1``, ``o_proj``, ``encoder.aifi``) and the one of
version 4 and of the files on the Hugging Face hub (``fc1``, ``out_proj``, ``encoder.encoder``, and the
decoder heads also saved at the top level, ``class_embed`` / ``bbox_embed``, tied to the decoder's).

=============================================================  ============================================
transformers (``model.`` prefix dropped)                       cvzoo
=============================================================  ============================================
``backbone.model.embedder.embedder.i.convolution/normalization``  ``backbone.stem.i.conv`` / ``bn``
``backbone.model.encoder.stages.s.layers.b.layer.i.*``         ``backbone.layer{s+1}.b.conv{i+1}`` / ``bn{i+1}``
``backbone.model.encoder.stages.s.layers.b.shortcut[.1].*``    ``backbone.layer{s+1}.b.downsample.conv`` / ``bn``
``encoder_input_proj.i.0 / .1``                                ``encoder.input_proj.i.conv / .bn``
``encoder.aifi.j.layers.k.*`` (``encoder.encoder`` in v4)      ``encoder.aifi.j.layers.k.*``
``...self_attn_layer_norm / final_layer_norm`` (AIFI)          ``norm1 / norm2``
``encoder.{fpn,pan}_blocks.i.bottlenecks.k.conv1 / conv2``     ``...bottlenecks.k.conv3x3 / conv1x1``
``...norm`` (every conv + BN of the encoder)                   ``...bn``
``decoder_input_proj.i.0 / .1``                                ``decoder_input_proj.i.conv / .bn``
``decoder.layers.i.encoder_attn[_layer_norm]``                 ``decoder.layers.i.cross_attn`` / ``norm2``
``decoder.layers.i.self_attn_layer_norm / final_layer_norm``   ``norm1 / norm3``
``decoder.class_embed.i / bbox_embed.i``                       ``decoder.class_heads.i / box_heads.i``
``self_attn.o_proj`` (``out_proj`` in v4)                      ``self_attn.out_proj``
=============================================================  ============================================

``enc_output``, ``enc_score_head``, ``enc_bbox_head``, ``decoder.query_pos_head`` and
``denoising_class_embed`` keep their names. Labels are the same ``0 .. K-1`` on both sides (sigmoid scores).
"""

from __future__ import annotations

import re

import torch

from cvzoo.models.weights import register_remap

StateDict = dict[str, torch.Tensor]


def _stage(match: re.Match) -> str:
    return f"backbone.layer{int(match.group(1)) + 1}.{match.group(2)}."


_RULES = [
    # Backbone (RTDetrResNetBackbone).
    (r"^backbone\.model\.embedder\.embedder\.(\d+)\.convolution\.", r"backbone.stem.\1.conv."),
    (r"^backbone\.model\.embedder\.embedder\.(\d+)\.normalization\.", r"backbone.stem.\1.bn."),
    (r"^backbone\.model\.encoder\.stages\.(\d+)\.layers\.(\d+)\.layer\.(\d+)\.convolution\.",
     lambda m: _stage(m) + f"conv{int(m.group(3)) + 1}."),
    (r"^backbone\.model\.encoder\.stages\.(\d+)\.layers\.(\d+)\.layer\.(\d+)\.normalization\.",
     lambda m: _stage(m) + f"bn{int(m.group(3)) + 1}."),
    (r"^backbone\.model\.encoder\.stages\.(\d+)\.layers\.(\d+)\.shortcut\.(?:1\.)?convolution\.",
     lambda m: _stage(m) + "downsample.conv."),
    (r"^backbone\.model\.encoder\.stages\.(\d+)\.layers\.(\d+)\.shortcut\.(?:1\.)?normalization\.",
     lambda m: _stage(m) + "downsample.bn."),
    # Projections (conv, BN as a Sequential).
    (r"^encoder_input_proj\.(\d+)\.0\.", r"encoder.input_proj.\1.conv."),
    (r"^encoder_input_proj\.(\d+)\.1\.", r"encoder.input_proj.\1.bn."),
    (r"^decoder_input_proj\.(\d+)\.0\.", r"decoder_input_proj.\1.conv."),
    (r"^decoder_input_proj\.(\d+)\.1\.", r"decoder_input_proj.\1.bn."),
    # Hybrid encoder.
    (r"^encoder\.encoder\.(\d+)\.layers\.", r"encoder.aifi.\1.layers."),
    (r"^(encoder\.aifi\.\d+\.layers\.\d+)\.self_attn_layer_norm\.", r"\1.norm1."),
    (r"^(encoder\.aifi\.\d+\.layers\.\d+)\.final_layer_norm\.", r"\1.norm2."),
    (r"^(encoder\.(?:fpn|pan)_blocks\.\d+\.bottlenecks\.\d+)\.conv1\.", r"\1.conv3x3."),
    (r"^(encoder\.(?:fpn|pan)_blocks\.\d+\.bottlenecks\.\d+)\.conv2\.", r"\1.conv1x1."),
    (r"^(encoder\..*)\.norm\.", r"\1.bn."),
    # Decoder.
    (r"^(decoder\.layers\.\d+)\.self_attn_layer_norm\.", r"\1.norm1."),
    (r"^(decoder\.layers\.\d+)\.encoder_attn_layer_norm\.", r"\1.norm2."),
    (r"^(decoder\.layers\.\d+)\.final_layer_norm\.", r"\1.norm3."),
    (r"^(decoder\.layers\.\d+)\.encoder_attn\.", r"\1.cross_attn."),
    (r"^decoder\.class_embed\.", "decoder.class_heads."),
    (r"^decoder\.bbox_embed\.", "decoder.box_heads."),
    # Both transformer stacks: transformers 4's names.
    (r"\.self_attn\.o_proj\.", ".self_attn.out_proj."),
    (r"^((?:encoder\.aifi\.\d+|decoder)\.layers\.\d+)\.(fc1|fc2)\.", r"\1.mlp.\2."),
]


def transformers_rtdetr_to_cvzoo(state: StateDict) -> StateDict:
    """Keys of a transformers ``RTDetrForObjectDetection`` state dict -> cvzoo's :class:`RTDETR` keys (see the
    module docstring). Shapes are checked when the result is loaded."""
    if "model.enc_score_head.weight" not in state or not any(k.startswith("model.decoder.layers.") for k in state):
        raise KeyError("not a transformers RTDetrForObjectDetection state dict")
    out: StateDict = {}
    for key, value in state.items():
        if key.endswith("num_batches_tracked") and ".backbone." in key:
            continue  # the backbone's frozen batch norms keep none (a live one fills its own)
        if re.match(r"^(class_embed|bbox_embed)\.", key):
            continue  # top-level copies of the decoder's heads (tied: transformers 4, RT-DETRv2)
        if key.endswith(".encoder_attn.n_points_scale"):
            continue  # RT-DETRv2's 1 / P_l per point: a constant of the layout, computed by the model
        new = key[len("model."):] if key.startswith("model.") else key
        for pattern, replacement in _RULES:
            new = re.sub(pattern, replacement, new)
        out[new] = value  # a key left unmatched is reported as unexpected by the load
    return out


register_remap("rtdetr", transformers_rtdetr_to_cvzoo, name="transformers:rtdetr")
