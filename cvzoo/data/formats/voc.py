"""Pascal VOC detection annotations: ``Annotations/*.xml``, ``ImageSets/Main/<split>.txt``, ``JPEGImages``.

Coordinate convention: VOC writes 1-based inclusive pixel indices (a full 500-px-wide box is
``xmin=1, xmax=500``). cvzoo uses the numbers *unchanged* as canonical xyxy coordinates (as
torchvision's ``VOCDetection`` and the course notes do), so VOC -> canonical -> VOC is exact and the
notes' worked example holds: ``(69, 172, 270, 330)`` in a 500x375 image is the YOLO row
``0 0.339 0.669333 0.402 0.421333``. The price is that a VOC box sits up to one pixel right/below the
pixel-edge box of the same object (see ``masks.py``).

Layouts read: a ``VOCdevkit`` folder (every ``VOC20xx`` inside, e.g. 2007 + 2012 together), one
``VOC2007``-style folder, any folder with ``Annotations/``, and the flat folder labelImg writes (each
image with its XML beside it, no split files: ``cvzoo.data.formats.auto`` holds out ``val_fraction``).

An XML file belongs to the image of the same stem: ``<filename>`` is often stale (the image renamed,
re-encoded to another extension, or the XML copied from another image), so it is used only when no
image has the XML's stem.
"""

from __future__ import annotations

import glob
import math
import os
import xml.etree.ElementTree as ET

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
from cvzoo.data.images import IMAGE_EXTENSIONS
from cvzoo.data.types import DatasetAnnotations, ImageAnnotation

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
)  # fmt: skip


def find_voc_roots(path: str) -> list[str]:
    """The ``VOC20xx``-style folders (each with ``Annotations/``) under ``path``, sorted by name, or
    ``[path]`` for a flat labelImg folder (VOC XML files beside their images)."""
    if os.path.isdir(os.path.join(path, "Annotations")):
        return [path]
    for base in (path, os.path.join(path, "VOCdevkit")):
        found = sorted(d for d in glob.glob(os.path.join(base, "*")) if os.path.isdir(os.path.join(d, "Annotations")))
        if found:
            return found
    if is_flat_voc(path):
        return [path]
    raise AnnotationFormatError(f"{path}: no VOC layout found (expected Annotations/, VOC20xx/, VOCdevkit/ or "
                                "XML files beside their images)")


def is_flat_voc(path: str) -> bool:
    """A folder without ``Annotations/`` whose first XML file is a VOC ``<annotation>`` (labelImg's layout)."""
    if not os.path.isdir(path) or os.path.isdir(os.path.join(path, "Annotations")):
        return False
    xmls = sorted(glob.glob(os.path.join(path, "*.xml")))
    if not xmls:
        return False
    try:
        for _, element in ET.iterparse(xmls[0], events=("start",)):
            return element.tag == "annotation"
    except (ET.ParseError, OSError):
        return False
    return False


def _annotation_dir(voc_root: str) -> str:
    return voc_root if is_flat_voc(voc_root) else os.path.join(voc_root, "Annotations")


def image_file_of(folder: str, image_id: str, filename: str) -> str:
    """The image in ``folder`` an XML describes: the one with the XML's stem (any image extension), else
    ``<filename>``."""
    named = os.path.join(folder, filename) if filename else ""
    if named and os.path.splitext(filename)[0] == image_id and os.path.isfile(named):
        return named
    for ext in IMAGE_EXTENSIONS:
        for candidate in (ext, ext.upper()):
            path = os.path.join(folder, image_id + candidate)
            if os.path.isfile(path):
                return path
    return named if named and os.path.isfile(named) else named or os.path.join(folder, f"{image_id}.jpg")


def _text(node: ET.Element, key: str, path: str, where: str) -> str:
    child = node.find(key)
    if child is None or child.text is None or not child.text.strip():
        raise AnnotationFormatError(f"{path}: {where} has no <{key}>")
    return child.text.strip()


def _number(node: ET.Element, key: str, path: str, where: str) -> float:
    text = _text(node, key, path, where)
    try:
        return float(text)
    except ValueError as err:
        raise AnnotationFormatError(f"{path}: {where} <{key}> is not a number: {text!r}") from err


def _size(node: ET.Element, key: str, path: str) -> int:
    value = _number(node, key, path, "<size>")
    if not math.isfinite(value):  # int(nan) would fail with a message that names no file
        raise AnnotationFormatError(f"{path}: <size> <{key}> is not a finite number: {value}")
    return int(value)


