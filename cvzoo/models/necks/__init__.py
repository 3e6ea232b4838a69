"""Necks that merge backbone maps across scales: FPN, YOLOv3's concatenating FPN and PAN."""

from cvzoo.models.necks.fpn import FeaturePyramidNetwork, YoloV3FPN
from cvzoo.models.necks.pan import PathAggregationNetwork

__all__ = ["FeaturePyramidNetwork", "PathAggregationNetwork", "YoloV3FPN"]
