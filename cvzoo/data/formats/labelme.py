"""Labelme JSON: one file per image with ``imagePath``, ``imageHeight``, ``imageWidth`` and ``shapes``.

Area shapes become objects: ``rectangle`` (two opposite corners, any order) -> box; ``polygon`` ->
polygon + its bounding box; ``circle`` (centre, point on the rim) -> the circle's box. Shapes without
area (``point``, ``line``, ``linestrip``, ``points``) carry no box and are skipped; any other
``shape_type`` is an error. Labelme points are continuous pixel coordinates, used unchanged.
"""

from __future__ import annotations

import glob
import os

import numpy as np

from cvzoo.data.formats._common import AnnotationFormatError, Issue, all_finite, bounds_box, report
from cvzoo.data.formats.coco import load_json
from cvzoo.data.types import DatasetAnnotations, ImageAnnotation

SKIPPED_SHAPES = ("point", "points", "line", "linestrip")


def parse_labelme_json(path: str) -> dict:
    """``{"image": path, "width", "height", "objects": [{"label", "box", "polygon"}]}`` of one file."""
    data = load_json(path)
    if not isinstance(data, dict) or "shapes" not in data:
        raise AnnotationFormatError(f"{path}: not a Labelme file (no 'shapes')")
    for key in ("imagePath", "imageHeight", "imageWidth"):
        if data.get(key) is None:
            raise AnnotationFormatError(f"{path}: Labelme file has no {key!r}")
    objects = []
    for k, shape in enumerate(data["shapes"]):
        kind = shape.get("shape_type") or "polygon"  # old Labelme versions omit it for polygons
        label = shape.get("label")
        where = f"shape {k} ({label!r}, {kind})"
        if kind in SKIPPED_SHAPES:
            continue
        try:
            points = np.asarray(shape["points"], dtype=np.float32).reshape(-1, 2)
        except (KeyError, ValueError, TypeError) as err:
            raise AnnotationFormatError(f"{path}: {where} has no valid 'points' ({err})") from err
        if label is None:
            raise AnnotationFormatError(f"{path}: {where} has no 'label'")
        polygon = None
        if kind == "rectangle" and len(points) == 2:
            box = bounds_box(points)
        elif kind == "polygon" and len(points) >= 3:
            polygon, box = points, bounds_box(points)
        elif kind == "circle" and len(points) == 2:
            radius = float(np.linalg.norm(points[1] - points[0]))
            cx, cy = points[0]
            box = np.array([cx - radius, cy - radius, cx + radius, cy + radius], np.float32)
        else:
            raise AnnotationFormatError(f"{path}: {where} with {len(points)} points is not supported")
        objects.append({"label": str(label), "box": box, "polygon": polygon, "where": where})
    image = str(data["imagePath"]).replace("\\", "/")
    return {"image": os.path.normpath(os.path.join(os.path.dirname(path), image)),
            "width": int(data["imageWidth"]), "height": int(data["imageHeight"]), "objects": objects}


def read_labelme(
    path: str, class_names: list[str] | None = None, issues: list[Issue] | None = None
) -> DatasetAnnotations:
    """Read a folder of Labelme JSON files (searched recursively) or a single file.

    Args:
        class_names: fixed classes; None means the sorted labels found.
        issues: None raises on a label outside ``class_names`` or a non-finite point; a list records it
            and skips the shape.
    """
    if os.path.isdir(path):
        files = sorted(glob.glob(os.path.join(path, "**", "*.json"), recursive=True))
        root = path
    elif os.path.isfile(path):
        files, root = [path], os.path.dirname(path)
    else:
        raise AnnotationFormatError(f"{path}: no such Labelme file or folder")
    records = [(f, parse_labelme_json(f)) for f in files]
    if class_names is None:
        class_names = sorted({o["label"] for _, rec in records for o in rec["objects"]})
    index = {name: i for i, name in enumerate(class_names)}
    images = []
    for n, (json_path, rec) in enumerate(records):
        objects = []
        for obj in rec["objects"]:
            if obj["label"] not in index:
                report(issues, Issue("unknown_class", json_path, f"label {obj['label']!r} is not in {class_names}"))
            elif not all_finite(obj["box"]):  # NaN points make a NaN box (min/max propagate NaN)
                report(issues, Issue("non_finite", json_path, f"{obj['where']} has a non-finite point"))
            else:
                objects.append(obj)
        has_polys = any(o["polygon"] is not None for o in objects)
        images.append(ImageAnnotation(
            file=os.path.relpath(rec["image"], root), width=rec["width"], height=rec["height"],
            boxes=np.array([o["box"] for o in objects], np.float32).reshape(-1, 4),
            labels=np.array([index[o["label"]] for o in objects], np.int64),
            polygons=[[o["polygon"]] if o["polygon"] is not None else [] for o in objects] if has_polys else None,
            image_id=n,
        ))
    return DatasetAnnotations(class_names=list(class_names), images=images, root=os.path.abspath(root))
