"""One-stage detectors in torchvision's layout: RetinaNet (v1, v2) and FCOS.

- ``common``: what both share (head branches, the detector skeleton, per-level top-k + NMS, the recipe);
- ``retinanet`` / ``fcos``: the detectors, their losses and registered variants;
- ``remap``: torchvision checkpoints -> cvzoo keys.
"""

from cvzoo.models.detection.onestage import remap  # noqa: F401
from cvzoo.models.detection.onestage.fcos import FCOS
from cvzoo.models.detection.onestage.retinanet import RetinaNet, RetinaNetV2

__all__ = ["FCOS", "RetinaNet", "RetinaNetV2"]
