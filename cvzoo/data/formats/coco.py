"""COCO JSON: instance annotations (``images``, ``categories``, ``annotations``) and detection results.

COCO boxes are ``[x, y, w, h]`` in continuous 0-based pixels; canonical boxes are ``xyxy`` in the same
coordinates (``x2 = x + w``). Category ids are arbitrary positive integers (COCO's 80 classes use 1..90
with gaps): they are sorted and mapped to contiguous 0-based labels, and the ids are kept in
``DatasetAnnotations.category_ids`` so a written file carries the original ids again.

Segmentations are kept in their source form: polygons in ``ImageAnnotation.polygons`` (absolute xy),
RLEs (uncompressed counts are compressed on read) in ``ImageAnnotation.rles``.
"""

from __future__ import annotations

import json
import os

import numpy as np

from cvzoo.data.formats._common import (
    AnnotationFormatError,
    Issue,
    all_finite,
    copy_images,
    export_names,
    format_number,
    refuse_overwrites,
    report,
)
from cvzoo.data.types import DatasetAnnotations, ImageAnnotation
from cvzoo.ops.masks import MaskFormatError, annotation_to_rle, rle_area, rle_encode


def load_json(path: str):
    """``json.load`` with errors that name the file, line and column."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as err:
        raise AnnotationFormatError(
            f"{path}: malformed JSON at line {err.lineno}, column {err.colno}: {err.msg}"
        ) from err
    except OSError as err:
        raise AnnotationFormatError(f"{path}: cannot read ({err})") from err


def _key(record: dict, key: str, path: str, where: str):
    if not isinstance(record, dict) or key not in record:
        raise AnnotationFormatError(f"{path}: {where} has no {key!r}")
    return record[key]


def guess_image_dir(json_path: str) -> str:
    """Image folder of a COCO file: ``instances_val2017.json`` -> ``../val2017``, ``../images/val2017``,
    ``images/val2017`` or ``images`` next to the file, whichever exists first (else the file's folder)."""
    folder = os.path.dirname(os.path.abspath(json_path))
    stem = os.path.splitext(os.path.basename(json_path))[0]
    split = stem.split("_", 1)[1] if "_" in stem else stem
    candidates = [
        os.path.join(folder, "..", split), os.path.join(folder, "..", "images", split),
        os.path.join(folder, "images", split), os.path.join(folder, "images"), os.path.join(folder, "..", "images"),
    ]  # fmt: skip
    for candidate in candidates:
        if os.path.isdir(candidate):
            return os.path.normpath(candidate)
    return folder


def _segmentation(seg, height: int, width: int, path: str, where: str):
    """``(polygons | None, rle | None)`` of one COCO ``segmentation`` value."""
    if seg is None or (isinstance(seg, list) and len(seg) == 0):
        return None, None
    if isinstance(seg, list):
        polygons = []
        for poly in seg:
            points = np.asarray(poly, dtype=np.float32)
            if points.ndim != 1 or len(points) < 6 or len(points) % 2:
                raise AnnotationFormatError(f"{path}: {where} polygon needs an even number >= 6 of values")
            polygons.append(points.reshape(-1, 2))
        return polygons, None
    if isinstance(seg, dict):
        counts = _key(seg, "counts", path, where + " segmentation")
        size = _key(seg, "size", path, where + " segmentation")
        if list(size) != [height, width]:
            raise AnnotationFormatError(f"{path}: {where} RLE size {size} differs from image {height}x{width}")
        try:  # compresses an uncompressed RLE, checks a compressed one (a corrupt string fails here)
            rle = annotation_to_rle({"size": [int(size[0]), int(size[1])], "counts": counts}, height, width)
        except MaskFormatError as err:
            raise AnnotationFormatError(f"{path}: {where} segmentation: {err}") from None
        return None, rle
    raise AnnotationFormatError(f"{path}: {where} segmentation must be a polygon list or an RLE dict")


def read_coco(
    json_path: str, image_dir: str | None = None, issues: list[Issue] | None = None
) -> DatasetAnnotations:
    """Read a COCO instances file.

    Args:
        json_path: the annotation JSON.
        image_dir: folder the ``file_name`` values are relative to; None guesses (``guess_image_dir``).
        issues: None to raise on an annotation with an unknown image or category id or a non-finite
            coordinate, and on a file without an ``annotations`` key; a list to record it there (and
            skip the annotation).

    Raises:
        AnnotationFormatError: malformed JSON, missing keys, duplicate image or category ids.
    """
    data = load_json(json_path)
    if not isinstance(data, dict) or "images" not in data:
        raise AnnotationFormatError(f"{json_path}: not a COCO instances file (no 'images' list)")
    categories = sorted(data.get("categories", []), key=lambda c: _key(c, "id", json_path, "a category"))
    category_ids = [int(c["id"]) for c in categories]
    if len(set(category_ids)) != len(category_ids):
        dup = sorted({i for i in category_ids if category_ids.count(i) > 1})
        raise AnnotationFormatError(f"{json_path}: duplicate category id(s) {dup}")
    label_of = {cid: k for k, cid in enumerate(category_ids)}
    class_names = [str(_key(c, "name", json_path, f"category {c['id']}")) for c in categories]

    per_image: dict[int, dict] = {}
    for record in data["images"]:
        image_id = int(_key(record, "id", json_path, "an image"))
        if image_id in per_image:
            raise AnnotationFormatError(f"{json_path}: duplicate image id {image_id}")
        where = f"image {image_id}"
        per_image[image_id] = {
            "file": str(_key(record, "file_name", json_path, where)),
            "width": int(_key(record, "width", json_path, where)),
            "height": int(_key(record, "height", json_path, where)),
            "objects": [],
        }
    if "annotations" not in data:
        # An unlabelled split writes "annotations": []; a missing key is a truncated or foreign file,
        # and reading it as "no objects" would train on pure background.
        report(issues, Issue("no_annotations_key", json_path,
                             "has no 'annotations' key (a split without labels needs \"annotations\": [])"))
    for n, ann in enumerate(data.get("annotations", [])):
        where = f"annotation {ann.get('id', n) if isinstance(ann, dict) else n}"
        image_id = int(_key(ann, "image_id", json_path, where))
        category_id = int(_key(ann, "category_id", json_path, where))
        if image_id not in per_image:
            report(issues, Issue("unknown_image", json_path, f"{where} refers to missing image id {image_id}"))
            continue
        if category_id not in label_of:
            report(issues, Issue("unknown_class", json_path,
                                 f"{where} has category id {category_id}, not among {category_ids}"))
            continue
        bbox = _key(ann, "bbox", json_path, where)
        if not isinstance(bbox, list) or len(bbox) != 4:
            raise AnnotationFormatError(f"{json_path}: {where} bbox must be [x, y, w, h], got {bbox!r}")
        x, y, w, h = (float(v) for v in bbox)
        img = per_image[image_id]
        polygons, rle = _segmentation(ann.get("segmentation"), img["height"], img["width"], json_path, where)
        if not all_finite(bbox, *(polygons or [])):
            report(issues, Issue("non_finite", json_path, f"{where} has a non-finite coordinate (bbox {bbox})"))
            continue
        img["objects"].append({
            "box": [x, y, x + w, y + h], "label": label_of[category_id], "iscrowd": bool(ann.get("iscrowd", 0)),
            "area": float(ann.get("area", w * h)), "polygons": polygons, "rle": rle,
        })

    images = []
    for image_id, img in per_image.items():
        objs = img["objects"]
        has_polys = any(o["polygons"] is not None for o in objs)
        has_rles = any(o["rle"] is not None for o in objs)
        images.append(ImageAnnotation(
            file=img["file"], width=img["width"], height=img["height"],
            boxes=np.array([o["box"] for o in objs], np.float32).reshape(-1, 4),
            labels=np.array([o["label"] for o in objs], np.int64),
            iscrowd=np.array([o["iscrowd"] for o in objs], bool),
            areas=np.array([o["area"] for o in objs], np.float32),
            polygons=[o["polygons"] or [] for o in objs] if has_polys else None,
            rles=[o["rle"] for o in objs] if has_rles else None,
            image_id=image_id,
        ))
    root = image_dir if image_dir is not None else guess_image_dir(json_path)
    return DatasetAnnotations(class_names=class_names, images=images, root=os.path.abspath(root),
                              category_ids=category_ids)


def _object_area(image: ImageAnnotation, k: int) -> float:
    if image.areas is not None:
        return float(image.areas[k])
    if image.rles is not None and image.rles[k] is not None:
        return float(rle_area(image.rles[k]))
    if image.masks is not None:
        return float(np.asarray(image.masks[k]).astype(bool).sum())
    if image.polygons is not None and image.polygons[k]:
        # Shoelace area of each polygon, as pycocotools reports for unrasterised polygons.
        return float(sum(0.5 * abs(np.dot(p[:, 0], np.roll(p[:, 1], 1)) - np.dot(p[:, 1], np.roll(p[:, 0], 1)))
                         for p in image.polygons[k]))
    x0, y0, x1, y1 = image.boxes[k]
    return float(max(x1 - x0, 0) * max(y1 - y0, 0))


def _segmentation_json(image: ImageAnnotation, k: int):
    if image.rles is not None and image.rles[k] is not None:
        return dict(image.rles[k])
    if image.polygons is not None and image.polygons[k]:
        return [[round(float(v), 3) for v in np.asarray(p).ravel()] for p in image.polygons[k]]
    if image.masks is not None:
        return rle_encode(np.asarray(image.masks[k], dtype=np.uint8))
    return None


def coco_dict(dataset: DatasetAnnotations, file_names: list[str] | None = None) -> dict:
    """The COCO instances dict of a dataset (category ids from ``category_ids`` or ``1..K``)."""
    category_ids = dataset.category_ids or list(range(1, len(dataset.class_names) + 1))
    if len(category_ids) != len(dataset.class_names):
        raise AnnotationFormatError(
            f"{len(category_ids)} category ids for {len(dataset.class_names)} class names"
        )
    ids = [img.image_id for img in dataset.images]
    if len(set(ids)) != len(ids) or ids == list(range(len(ids))):
        # Duplicate ids are unusable as keys, and 0-based indices (non-COCO sources) become COCO's 1..N.
        ids = list(range(1, len(ids) + 1))
    file_names = file_names or [img.file for img in dataset.images]
    out = {
        "images": [],
        "annotations": [],
        "categories": [{"id": int(c), "name": n, "supercategory": ""} for c, n in zip(category_ids, dataset.class_names)],
    }
    for image, image_id, file_name in zip(dataset.images, ids, file_names):
        out["images"].append({"id": int(image_id), "file_name": file_name,
                              "width": int(image.width), "height": int(image.height)})
        for k in range(len(image)):
            label = int(image.labels[k])
            if not 0 <= label < len(category_ids):
                raise AnnotationFormatError(f"{image.file}: label {label} outside 0..{len(category_ids) - 1}")
            x0, y0, x1, y1 = (float(v) for v in image.boxes[k])
            ann = {
                "id": len(out["annotations"]) + 1, "image_id": int(image_id), "category_id": int(category_ids[label]),
                "bbox": [float(format_number(v)) for v in (x0, y0, x1 - x0, y1 - y0)],
                "area": float(format_number(_object_area(image, k))),
                "iscrowd": int(bool(image.iscrowd[k])),
            }
            seg = _segmentation_json(image, k)
            if seg is not None:
                ann["segmentation"] = seg
            out["annotations"].append(ann)
    return out


def write_coco(
    dataset: DatasetAnnotations, json_path: str, image_dir: str | None = None, copy: bool = True
) -> None:
    """Write a COCO instances JSON; with ``copy`` the images go to ``image_dir`` (flat, unique names).

    ``file_name`` values are the image names in ``image_dir`` when copying, else the dataset's paths.

    Raises:
        AnnotationFormatError: the JSON or a copied image exists already, before anything is written
            (``refuse_overwrites``).
    """
    names = export_names(dataset) if copy else None
    image_dir = (image_dir or guess_image_dir(json_path)) if copy else None
    planned = [(json_path, f"the annotations of {len(dataset)} images")]
    if names is not None:
        sources = [dataset.image_path(image) for image in dataset.images]
        planned += [(os.path.join(image_dir, name), src) for name, src in zip(names, sources)]
    refuse_overwrites(planned)
    os.makedirs(os.path.dirname(os.path.abspath(json_path)), exist_ok=True)
    with open(json_path, "w", encoding="utf-8") as f:
        json.dump(coco_dict(dataset, names), f)
    if copy:
        copy_images(dataset, names, image_dir)


def read_coco_results(path: str, category_ids: list[int] | None = None) -> dict[int, dict[str, np.ndarray]]:
    """Read a COCO results file (a list of ``{image_id, category_id, bbox, score}``).

    Args:
        path: the results JSON.
        category_ids: the dataset's ``category_ids`` to map ids to 0-based labels; None keeps raw ids.

    Returns:
        ``{image_id: {"boxes": [N, 4] xyxy float32, "scores": [N] float32, "labels": [N] int64}}``.
    """
    data = load_json(path)
    if not isinstance(data, list):
        raise AnnotationFormatError(f"{path}: a results file must be a JSON list of detections")
    label_of = {int(c): k for k, c in enumerate(category_ids)} if category_ids is not None else None
    grouped: dict[int, list] = {}
    for n, det in enumerate(data):
        where = f"detection {n}"
        image_id = int(_key(det, "image_id", path, where))
        category_id = int(_key(det, "category_id", path, where))
        bbox, score = _key(det, "bbox", path, where), float(_key(det, "score", path, where))
        if not isinstance(bbox, list) or len(bbox) != 4:
            raise AnnotationFormatError(f"{path}: {where} bbox must be [x, y, w, h], got {bbox!r}")
        if label_of is not None and category_id not in label_of:
            raise AnnotationFormatError(f"{path}: {where} has category id {category_id}, not among {category_ids}")
        x, y, w, h = (float(v) for v in bbox)
        label = label_of[category_id] if label_of is not None else category_id
        grouped.setdefault(image_id, []).append(([x, y, x + w, y + h], score, label))
    return {
        image_id: {
            "boxes": np.array([d[0] for d in dets], np.float32).reshape(-1, 4),
            "scores": np.array([d[1] for d in dets], np.float32),
            "labels": np.array([d[2] for d in dets], np.int64),
        }
        for image_id, dets in grouped.items()
    }


def write_coco_results(
    path: str, results: dict[int, dict[str, np.ndarray]], category_ids: list[int] | None = None
) -> None:
    """Write detections (the structure :func:`read_coco_results` returns) as a COCO results list.

    ``category_ids[label]`` gives the written id; None writes the labels as they are.
    """
    out = []
    for image_id, det in results.items():
        boxes = np.asarray(det["boxes"], np.float64).reshape(-1, 4)
        for box, score, label in zip(boxes, det["scores"], det["labels"]):
            category_id = int(category_ids[int(label)]) if category_ids is not None else int(label)
            out.append({"image_id": int(image_id), "category_id": category_id,
                        "bbox": [round(float(v), 3) for v in (box[0], box[1], box[2] - box[0], box[3] - box[1])],
                        "score": round(float(score), 5)})
    with open(path, "w", encoding="utf-8") as f:
        json.dump(out, f)
