"""Deterministic synthetic scenes: Fashion-MNIST objects pasted on procedural textures.

Every demo and end-to-end test needs a detection/segmentation dataset that exists offline, is small,
is learnable in minutes and has *exact* labels. This module makes one from the bundled Fashion-MNIST
sample (``data/assets/fashion_mnist_sample.npz``):

* each object is a 28x28 item resized to a random size, tinted with a random hue, and pasted with an
  alpha mask ``resized > alpha_threshold`` (so the label covers exactly the pixels that were drawn);
* objects pasted later occlude earlier ones; the instance masks are taken from the final
  instance-id map, so every box is the tight box of the pixels that are *visible* in the image;
* the background is a seeded procedural texture (gradient + smooth noise + stripes/checker + blurred
  colour blobs), so a model cannot find objects by "anything that is not flat";
* the ``train`` split draws items from ``train_images`` and ``val`` from ``val_images``: the same
  garment never appears in both splits.

Boxes follow the canonical contract (``cvzoo.data.types``): xyxy, absolute pixels, float32, where pixel
``(col, row)`` covers ``[col, col + 1) x [row, row + 1)``; a tight box is therefore
``[min_col, min_row, max_col + 1, max_row + 1]``.

Same seed -> byte-identical images and labels: every scene draws from its own generator seeded by
``(seed, split, index)``, so scene ``i`` does not depend on how many scenes were made before it.
"""

from __future__ import annotations

import colorsys
import functools
import importlib.resources
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cvzoo.data.types import DatasetAnnotations, ImageAnnotation

SPLITS = ("train", "val")
_SPLIT_CODE = {"train": 0, "val": 1}


class SyntheticConfigError(ValueError):
    """A ``SceneConfig`` field or a generator argument out of its valid range."""


@dataclass(frozen=True)
class SceneConfig:
    """How synthetic scenes look.

    Attributes:
        image_size: ``(height, width)`` of every scene, used when ``size_range`` is None.
        size_range: optional ``(min, max)``; height and width are then drawn independently and
            uniformly from ``[min, max]`` per scene (multi-size datasets for letterbox tests).
        objects_per_image: inclusive ``(min, max)`` number of objects *tried*; an object that cannot be
            placed within the overlap limits after ``placement_attempts`` tries is skipped.
        scale_range: object side as a fraction of the scene's shorter side, ``(min, max)``.
        aspect_range: width/height ratio of the resized item, drawn log-uniformly.
        classes: Fashion-MNIST class names or indices to use (None: all 10). Labels are 0-based
            indices into this subset, in the order given (see ``class_names``).
        background: ``"texture"`` (procedural, seeded) or ``"plain"`` (one random flat colour).
        max_overlap: maximum IoU between the tight box of a new object and any earlier object.
        min_visible: an object may hide at most ``1 - min_visible`` of an earlier object's pixels.
        colorize: tint the grey items with a random hue (False keeps them grey).
        alpha_threshold: resized item pixels above this value (0-255) belong to the object.
        placement_attempts: random positions tried per object before it is skipped.
        seed: default seed of ``generate_dataset`` and the writers.
    """

    image_size: tuple[int, int] = (320, 320)
    size_range: tuple[int, int] | None = None
    objects_per_image: tuple[int, int] = (1, 6)
    scale_range: tuple[float, float] = (0.08, 0.5)
    aspect_range: tuple[float, float] = (0.8, 1.25)
    classes: Sequence[str | int] | None = None
    background: str = "texture"
    max_overlap: float = 0.3
    min_visible: float = 0.5
    colorize: bool = True
    alpha_threshold: int = 40
    placement_attempts: int = 20
    seed: int = 0
    _class_ids: tuple[int, ...] = field(init=False, repr=False, compare=False, default=())

    def __post_init__(self) -> None:
        def check(ok: bool, what: str) -> None:
            if not ok:
                raise SyntheticConfigError(f"SceneConfig.{what}")

        sizes = self.size_range if self.size_range is not None else self.image_size
        check(len(sizes) == 2 and min(sizes) >= 32, f"image_size/size_range must be 2 ints >= 32, got {sizes}")
        if self.size_range is not None:
            check(sizes[0] <= sizes[1], f"size_range must be (min, max), got {sizes}")
        lo, hi = self.objects_per_image
        check(0 <= lo <= hi <= 255, f"objects_per_image must be 0 <= min <= max <= 255, got {(lo, hi)}")
        lo, hi = self.scale_range
        check(0 < lo <= hi <= 1, f"scale_range must be 0 < min <= max <= 1, got {(lo, hi)}")
        lo, hi = self.aspect_range
        check(0 < lo <= hi, f"aspect_range must be 0 < min <= max, got {(lo, hi)}")
        check(self.background in ("texture", "plain"), f"background must be 'texture' or 'plain', got {self.background!r}")
        check(0 <= self.max_overlap <= 1, f"max_overlap must be in [0, 1], got {self.max_overlap}")
        check(0 <= self.min_visible <= 1, f"min_visible must be in [0, 1], got {self.min_visible}")
        check(0 <= self.alpha_threshold < 255, f"alpha_threshold must be in [0, 255), got {self.alpha_threshold}")
        check(self.placement_attempts >= 1, f"placement_attempts must be >= 1, got {self.placement_attempts}")
        object.__setattr__(self, "_class_ids", _resolve_classes(self.classes))

    @property
    def class_ids(self) -> tuple[int, ...]:
        """Fashion-MNIST label of each class of this config (index = our 0-based label)."""
        return self._class_ids


