"""Semantic segmentation families; each module registers its variants on import."""
from cvzoo.models.segmentation import (
    deeplab,  # noqa: F401
    fcn,  # noqa: F401
    lraspp,  # noqa: F401
    unet,  # noqa: F401
)
