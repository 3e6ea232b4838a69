"""Pieces shared by the annotation format modules: errors, issues, image copying, number formatting."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from cvzoo.data.types import DatasetAnnotations


class AnnotationFormatError(ValueError):
    """A dataset file is malformed or inconsistent; the message names the file (and line or key)."""


class MissingSplitError(AnnotationFormatError, FileNotFoundError):
    """A dataset without the split asked for (also a ``FileNotFoundError``: training goes on without
    validation, as for the other tasks' missing val splits)."""


@dataclass
class Issue:
    """One problem found in a dataset.

    Attributes:
        kind: short machine name, e.g. ``"outside_image"``, ``"unknown_class"``, ``"missing_image"``.
        file: the annotation or image file concerned.
        message: human-readable detail (box coordinates, line number, class id, ...).
        line: 1-based line number in ``file`` when the format has lines, else None.
    """

    kind: str
    file: str
    message: str
    line: int | None = None

    @property
    def location(self) -> str:
        return f"{self.file}:{self.line}" if self.line is not None else self.file

    def __str__(self) -> str:
        return f"[{self.kind}] {self.location}: {self.message}"


def report(issues: list[Issue] | None, issue: Issue) -> None:
    """Raise ``issue`` as an error in strict mode (``issues is None``), else record it and go on."""
    if issues is None:
        raise AnnotationFormatError(f"{issue.location}: {issue.message}")
    issues.append(issue)


def format_number(value: float) -> str:
    """Shortest text that reads back to the same float32 (``69`` not ``69.0``), for lossless writing."""
    text = str(np.float32(value))
    return text[:-2] if text.endswith(".0") else text


def export_names(dataset: DatasetAnnotations) -> list[str]:
    """One unique file name per image for a flat output folder.

    The base name is kept when it is unique; images that share a base name (``a/1.jpg``, ``b/1.jpg``)
    get their parent folders folded into the name (``a_1.jpg``) so nothing is overwritten. Stems are
    unique too, ignoring case (``a.jpg`` and ``a.png`` -> ``a.jpg``, ``a_1.png``): VOC and YOLO name the
    annotation file after the stem, and case-insensitive file systems would merge ``A`` and ``a``.
    """
    bases = [os.path.basename(img.file) for img in dataset.images]
    counts: dict[str, int] = {}
    for base in bases:
        counts[base] = counts.get(base, 0) + 1
    names, taken = [], set()
    for img, base in zip(dataset.images, bases):
        name = base
        if counts[base] > 1:
            parts = os.path.normpath(img.file).replace("\\", "/").strip("/").split("/")
            name = "_".join(p for p in parts[-3:] if p not in ("", ".", ".."))
        stem, ext = os.path.splitext(name)
        unique, k = name, 1
        while os.path.splitext(unique)[0].lower() in taken:
            unique, k = f"{stem}_{k}{ext}", k + 1
        taken.add(os.path.splitext(unique)[0].lower())
        names.append(unique)
    return names


def refuse_overwrites(planned: list[tuple[str, str]], owner: Callable[[str], str] | None = None) -> None:
    """Raise before anything is written when an output file exists already or is planned twice.

    A conversion into a folder that holds another split (VOC keeps every split in one
    ``Annotations/``) or an earlier export would otherwise replace those files silently.

    Args:
        planned: ``(destination, source)`` pairs; the source (image file or a description) is named
            in the error. A destination that *is* its source image (copying in place) is allowed.
        owner: optional ``destination -> text`` saying whose file an existing destination is.

    Raises:
        AnnotationFormatError: naming the destination and the source(s).
    """
    seen: dict[str, str] = {}
    for dst, src in planned:
        key = os.path.normcase(os.path.abspath(dst))
        if key in seen:
            raise AnnotationFormatError(f"{dst}: both {seen[key]} and {src} would be written here")
        seen[key] = src
        if os.path.lexists(dst) and not (os.path.exists(src) and os.path.samefile(src, dst)):
            whose = owner(dst) if owner is not None else ""
            raise AnnotationFormatError(
                f"{dst}: already exists{whose}; writing {src} there would overwrite it "
                "(convert into an empty folder, or rename one of the two)"
            )


def copy_images(dataset: DatasetAnnotations, names: list[str], out_dir: str) -> int:
    """Copy every image of ``dataset`` to ``out_dir/<name>``; returns how many were copied.

    Raises:
        AnnotationFormatError: an image file does not exist (the dataset would be unusable).
    """
    os.makedirs(out_dir, exist_ok=True)
    copied = 0
    for img, name in zip(dataset.images, names):
        src = dataset.image_path(img)
        dst = os.path.join(out_dir, name)
        if not os.path.isfile(src):
            raise AnnotationFormatError(f"{src}: image file not found (referenced as {img.file!r})")
        if os.path.abspath(src) != os.path.abspath(dst):
            shutil.copy2(src, dst)
            copied += 1
    return copied


# EXIF orientations that turn the stored image by 90 degrees (width and height swap when displayed).
_TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)


def _exif_orientation(im) -> int:
    # A PNG's getexif() decodes the whole file when the eXIf chunk was not met in the header;
    # such files are rare and decoding every PNG would make size reads cost a full load.
    if im.format == "PNG" and "exif" not in im.info:
        return 1
    return int(im.getexif().get(0x0112, 1) or 1)


def image_size(path: str) -> tuple[int, int]:
    """``(width, height)`` of an image as displayed, reading only its header.

    EXIF orientation is applied (a phone photo stored 4000x3000 with orientation 6 is 3000x4000), as
    ``cvzoo.data.images.load_image`` applies it: normalised YOLO rows are relative to that image.
    """
    from PIL import Image

    try:
        with Image.open(path) as im:
            width, height = im.size
            if _exif_orientation(im) in _TRANSPOSING_ORIENTATIONS:
                width, height = height, width
    except (OSError, ValueError, SyntaxError) as err:
        raise AnnotationFormatError(f"{path}: cannot read image size ({err})") from err
    return width, height


def all_finite(*values) -> bool:
    """True when every number in ``values`` (numbers or arrays) is finite (no NaN or infinity)."""
    return all(bool(np.isfinite(np.asarray(v, dtype=np.float64)).all()) for v in values)


def bounds_box(points: np.ndarray) -> np.ndarray:
    """xyxy bounds ``[4]`` of a ``[K, 2]`` point array."""
    return np.concatenate([points.min(axis=0), points.max(axis=0)]).astype(np.float32)