def parse_voc_xml(path: str) -> dict:
    """Parse one VOC XML file into plain values.

    Returns:
        dict with ``filename``, ``width``, ``height`` and ``objects``: a list of dicts with ``name``,
        ``box`` (xyxy, VOC numbers unchanged), ``difficult``, ``truncated``, ``pose``.

    Raises:
        AnnotationFormatError: malformed XML (with the parser's line and column) or missing fields.
    """
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as err:
        line, column = err.position
        raise AnnotationFormatError(f"{path}: malformed XML at line {line}, column {column}: {err}") from err
    except OSError as err:
        raise AnnotationFormatError(f"{path}: cannot read ({err})") from err
    size = root.find("size")
    if size is None:
        raise AnnotationFormatError(f"{path}: <annotation> has no <size>")
    width, height = (_size(size, key, path) for key in ("width", "height"))
    filename_node = root.find("filename")
    filename = filename_node.text.strip() if filename_node is not None and filename_node.text else ""
    objects = []
    for k, obj in enumerate(root.findall("object")):
        where = f"object {k}"
        name = _text(obj, "name", path, where)
        where = f"object {k} ({name!r})"
        bndbox = obj.find("bndbox")
        if bndbox is None:
            raise AnnotationFormatError(f"{path}: {where} has no <bndbox>")
        box = [_number(bndbox, key, path, where) for key in ("xmin", "ymin", "xmax", "ymax")]
        flags = {}
        for key in ("difficult", "truncated"):
            node = obj.find(key)
            flags[key] = bool(int(float(node.text))) if node is not None and node.text else False
        pose_node = obj.find("pose")
        pose = pose_node.text.strip() if pose_node is not None and pose_node.text else "Unspecified"
        objects.append({"name": name, "box": box, "pose": pose, **flags})
    return {"filename": filename, "width": width, "height": height, "objects": objects}


def read_split_ids(voc_root: str, split: str | None) -> list[str]:
    """Image ids of ``ImageSets/Main/<split>.txt``, or every XML stem when ``split`` is None."""
    if split is None:
        return sorted(os.path.splitext(os.path.basename(p))[0]
                      for p in glob.glob(os.path.join(_annotation_dir(voc_root), "*.xml")))
    split_file = os.path.join(voc_root, "ImageSets", "Main", f"{split}.txt")
    if not os.path.isfile(split_file):
        raise AnnotationFormatError(f"{split_file}: split file not found (split {split!r})")
    with open(split_file) as f:
        # Per-class files ("<id> 1") share the layout; only the first column is the id.
        return [line.split()[0] for line in f if line.strip()]


def read_voc(
    path: str,
    split: str | None = "train",
    class_names: list[str] | None = None,
    issues: list[Issue] | None = None,
) -> DatasetAnnotations:
    """Read a VOC detection split.

    Args:
        path: ``VOCdevkit`` folder, one ``VOC20xx`` folder or any folder with ``Annotations/``.
        split: ``ImageSets/Main/<split>.txt`` to read (from every year found), or None for all XML files.
        class_names: fixed class list; None means the 20 standard VOC classes when every object name is
            one of them, else the sorted names found.
        issues: None to raise on an unknown class name or a non-finite coordinate; a list to record it
            there and skip the object.

    Returns:
        DatasetAnnotations with ``root=path``, image paths relative to it, boxes in VOC numbers.
    """
    records = []
    for voc_root in find_voc_roots(path):
        flat = is_flat_voc(voc_root)
        image_dir = voc_root if flat else os.path.join(voc_root, "JPEGImages")
        for image_id in read_split_ids(voc_root, split):
            xml_path = os.path.join(voc_root if flat else os.path.join(voc_root, "Annotations"), f"{image_id}.xml")
            if not os.path.isfile(xml_path):
                raise AnnotationFormatError(f"{xml_path}: annotation of image id {image_id!r} not found")
            records.append((voc_root, image_id, xml_path, parse_voc_xml(xml_path), image_dir))
    if class_names is None:
        found = {obj["name"] for *_, rec, _ in records for obj in rec["objects"]}
        class_names = list(VOC_CLASSES) if found <= set(VOC_CLASSES) else sorted(found)
    index = {name: i for i, name in enumerate(class_names)}
    images = []
    for n, (voc_root, image_id, xml_path, rec, image_dir) in enumerate(records):
        keep, kept_index = [], []
        for k, obj in enumerate(rec["objects"]):
            if obj["name"] not in index:
                report(issues, Issue("unknown_class", xml_path, f"class {obj['name']!r} is not in {class_names}"))
                continue
            if not all_finite(obj["box"]):
                report(issues, Issue("non_finite", xml_path,
                                     f"object {k} ({obj['name']!r}) has a non-finite coordinate {obj['box']}"))
                continue
            keep.append(obj)
            kept_index.append(k)
        image_file = image_file_of(image_dir, image_id, rec["filename"])
        images.append(ImageAnnotation(
            file=os.path.relpath(image_file, path),
            width=rec["width"],
            height=rec["height"],
            boxes=np.array([o["box"] for o in keep], np.float32).reshape(-1, 4),
            labels=np.array([index[o["name"]] for o in keep], np.int64),
            difficult=np.array([o["difficult"] for o in keep], bool),
            truncated=np.array([o["truncated"] for o in keep], bool),
            poses=[o["pose"] for o in keep],
            image_id=n,
            rles=instance_rles(voc_root, image_id, kept_index, rec["height"], rec["width"]),
        ))
    return DatasetAnnotations(class_names=list(class_names), images=images, root=os.path.abspath(path))


