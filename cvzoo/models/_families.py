"""Imports every model family so that each registers its variants (one import per file)."""

from cvzoo.models import detection as _detection  # noqa: F401
from cvzoo.models import generative as _generative  # noqa: F401
from cvzoo.models import video as _video  # noqa: F401
from cvzoo.models.classification import *  # noqa: F401,F403
from cvzoo.models.segmentation import *  # noqa: F401,F403