def _resolve_classes(classes: Sequence[str | int] | None) -> tuple[int, ...]:
    names = list(_fashion_mnist()["classes"])
    if classes is None:
        return tuple(range(len(names)))
    if isinstance(classes, str | int):
        raise SyntheticConfigError(f"SceneConfig.classes must be a sequence, got {classes!r}")
    ids = []
    for c in classes:
        if isinstance(c, str):
            if c not in names:
                raise SyntheticConfigError(f"SceneConfig.classes: unknown class {c!r}; valid: {names}")
            ids.append(names.index(c))
        elif isinstance(c, int | np.integer) and 0 <= int(c) < len(names):
            ids.append(int(c))
        else:
            raise SyntheticConfigError(f"SceneConfig.classes: {c!r} is not a class name or index 0..9")
    if not ids or len(set(ids)) != len(ids):
        raise SyntheticConfigError(f"SceneConfig.classes must be non-empty and without duplicates: {classes}")
    return tuple(ids)


@functools.lru_cache(maxsize=1)
def _fashion_mnist() -> dict[str, np.ndarray]:
    """The bundled sample, loaded once per process (read-only arrays)."""
    ref = importlib.resources.files("cvzoo.data") / "assets" / "fashion_mnist_sample.npz"
    with importlib.resources.as_file(ref) as path, np.load(path) as npz:
        data = {key: npz[key] for key in npz.files}
    for array in data.values():
        array.flags.writeable = False
    return data