def instance_rles(voc_root: str, image_id: str, objects: list[int], height: int, width: int) -> list[dict] | None:
    """COCO RLEs of the listed XML objects from ``SegmentationObject/<id>.png``, or None without that file.

    In VOC's instance PNGs the value ``k + 1`` marks the pixels of the ``k``-th object of the image's XML
    (255 is the "void" outline, part of no object).
    """
    path = os.path.join(voc_root, "SegmentationObject", f"{image_id}.png")
    if not os.path.isfile(path):
        return None
    from cvzoo.data.formats.voc_seg import read_index_png
    from cvzoo.ops.masks import rle_encode

    ids = read_index_png(path)
    if height and width and ids.shape != (height, width):
        raise AnnotationFormatError(f"{path}: the instance mask is {ids.shape[1]}x{ids.shape[0]} (width x height) "
                                    f"but its XML gives the image as {width}x{height}")
    return [rle_encode((ids == k + 1).astype(np.uint8)) for k in objects]


def voc_xml(image: ImageAnnotation, filename: str, class_names: list[str], folder: str = "VOC") -> str:
    """The VOC XML text of one image.

    Coordinates within 1e-3 px of an integer are written as that integer; others with the shortest text
    that reads back to the same float32 (so VOC -> VOC is exact, sub-pixel boxes included).
    """
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = folder
    ET.SubElement(root, "filename").text = filename
    size = ET.SubElement(root, "size")
    ET.SubElement(size, "width").text = str(int(image.width))
    ET.SubElement(size, "height").text = str(int(image.height))
    ET.SubElement(size, "depth").text = "3"
    ET.SubElement(root, "segmented").text = "0"
    for k in range(len(image)):
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = class_names[int(image.labels[k])]
        ET.SubElement(obj, "pose").text = image.poses[k] if image.poses is not None else "Unspecified"
        truncated = bool(image.truncated[k]) if image.truncated is not None else False
        ET.SubElement(obj, "truncated").text = str(int(truncated))
        ET.SubElement(obj, "difficult").text = str(int(bool(image.difficult[k])))
        bndbox = ET.SubElement(obj, "bndbox")
        for key, value in zip(("xmin", "ymin", "xmax", "ymax"), image.boxes[k]):
            # VOC coordinates are integer pixel indices by convention: a value a normalised format
            # (YOLO, 6 decimals) left within 1e-3 px of an integer is that integer, not new precision.
            nearest = round(float(value))
            ET.SubElement(bndbox, key).text = str(nearest) if abs(value - nearest) < 1e-3 else format_number(value)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"


def _listed_in(out_dir: str, image_id: str) -> str:
    """`` (image id 'x' of ImageSets/Main/train.txt)`` when an existing split list names ``image_id``."""
    for split_file in sorted(glob.glob(os.path.join(out_dir, "ImageSets", "Main", "*.txt"))):
        with open(split_file) as f:
            if any(line.split()[:1] == [image_id] for line in f):
                return f" (image id {image_id!r} of {os.path.relpath(split_file, out_dir)})"
    return ""


def write_voc(dataset: DatasetAnnotations, out_dir: str, split: str = "train", copy: bool = True) -> None:
    """Write a ``VOC20xx``-style folder: ``Annotations/``, ``JPEGImages/``, ``ImageSets/Main/<split>.txt``.

    Several splits can be written into the same folder one after the other, as long as their image
    ids differ: every split shares ``Annotations/`` and ``JPEGImages/``. Image ids are the image file
    stems (made unique when two images of the split share one).

    Raises:
        AnnotationFormatError: an output file exists already (e.g. an image id of a split written
            before, or ``<split>.txt`` itself), before anything is written; see ``refuse_overwrites``.
    """
    names = export_names(dataset)
    stems = [os.path.splitext(n)[0] for n in names]
    sources = [dataset.image_path(image) for image in dataset.images]
    split_file = os.path.join(out_dir, "ImageSets", "Main", f"{split}.txt")
    planned = [(os.path.join(out_dir, "Annotations", f"{stem}.xml"), src) for stem, src in zip(stems, sources)]
    planned.append((split_file, f"the image ids of split {split!r}"))
    if copy:
        planned += [(os.path.join(out_dir, "JPEGImages", name), src) for name, src in zip(names, sources)]
    refuse_overwrites(planned, owner=lambda dst: "" if dst == split_file else _listed_in(
        out_dir, os.path.splitext(os.path.basename(dst))[0]))
    os.makedirs(os.path.join(out_dir, "Annotations"), exist_ok=True)
    os.makedirs(os.path.join(out_dir, "ImageSets", "Main"), exist_ok=True)
    for image, name, stem in zip(dataset.images, names, stems):
        for label in image.labels:
            if not 0 <= label < len(dataset.class_names):
                raise AnnotationFormatError(f"{image.file}: label {label} outside 0..{len(dataset.class_names) - 1}")
        with open(os.path.join(out_dir, "Annotations", f"{stem}.xml"), "w") as f:
            f.write(voc_xml(image, name, dataset.class_names, folder=os.path.basename(os.path.abspath(out_dir))))
    with open(split_file, "w") as f:
        f.writelines(f"{stem}\n" for stem in stems)
    if copy:
        copy_images(dataset, names, os.path.join(out_dir, "JPEGImages"))
