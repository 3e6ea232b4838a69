"""A seeded detector whose outputs vary with the input, for NMS / TTA / export comparisons."""

from __future__ import annotations

import torch
from torch import nn

from cvzoo.models import create_model


@torch.no_grad()
def calibrated_detector(name: str = "yolov8n", num_classes: int = 3, seed: int = 0, size: tuple[int, int] = (64, 96)) -> nn.Module:
    """A freshly initialised YOLO model with BatchNorm statistics taken from one random batch.

    At initialisation (running mean 0, variance 1) the deep features are nearly constant over the image,
    so many anchors get exactly equal scores and the order of tied boxes (implementation-defined in
    every NMS) decides the comparison. Statistics from real activations give distinct scores. YOLOv8's
    class logits are then tempered (bias 0, weights / 10) so that scores spread over (0, 1) without
    saturating at exactly 1.0 (ties again).
    """
    torch.manual_seed(seed)
    model = create_model(name, num_classes=num_classes)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = 1.0
    model.train()
    model(torch.rand(4, 3, *size))
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = 0.03
    if hasattr(model, "head") and hasattr(model.head, "cls_branches"):  # YOLOv8
        for branch in model.head.cls_branches:
            nn.init.zeros_(branch[-1].bias)
            branch[-1].weight.mul_(0.1)
    return model.eval()