@functools.lru_cache(maxsize=8)
def _items(split: str, class_ids: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Items of ``split`` whose class is in ``class_ids``: images ``[M, 28, 28]`` and our labels ``[M]``."""
    data = _fashion_mnist()
    images, labels = data[f"{split}_images"], data[f"{split}_labels"]
    lookup = np.full(10, -1, np.int64)
    lookup[list(class_ids)] = np.arange(len(class_ids))
    ours = lookup[labels]
    keep = ours >= 0
    return images[keep], ours[keep]


def class_names(config: SceneConfig | None = None) -> list[str]:
    """Class names of the scenes of ``config``; label ``k`` is ``class_names(config)[k]``."""
    config = config or SceneConfig()
    names = _fashion_mnist()["classes"]
    return [str(names[i]) for i in config.class_ids]


def scene_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator of scene ``index`` of ``split``: independent of every other scene."""
    if split not in SPLITS:
        raise SyntheticConfigError(f"split must be one of {SPLITS}, got {split!r}")
    return np.random.default_rng([int(seed), _SPLIT_CODE[split], int(index)])


# ----------------------------------------------------------------------------------------- background
def _random_colour(rng: np.random.Generator, saturation: tuple[float, float], value: tuple[float, float]) -> np.ndarray:
    """An RGB colour in [0, 1], float32 ``[3]``, with a uniform hue and the given S and V ranges."""
    hue, sat, val = rng.uniform(0, 1), rng.uniform(*saturation), rng.uniform(*value)
    return np.array(colorsys.hsv_to_rgb(hue, sat, val), np.float32)


def _texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A procedural texture, float32 ``[H, W, 3]`` in [0, 1]: gradient + smooth noise + pattern + blobs.

    The smooth parts (gradient, value noise, blurred blobs) are drawn at quarter resolution and
    upsampled once, so only the pattern and the pixel noise cost full-resolution work.
    """
    import cv2

    sh, sw = max(height // 4, 8), max(width // 4, 8)
    ys = np.linspace(0, 1, sh, dtype=np.float32)[:, None]
    xs = np.linspace(0, 1, sw, dtype=np.float32)[None, :]
    # 1) Linear gradient between two muted colours at a random angle.
    angle = rng.uniform(0, 2 * np.pi)
    t = np.cos(angle) * xs + np.sin(angle) * ys
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    c0 = _random_colour(rng, (0.0, 0.5), (0.3, 0.9))
    c1 = _random_colour(rng, (0.0, 0.5), (0.3, 0.9))
    small = c0 + t[..., None] * (c1 - c0)
    # 2) Smooth value noise: a coarse random grid upsampled bicubically.
    cells = int(rng.integers(3, 12))
    coarse = rng.uniform(-1, 1, (cells, cells, 3)).astype(np.float32)
    small += rng.uniform(0.05, 0.2) * cv2.resize(coarse, (sw, sh), interpolation=cv2.INTER_CUBIC)
    # 3) Colour blobs, blurred (on the small canvas the blur is cheap).
    blobs = np.zeros((sh, sw, 3), np.float32)
    for _ in range(int(rng.integers(0, 6))):
        centre = (int(rng.integers(0, sw)), int(rng.integers(0, sh)))
        radius = int(rng.integers(2, max(3, min(sh, sw) // 3)))
        colour = _random_colour(rng, (0.2, 0.8), (0.4, 1.0)) - 0.5
        cv2.circle(blobs, centre, radius, tuple(float(v) for v in colour), -1)
    small += 0.5 * cv2.GaussianBlur(blobs, (0, 0), sigmaX=2.0)
    image = cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
    # 4) Stripes or a checkerboard at low contrast (objects must stay the salient thing); 1 channel.
    yy = np.arange(height, dtype=np.float32)[:, None] / height
    xx = np.arange(width, dtype=np.float32)[None, :] / width
    omega = np.float32(2 * np.pi / rng.uniform(0.03, 0.25))
    phase = np.float32(rng.uniform(0, 2 * np.pi))
    if rng.uniform() < 0.5:
        theta = rng.uniform(0, np.pi)
        pattern = np.sin((np.float32(np.cos(theta)) * xx + np.float32(np.sin(theta)) * yy) * omega + phase)
    else:
        pattern = np.sign(np.sin(xx * omega + phase) * np.sin(yy * omega))
    pattern *= np.float32(rng.uniform(0.03, 0.12))
    pattern += rng.standard_normal((height, width), dtype=np.float32) * np.float32(0.015)  # 5) pixel noise
    image += pattern[..., None] * _random_colour(rng, (0.0, 1.0), (0.5, 1.0))
    return np.clip(image, 0, 1, out=image)


# -------------------------------------------------------------------------------------------- objects
def _render_item(rng: np.random.Generator, item: np.ndarray, height: int, width: int, config: SceneConfig):
    """Resize a 28x28 item to ``[height, width]``; return (alpha bool ``[h, w]``, RGB float ``[h, w, 3]``)."""
    import cv2

    grey = cv2.resize(item, (width, height), interpolation=cv2.INTER_LINEAR)
    alpha = grey > config.alpha_threshold
    shade = (0.35 + 0.65 * grey.astype(np.float32) / 255.0)[..., None]
    if config.colorize:
        colour = _random_colour(rng, (0.5, 1.0), (0.6, 1.0))
    else:
        colour = np.full(3, rng.uniform(0.7, 1.0), np.float32)
    return alpha, shade * colour


def _box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one xyxy box ``[4]`` with ``[N, 4]`` boxes."""
    wh = np.clip(np.minimum(box[2:], boxes[:, 2:]) - np.maximum(box[:2], boxes[:, :2]), 0, None)
    inter = wh[:, 0] * wh[:, 1]
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def _tight_box(mask: np.ndarray) -> np.ndarray | None:
    """xyxy pixel-edge box of the True pixels of a 2-D mask, or None if empty."""
    cols = np.flatnonzero(mask.any(axis=0))
    if len(cols) == 0:
        return None
    rows = np.flatnonzero(mask.any(axis=1))
    return np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], np.float32)


