"""Batch norm with fixed statistics and affine parameters, for fine-tuning detectors on small batches."""

from __future__ import annotations

import torch
from torch import nn


class FrozenBatchNorm2d(nn.Module):
    """``y = (x - mean) / sqrt(var + eps) * weight + bias`` with all four tensors fixed (buffers).

    Detection batches hold a few large images, too few for batch statistics, so the R-CNN family keeps a
    pretrained backbone's statistics and scales frozen (Ren et al. 2015; torchvision's detection models
    use the same layer). The state dict has ``weight``, ``bias``, ``running_mean`` and ``running_var``;
    a ``num_batches_tracked`` entry in a checkpoint is ignored.

    Args:
        num_features: channels ``C`` of the ``[B, C, H, W]`` input.
        eps: added to the variance.
    """

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs) -> None:  # type: ignore[no-untyped-def]
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        shift = self.bias - self.running_mean * scale
        return x * scale[None, :, None, None] + shift[None, :, None, None]

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"


def freeze_batch_norm(module: nn.Module, eps: float = 1e-5) -> nn.Module:
    """Replace every ``BatchNorm2d`` inside ``module`` (in place, and ``module`` itself if it is one) by a
    :class:`FrozenBatchNorm2d` holding its current statistics and affine parameters.

    ``eps`` is the frozen layers' (torchvision's detection backbones use 1e-5 whatever the classifier's
    batch norm had, e.g. MobileNet v3's 1e-3). Returns the converted module.
    """
    if isinstance(module, nn.BatchNorm2d):
        frozen = FrozenBatchNorm2d(module.num_features, eps)
        with torch.no_grad():
            if module.affine:
                frozen.weight.copy_(module.weight)
                frozen.bias.copy_(module.bias)
            if module.running_mean is not None:
                frozen.running_mean.copy_(module.running_mean)
                frozen.running_var.copy_(module.running_var)
        return frozen
    for name, child in module.named_children():
        converted = freeze_batch_norm(child, eps)
        if converted is not child:
            setattr(module, name, converted)
    return module
