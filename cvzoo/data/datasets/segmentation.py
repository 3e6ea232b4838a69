"""Semantic segmentation data: five on-disk layouts -> (image, class map) samples, joint transforms, batching.

A sample is an RGB image and a class map ``[H, W]`` int64 whose values are class indices ``0..K-1``
(0 = background) or 255 ("void": ignored by the loss and the metrics). Layouts (``detect_layout``):

``voc``      ``JPEGImages/<id>.jpg``, ``SegmentationClass/<id>.png`` (palette or grey index PNGs; RGB PNGs
             are mapped back through the palette), ``ImageSets/Segmentation/<split>.txt``; also found
             under ``VOCdevkit/VOC20xx``. Classes: ``class_names.txt`` / ``classes.txt`` next to it, else
             background + the 20 VOC classes.
``folders``  ``images/[<split>/]<stem>.<ext>`` + ``masks/[<split>/]<stem>.png`` and ``classes.txt`` (one class
             per line, line ``i`` = mask value ``i``; optionally ``name R G B`` to map RGB colour masks).
``coco``     a COCO instances JSON (or a folder with ``annotations/instances_<split>*.json``): polygons
             and RLEs are rasterised; class ``k`` of the sorted categories becomes ``k + 1``.
``labelme``  a folder of Labelme JSON files (``<split>/`` sub-folder when present); polygons rasterised,
             rectangles and circles filled as their boxes; labels ``_background_`` / ``background`` -> 0.
``yolo``     an ultralytics dataset YAML (or a folder holding one) with polygon label rows (YOLO-seg).

Rasterised objects are painted largest first, so a small object on a large one stays visible; COCO
crowd regions become 255. A split that does not exist raises ``MissingDataError`` (the caller may train
without validation); a split that exists but is empty raises ``DatasetError``.
"""

from __future__ import annotations

import glob
import os
import random
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from cvzoo.data.cache import ImageCache
from cvzoo.data.formats._common import AnnotationFormatError, Issue
from cvzoo.data.formats.masks import annotation_masks
from cvzoo.data.formats.voc import VOC_CLASSES
from cvzoo.data.formats.voc_seg import voc_colormap
from cvzoo.data.images import IMAGE_EXTENSIONS, DatasetError, MissingDataError
from cvzoo.data.types import ImageAnnotation

IGNORE_INDEX = 255
LAYOUTS = ("voc", "folders", "coco", "labelme", "yolo")
BACKGROUND_NAMES = ("_background_", "background", "__background__")
GREY_MASK_MODES = ("1", "P", "L", "I", "I;16", "I;16B", "I;16L", "I;16N")  # pixel value = class index
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class SegSample:
    """One image and where its class map comes from: a mask file, or an annotation to rasterise."""

    image: str
    mask: str | None = None
    annotation: ImageAnnotation | None = None
    values: np.ndarray | None = None  # class value painted for each object of ``annotation``
    source: str = ""  # file the annotation came from (named in errors)


@dataclass
class SegmentationSource:
    """A listed split: samples, class names (index = class value) and an optional RGB palette ``[K, 3]``."""

    samples: list[SegSample]
    class_names: list[str]
    layout: str
    palette: np.ndarray | None = None
    skipped: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------------------ class lists
def read_class_list(path: str) -> tuple[list[str], np.ndarray | None]:
    """Class names (and colours, when every line is ``name R G B``) of a ``classes.txt``."""
    names, colours = [], []
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) == 4 and all(v.isdigit() for v in fields[1:]):
                rgb = [int(v) for v in fields[1:]]
                if max(rgb) > 255:
                    raise DatasetError(f"{path}:{line_no}: colour values must be 0..255, got {rgb}")
                names.append(fields[0])
                colours.append(rgb)
            else:
                names.append(line.strip())
    if not names:
        raise DatasetError(f"{path}: the class list is empty")
    if colours and len(colours) != len(names):
        raise DatasetError(f"{path}: give a colour (name R G B) on every line or on none")
    return names, (np.array(colours, np.uint8) if colours else None)


