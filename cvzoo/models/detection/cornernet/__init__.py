"""CornerNet (Law & Deng 2018): corners as paired keypoints on a stacked hourglass; the registered variants."""

from cvzoo.models.detection.cornernet.model import CornerNet
from cvzoo.models.registry import register_model

__all__ = ["CornerNet"]

_DETECT = {"task": "detect"}
# The paper's model: hourglass-104 (5 levels, 2 stacks), trained at 511 x 511 (512 here, a multiple of 128).
register_model("cornernet_hourglass104", CornerNet, channels=(256, 256, 384, 384, 384, 512),
               modules=(2, 2, 2, 2, 2, 4), num_stacks=2, stem_channels=128, feature_channels=256, pool_channels=128,
               head_channels=256, input_size=(3, 512, 512), **_DETECT)
# Reduced: 3 levels (output stride 4, deepest 32), narrow, one stack; trains on a CPU at 128-256 px
# (128 by default: the recipe's image size is the registered input size).
register_model("cornernet", CornerNet, channels=(64, 64, 96, 128), modules=(1, 1, 1, 2), num_stacks=1,
               stem_channels=32, feature_channels=64, pool_channels=32, head_channels=64,
               input_size=(3, 128, 128), **_DETECT)
