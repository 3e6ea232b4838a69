"""DETR (Carion et al. 2020), one small module per part:

- ``backbone``: a registered ResNet's last stage (DC5: dilated) and the padding mask at its resolution;
- ``position``: the sine positional encoding of the valid cells;
- ``transformer``: the post-norm encoder and the decoder returning every layer's output;
- ``criterion``: Hungarian matching and the set loss (class CE with the no-object weight, L1, GIoU, auxiliary);
- ``detr``: the detector, its recipe and registered variants;
- ``remap``: transformers' ``DetrForObjectDetection`` checkpoints -> cvzoo keys.
"""

from cvzoo.models.detection.detr import remap  # noqa: F401
from cvzoo.models.detection.detr.detr import DETR

__all__ = ["DETR"]
