"""Siamese embedding network: one shared backbone maps every image to a point on the unit sphere.

"Siamese" means the two (or three) branches of a pair (triplet) are the same network with the same
weights (Bromley et al., 1993; Chopra, Hadsell & LeCun, 2005): we apply one module to every image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cvzoo.models.registry import create_model, get_entry


@torch.no_grad()
def _pooled_width(model: nn.Module, name: str, in_channels: int) -> int:
    """Width of what the head returns with ``num_classes=0`` (pooled features; LeNet/VGG/AlexNet return
    their penultimate fully connected layer), found by one dry forward at the model's input size."""
    side = get_entry(name).input_size[-1]
    was_training = model.training
    width = model.eval()(torch.zeros(1, in_channels, side, side)).shape[-1]
    model.train(was_training)
    return int(width)


class EmbeddingNet(nn.Module):
    """Registered backbone (pooled features) -> linear projection -> L2-normalised embedding ``[B, D]``.

    Args:
        backbone: a registered classification model name; its classifier is removed.
        embedding_dim: size ``D`` of the embedding.
        in_channels: image channels.
        **kwargs: further backbone constructor arguments.
    """

    def __init__(self, backbone: str, embedding_dim: int = 64, in_channels: int = 3, **kwargs) -> None:
        super().__init__()
        self.backbone = create_model(backbone, num_classes=0, in_channels=in_channels, **kwargs)
        self.projection = nn.Linear(_pooled_width(self.backbone, backbone, in_channels), embedding_dim)
        self.embedding_dim = embedding_dim

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.projection(self.backbone(images)), dim=-1)
