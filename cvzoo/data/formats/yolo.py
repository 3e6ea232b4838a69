"""YOLO (ultralytics / darknet) labels: one ``.txt`` per image, one object per line.

Rows are ``class cx cy w h`` (box) or ``class x1 y1 x2 y2 ...`` (polygon, at least 3 points), all
coordinates normalised by the image width/height. The label of ``.../images/<sub>/a.jpg`` is
``.../labels/<sub>/a.txt`` (the *last* ``/images/`` becomes ``/labels/``; without one, the ``.txt`` sits
next to the image, as labelImg writes it). An image without a label file is a background image.

A dataset YAML names the splits and the classes::

    path: /data/coco8          # root; relative paths are relative to the YAML's folder
    train: images/train        # a folder of images, a .txt list of images, or a list of either
    val: [images/val, extra.txt]
    names: {0: person, 1: bicycle}   # or a list; ``nc`` optional (checked when given)

labelImg folders have a ``classes.txt`` (one name per line) instead.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass

import numpy as np

from cvzoo.data.formats._common import (
    AnnotationFormatError,
    Issue,
    all_finite,
    bounds_box,
    copy_images,
    export_names,
    image_size,
    refuse_overwrites,
    report,
)
from cvzoo.data.images import is_image_file
from cvzoo.data.types import DatasetAnnotations, ImageAnnotation


def label_path_for(image_path: str) -> str:
    """The label file of an image: last ``/images/`` -> ``/labels/``, extension -> ``.txt``."""
    normalized = image_path.replace("\\", "/")
    head, sep, tail = normalized.rpartition("/images/")
    path = f"{head}/labels/{tail}" if sep else normalized
    return os.path.splitext(path)[0] + ".txt"


def parse_label_file(
    path: str, width: int, height: int, num_classes: int | None, issues: list[Issue] | None = None
) -> tuple[np.ndarray, np.ndarray, list[list[np.ndarray]] | None]:
    """Parse one label file into canonical boxes.

    Args:
        path: the ``.txt`` file.
        width, height: image size used to de-normalise.
        num_classes: class ids must be below it; None skips the check.
        issues: None raises on a bad row; a list records it (with the line number) and skips the row.

    Returns:
        ``(boxes [N, 4] xyxy float32, labels [N] int64, polygons)``; ``polygons`` is a per-object list of
        ``[[K, 2]]`` absolute polygons when any row is a polygon (box rows get ``[]``), else None.
    """
    boxes, labels, polygons, any_polygon = [], [], [], False
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    for line_no, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields:
            continue
        bad = None
        try:
            values = [float(v) for v in fields]
        except ValueError:
            values, bad = [], f"non-numeric value in {line.strip()!r}"
        if bad is None and (len(values) < 5 or (len(values) != 5 and (len(values) < 7 or len(values) % 2 == 0))):
            bad = f"expected 'class cx cy w h' or 'class x1 y1 ... xn yn' (n >= 3), got {len(values)} values"
        if bad is None and (not values[0].is_integer() or values[0] < 0):
            bad = f"class id {fields[0]!r} is not a non-negative integer"
        if bad is None and num_classes is not None and values[0] >= num_classes:
            report(issues, Issue("unknown_class", path, f"class id {int(values[0])} >= nc={num_classes}", line_no))
            continue
        if bad is not None:
            report(issues, Issue("malformed_line", path, bad, line_no))
            continue
        if not all_finite(values[1:]):
            report(issues, Issue("non_finite", path, f"non-finite coordinate in {line.strip()!r}", line_no))
            continue
        labels.append(int(values[0]))
        coords = np.array(values[1:], np.float64)
        if len(coords) == 4:
            cx, cy, w, h = coords * [width, height, width, height]
            boxes.append([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
            polygons.append([])
        else:
            points = (coords.reshape(-1, 2) * [width, height]).astype(np.float32)
            boxes.append(bounds_box(points))
            polygons.append([points])
            any_polygon = True
    return (np.array(boxes, np.float32).reshape(-1, 4), np.array(labels, np.int64),
            polygons if any_polygon else None)


def read_class_file(path: str) -> list[str]:
    """Class names of a labelImg ``classes.txt`` (one per line, blank lines ignored)."""
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


@dataclass
class YoloSpec:
    """A parsed dataset YAML: ``root``, ``splits`` (name -> list of folders/.txt lists), class names."""

    root: str
    splits: dict[str, list[str]]
    class_names: list[str]
    yaml_path: str = ""


def read_yolo_yaml(path: str) -> YoloSpec:
    """Parse an ultralytics dataset YAML (see the module docstring).

    Raises:
        AnnotationFormatError: malformed YAML (with line), bad ``names``, ``nc`` disagreeing with names.
    """
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise AnnotationFormatError(f"{path}: malformed YAML{where}: {err}") from err
    if not isinstance(data, dict):
        raise AnnotationFormatError(f"{path}: a dataset YAML must be a mapping")
    yaml_dir = os.path.dirname(os.path.abspath(path))
    root = str(data.get("path") or yaml_dir)
    if not os.path.isabs(root):
        root = os.path.normpath(os.path.join(yaml_dir, root))
    if not os.path.isdir(root):
        root = yaml_dir  # a moved dataset: its absolute 'path' is stale, the YAML's folder is not
    names = data.get("names")
    nc = data.get("nc")
    if isinstance(names, dict):
        try:
            ids = sorted(int(k) for k in names)
        except ValueError as err:
            raise AnnotationFormatError(f"{path}: 'names' keys must be integers") from err
        if ids != list(range(len(ids))):
            raise AnnotationFormatError(f"{path}: 'names' ids must be 0..{len(ids) - 1}, got {ids}")
        class_names = [str(names[k] if k in names else names[str(k)]) for k in ids]
    elif isinstance(names, list):
        class_names = [str(n) for n in names]
    elif names is None and isinstance(nc, int):
        class_names = [f"class{i}" for i in range(nc)]
    else:
        raise AnnotationFormatError(f"{path}: 'names' (list or {{id: name}}) or 'nc' is required")
    if nc is not None and int(nc) != len(class_names):
        raise AnnotationFormatError(f"{path}: nc={nc} but 'names' has {len(class_names)} entries")
    splits = {}
    for split in ("train", "val", "test"):
        value = data.get(split)
        if value:
            splits[split] = [str(v) for v in (value if isinstance(value, list) else [value])]
    return YoloSpec(root=root, splits=splits, class_names=class_names, yaml_path=os.path.abspath(path))


def list_images(source: str, root: str) -> list[str]:
    """Absolute image paths of one split source: a folder (searched recursively) or a ``.txt`` list."""
    path = source if os.path.isabs(source) else os.path.join(root, source)
    if os.path.isdir(path):
        files = glob.glob(os.path.join(path, "**", "*"), recursive=True)
        return sorted(os.path.abspath(f) for f in files if is_image_file(f))
    if os.path.isfile(path) and path.endswith(".txt"):
        base = os.path.dirname(os.path.abspath(path))
        with open(path, encoding="utf-8") as f:
            entries = [line.strip() for line in f if line.strip()]
        return [os.path.normpath(e if os.path.isabs(e) else os.path.join(base, e)) for e in entries]
    raise AnnotationFormatError(f"{path}: split source is neither a folder nor a .txt image list")


def _find_classes_txt(folders: list[str]) -> list[str] | None:
    for folder in folders:
        candidate = os.path.join(folder, "classes.txt")
        if os.path.isfile(candidate):
            return read_class_file(candidate)
    return None


def resolve_split(path: str, split: str | None) -> tuple[list[str], list[str] | None, str]:
    """``(image paths, class names or None, root)`` for a YAML file or a folder.

    Folders: ``<path>/images/<split>``, else ``<path>/images``, else ``<path>`` itself (labelImg).
    ``split=None`` takes every split of a YAML.
    """
    if os.path.isfile(path):
        spec = read_yolo_yaml(path)
        wanted = list(spec.splits) if split is None else [split]
        if split is not None and split not in spec.splits:
            raise AnnotationFormatError(f"{path}: no split {split!r} (has {sorted(spec.splits)})")
        images = [img for s in wanted for src in spec.splits[s] for img in list_images(src, spec.root)]
        return list(dict.fromkeys(images)), spec.class_names, spec.root
    if not os.path.isdir(path):
        raise AnnotationFormatError(f"{path}: no such YOLO dataset (file or folder)")
    folder = path
    for candidate in ([os.path.join(path, "images", split)] if split else []) + [os.path.join(path, "images")]:
        if os.path.isdir(candidate):
            folder = candidate
            break
    images = list_images(folder, path)
    label_dir = os.path.dirname(label_path_for(os.path.join(folder, "x.jpg")))
    names = _find_classes_txt([label_dir, path, folder, os.path.join(path, "labels")])
    return images, names, os.path.abspath(path)


def read_yolo(
    path: str, split: str | None = "train", class_names: list[str] | None = None,
    issues: list[Issue] | None = None,
) -> DatasetAnnotations:
    """Read a YOLO split from a dataset YAML or a folder.

    Args:
        path: dataset YAML, or a folder (``images/<split>`` + ``labels/<split>``, or labelImg-style).
        split: split name; None reads every split of a YAML.
        class_names: overrides the YAML / ``classes.txt`` names; when none are known the names are the
            ids found (``"0"``, ``"1"``, ...).
        issues: None to raise on malformed rows, non-finite coordinates and class ids >= nc; a list to
            record and skip them.
    """
    images, names, root = resolve_split(path, split)
    names = class_names if class_names is not None else names
    parsed = []
    for image_path in images:
        if not os.path.isfile(image_path):
            report(issues, Issue("missing_image", image_path, "listed image does not exist"))
            continue
        width, height = image_size(image_path)
        label_path = label_path_for(image_path)
        if os.path.isfile(label_path):
            boxes, labels, polys = parse_label_file(label_path, width, height, len(names) if names else None, issues)
        else:
            boxes, labels, polys = np.zeros((0, 4), np.float32), np.zeros(0, np.int64), None
        parsed.append((image_path, width, height, boxes, labels, polys))
    if names is None:
        top = max((int(p[4].max()) for p in parsed if len(p[4])), default=-1)
        names = [str(i) for i in range(top + 1)]
    out = [
        ImageAnnotation(file=os.path.relpath(image_path, root), width=w, height=h, boxes=boxes, labels=labels,
                        polygons=polys, image_id=n)
        for n, (image_path, w, h, boxes, labels, polys) in enumerate(parsed)
    ]
    return DatasetAnnotations(class_names=list(names), images=out, root=root)


def label_rows(image: ImageAnnotation, segments: bool) -> list[str]:
    """The label lines of one image, coordinates normalised with 6 decimals.

    With ``segments``, objects that have polygons are written as polygon rows (the largest polygon when
    an object has several: YOLO rows hold one).
    """
    rows = []
    for k in range(len(image)):
        polys = image.polygons[k] if segments and image.polygons is not None else []
        if polys:
            points = max(polys, key=len).reshape(-1, 2) / [image.width, image.height]
            coords = points.ravel()
        else:
            x0, y0, x1, y1 = (float(v) for v in image.boxes[k])
            coords = [(x0 + x1) / 2 / image.width, (y0 + y1) / 2 / image.height,
                      (x1 - x0) / image.width, (y1 - y0) / image.height]
        rows.append(f"{int(image.labels[k])} " + " ".join(f"{v:.6f}" for v in coords))
    return rows


def write_yolo(
    dataset: DatasetAnnotations, out_dir: str, split: str = "train", copy: bool = True,
    segments: bool | None = None,
) -> str:
    """Write ``images/<split>``, ``labels/<split>`` and ``data.yaml`` (merged with an existing one).

    Args:
        segments: write polygon rows; None = only when every object of the dataset has a polygon.

    Returns:
        The path of ``data.yaml``.

    Raises:
        AnnotationFormatError: a label or image file of the output exists already, before anything is
            written (``refuse_overwrites``); ``data.yaml`` is merged, not refused.
    """
    import yaml

    if segments is None:
        segments = all(img.polygons is not None and all(img.polygons) for img in dataset.images if len(img)) and any(
            len(img) for img in dataset.images)
    names = export_names(dataset)
    label_dir = os.path.join(out_dir, "labels", split)
    image_dir = os.path.join(out_dir, "images", split)
    sources = [dataset.image_path(image) for image in dataset.images]
    planned = [(os.path.join(label_dir, os.path.splitext(n)[0] + ".txt"), s) for n, s in zip(names, sources)]
    if copy:
        planned += [(os.path.join(image_dir, name), src) for name, src in zip(names, sources)]
    refuse_overwrites(planned)
    os.makedirs(label_dir, exist_ok=True)
    for image, name in zip(dataset.images, names):
        bad = [int(v) for v in image.labels if not 0 <= v < len(dataset.class_names)]
        if bad:
            raise AnnotationFormatError(f"{image.file}: labels {bad} outside 0..{len(dataset.class_names) - 1}")
        with open(os.path.join(label_dir, os.path.splitext(name)[0] + ".txt"), "w", encoding="utf-8") as f:
            f.writelines(row + "\n" for row in label_rows(image, segments))
    if copy:
        copy_images(dataset, names, image_dir)
    yaml_path = os.path.join(out_dir, "data.yaml")
    spec = {}
    if os.path.isfile(yaml_path):
        with open(yaml_path, encoding="utf-8") as f:
            spec = yaml.safe_load(f) or {}
    spec.update({"path": os.path.abspath(out_dir), split: f"images/{split}"})
    spec["names"] = dict(enumerate(dataset.class_names))
    spec["nc"] = len(dataset.class_names)
    ordered = {k: spec[k] for k in ("path", "train", "val", "test", "nc", "names") if k in spec}
    with open(yaml_path, "w", encoding="utf-8") as f:
        yaml.safe_dump(ordered, f, sort_keys=False, allow_unicode=True)
    return yaml_path
