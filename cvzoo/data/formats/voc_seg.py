"""Pascal VOC segmentation PNGs: ``SegmentationClass`` (class map) and ``SegmentationObject`` (instances).

Both are palette ("P" mode) PNGs whose pixel *indices* are the values: in SegmentationClass 0 is
background, 1..20 the classes of ``VOC_CLASSES`` and 255 the void border; in SegmentationObject each
object has its own index 1..N (255 void). The palette is only for viewing; it is the standard VOC
colormap, which spreads the bits of the index over the high bits of R, G and B.
"""

from __future__ import annotations

import os

import numpy as np

from cvzoo.data.formats._common import AnnotationFormatError
from cvzoo.data.formats.masks import instance_map_to_masks, masks_to_boxes
from cvzoo.data.formats.voc import VOC_CLASSES, find_voc_roots
from cvzoo.data.types import DatasetAnnotations, ImageAnnotation

VOID_INDEX = 255


def voc_colormap(num_colors: int = 256) -> np.ndarray:
    """The VOC palette ``[num_colors, 3]`` uint8.

    Bits 0, 1, 2 of the index go to R, G, B respectively, bits 3, 4, 5 to the next lower bit of each
    channel, and so on, starting from the channels' most significant bit: nearby indices get very
    different colours (1 -> dark red, 2 -> dark green, 255 -> cream).
    """
    index = np.arange(num_colors, dtype=np.int64)
    cmap = np.zeros((num_colors, 3), np.int64)
    for shift in range(8):  # 3 bits of the index per round, 8 rounds cover 24 bits
        for channel in range(3):
            bit = (index >> (3 * shift + channel)) & 1
            cmap[:, channel] |= bit << (7 - shift)
    return cmap.astype(np.uint8)


def read_index_png(path: str) -> np.ndarray:
    """``[H, W]`` uint8 indices of a VOC PNG.

    Palette and greyscale PNGs are read as indices directly; an RGB PNG (e.g. re-saved by an editor) is
    mapped back through the VOC colormap, and a colour outside the colormap is an error.
    """
    from PIL import Image

    try:
        with Image.open(path) as im:
            mode = im.mode
            array = np.asarray(im if mode in ("P", "L") else im.convert("RGB"))
    except OSError as err:
        raise AnnotationFormatError(f"{path}: cannot read PNG ({err})") from err
    if mode in ("P", "L"):
        return array.astype(np.uint8)
    cmap = voc_colormap().astype(np.int64)
    codes = (array[..., 0].astype(np.int64) << 16) | (array[..., 1].astype(np.int64) << 8) | array[..., 2]
    table = {int(c): i for i, c in enumerate((cmap[:, 0] << 16) | (cmap[:, 1] << 8) | cmap[:, 2])}
    unique, inverse = np.unique(codes, return_inverse=True)
    bad = [hex(int(u)) for u in unique if int(u) not in table]
    if bad:
        raise AnnotationFormatError(f"{path}: RGB colours {bad[:5]} are not in the VOC colormap")
    lut = np.array([table[int(u)] for u in unique], np.uint8)
    return lut[inverse].reshape(array.shape[:2])


def write_index_png(path: str, index_map: np.ndarray) -> None:
    """Save ``[H, W]`` uint8 indices as a palette PNG with the VOC colormap."""
    from PIL import Image

    index_map = np.asarray(index_map)
    if index_map.ndim != 2 or index_map.min(initial=0) < 0 or index_map.max(initial=0) > 255:
        raise ValueError(f"{path}: index map must be [H, W] with values 0..255, got shape {list(index_map.shape)}")
    image = Image.fromarray(index_map.astype(np.uint8), mode="P")
    image.putpalette(voc_colormap().ravel().tolist())
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    image.save(path)


def instances_from_pngs(class_map: np.ndarray, object_map: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Instance masks and 0-based labels from a SegmentationClass / SegmentationObject pair.

    Args:
        class_map: ``[H, W]`` class indices (0 background, 1..C classes, 255 void).
        object_map: ``[H, W]`` instance indices (0 background, 1..N objects, 255 void).

    Returns:
        ``(masks [N, H, W] uint8, labels [N] int64)``; a label is the class index minus one (the same
        0-based labels as the detection annotations), taken as the most frequent class under the mask.
    """
    if class_map.shape != object_map.shape:
        raise ValueError(f"class map {list(class_map.shape)} and object map {list(object_map.shape)} differ")
    _, masks = instance_map_to_masks(object_map, ignore=(0, VOID_INDEX))
    labels = []
    for mask in masks:
        classes = class_map[mask.astype(bool)]
        classes = classes[(classes != 0) & (classes != VOID_INDEX)]
        if len(classes) == 0:
            raise ValueError("an instance covers only background/void pixels in the class map")
        labels.append(int(np.bincount(classes).argmax()) - 1)
    return masks, np.array(labels, np.int64)


def read_voc_instances(path: str, split: str | None = "train") -> DatasetAnnotations:
    """Instance-segmentation split of a VOC folder (images listed in ``ImageSets/Segmentation``).

    Boxes are the masks' pixel-edge boxes (``masks.mask_to_box``); classes are the 20 VOC classes.
    """
    images = []
    for voc_root in find_voc_roots(path):
        if split is None:
            ids = sorted(os.path.splitext(f)[0] for f in os.listdir(os.path.join(voc_root, "SegmentationObject")))
        else:
            split_file = os.path.join(voc_root, "ImageSets", "Segmentation", f"{split}.txt")
            if not os.path.isfile(split_file):
                raise AnnotationFormatError(f"{split_file}: split file not found (split {split!r})")
            with open(split_file) as f:
                ids = [line.split()[0] for line in f if line.strip()]
        for image_id in ids:
            class_png = os.path.join(voc_root, "SegmentationClass", f"{image_id}.png")
            object_png = os.path.join(voc_root, "SegmentationObject", f"{image_id}.png")
            class_map, object_map = read_index_png(class_png), read_index_png(object_png)
            try:
                masks, labels = instances_from_pngs(class_map, object_map)
            except ValueError as err:
                raise AnnotationFormatError(f"{object_png}: {err}") from err
            height, width = class_map.shape
            images.append(ImageAnnotation(
                file=os.path.relpath(os.path.join(voc_root, "JPEGImages", f"{image_id}.jpg"), path),
                width=width, height=height, boxes=masks_to_boxes(masks), labels=labels, masks=masks,
                image_id=len(images),
            ))
    return DatasetAnnotations(class_names=list(VOC_CLASSES), images=images, root=os.path.abspath(path))


def list_voc_segmentation(path: str, split: str = "train") -> list[tuple[str, str]]:
    """``(image path, SegmentationClass PNG path)`` pairs of a semantic-segmentation split."""
    pairs = []
    for voc_root in find_voc_roots(path):
        split_file = os.path.join(voc_root, "ImageSets", "Segmentation", f"{split}.txt")
        if not os.path.isfile(split_file):
            raise AnnotationFormatError(f"{split_file}: split file not found (split {split!r})")
        with open(split_file) as f:
            for line in f:
                if line.strip():
                    image_id = line.split()[0]
                    pairs.append((os.path.join(voc_root, "JPEGImages", f"{image_id}.jpg"),
                                  os.path.join(voc_root, "SegmentationClass", f"{image_id}.png")))
    return pairs

