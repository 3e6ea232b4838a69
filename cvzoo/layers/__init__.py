"""Building blocks shared by the model families (imports torch only)."""

from cvzoo.layers.conv_norm_act import ConvNormAct, make_divisible
from cvzoo.layers.drop_path import DropPath, drop_path

__all__ = ["ConvNormAct", "DropPath", "drop_path", "make_divisible"]
