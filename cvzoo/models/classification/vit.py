"""Vision Transformer (Dosovitskiy et al., 2021, "An Image is Worth 16x16 Words"), torchvision-compatible.

The image is cut into ``p x p`` patches, each patch is linearly embedded (a conv with kernel and stride
``p``), a learnable class token is prepended, learnable 1-D position embeddings are added, and the
sequence goes through ``depth`` pre-norm transformer blocks; the classifier reads the final class token
after a LayerNorm (§3.1, Eq. 1-4).

Input sizes: the position embeddings are learnt for the grid of ``image_size / p`` patches per side.
Any other input whose sides are multiples of ``p`` also works: the grid part of the embeddings is
resized with bicubic interpolation (``align_corners=False``) at every forward, as the paper does for
fine-tuning at higher resolution (§3.2); the class token's embedding is kept as is. Sides that are
not multiples of ``p`` raise a ``ValueError``.

Features: one map, the final (normalised) patch tokens reshaped to ``[B, C, H/p, W/p]`` at reduction
``p``. The class token travels next to it as ``features.class_token`` (see ``ViTFeatures``).

Module names follow timm (``patch_embed.proj``, ``cls_token``, ``pos_embed``, ``blocks.0.attn.qkv``,
``norm``, ``head``); torchvision's layout loads through the registered remap.
"""

from __future__ import annotations

import math
import re
from functools import partial

import torch
from torch import nn
from torch.nn import functional as F

from cvzoo.layers.attention_blocks import TransformerBlock
from cvzoo.layers.patch_embed import PatchEmbed
from cvzoo.models.classification.base import Classifier
from cvzoo.models.features import FeatureInfo
from cvzoo.models.registry import register_model
from cvzoo.models.weights import StateDict, register_remap


def resize_position_embedding(grid_embedding: torch.Tensor, grid_size: tuple[int, int]) -> torch.Tensor:
    """Resize position embeddings ``[1, gh * gw, C]`` laid out on a square grid to ``grid_size``.

    Uses bicubic interpolation with ``align_corners=False`` (no antialiasing, so the model exports to
    ONNX); returns ``[1, grid_size[0] * grid_size[1], C]``.
    """
    tokens, dim = grid_embedding.shape[1:]
    side = math.isqrt(tokens)
    if side * side != tokens:
        raise ValueError(f"position embeddings for {tokens} patches do not form a square grid")
    if (side, side) == tuple(grid_size):
        return grid_embedding
    grid = grid_embedding.reshape(1, side, side, dim).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=grid_size, mode="bicubic", align_corners=False)
    return grid.permute(0, 2, 3, 1).reshape(1, grid_size[0] * grid_size[1], dim)


class ViTFeatures(list):
    """The feature list of a ViT: ``[token_map]`` plus the final class token ``class_token`` ``[B, C]``.

    It is a plain list of maps for everything that consumes features (``FeatureExtractor``, necks); the
    head, which classifies from the class token, reads the extra attribute.
    """

    def __init__(self, token_map: torch.Tensor, class_token: torch.Tensor) -> None:
        super().__init__([token_map])
        self.class_token = class_token


