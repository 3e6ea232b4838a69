"""Robust image loading: any common PIL mode in, 8-bit ``RGB`` or ``L`` out, corrupt files named.

Real folders of images are messy: PNG icons with alpha, palette GIF/PNG, 16-bit microscopy TIFFs,
CMYK JPEGs from print workflows, and files cut short by an interrupted copy. ``load_image`` turns all
of them into the two modes the models consume, with fixed, documented rules:

* **Alpha** (``RGBA``, ``LA``, ``PA``, palette with a transparent colour) is *composited on black*:
  each channel becomes ``round(c * a / 255)``. A fully transparent pixel is therefore black whatever
  colour it happened to store, which keeps hidden colours out of the training data.
* **Palette** (``P``) images are expanded through their palette (and alpha, if any, as above).
* **16-bit and 32-bit integer greyscale** (``I;16*``, ``I``) are assumed to hold 16-bit samples
  (PNG/TIFF store 16-bit grey this way) and keep their high byte, ``v >> 8``, after clipping to
  ``[0, 65535]``: the pixels OpenCV's ``imread`` and torchvision's ``to_dtype(uint8, scale=True)``
  give, so a model sees the same input here as in a pipeline built on either. (Pillow's own
  ``convert("L")`` clips at 255 instead, which turns most 16-bit images white.) Float images (``F``)
  are clipped to ``[0, 255]`` and rounded.
* **CMYK** uses ``c' = (255 - c) * (255 - k) / 255`` per channel (the standard naive conversion,
  computed here so that it does not depend on the Pillow version).
* **EXIF orientation** is applied, so a phone photo is upright.
* ``mode="L"`` converts colour to luma with ITU-R 601-2 weights (Pillow's ``convert("L")``).

A file that cannot be fully decoded (truncated, corrupt, not an image, missing) raises
``CorruptImageError(path, reason)``. The decode is forced with ``img.load()``: ``Image.open`` alone
only reads the header, and a truncated JPEG would otherwise fail later, far from its file name.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
# Containers that `cvzoo predict` reads frame by frame (OpenCV decodes them).
VIDEO_EXTENSIONS: tuple[str, ...] = (".mp4", ".avi", ".mov", ".mkv", ".webm")

# Everything a Pillow decoder is known to raise on bad bytes. Pillow reports truncation as OSError,
# unknown formats as UnidentifiedImageError (an OSError), and some plugins leak struct/Syntax errors.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, Image.DecompressionBombError)


class DatasetError(ValueError):
    """A dataset on disk that cannot be used as it is (missing files, empty folders, bad headers)."""


class MissingDataError(DatasetError, FileNotFoundError):
    """A file, folder or split the dataset layout needs is absent (also a ``FileNotFoundError``)."""


class CorruptVideoError(DatasetError):
    """A video file that cannot be opened or has no readable frame (``path``, ``reason``)."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: cannot read video ({reason})")

    def __reduce__(self):
        return (type(self), (self.path, self.reason))


class CorruptImageError(DatasetError):
    """An image file that cannot be decoded.

    Attributes:
        path: the offending file.
        reason: the decoder's message.
    """

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: cannot decode image ({reason})")

    def __reduce__(self):  # keep the two-argument signature picklable (DataLoader workers re-raise it)
        return (type(self), (self.path, self.reason))


def is_image_file(path: str | Path) -> bool:
    """True when ``path`` has one of ``IMAGE_EXTENSIONS`` (case-insensitive)."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


# Modes whose pixels carry no colour: a folder of such files is read as 1-channel "L" by default.
GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})


def read_header(path: str | Path) -> tuple[str, tuple[int, int]]:
    """``(PIL mode, (width, height))`` from the file header only, without decoding the pixels.

    The size is the stored one, before EXIF orientation (which may swap width and height).

    Raises:
        CorruptImageError: the file is missing or its header is not that of a known image format.
    """
    try:
        with Image.open(path) as img:
            return img.mode, img.size
    except FileNotFoundError:
        raise CorruptImageError(path, "file not found") from None
    except _DECODE_ERRORS as exc:
        raise CorruptImageError(path, f"{type(exc).__name__}: {exc}") from exc


def _composite_on_black(colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``round(c * a / 255)`` in integer arithmetic; colour ``[H, W, C]`` or ``[H, W]``, alpha ``[H, W]``."""
    a = alpha.astype(np.uint32)
    if colour.ndim == 3:
        a = a[..., None]
    return ((colour.astype(np.uint32) * a + 127) // 255).astype(np.uint8)


def _high_depth_to_l(img: Image.Image) -> Image.Image:
    """``I;16*``/``I`` (16-bit samples) and ``F`` (float) greyscale -> 8-bit ``L``."""
    values = np.asarray(img)
    if img.mode == "F":
        out = np.clip(np.rint(values), 0, 255)
    else:
        out = np.clip(values.astype(np.int64), 0, 65535) >> 8
    return Image.fromarray(out.astype(np.uint8))


def _cmyk_to_rgb(img: Image.Image) -> Image.Image:
    cmyk = np.asarray(img).astype(np.uint32)
    inv_k = 255 - cmyk[..., 3:4]
    rgb = ((255 - cmyk[..., :3]) * inv_k + 127) // 255
    return Image.fromarray(rgb.astype(np.uint8))


def normalize_mode(img: Image.Image, mode: str = "RGB") -> Image.Image:
    """Convert a decoded PIL image of any mode to 8-bit ``mode`` ("RGB" or "L") by the module's rules."""
    if mode not in ("RGB", "L"):
        raise ValueError(f"mode must be 'RGB' or 'L', got {mode!r}")
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif img.mode == "PA":
        img = img.convert("RGBA")
    if img.mode.startswith("I") or img.mode == "F":
        img = _high_depth_to_l(img)
    elif img.mode == "CMYK":
        img = _cmyk_to_rgb(img)
    elif img.mode == "RGBA":
        rgba = np.asarray(img)
        img = Image.fromarray(_composite_on_black(rgba[..., :3], rgba[..., 3]))
    elif img.mode == "LA":
        la = np.asarray(img)
        img = Image.fromarray(_composite_on_black(la[..., 0], la[..., 1]))
    if img.mode != mode:
        # Remaining modes (1, L, RGB, YCbCr, LAB, HSV, RGBX, ...) have lossless or standard conversions.
        img = img.convert(mode)
    return img


def load_image(path: str | Path, mode: str = "RGB") -> Image.Image:
    """Open, fully decode and convert an image file.

    Args:
        path: image file.
        mode: "RGB" (3 channels) or "L" (1 channel, 8 bit).

    Returns:
        A decoded ``PIL.Image.Image`` in ``mode``, EXIF orientation applied.

    Raises:
        CorruptImageError: the file is missing, truncated, corrupt or not an image.
        ValueError: ``mode`` is not "RGB" or "L".
    """
    if mode not in ("RGB", "L"):
        raise ValueError(f"mode must be 'RGB' or 'L', got {mode!r}")
    try:
        with Image.open(path) as img:
            img.load()
            img = ImageOps.exif_transpose(img)
    except FileNotFoundError:
        raise CorruptImageError(path, "file not found") from None
    except _DECODE_ERRORS as exc:
        raise CorruptImageError(path, f"{type(exc).__name__}: {exc}") from exc
    return normalize_mode(img, mode)
