"""Classification families; each module registers its variants on import."""
from cvzoo.models.classification import (
    alexnet,  # noqa: F401
    cifar_resnet,  # noqa: F401
    convnext,  # noqa: F401
    lenet,  # noqa: F401
    mobilevit,  # noqa: F401
    resnet,  # noqa: F401
    swin,  # noqa: F401
    vgg,  # noqa: F401
    vit,  # noqa: F401
)