def _scene_size(rng: np.random.Generator, config: SceneConfig) -> tuple[int, int]:
    if config.size_range is None:
        return int(config.image_size[0]), int(config.image_size[1])
    lo, hi = config.size_range
    return int(rng.integers(lo, hi + 1)), int(rng.integers(lo, hi + 1))


def generate_scene(
    rng: np.random.Generator, config: SceneConfig | None = None, split: str = "train"
) -> tuple[np.ndarray, ImageAnnotation]:
    """Draw one scene.

    Args:
        rng: the scene's generator (``scene_rng(seed, split, index)`` for reproducible datasets).
        config: scene parameters (default ``SceneConfig()``).
        split: ``"train"`` or ``"val"``: which half of the Fashion-MNIST sample the objects come from.

    Returns:
        ``(image, annotation)``: the RGB image, uint8 ``[H, W, 3]``, and an ``ImageAnnotation`` with
        tight xyxy boxes of the visible pixels, 0-based labels and instance masks uint8 ``[N, H, W]``
        (in paste order; masks are disjoint because later objects occlude earlier ones).
    """
    config = config or SceneConfig()
    if split not in SPLITS:
        raise SyntheticConfigError(f"split must be one of {SPLITS}, got {split!r}")
    height, width = _scene_size(rng, config)
    if config.background == "texture":
        canvas = _texture(rng, height, width)
    else:
        canvas = np.broadcast_to(_random_colour(rng, (0, 0.6), (0.2, 0.9)), (height, width, 3)).copy()
    items, item_labels = _items(split, config.class_ids)

    # Instance-id map (0 = background, k = k-th placed object): occlusion is just "last write wins".
    ids = np.zeros((height, width), np.uint8)
    areas: list[int] = []  # pixels each object had when pasted (before later occlusion)
    boxes: list[np.ndarray] = []  # unoccluded tight boxes, for the overlap test
    labels: list[int] = []
    shorter = min(height, width)
    for _ in range(int(rng.integers(config.objects_per_image[0], config.objects_per_image[1] + 1))):
        pick = int(rng.integers(0, len(items)))
        side = rng.uniform(*config.scale_range) * shorter
        aspect = np.exp(rng.uniform(*np.log(config.aspect_range)))
        obj_h = int(np.clip(round(side / np.sqrt(aspect)), 4, height))
        obj_w = int(np.clip(round(side * np.sqrt(aspect)), 4, width))
        alpha, colour = _render_item(rng, items[pick], obj_h, obj_w, config)
        local = _tight_box(alpha)
        if local is None:
            continue
        for _attempt in range(config.placement_attempts):
            y0 = int(rng.integers(0, height - obj_h + 1))
            x0 = int(rng.integers(0, width - obj_w + 1))
            box = local + np.array([x0, y0, x0, y0], np.float32)
            if boxes and _box_iou(box, np.stack(boxes)).max() > config.max_overlap:
                continue
            window = ids[y0 : y0 + obj_h, x0 : x0 + obj_w]
            hidden = np.bincount(window[alpha], minlength=len(areas) + 1)[1:]
            remaining = np.array(areas) - hidden  # what each earlier object keeps after this paste
            if len(areas) and (remaining < config.min_visible * np.array(areas)).any():
                continue
            window[alpha] = len(areas) + 1
            region = canvas[y0 : y0 + obj_h, x0 : x0 + obj_w]
            region[alpha] = colour[alpha]
            areas.append(int(alpha.sum()))
            boxes.append(box)
            labels.append(int(item_labels[pick]))
            break

    image = (canvas * 255 + 0.5).astype(np.uint8)
    masks = (ids[None] == np.arange(1, len(areas) + 1, dtype=np.uint8)[:, None, None]).astype(np.uint8)
    visible = [_tight_box(m) for m in masks]
    keep = [i for i, b in enumerate(visible) if b is not None]
    annotation = ImageAnnotation(
        file="",
        width=width,
        height=height,
        boxes=np.stack([visible[i] for i in keep]) if keep else np.zeros((0, 4), np.float32),
        labels=np.array([labels[i] for i in keep], np.int64),
        masks=masks[keep],
    )
    return image, annotation


