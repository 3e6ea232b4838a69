"""Augmentation, in the order a sample meets it: per-image presets for classification (``classify``,
on torchvision.transforms.v2) and box/mask-aware transforms for detection (``detect``: letterbox,
mosaic, mixup, affine, HSV, flips), then batch-level ones on tensors (``batch``: MixUp/CutMix, affine,
elastic, blur, dilation; ``multiscale``: YOLO's multi-scale training)."""
