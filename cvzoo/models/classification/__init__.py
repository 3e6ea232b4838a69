"""Classification families; each module registers its variants on import."""
from cvzoo.models.classification import (
    alexnet,  # noqa: F401
    attention_resnet,  # noqa: F401
    cifar_resnet,  # noqa: F401
    convnext,  # noqa: F401
    densenet,  # noqa: F401
    efficientnet,  # noqa: F401
    efficientnet_v2,  # noqa: F401
    googlenet,  # noqa: F401
    lenet,  # noqa: F401
    mobilenet_v1,  # noqa: F401
    mobilenet_v2,  # noqa: F401
    mobilenet_v3,  # noqa: F401
    mobilevit,  # noqa: F401
    repvgg,  # noqa: F401
    resnet,  # noqa: F401
    resnet9,  # noqa: F401
    shufflenet_v1,  # noqa: F401
    shufflenet_v2,  # noqa: F401
    swin,  # noqa: F401
    vgg,  # noqa: F401
    vit,  # noqa: F401
)
