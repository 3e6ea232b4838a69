"""Detectors; each model module registers its variants on import."""

from cvzoo.models.detection import (
    darknet,  # noqa: F401
    onestage,  # noqa: F401
    rcnn,  # noqa: F401
    yolov3,  # noqa: F401
    yolov5,  # noqa: F401
    yolov8,  # noqa: F401
)