def generate_dataset(
    n_images: int, config: SceneConfig | None = None, seed: int | None = None, split: str = "train"
) -> tuple[list[np.ndarray], DatasetAnnotations]:
    """Generate ``n_images`` scenes in memory.

    Args:
        n_images: number of scenes.
        config: scene parameters (default ``SceneConfig()``).
        seed: overrides ``config.seed``; scene ``i`` uses ``scene_rng(seed, split, i)``.
        split: ``"train"`` or ``"val"`` (disjoint Fashion-MNIST items).

    Returns:
        ``(images, annotations)``: uint8 ``[H, W, 3]`` RGB images and a ``DatasetAnnotations`` whose
        image ``i`` has ``file = f"{split}_{i:06d}.png"`` and ``image_id = i``.
    """
    if n_images < 0:
        raise SyntheticConfigError(f"n_images must be >= 0, got {n_images}")
    config = config or SceneConfig()
    seed = config.seed if seed is None else seed
    images, annotations = [], []
    for i in range(n_images):
        image, ann = generate_scene(scene_rng(seed, split, i), config, split)
        ann.file, ann.image_id = f"{split}_{i:06d}.png", i
        images.append(image)
        annotations.append(ann)
    return images, DatasetAnnotations(class_names=class_names(config), images=annotations)


class SyntheticScenes:
    """A lazy map-style dataset of scenes: ``dataset[i] -> (image, target)``.

    The sample is the one of ``cvzoo.data.augment.detect``: image uint8 ``[H, W, 3]`` RGB and target
    ``{"boxes": float32 [N, 4] xyxy absolute, "labels": int64 [N], "masks": uint8 [N, H, W]}``.
    Scene ``i`` is generated on access (about a millisecond at 320 px), so any length costs no memory.
    Usable directly with ``torch.utils.data.DataLoader`` and as ``Mosaic``'s ``load_sample``.
    """

    def __init__(self, length: int, config: SceneConfig | None = None, seed: int | None = None,
                 split: str = "train", with_masks: bool = True) -> None:
        if length < 0:
            raise SyntheticConfigError(f"length must be >= 0, got {length}")
        self.config = config or SceneConfig()
        self.length, self.split, self.with_masks = length, split, with_masks
        self.seed = self.config.seed if seed is None else seed
        self.class_names = class_names(self.config)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        if not -self.length <= index < self.length:
            raise IndexError(f"scene index {index} out of range for {self.length} scenes")
        image, ann = generate_scene(scene_rng(self.seed, self.split, index % self.length), self.config, self.split)
        target = {"boxes": ann.boxes, "labels": ann.labels}
        if self.with_masks:
            target["masks"] = ann.masks
        return image, target


# -------------------------------------------------------------------------------------------- writers
def _save_image(path: Path, image: np.ndarray) -> None:
    from PIL import Image

    options = {"quality": 95} if path.suffix.lower() in (".jpg", ".jpeg") else {}
    Image.fromarray(image).save(path, **options)


