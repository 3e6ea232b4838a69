"""RT-DETR (Zhao et al. 2024), one small module per part:

- ``backbone``: ResNet-vd (deep stem, avg-pool shortcut) returning C3, C4, C5;
- ``encoder``: the hybrid encoder (AIFI on S5 with a 2-D sine-cosine position, CCFM fusion of CSP/RepVGG blocks);
- ``deformable``: multi-scale deformable attention in plain PyTorch (``grid_sample``; RT-DETRv2's sampling settings);
- ``decoder``: anchors, query selection's helpers, the decoder with iterative box refinement;
- ``denoising``: contrastive denoising queries and their attention mask;
- ``criterion``: focal-cost Hungarian matching, varifocal + L1 + GIoU losses (auxiliary, encoder, denoising);
- ``rtdetr``: the detector, its recipe and registered variants;
- ``remap``: transformers' ``RTDetrForObjectDetection`` checkpoints -> cvzoo keys.
"""

from cvzoo.models.detection.rtdetr import remap  # noqa: F401
from cvzoo.models.detection.rtdetr.rtdetr import RTDETR

__all__ = ["RTDETR"]