class VisionTransformer(Classifier):
    """ViT with a class token and learnable absolute position embeddings.

    Args:
        image_size: side of the square training resolution; sets the position-embedding grid.
        patch_size: patch side ``p``.
        embed_dim: token width.
        depth: number of transformer blocks.
        num_heads: attention heads per block.
        mlp_ratio: hidden width of the MLPs relative to ``embed_dim``.
        num_classes: classifier outputs; 0 makes ``forward`` return the ``[B, C]`` class token.
        in_channels: image channels.
        drop_rate: dropout on the embedded tokens, after attention and inside the MLPs.
        attn_drop_rate: dropout on attention weights.
        drop_path_rate: stochastic depth, increasing linearly from 0 to this value over the blocks.
    """

    classifier_name = "head"

    def __init__(
        self,
        image_size: int = 224,
        patch_size: int = 16,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        num_classes: int = 1000,
        in_channels: int = 3,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"image_size {image_size} is not divisible by patch_size {patch_size}")
        self.patch_size = patch_size
        self.num_features = embed_dim
        self.patch_embed = PatchEmbed(in_channels, embed_dim, patch_size, strict=True)
        grid = image_size // patch_size
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        # One embedding for the class token followed by one per patch of the grid, row by row.
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + grid * grid, embed_dim))
        self.pos_drop = nn.Dropout(drop_rate)
        rates = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]
        self.blocks = nn.Sequential(*[
            TransformerBlock(
                embed_dim, num_heads, mlp_ratio, qkv_bias=True, drop=drop_rate, attn_drop=attn_drop_rate,
                drop_path=rate, norm_layer=partial(nn.LayerNorm, eps=1e-6),
            )
            for rate in rates
        ])
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.feature_info = [FeatureInfo(embed_dim, patch_size, "norm")]
        self.num_classes = num_classes
        self.head: nn.Module = self._make_classifier(num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        # The patch projection is a linear layer on flattened patches: LeCun-normal on its fan-in.
        proj = self.patch_embed.proj
        fan_in = proj.in_channels * proj.kernel_size[0] * proj.kernel_size[1]
        nn.init.trunc_normal_(proj.weight, std=math.sqrt(1.0 / fan_in))
        nn.init.zeros_(proj.bias)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.zeros_(self.cls_token)
        # A zero head starts every class at the same logit (the paper's fine-tuning set-up, §3.2).
        if isinstance(self.head, nn.Linear):
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    def position_embedding(self, grid_size: tuple[int, int]) -> torch.Tensor:
        """``[1, 1 + gh * gw, C]`` embeddings for a ``grid_size`` patch grid (interpolated if needed)."""
        if self.pos_embed.shape[1] == 1 + grid_size[0] * grid_size[1] and grid_size[0] == grid_size[1]:
            return self.pos_embed
        class_embedding, grid_embedding = self.pos_embed[:, :1], self.pos_embed[:, 1:]
        return torch.cat([class_embedding, resize_position_embedding(grid_embedding, grid_size)], dim=1)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``[B, C_in, H, W]`` -> ``ViTFeatures([token map [B, C, H/p, W/p]], class_token=[B, C])``."""
        patches = self.patch_embed(x)  # [B, gh, gw, C]
        batch, grid_h, grid_w, dim = patches.shape
        tokens = torch.cat([self.cls_token.expand(batch, -1, -1), patches.reshape(batch, grid_h * grid_w, dim)], 1)
        tokens = self.pos_drop(tokens + self.position_embedding((grid_h, grid_w)))
        tokens = self.norm(self.blocks(tokens))
        token_map = tokens[:, 1:].reshape(batch, grid_h, grid_w, dim).permute(0, 3, 1, 2)
        return ViTFeatures(token_map, tokens[:, 0])

    def forward_pre_logits(self, features: list[torch.Tensor]) -> torch.Tensor:
        class_token = getattr(features, "class_token", None)
        if class_token is None:
            raise ValueError("the ViT head classifies the class token: pass the list that forward_features returns")
        return class_token


_TORCHVISION_BLOCK = re.compile(r"^encoder\.layers\.encoder_layer_(\d+)\.(.+)$")
_TORCHVISION_BLOCK_PARTS = {
    "ln_1.": "norm1.",
    "ln_2.": "norm2.",
    "self_attention.in_proj_weight": "attn.qkv.weight",
    "self_attention.in_proj_bias": "attn.qkv.bias",
    "self_attention.out_proj.": "attn.proj.",
    "mlp.0.": "mlp.fc1.",
    "mlp.3.": "mlp.fc2.",
}
_TORCHVISION_TOP = {
    "class_token": "cls_token",
    "conv_proj.": "patch_embed.proj.",
    "encoder.pos_embedding": "pos_embed",
    "encoder.ln.": "norm.",
    "heads.head.": "head.",
}


def _replace_prefix(key: str, table: dict[str, str]) -> str:
    for old, new in table.items():
        if key.startswith(old):
            return new + key[len(old):]
    return key


def vit_from_torchvision(state: StateDict) -> StateDict:
    """torchvision ``VisionTransformer`` keys -> cvzoo keys (``nn.MultiheadAttention``'s packed
    ``in_proj`` is already our ``qkv`` layout). Keys of other layouts pass through unchanged."""
    converted = {}
    for key, value in state.items():
        match = _TORCHVISION_BLOCK.match(key)
        if match:
            key = f"blocks.{match.group(1)}." + _replace_prefix(match.group(2), _TORCHVISION_BLOCK_PARTS)
        else:
            key = _replace_prefix(key, _TORCHVISION_TOP)
        converted[key] = value
    return converted


register_remap("visiontransformer", vit_from_torchvision, name="vit:torchvision")

ViT = VisionTransformer
register_model("vit_b_16", ViT, patch_size=16, embed_dim=768, depth=12, num_heads=12, reference="torchvision:vit_b_16")
register_model("vit_b_32", ViT, patch_size=32, embed_dim=768, depth=12, num_heads=12, reference="torchvision:vit_b_32")
register_model(
    "vit_l_16", ViT, patch_size=16, embed_dim=1024, depth=24, num_heads=16, reference="torchvision:vit_l_16"
)
# ViT-Ti widths (DeiT: Touvron et al., 2021, Table 1) on 4x4 patches of 32 px images: 64 tokens, small
# enough to train from scratch on CIFAR / Fashion-MNIST (28 px inputs give a 7x7 grid).
register_model(
    "vit_tiny_patch4_32", ViT, image_size=32, patch_size=4, embed_dim=192, depth=12, num_heads=3,
    input_size=(3, 32, 32),
)