def write_yolo_dataset(
    root: str | Path, n_train: int, n_val: int, config: SceneConfig | None = None,
    seed: int | None = None, image_ext: str = ".jpg",
) -> Path:
    """Write scenes in the ultralytics YOLO layout and return the path of ``data.yaml``.

    Layout: ``images/{train,val}/NNNNNN<ext>``, ``labels/{train,val}/NNNNNN.txt`` with one
    ``cls cx cy w h`` row per object (normalised to [0, 1] by the image width/height), and
    ``data.yaml`` with ``path`` (absolute root), ``train``, ``val``, ``nc`` and ``names``.
    """
    import yaml

    root = Path(root)
    config = config or SceneConfig()
    for split, count in (("train", n_train), ("val", n_val)):
        images, anns = generate_dataset(count, config, seed, split)
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        for i, (image, ann) in enumerate(zip(images, anns.images)):
            _save_image(root / "images" / split / f"{i:06d}{image_ext}", image)
            b = ann.boxes.astype(np.float64)
            cxcywh = np.stack([(b[:, 0] + b[:, 2]) / 2 / ann.width, (b[:, 1] + b[:, 3]) / 2 / ann.height,
                               (b[:, 2] - b[:, 0]) / ann.width, (b[:, 3] - b[:, 1]) / ann.height], axis=1)
            rows = [f"{c} " + " ".join(f"{v:.6f}" for v in r) for c, r in zip(ann.labels, cxcywh)]
            (root / "labels" / split / f"{i:06d}.txt").write_text("".join(r + "\n" for r in rows))
    names = class_names(config)
    data = {"path": str(root.resolve()), "train": "images/train", "val": "images/val",
            "nc": len(names), "names": dict(enumerate(names))}
    yaml_path = root / "data.yaml"
    yaml_path.write_text(yaml.safe_dump(data, sort_keys=False))
    return yaml_path


def write_coco_dataset(
    root: str | Path, n_train: int, n_val: int, config: SceneConfig | None = None, seed: int | None = None,
) -> Path:
    """Write scenes with their instance masks as a COCO dataset and return ``root``.

    Layout: ``images/{train,val}/NNNNNN.jpg`` and ``annotations/instances_{train,val}.json`` (boxes and
    each object's mask as compressed RLE), what ``--data root`` of the detect and instance tasks reads.
    """
    from cvzoo.data.formats.coco import write_coco

    root = Path(root)
    config = config or SceneConfig()
    for split, count in (("train", n_train), ("val", n_val)):
        images, anns = generate_dataset(count, config, seed, split)
        folder = root / "images" / split
        folder.mkdir(parents=True, exist_ok=True)
        anns.root = str(folder)  # file names in the JSON relative to images/<split>, the reader's guess
        for i, (image, ann) in enumerate(zip(images, anns.images)):
            ann.file = f"{i:06d}.jpg"
            _save_image(folder / ann.file, image)
        write_coco(anns, str(root / "annotations" / f"instances_{split}.json"), copy=False)
    return root


def voc_palette() -> np.ndarray:
    """The PASCAL VOC colour map, uint8 ``[256, 3]``: the bits of the index spread over R, G and B."""
    palette = np.zeros((256, 3), np.uint8)
    for index in range(256):
        value, r, g, b = index, 0, 0, 0
        for shift in range(7, -1, -1):  # bit 0 of the index -> MSB of R, bit 1 -> G, bit 2 -> B, ...
            r |= (value & 1) << shift
            g |= ((value >> 1) & 1) << shift
            b |= ((value >> 2) & 1) << shift
            value >>= 3
        palette[index] = (r, g, b)
    return palette


def semantic_map(annotation: ImageAnnotation, boundary_width: int = 0) -> np.ndarray:
    """Class map uint8 ``[H, W]`` of a scene: 0 background, class ``k`` -> ``k + 1``, 255 boundary band.

    ``boundary_width = r > 0`` marks with 255 every pixel within ``r`` pixels (chessboard distance) of a
    change of instance, like the "void" outlines of PASCAL VOC (whose band is about 5 px wide).
    """
    import cv2

    ids = np.zeros((annotation.height, annotation.width), np.uint8)
    classes = np.zeros_like(ids)
    if annotation.masks is not None:
        for k, (mask, label) in enumerate(zip(annotation.masks, annotation.labels)):
            ids[mask > 0] = k + 1
            classes[mask > 0] = label + 1
    if boundary_width > 0:
        kernel = np.ones((2 * boundary_width + 1, 2 * boundary_width + 1), np.uint8)
        classes[cv2.dilate(ids, kernel) != cv2.erode(ids, kernel)] = 255
    return classes


