"""Video classifiers: clips ``[B, C, T, H, W]`` -> logits; each module registers its variants on import."""
from cvzoo.models.video import (
    cnn_rnn,  # noqa: F401
    resnet3d,  # noqa: F401
)