def _find_class_file(*folders: str) -> str | None:
    for folder in folders:
        for name in ("class_names.txt", "classes.txt"):
            candidate = os.path.join(folder, name)
            if os.path.isfile(candidate):
                return candidate
    return None


# ----------------------------------------------------------------------------------------------- masks
def read_mask(path: str, num_classes: int, palette: np.ndarray | None = None, ignore_unknown: bool = False) -> np.ndarray:
    """A mask file as a ``[H, W]`` int64 class map with 255 = ignore.

    Palette ("P"), grey ("L", 16-bit "I") and 1-bit ("1": 0/1) images hold class indices directly. Colour
    (RGB/RGBA) masks are mapped through ``palette`` (row ``i`` = colour of class ``i``); the VOC void
    colour maps to 255. A two-class mask holding 255 but no 1 is most likely a binary mask saved as
    0/255: it is read by the rule (255 = ignore) but warned about, since every foreground pixel would
    silently leave the loss and the metrics.

    Args:
        path: mask file.
        num_classes: K; values outside ``0..K-1`` and 255 are unknown.
        palette: ``[K, 3]`` uint8 colours of the classes, needed for colour masks.
        ignore_unknown: map unknown values/colours to 255 instead of raising.

    Raises:
        DatasetError: unreadable file, colour mask without palette, unknown values (listed).
    """
    try:
        with Image.open(path) as im:
            mode = im.mode
            array = np.asarray(im if mode in GREY_MASK_MODES else im.convert("RGB"))
    except (OSError, ValueError) as err:
        raise DatasetError(f"{path}: cannot read mask ({err})") from err
    if array.ndim == 2:
        values = array.astype(np.int64)  # mode "1" arrives as bool: False/True -> 0/1
        if num_classes == 2 and not (values == 1).any() and (values == IGNORE_INDEX).any():
            warnings.warn(
                f"masks in {os.path.dirname(path) or '.'} hold 0 and 255 but no 1: "
                "255 means 'ignore', so no pixel counts as the foreground class; save binary masks as 0/1",
                UserWarning, stacklevel=2)
    else:
        if palette is None:
            raise DatasetError(
                f"{path}: RGB colour mask (mode {mode}) but no class colours are known; save masks as index "
                "PNGs or give the colours in classes.txt (lines 'name R G B')"
            )
        values = _colours_to_classes(array, palette, path)
    bad = (values >= num_classes) & (values != IGNORE_INDEX) | (values < 0)
    if bad.any():
        if not ignore_unknown:
            found = sorted({int(v) for v in np.unique(values[bad])})
            what = "colours (as palette indices)" if array.ndim == 3 else "values"
            raise DatasetError(
                f"{path}: mask {what} {found[:10]} are not classes 0..{num_classes - 1} (255 = ignore); "
                "fix the class list or pass ignore_unknown=True to map them to 255"
            )
        values = np.where(bad, IGNORE_INDEX, values)
    return values


def _colours_to_classes(rgb: np.ndarray, palette: np.ndarray, path: str) -> np.ndarray:
    """Exact colour lookup; a colour of no class becomes ``len(palette) + 256`` (flagged unknown later)."""
    codes = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
    pal = palette.astype(np.int64)
    table = {int(c): i for i, c in enumerate((pal[:, 0] << 16) | (pal[:, 1] << 8) | pal[:, 2])}
    void = voc_colormap()[IGNORE_INDEX].astype(np.int64)
    table.setdefault(int((void[0] << 16) | (void[1] << 8) | void[2]), IGNORE_INDEX)
    unique, inverse = np.unique(codes, return_inverse=True)
    lut = np.array([table.get(int(u), len(palette) + 256) for u in unique], np.int64)
    return lut[inverse].reshape(codes.shape)


