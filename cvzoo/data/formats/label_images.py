"""Instance label images -> an instance-segmentation dataset (COCO JSON with RLE masks).

Microscopy and other dense-object tools (StarDist, Cellpose, the DSB 2018 nuclei) annotate an image with a
second image of the same size in which every pixel holds the id of the object it belongs to (0 =
background). :func:`write_label_image_dataset` turns image / label-image pairs into the COCO layout that
``cvzoo train --task instance`` reads, optionally cut into tiles (such images are often much larger than
the objects need, or there are too few of them to split by image):

- each non-zero id of a tile becomes one object (box, compressed RLE mask, area) of one class; a part of
  an object cut by a tile border is kept if it has at least ``min_area`` pixels;
- images with more than 8 bits per sample are scaled to 8 bits between two percentiles of their values
  (1 and 99.8, StarDist's default normalisation), since a plain bit shift turns a 16-bit image whose
  values sit in 0..255 black;
- tiles go to the validation split in a fixed pattern (every ``round(1 / val_fraction)``-th tile in raster
  order), so the same command gives the same split. Choose a tile that divides the image: otherwise the
  last row and column are shifted back inside the image and overlap their neighbours, which may fall in
  the other split.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cvzoo.data.formats._common import AnnotationFormatError
from cvzoo.data.formats.masks import instance_map_to_masks, masks_to_boxes
from cvzoo.data.types import DatasetAnnotations, ImageAnnotation
from cvzoo.ops.masks import rle_encode

PERCENTILES = (1.0, 99.8)


@dataclass(frozen=True)
class LabelImagePair:
    image: Path
    labels: Path


def pair_label_images(images: Sequence[str | Path], labels: Sequence[str | Path]) -> list[LabelImagePair]:
    """Image / label-image pairs: two equally long lists of files, or two folders matched by file stem."""
    images, labels = [Path(p) for p in images], [Path(p) for p in labels]
    if len(images) == 1 and len(labels) == 1 and images[0].is_dir() and labels[0].is_dir():
        by_stem = {p.stem: p for p in sorted(labels[0].iterdir()) if p.is_file()}
        pairs = []
        for image in sorted(p for p in images[0].iterdir() if p.is_file()):
            if image.stem not in by_stem:
                raise AnnotationFormatError(f"{image}: no label image named {image.stem}.* in {labels[0]}")
            pairs.append(LabelImagePair(image, by_stem[image.stem]))
        if not pairs:
            raise AnnotationFormatError(f"{images[0]}: no images")
        return pairs
    if len(images) != len(labels):
        raise AnnotationFormatError(f"{len(images)} images but {len(labels)} label images; give one label image per "
                                    "image, in the same order, or two folders")
    for path in (*images, *labels):
        if not path.is_file():
            raise AnnotationFormatError(f"{path}: no such file")
    return [LabelImagePair(i, m) for i, m in zip(images, labels)]


def read_label_image(path: Path) -> np.ndarray:
    """The ``[H, W]`` integer id map of a label image (8/16/32-bit greyscale PNG or TIFF)."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            ids = np.asarray(img)
    except OSError as err:
        raise AnnotationFormatError(f"{path}: cannot read the label image ({err})") from err
    if ids.ndim != 2 or not np.issubdtype(ids.dtype, np.integer):
        raise AnnotationFormatError(f"{path}: a label image must be one channel of integer ids, got shape "
                                    f"{list(ids.shape)} of {ids.dtype}")
    return ids.astype(np.int64)


def to_uint8(pixels: np.ndarray, percentiles: tuple[float, float] = PERCENTILES) -> np.ndarray:
    """8-bit pixels: uint8 unchanged; deeper images scaled linearly from the low to the high percentile."""
    if pixels.dtype == np.uint8:
        return pixels
    low, high = np.percentile(pixels, percentiles)
    scaled = (pixels.astype(np.float64) - low) / max(high - low, 1e-12)
    return np.clip(np.rint(scaled * 255.0), 0, 255).astype(np.uint8)


