"""The data shipped inside the package (see ``cvzoo/data/assets/README.md``).

The Fashion-MNIST sample: 1000 training images (100 per class) and 200 validation images (20 per class),
28x28 uint8 grey, so that demos and tests run without any download. ``asset_path`` finds the other files
(the MRPT chessboards, the VOC sample photo) that the documentation's examples use.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np

from cvzoo.data.images import DatasetError

SAMPLE_NAME = "fashion_mnist_sample"
_ASSET = "assets/fashion_mnist_sample.npz"
_SPLITS = ("train", "val")


def asset_path(name: str) -> Path:
    """The path of a file or folder bundled in ``cvzoo/data/assets`` (e.g. ``"chessboards"``, ``"voc_sample"``).

    Raises:
        DatasetError: no such asset; the message lists the bundled ones.
    """
    root = Path(str(resources.files("cvzoo.data").joinpath("assets")))
    path = root / name
    if not name or not path.exists():
        known = sorted(p.name for p in root.iterdir() if p.name != "README.md")
        raise DatasetError(f"no bundled asset {name!r} in {root}; bundled: {known}")
    return path


def load_fashion_sample(split: str = "train") -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Load one split of the bundled Fashion-MNIST sample.

    Args:
        split: "train" (1000 images) or "val" (200 images); "test" is read as "val".

    Returns:
        ``images`` uint8 ``[N, 28, 28]``, ``labels`` int64 ``[N]``, the 10 class names.

    Raises:
        DatasetError: unknown split.
    """
    split = "val" if split == "test" else split
    if split not in _SPLITS:
        raise DatasetError(f"unknown split {split!r} of {SAMPLE_NAME}; expected 'train' or 'val'")
    with resources.files("cvzoo.data").joinpath(_ASSET).open("rb") as f, np.load(f, allow_pickle=False) as npz:
        images = npz[f"{split}_images"]
        labels = npz[f"{split}_labels"].astype(np.int64)
        classes = [str(c) for c in npz["classes"]]
    return images, labels, classes


def export_sample_to_folder(root: str | Path, splits: tuple[str, ...] = _SPLITS) -> Path:
    """Write the sample as an ImageFolder tree of PNGs: ``root/<split>/<class>/<index>.png``.

    Args:
        root: output folder (created; existing files with the same names are overwritten).
        splits: which splits to write.

    Returns:
        ``root`` as a ``Path``.
    """
    from PIL import Image

    root = Path(root)
    for split in splits:
        images, labels, classes = load_fashion_sample(split)
        for name in classes:
            (root / split / name).mkdir(parents=True, exist_ok=True)
        for i, (image, label) in enumerate(zip(images, labels)):
            Image.fromarray(image).save(root / split / classes[label] / f"{i:05d}.png")
    return root
