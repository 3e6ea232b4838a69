"""Decoded images kept in RAM (``data.cache``): each image file is decoded once per run, not once per use.

A dataset that decodes image files holds an ``ImageCache`` (``dataset.image_cache``) and reads every image
through it, and lists its files with ``dataset.image_paths()``; ``image_cache_of`` finds both through
``torch.utils.data.Subset`` wrappers. With nothing stored the cache is a pass-through to ``load_image``.

What is kept: the decoded original, the array ``load_image`` gives (uint8 ``[H, W, 3]`` or ``[H, W]``, EXIF
orientation and mode conversion applied), read-only. Not a copy resized to the model's input, as
ultralytics' ``cache=ram`` keeps: cvzoo's detection pipeline scales each mosaic tile by a random factor
and letterboxes from the original pixels, so a pre-resized copy would change what the augmentations
produce. From the original, a sample is the same bit for bit with and without the cache
(``tests/data/test_image_cache.py``); the price is memory at the files' own resolution.

When: ``fill`` decodes every listed file up front, in the main process and before the DataLoader starts
its workers, which are forked from it and so read the same pages copy-on-write: one copy in RAM whatever
the worker count. (Filled lazily inside each worker instead, every persistent worker would end up with its
own copy of the images it was handed, up to one copy of the dataset per worker.) A start method other than
fork (spawn, the default on macOS and Windows) pickles the dataset into each worker, cache included.

Corrupt files: ``fill`` keeps the ``CorruptImageError`` in the file's slot and each read of that file
raises it again, so a dataset reports or skips a corrupt image at the same sample, with the same message,
as it does without the cache. Filling reads no random generator, so seeded and resumed runs draw the
same augmentations.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import Dataset, Subset

from cvzoo.data.images import CorruptImageError, load_image


class ImageCache:
    """Decoded images by file path, in one mode ("RGB" or "L").

    Args:
        mode: the mode ``load_image`` decodes to (see ``cvzoo.data.images``).

    Attributes:
        keep_misses: store what a read decodes (lazy filling; the automatic rule's probe uses it).
        active: False ignores the stored images: every read decodes (the probe's uncached pass).
    """

    def __init__(self, mode: str = "RGB") -> None:
        self.mode = mode
        self._images: dict[str, np.ndarray | CorruptImageError] = {}
        self.keep_misses = False
        self.active = True

    def __len__(self) -> int:
        return len(self._images)

    @property
    def decoded(self) -> int:
        """Images held (files found corrupt while filling are not counted)."""
        return sum(isinstance(item, np.ndarray) for item in self._images.values())

    @property
    def nbytes(self) -> int:
        """Bytes of decoded pixels held."""
        return sum(item.nbytes for item in self._images.values() if isinstance(item, np.ndarray))

    def __contains__(self, path: str | Path) -> bool:
        return str(path) in self._images

    def clear(self) -> None:
        self._images.clear()

    def array(self, path: str | Path) -> np.ndarray:
        """The decoded image as a read-only uint8 array ``[H, W, 3]`` (RGB) or ``[H, W]`` (L).

        Raises:
            CorruptImageError: the file cannot be decoded (also when that was found while filling).
        """
        stored = self._stored(path)
        if stored is None:
            return self._decode(path)
        if isinstance(stored, CorruptImageError):  # a fresh error each time, as a new decode would raise
            raise CorruptImageError(stored.path, stored.reason)
        return stored

    def image(self, path: str | Path) -> Image.Image:
        """The decoded image as a PIL image (what per-sample transforms of image folders take)."""
        stored = self._stored(path)
        if stored is None and not self.keep_misses:
            return load_image(path, self.mode)  # the uncached path stays exactly load_image
        # fromarray of a uint8 [H, W, 3] / [H, W] array is an RGB / L image with the same pixels.
        return Image.fromarray(self.array(path))

    def fill(self, paths: Iterable[str | Path], threads: int = 1) -> None:
        """Decode every file of ``paths`` not stored yet; corrupt ones keep their error (never raised here).

        Threads decode in parallel: Pillow releases the GIL while it decodes.
        """
        todo = list(dict.fromkeys(str(p) for p in paths if str(p) not in self._images))
        with ThreadPoolExecutor(max(1, threads)) as pool:
            for path, item in zip(todo, pool.map(self._decode_or_error, todo)):
                self._images[path] = item

    def _stored(self, path: str | Path) -> np.ndarray | CorruptImageError | None:
        return self._images.get(str(path)) if self.active else None

    def _decode(self, path: str | Path) -> np.ndarray:
        item = self._decode_or_error(str(path))
        if self.keep_misses:
            self._images[str(path)] = item
        if isinstance(item, CorruptImageError):
            raise item
        return item

    def _decode_or_error(self, path: str) -> np.ndarray | CorruptImageError:
        try:
            array = np.asarray(load_image(path, self.mode))
        except CorruptImageError as error:
            return error
        # Read-only: a transform that wrote into a stored image would change every later sample of it.
        array.setflags(write=False)
        return array


def image_cache_of(dataset: Dataset) -> tuple[ImageCache, list[str]] | None:
    """The cache of ``dataset`` and the files its samples read (through ``Subset`` wrappers), or None for a
    dataset that decodes no image files (in-memory arrays, videos)."""
    indices: Sequence[int] | None = None
    while isinstance(dataset, Subset):
        indices = list(dataset.indices) if indices is None else [dataset.indices[i] for i in indices]
        dataset = dataset.dataset
    cache = getattr(dataset, "image_cache", None)
    if not isinstance(cache, ImageCache):
        return None
    paths = [str(p) for p in dataset.image_paths()]  # type: ignore[attr-defined]
    if indices is not None:
        paths = [paths[i] for i in indices]
    return cache, paths
