"""Detectors; each model module registers its variants on import."""

from cvzoo.models.detection import (
    cornernet,  # noqa: F401
    darknet,  # noqa: F401
    detr,  # noqa: F401
    onestage,  # noqa: F401
    rcnn,  # noqa: F401
    rtdetr,  # noqa: F401
    ssd,  # noqa: F401
    ssd_remap,  # noqa: F401
    ssdlite,  # noqa: F401
    yolov3,  # noqa: F401
    yolov5,  # noqa: F401
    yolov8,  # noqa: F401
)
