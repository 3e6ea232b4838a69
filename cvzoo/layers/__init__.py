"""Building blocks shared by the model families (imports torch only)."""

from cvzoo.layers.conv_norm_act import ConvNormAct, make_divisible
from cvzoo.layers.drop_path import DropPath, drop_path
from cvzoo.layers.frozen_batch_norm import FrozenBatchNorm2d, freeze_batch_norm

__all__ = ["ConvNormAct", "DropPath", "FrozenBatchNorm2d", "drop_path", "freeze_batch_norm", "make_divisible"]