def voc_annotation_xml(annotation: ImageAnnotation, filename: str, names: Sequence[str]) -> str:
    """PASCAL VOC detection XML of a scene.

    The box numbers are written unchanged (the convention of ``cvzoo.data.formats.voc`` and
    torchvision's ``VOCDetection``), so reading the folder back with cvzoo gives the exact boxes.
    """
    from xml.sax.saxutils import escape

    objects = []
    for box, label in zip(annotation.boxes, annotation.labels):
        x1, y1, x2, y2 = (int(round(v)) for v in box)  # tight boxes of pixel masks are integers
        objects.append(
            f"  <object><name>{escape(names[label])}</name><pose>Unspecified</pose><truncated>0</truncated>"
            f"<difficult>0</difficult><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin>"
            f"<xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>\n"
        )
    return (f"<annotation>\n  <folder>JPEGImages</folder><filename>{escape(filename)}</filename>\n"
            f"  <size><width>{annotation.width}</width><height>{annotation.height}</height><depth>3</depth></size>\n"
            f"  <segmented>1</segmented>\n{''.join(objects)}</annotation>\n")


def write_voc_segmentation(
    root: str | Path, n_train: int, n_val: int, config: SceneConfig | None = None,
    seed: int | None = None, boundary_width: int = 0,
) -> Path:
    """Write scenes in the PASCAL VOC segmentation layout and return ``root``.

    Layout: ``JPEGImages/<id>.jpg``; ``SegmentationClass/<id>.png`` palette PNG class maps (see
    ``semantic_map``); ``SegmentationObject/<id>.png`` palette PNG instance maps (instance ``k`` ->
    ``k + 1``, same 255 band); ``Annotations/<id>.xml`` VOC detection XML (so VOC readers find the
    root and detection can use the same folder); ``ImageSets/Segmentation/{train,val}.txt`` (and the
    same lists in ``ImageSets/Main``); ``class_names.txt`` with ``background`` then the object
    classes, one per line (line ``i`` = class map value ``i``).
    """
    from PIL import Image

    root = Path(root)
    config = config or SceneConfig()
    names = class_names(config)
    for sub in ("JPEGImages", "Annotations", "SegmentationClass", "SegmentationObject",
                "ImageSets/Segmentation", "ImageSets/Main"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    palette = voc_palette().reshape(-1).tolist()
    for split, count in (("train", n_train), ("val", n_val)):
        images, anns = generate_dataset(count, config, seed, split)
        stems = []
        for i, (image, ann) in enumerate(zip(images, anns.images)):
            stem = f"{split}_{i:06d}"
            stems.append(stem)
            _save_image(root / "JPEGImages" / f"{stem}.jpg", image)
            (root / "Annotations" / f"{stem}.xml").write_text(voc_annotation_xml(ann, f"{stem}.jpg", names))
            classes = semantic_map(ann, boundary_width)
            instances = np.zeros_like(classes)
            for k, mask in enumerate(ann.masks if ann.masks is not None else []):
                instances[mask > 0] = k + 1
            instances[classes == 255] = 255
            for sub, array in (("SegmentationClass", classes), ("SegmentationObject", instances)):
                png = Image.fromarray(array)  # mode "L"; putpalette turns it into "P" (indices kept)
                png.putpalette(palette)
                png.save(root / sub / f"{stem}.png")
        for task in ("Segmentation", "Main"):
            (root / "ImageSets" / task / f"{split}.txt").write_text("".join(s + "\n" for s in stems))
    (root / "class_names.txt").write_text("".join(n + "\n" for n in ["background", *names]))
    return root