def rasterize(annotation: ImageAnnotation, values: np.ndarray | None = None) -> np.ndarray:
    """``[H, W]`` int64 class map of an annotation; background 0, crowd objects 255.

    Args:
        annotation: objects with masks, RLEs, polygons or (as a fallback) boxes.
        values: class value of each object; default ``label + 1`` (class 0 is the background).

    Objects are painted in decreasing mask area, so smaller (usually nearer) objects end on top.
    """
    height, width = int(annotation.height), int(annotation.width)
    out = np.zeros((height, width), np.int64)
    if len(annotation) == 0:
        return out
    values = annotation.labels + 1 if values is None else np.asarray(values, np.int64)
    masks = annotation_masks(annotation).astype(bool)
    order = np.argsort(-masks.reshape(len(masks), -1).sum(1), kind="stable")
    for k in order:
        crowd = bool(annotation.iscrowd[k]) if len(annotation.iscrowd) else False
        out[masks[k]] = IGNORE_INDEX if crowd else int(values[k])
    return out


# -------------------------------------------------------------------------------------- layout readers
def _voc_roots(path: str) -> list[str]:
    def is_root(p: str) -> bool:
        return os.path.isdir(os.path.join(p, "SegmentationClass")) and os.path.isdir(
            os.path.join(p, "ImageSets", "Segmentation"))

    if is_root(path):
        return [path]
    for base in (path, os.path.join(path, "VOCdevkit")):
        found = sorted(p for p in glob.glob(os.path.join(base, "*")) if is_root(p))
        if found:
            return found
    return []


def _json_layout(path: str) -> str:
    """'labelme' (a ``"shapes"`` key) or 'coco', from the first 64 KiB of a JSON file."""
    with open(path, encoding="utf-8", errors="replace") as f:
        return "labelme" if '"shapes"' in f.read(65536) else "coco"


def detect_layout(path: str) -> str:
    """The layout name (one of ``LAYOUTS``) of a segmentation dataset path."""
    if os.path.isfile(path):
        lower = path.lower()
        if lower.endswith((".yaml", ".yml")):
            return "yolo"
        if lower.endswith(".json"):
            return _json_layout(path)
        raise DatasetError(f"{path}: a segmentation dataset file must be a .json (COCO) or .yaml (YOLO)")
    if not os.path.isdir(path):
        raise MissingDataError(f"segmentation dataset not found: {path}")
    if _voc_roots(path):
        return "voc"
    if os.path.isdir(os.path.join(path, "images")) and os.path.isdir(os.path.join(path, "masks")):
        return "folders"
    if glob.glob(os.path.join(path, "annotations", "*.json")):
        return "coco"
    if glob.glob(os.path.join(path, "*.yaml")) + glob.glob(os.path.join(path, "*.yml")):
        return "yolo"
    json_files = sorted(glob.glob(os.path.join(path, "**", "*.json"), recursive=True))
    if json_files:
        return _json_layout(json_files[0])
    raise DatasetError(
        f"{path}: no segmentation layout recognised (VOC SegmentationClass/, images/ + masks/, COCO JSON, "
        "Labelme JSON files or a YOLO dataset YAML)"
    )


def _image_for(folder: str, stem: str) -> str | None:
    for ext in IMAGE_EXTENSIONS + tuple(e.upper() for e in IMAGE_EXTENSIONS):
        candidate = os.path.join(folder, stem + ext)
        if os.path.isfile(candidate):
            return candidate
    return None


def _missing(pairs: list[SegSample], allow_missing: bool, where: str) -> tuple[list[SegSample], list[str]]:
    """Drop (with a warning) or reject samples whose mask file is absent."""
    missing = [s.image for s in pairs if s.mask is not None and not os.path.isfile(s.mask)]
    if not missing:
        return pairs, []
    listing = ", ".join(missing[:10]) + (f" (+{len(missing) - 10} more)" if len(missing) > 10 else "")
    if not allow_missing:
        raise MissingDataError(f"{where}: {len(missing)} image(s) have no mask: {listing}")
    warnings.warn(f"{where}: skipping {len(missing)} image(s) without a mask: {listing}", UserWarning, stacklevel=3)
    kept = [s for s in pairs if s.mask is None or os.path.isfile(s.mask)]
    return kept, missing