def read_image_pixels(path: Path) -> np.ndarray:
    """``[H, W]`` or ``[H, W, 3]`` uint8 pixels of an image of any bit depth (see :func:`to_uint8`)."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            if img.mode in ("P", "PA", "RGBA", "LA", "CMYK", "YCbCr", "1"):
                img = img.convert("RGB")
            pixels = np.asarray(img)
    except OSError as err:
        raise AnnotationFormatError(f"{path}: cannot read the image ({err})") from err
    if pixels.ndim == 3 and pixels.shape[2] != 3:
        raise AnnotationFormatError(f"{path}: expected 1 or 3 channels, got shape {list(pixels.shape)}")
    return to_uint8(pixels)


def tile_origins(height: int, width: int, tile: int | None) -> list[tuple[int, int]]:
    """Top-left corners of non-overlapping ``tile`` x ``tile`` tiles in raster order (the whole image for
    None); a last row/column that would run past the image is shifted back to end at its border."""
    if tile is None:
        return [(0, 0)]
    if tile > min(height, width):
        raise ValueError(f"tile {tile} is larger than the image ({height}x{width})")
    tops = sorted({min(t, height - tile) for t in range(0, height, tile)})
    lefts = sorted({min(left, width - tile) for left in range(0, width, tile)})
    return [(top, left) for top in tops for left in lefts]


def tile_annotation(ids: np.ndarray, file: str, image_id: int, min_area: int = 10) -> ImageAnnotation:
    """One class-0 object per id of ``ids`` with at least ``min_area`` pixels: box, RLE mask and area."""
    _, masks = instance_map_to_masks(ids, ignore=(0,))
    areas = masks.reshape(len(masks), -1).sum(axis=1) if len(masks) else np.zeros(0, np.int64)
    masks = masks[areas >= min_area]
    areas = areas[areas >= min_area]
    height, width = ids.shape
    return ImageAnnotation(
        file=file, width=width, height=height, boxes=masks_to_boxes(masks),
        labels=np.zeros(len(masks), np.int64), image_id=image_id,
        rles=list(rle_encode(masks)) if len(masks) else [], areas=areas.astype(np.float32),
    )


def write_label_image_dataset(
    pairs: Sequence[LabelImagePair], out: str | Path, tile: int | None = None, val_fraction: float = 0.25,
    class_name: str = "object", min_area: int = 10,
) -> Path:
    """Write ``out/images/{train,val}/*.png`` and ``out/annotations/instances_{train,val}.json``.

    Raises:
        AnnotationFormatError: a file that cannot be read, or an image and its label image of different sizes
            (both files and sizes named).
        ValueError: ``out`` exists, ``val_fraction`` outside (0, 1), or a tile larger than an image.
    """
    from PIL import Image

    from cvzoo.data.formats.coco import write_coco

    out = Path(out)
    if out.exists():
        raise ValueError(f"{out} exists; the label-image converter writes a new folder")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    every = max(round(1.0 / val_fraction), 2)
    splits: dict[str, list[ImageAnnotation]] = {"train": [], "val": []}
    tiles: list[tuple[str, str, np.ndarray]] = []
    for pair in pairs:
        pixels, ids = read_image_pixels(pair.image), read_label_image(pair.labels)
        if pixels.shape[:2] != ids.shape:
            raise AnnotationFormatError(f"{pair.image} is {pixels.shape[1]}x{pixels.shape[0]} but its label image "
                                        f"{pair.labels} is {ids.shape[1]}x{ids.shape[0]} (width x height)")
        for top, left in tile_origins(*ids.shape, tile):
            size = tile or 0
            window = (slice(top, top + size), slice(left, left + size)) if tile else (slice(None), slice(None))
            split = "val" if len(tiles) % every == every - 1 else "train"
            name = f"{pair.image.stem}_{top}_{left}.png" if tile else f"{pair.image.stem}.png"
            annotation = tile_annotation(ids[window], name, image_id=len(tiles) + 1, min_area=min_area)
            splits[split].append(annotation)
            tiles.append((split, name, pixels[window]))
    for split, name, pixels in tiles:
        folder = out / "images" / split
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(folder / name)
    for split, images in splits.items():
        dataset = DatasetAnnotations(class_names=[class_name], images=images, root=str(out / "images" / split))
        write_coco(dataset, str(out / "annotations" / f"instances_{split}.json"), copy=False)
    return out