def _list_voc(path: str, split: str) -> tuple[list[SegSample], str | None]:
    samples: list[SegSample] = []
    class_file = None
    for root in _voc_roots(path):
        split_file = os.path.join(root, "ImageSets", "Segmentation", f"{split}.txt")
        if not os.path.isfile(split_file):
            raise MissingDataError(f"{split_file}: split file not found (split {split!r})")
        with open(split_file, encoding="utf-8") as f:
            ids = [line.split()[0] for line in f if line.strip()]
        if not ids:
            raise DatasetError(f"{split_file}: the {split!r} split lists no images")
        for image_id in ids:
            image = _image_for(os.path.join(root, "JPEGImages"), image_id)
            if image is None:
                raise MissingDataError(f"{split_file}: image {image_id!r} not found in {os.path.join(root, 'JPEGImages')}")
            samples.append(SegSample(image, os.path.join(root, "SegmentationClass", f"{image_id}.png")))
        class_file = class_file or _find_class_file(root, path)
    return samples, class_file


def _split_indices(n: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    order = list(range(n))
    random.Random(seed).shuffle(order)
    n_val = int(round(n * val_fraction))
    return sorted(order[n_val:]), sorted(order[:n_val])


def _list_folders(path: str, split: str, val_fraction: float, seed: int) -> list[SegSample]:
    image_dir, mask_dir = os.path.join(path, "images"), os.path.join(path, "masks")
    per_split = os.path.isdir(os.path.join(image_dir, split))
    if per_split:
        image_dir, mask_dir = os.path.join(image_dir, split), os.path.join(mask_dir, split)
    elif split != "train" and val_fraction <= 0:
        raise MissingDataError(f"{image_dir}: no {split!r} sub-folder (and data.val_fraction is 0)")
    images = sorted(f for f in glob.glob(os.path.join(image_dir, "*")) if f.lower().endswith(IMAGE_EXTENSIONS))
    if not images:
        raise DatasetError(f"{image_dir}: the {split!r} split has no images")
    if not per_split and val_fraction > 0:
        train_idx, val_idx = _split_indices(len(images), val_fraction, seed)
        images = [images[i] for i in (train_idx if split == "train" else val_idx)]
    samples = []
    for image in images:
        stem = os.path.splitext(os.path.basename(image))[0]
        mask = _image_for(mask_dir, stem) or os.path.join(mask_dir, stem + ".png")
        samples.append(SegSample(image, mask))
    return samples


def _with_background(names: list[str]) -> tuple[list[str], dict[int, int]]:
    """``["background", *others]`` and the map from the source label index to the new class value."""
    classes = ["background"] + [n for n in names if n not in BACKGROUND_NAMES]
    mapping = {i: (0 if n in BACKGROUND_NAMES else classes.index(n)) for i, n in enumerate(names)}
    return classes, mapping


def _annotation_samples(dataset, mapping: dict[int, int], source_of) -> list[SegSample]:
    samples = []
    for ann in dataset.images:
        values = np.array([mapping[int(label)] for label in ann.labels], np.int64)
        samples.append(SegSample(os.path.join(dataset.root, ann.file), annotation=ann, values=values,
                                 source=source_of(ann)))
    return samples


def _list_coco(path: str, split: str) -> tuple[list[SegSample], list[str]]:
    from cvzoo.data.formats.auto import find_coco_json
    from cvzoo.data.formats.coco import read_coco

    if os.path.isfile(path):
        if split != "train":
            raise MissingDataError(f"{path}: a single COCO file is the train split; there is no {split!r} split")
        json_path = path
    else:
        try:
            json_path = find_coco_json(path, split)
        except AnnotationFormatError as err:
            raise MissingDataError(f"{path}: no COCO annotation file for split {split!r} ({err})") from err
        # find_coco_json falls back to the only file there is: that one is the train split.
        if split not in os.path.basename(json_path) and split != "train":
            raise MissingDataError(f"{path}: no COCO annotation file for split {split!r}")
    dataset = read_coco(json_path)
    classes, mapping = _with_background(dataset.class_names)
    return _annotation_samples(dataset, mapping, lambda ann: json_path), classes


def _list_labelme(path: str, split: str, class_names: list[str] | None, ignore_unknown: bool
                  ) -> tuple[list[SegSample], list[str]]:
    from cvzoo.data.formats.labelme import read_labelme

    folder = os.path.join(path, split) if os.path.isdir(os.path.join(path, split)) else None
    if folder is None and split != "train":
        raise MissingDataError(f"{path}: no Labelme {split!r} sub-folder")
    folder = folder or path
    fixed = class_names
    if fixed is None and (class_file := _find_class_file(path)) is not None:
        fixed = read_class_list(class_file)[0]
    issues: list[Issue] | None = [] if ignore_unknown else None
    dataset = read_labelme(folder, class_names=fixed, issues=issues)
    classes, mapping = _with_background(dataset.class_names)
    json_files = sorted(glob.glob(os.path.join(folder, "**", "*.json"), recursive=True))
    source = {n: f for n, f in enumerate(json_files)}
    return _annotation_samples(dataset, mapping, lambda ann: source.get(ann.image_id, folder)), classes


def _list_yolo(path: str, split: str) -> tuple[list[SegSample], list[str]]:
    from cvzoo.data.formats.yolo import label_path_for, read_yolo

    if os.path.isdir(path):
        yamls = sorted(glob.glob(os.path.join(path, "*.yaml")) + glob.glob(os.path.join(path, "*.yml")))
        if len(yamls) != 1:
            raise DatasetError(f"{path}: expected one dataset YAML, found {[os.path.basename(y) for y in yamls]}")
        path = yamls[0]
    try:
        dataset = read_yolo(path, split)
    except AnnotationFormatError as err:
        if f"no split {split!r}" in str(err):
            raise MissingDataError(str(err)) from err
        raise
    classes, mapping = _with_background(dataset.class_names)
    return _annotation_samples(dataset, mapping, lambda ann: label_path_for(os.path.join(dataset.root, ann.file))), classes


def load_segmentation_split(
    path: str,
    split: str = "train",
    class_names: Sequence[str] | None = None,
    val_fraction: float = 0.0,
    seed: int = 0,
    allow_missing_masks: bool = False,
    ignore_unknown: bool = False,
) -> SegmentationSource:
    """List one split of a segmentation dataset (any of ``LAYOUTS``).

    Args:
        path: dataset folder or file.
        split: ``"train"``, ``"val"``, ...
        class_names: the class list the samples must use (e.g. the training classes when listing val);
            None reads it from the dataset.
        val_fraction: ``folders`` layout without split sub-folders: fraction held out as ``val``.
        seed: seed of that hold-out split.
        allow_missing_masks: skip images without a mask with a warning instead of raising.
        ignore_unknown: Labelme: skip shapes whose label is not in ``class_names``.

    Raises:
        MissingDataError: the split does not exist, or images have no mask (not allowed).
        DatasetError: the split is empty or the dataset is malformed.
    """
    layout = detect_layout(path)
    palette = None
    if layout == "voc":
        samples, class_file = _list_voc(path, split)
        names, palette = read_class_list(class_file) if class_file else (["background", *VOC_CLASSES], None)
        if palette is None:  # colour PNGs of a VOC folder use the VOC colour map
            palette = voc_colormap(len(names))
    elif layout == "folders":
        class_file = _find_class_file(path)
        if class_file is None:
            raise MissingDataError(f"{path}: images/ + masks/ layout needs a classes.txt (one class per line)")
        names, palette = read_class_list(class_file)
        samples = _list_folders(path, split, val_fraction, seed)
    elif layout == "coco":
        samples, names = _list_coco(path, split)
    elif layout == "labelme":
        fixed = [n for n in class_names if n not in BACKGROUND_NAMES] if class_names is not None else None
        samples, names = _list_labelme(path, split, fixed, ignore_unknown)
    else:
        samples, names = _list_yolo(path, split)
    if class_names is not None and list(class_names) != list(names):
        raise DatasetError(
            f"{path} ({split}): classes {names[:10]} differ from the expected {list(class_names)[:10]}"
        )
    samples, skipped = _missing(samples, allow_missing_masks, f"{path} ({split})")
    if not samples:
        raise DatasetError(f"{path}: the {split!r} split is empty")
    return SegmentationSource(samples, list(names), layout, palette, skipped)


# ----------------------------------------------------------------------------------- joint transforms
class SegmentationTrainTransform:
    """Random scale, flips, colour jitter, normalisation, then a random crop with 255-padded masks.

    The shorter side is resized to ``base * s`` with ``s ~ U(scale)``, where ``base`` is ``crop_size`` (or
    the image's own shorter side when ``crop_size`` is 0); the image is bilinear, the mask nearest.
    Smaller results are padded up to the crop (image with 0 after normalisation = the mean colour,
    mask with 255, so padding never counts as background). ``hflip`` / ``vflip`` are the probabilities
    of a horizontal / vertical flip (vertical flips suit top-down views: microscopy, aerial images).

    Call: ``(image uint8 [3, H, W], mask int64 [H, W]) -> (float32 [3, h, w], int64 [h, w])``.
    """

    def __init__(self, crop_size: int, scale: tuple[float, float] = (0.5, 2.0), hflip: float = 0.5,
                 color_jitter: float = 0.0, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD, vflip: float = 0.0) -> None:
        if not 0 < scale[0] <= scale[1]:
            raise ValueError(f"scale must be (min, max) with 0 < min <= max, got {scale}")
        for name, p in (("hflip", hflip), ("vflip", vflip)):
            if not 0.0 <= float(p) <= 1.0:
                raise ValueError(f"{name} is a probability in [0, 1], got {p}")
        self.crop_size, self.scale, self.hflip, self.vflip = int(crop_size), tuple(scale), float(hflip), float(vflip)
        self.jitter = (v2.ColorJitter(brightness=color_jitter, contrast=color_jitter, saturation=color_jitter)
                       if color_jitter > 0 else None)
        self.mean, self.std = list(mean), list(std)

    def __call__(self, image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        height, width = image.shape[-2:]
        base = self.crop_size or min(height, width)
        s = self.scale[0] + (self.scale[1] - self.scale[0]) * float(torch.rand(()))
        ratio = max(1, round(base * s)) / min(height, width)
        size = [max(1, round(height * ratio)), max(1, round(width * ratio))]
        image = TF.resize(image, size, interpolation=v2.InterpolationMode.BILINEAR, antialias=True)
        mask = TF.resize(mask[None], size, interpolation=v2.InterpolationMode.NEAREST)[0]
        if float(torch.rand(())) < self.hflip:
            image, mask = image.flip(-1), mask.flip(-1)
        if self.vflip and float(torch.rand(())) < self.vflip:
            image, mask = image.flip(-2), mask.flip(-2)
        if self.jitter is not None:
            image = self.jitter(image)
        image = TF.normalize(image.float() / 255.0, self.mean, self.std)
        if self.crop_size:
            image, mask = random_crop(image, mask, self.crop_size)
        return image, mask


def random_crop(image: torch.Tensor, mask: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A random ``size`` x ``size`` window; image padded with 0 and mask with 255 when too small."""
    height, width = image.shape[-2:]
    pad_h, pad_w = max(0, size - height), max(0, size - width)
    if pad_h or pad_w:
        image = F.pad(image, [0, pad_w, 0, pad_h], value=0.0)
        mask = F.pad(mask, [0, pad_w, 0, pad_h], value=IGNORE_INDEX)
        height, width = image.shape[-2:]
    top = int(torch.randint(0, height - size + 1, ()))
    left = int(torch.randint(0, width - size + 1, ()))
    return image[:, top:top + size, left:left + size], mask[top:top + size, left:left + size]


class SegmentationEvalTransform:
    """Normalise; optionally resize the *image* so its shorter side is ``short_side``. The mask keeps the
    original resolution: predictions are resized back to it before scoring."""

    def __init__(self, short_side: int = 0, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD) -> None:
        self.short_side, self.mean, self.std = int(short_side), list(mean), list(std)

    def image(self, image: torch.Tensor) -> torch.Tensor:
        """uint8 ``[3, H, W]`` -> normalised float32 ``[3, h, w]``."""
        if self.short_side:
            height, width = image.shape[-2:]
            ratio = self.short_side / min(height, width)
            size = [max(1, round(height * ratio)), max(1, round(width * ratio))]
            image = TF.resize(image, size, interpolation=v2.InterpolationMode.BILINEAR, antialias=True)
        return TF.normalize(image.float() / 255.0, self.mean, self.std)

    def __call__(self, image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.image(image), mask


# ---------------------------------------------------------------------------------------------- dataset
class SegmentationDataset(torch.utils.data.Dataset):
    """Map-style dataset of a ``SegmentationSource``: ``dataset[i] -> (image, class map)``.

    Without a transform the image is uint8 ``[3, H, W]``; the class map is int64 ``[H, W]`` (255 = ignore).

    Args:
        source: the listed split.
        transform: joint transform ``(image, mask) -> (image, mask)``.
        ignore_unknown: map mask values / colours outside the class list to 255 instead of raising.
    """

    def __init__(self, source: SegmentationSource, transform=None, ignore_unknown: bool = False) -> None:
        self.source, self.transform, self.ignore_unknown = source, transform, ignore_unknown
        self.class_names = source.class_names
        self.image_cache = ImageCache("RGB")  # data.cache: filled by the trainer (cvzoo.data.cache)

    def __len__(self) -> int:
        return len(self.source.samples)

    def image_paths(self) -> list[str]:
        """The image file of each index (what ``image_cache`` is filled with)."""
        return [sample.image for sample in self.source.samples]

    def load(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The raw sample: uint8 image ``[3, H, W]`` and int64 class map ``[H, W]`` (sizes checked)."""
        sample = self.source.samples[index]
        image = self.image_cache.array(sample.image)
        height, width = image.shape[:2]
        if sample.mask is not None:
            mask = read_mask(sample.mask, len(self.class_names), self.source.palette, self.ignore_unknown)
            origin = sample.mask
        else:
            mask = rasterize(sample.annotation, sample.values)
            origin = f"{sample.source} (annotation of {os.path.basename(sample.image)})"
        if mask.shape != (height, width):
            raise DatasetError(
                f"mask {origin} is {mask.shape[1]}x{mask.shape[0]} but image {sample.image} is "
                f"{width}x{height} (width x height)"
            )
        image_t = torch.from_numpy(np.array(image, np.uint8)).permute(2, 0, 1).contiguous()  # a writable copy
        return image_t, torch.from_numpy(mask.astype(np.int64))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self.load(index)
        if self.transform is not None:
            image, mask = self.transform(image, mask)
        return image, mask


def pad_collate(samples: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Batch samples of different sizes by padding at the bottom/right.

    Returns:
        ``(images [B, 3, H, W] padded with 0, masks [B, Hm, Wm] padded with 255, sizes [B, 4])`` where
        ``sizes[i] = (image_h, image_w, mask_h, mask_w)`` are the unpadded sizes of sample ``i``.
    """
    images, masks = zip(*samples)
    sizes = torch.tensor([[*im.shape[-2:], *m.shape[-2:]] for im, m in zip(images, masks)], dtype=torch.int64)
    return _pad_stack(images, 0.0), _pad_stack(masks, IGNORE_INDEX), sizes


def _pad_stack(tensors: Sequence[torch.Tensor], value: float) -> torch.Tensor:
    height = max(t.shape[-2] for t in tensors)
    width = max(t.shape[-1] for t in tensors)
    padded = [t if t.shape[-2:] == (height, width) else
              F.pad(t, [0, width - t.shape[-1], 0, height - t.shape[-2]], value=value) for t in tensors]
    return torch.stack(padded)


__all__ = [
    "IGNORE_INDEX", "LAYOUTS", "SegSample", "SegmentationDataset", "SegmentationEvalTransform", "SegmentationSource",
    "SegmentationTrainTransform", "detect_layout", "load_segmentation_split", "pad_collate", "random_crop",
    "rasterize", "read_class_list", "read_mask",
]
