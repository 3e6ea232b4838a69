"""Dataset checks: annotation validation, a readable report and summary plots.

``validate_annotations`` looks at boxes and labels only (any source format); ``check_dataset`` also
looks at the files on disk (missing images, label files without images, background images) and
gathers statistics (class histogram, box sizes) for the report and the plots.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from cvzoo.data.formats._common import AnnotationFormatError, Issue, image_size
from cvzoo.data.formats.auto import detect_format, load_detection_dataset
from cvzoo.data.formats.yolo import label_path_for
from cvzoo.data.types import DatasetAnnotations

__all__ = ["CheckReport", "Issue", "check_dataset", "plot_report", "validate_annotations"]


def _fmt_box(box: np.ndarray) -> str:
    return "(" + ", ".join(f"{float(v):g}" for v in box) + ")"


# Slack for "outside the image": normalised formats (YOLO's 6 decimals, float32) put a box drawn to the
# border a few thousandths of a pixel past it, which is rounding, not an annotation error.
OUTSIDE_TOLERANCE_PX = 0.01


def validate_annotations(dataset: DatasetAnnotations, clip: bool = False, drop: bool = False) -> list[Issue]:
    """Flag suspicious boxes and labels; optionally repair them in place.

    Kinds flagged per object: ``unknown_class`` (label outside ``class_names``), ``non_finite`` (a NaN or
    infinite coordinate; the readers report these already, this catches annotations built in code),
    ``inverted_box`` (x2 < x1 or y2 < y1), ``zero_area`` (x2 == x1 or y2 == y1), ``outside_image`` (any
    side beyond ``[0, W] x [0, H]`` by more than ``OUTSIDE_TOLERANCE_PX``, which includes negative
    coordinates), ``duplicate_box`` (same box and label as an earlier object of the image).

    Args:
        dataset: annotations to check (boxes xyxy absolute pixels).
        clip: clip boxes to the image, then drop those left without area (entirely outside).
        drop: drop objects flagged unknown_class, non_finite, inverted_box, zero_area or duplicate_box.

    Returns:
        The issues found (before any repair).
    """
    issues = []
    num_classes = len(dataset.class_names)
    for image in dataset.images:
        keep = np.ones(len(image), bool)
        seen: set[tuple] = set()
        for k, (box, label) in enumerate(zip(image.boxes, image.labels)):
            x0, y0, x1, y1 = (float(v) for v in box)
            where = f"object {k} box {_fmt_box(box)}"
            flagged = []
            if not 0 <= label < num_classes:
                flagged.append(("unknown_class", f"object {k} has class id {int(label)} but nc={num_classes}"))
            if not np.isfinite(box).all():
                # Every comparison with NaN is False: the geometric checks would call such a box fine.
                flagged.append(("non_finite", f"{where} has a non-finite coordinate"))
            else:
                flagged += _geometry_flags(x0, y0, x1, y1, image.width, image.height, where)
            key = (x0, y0, x1, y1, int(label))
            if key in seen:
                flagged.append(("duplicate_box", f"{where} repeats an earlier object of class {int(label)}"))
            seen.add(key)
            issues.extend(Issue(kind, image.file, message) for kind, message in flagged)
            if drop and any(kind != "outside_image" for kind, _ in flagged):
                keep[k] = False
        if clip and len(image):
            image.boxes[:, 0::2] = image.boxes[:, 0::2].clip(0, image.width)
            image.boxes[:, 1::2] = image.boxes[:, 1::2].clip(0, image.height)
            keep &= (image.boxes[:, 2] > image.boxes[:, 0]) & (image.boxes[:, 3] > image.boxes[:, 1])
        if not keep.all():
            _keep_objects(image, keep)
    return issues


def _geometry_flags(x0: float, y0: float, x1: float, y1: float, width: int, height: int, where: str
                    ) -> list[tuple[str, str]]:
    """``inverted_box`` / ``zero_area`` and ``outside_image`` flags of one finite box."""
    flagged = []
    if x1 < x0 or y1 < y0:
        flagged.append(("inverted_box", f"{where} has x2 < x1 or y2 < y1"))
    elif x1 == x0 or y1 == y0:
        flagged.append(("zero_area", f"{where} has zero area"))
    tol = OUTSIDE_TOLERANCE_PX
    if min(x0, y0, x1, y1) < -tol or max(x0, x1) > width + tol or max(y0, y1) > height + tol:
        flagged.append(("outside_image", f"{where} exceeds the {width}x{height} image"))
    return flagged


def _keep_objects(image, keep: np.ndarray) -> None:
    """Subset every per-object field of an ImageAnnotation in place."""
    idx = np.flatnonzero(keep)
    for name in ("boxes", "labels", "difficult", "iscrowd", "areas", "truncated", "masks"):
        value = getattr(image, name)
        if value is not None and len(value) == len(keep):
            setattr(image, name, np.asarray(value)[idx])
    for name in ("polygons", "rles", "poses"):
        value = getattr(image, name)
        if value is not None:
            setattr(image, name, [value[i] for i in idx])


@dataclass
class CheckReport:
    """Result of :func:`check_dataset`.

    Attributes:
        issues: problems (the CLI exits 1 when there are any).
        notes: legitimate but noteworthy findings (background images, empty label files).
        box_wh: ``[N, 2]`` box widths and heights in pixels; ``box_centers``: ``[N, 2]`` centres
            normalised by the image size; ``box_labels``: ``[N]``.
    """

    path: str
    format: str
    class_names: list[str] = field(default_factory=list)
    num_images: int = 0
    issues: list[Issue] = field(default_factory=list)
    notes: list[Issue] = field(default_factory=list)
    box_wh: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))
    box_centers: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))
    box_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    @property
    def ok(self) -> bool:
        return not self.issues

    def class_counts(self) -> dict[str, int]:
        valid = self.box_labels[(self.box_labels >= 0) & (self.box_labels < len(self.class_names))]
        counts = np.bincount(valid, minlength=len(self.class_names))
        return {name: int(c) for name, c in zip(self.class_names, counts)}

    def to_text(self, max_per_kind: int = 10) -> str:
        """The report as readable text (at most ``max_per_kind`` examples of each issue kind)."""
        lines = [f"dataset: {self.path} (format: {self.format})",
                 f"images: {self.num_images}   boxes: {len(self.box_labels)}   classes: {len(self.class_names)}"]
        counts = self.class_counts()
        if counts:
            width = max(len(n) for n in counts)
            lines.append("class histogram:")
            lines += [f"  {name:<{width}}  {count}" for name, count in counts.items()]
        if len(self.box_wh):
            w, h = self.box_wh[:, 0], self.box_wh[:, 1]
            area = np.clip(w, 0, None) * np.clip(h, 0, None)
            lines.append("box size (pixels):  min / median / mean / max")
            for name, v in (("width", w), ("height", h)):
                lines.append(f"  {name:<7} {v.min():8.1f} {np.median(v):8.1f} {v.mean():8.1f} {v.max():8.1f}")
            small, large = int((area < 32**2).sum()), int((area >= 96**2).sum())
            lines.append(f"  COCO size buckets: small {small}, medium {len(area) - small - large}, large {large}")
        for title, items in (("notes", self.notes), ("issues", self.issues)):
            lines.append(f"{title}: {len(items)}")
            by_kind: dict[str, list[Issue]] = {}
            for item in items:
                by_kind.setdefault(item.kind, []).append(item)
            for kind, group in by_kind.items():
                lines.append(f"  {kind}: {len(group)}")
                lines += [f"    {item}" for item in group[:max_per_kind]]
                if len(group) > max_per_kind:
                    lines.append(f"    ... and {len(group) - max_per_kind} more")
        lines.append("result: " + ("clean" if self.ok else f"{len(self.issues)} issue(s) found"))
        return "\n".join(lines)


def _yolo_file_checks(dataset: DatasetAnnotations, report: CheckReport) -> None:
    """Background images, empty label files, and label files that no image refers to."""
    expected = set()
    for image in dataset.images:
        label_path = label_path_for(dataset.image_path(image))
        expected.add(os.path.abspath(label_path))
        if not os.path.isfile(label_path):
            report.notes.append(Issue("missing_label_file", image.file, "no label file: background image"))
        elif os.path.getsize(label_path) == 0:
            report.notes.append(Issue("empty_label_file", label_path, "empty label file: background image"))
    for folder in sorted({os.path.dirname(p) for p in expected}):
        for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
            path = os.path.abspath(os.path.join(folder, name))
            if name.endswith(".txt") and name != "classes.txt" and path not in expected:
                report.issues.append(Issue("orphan_label_file", path, "label file without an image"))


def _size_issues(image, path: str) -> list[Issue]:
    """``size_mismatch`` when the file's size (header + EXIF orientation, as training decodes it)
    differs from the annotated one; ``unreadable_image`` when its header cannot be read."""
    try:
        width, height = image_size(path)
    except AnnotationFormatError as err:
        return [Issue("unreadable_image", image.file, str(err))]
    if image.width and image.height and (width, height) != (image.width, image.height):
        return [Issue("size_mismatch", image.file,
                      f"annotated as {image.width}x{image.height} (width x height) but the image is {width}x{height}")]
    return []


def check_dataset(path: str, format: str = "auto", split: str | None = None) -> CheckReport:
    """Check a dataset on disk.

    Args:
        path: anything :func:`load_detection_dataset` accepts.
        format: ``"auto"`` or a format name.
        split: one split, or None for all (VOC: every XML; YOLO: every split of the YAML).

    Returns:
        A CheckReport; files that cannot be parsed at all become an ``unreadable`` issue.
    """
    fmt = detect_format(path) if format == "auto" else format
    report = CheckReport(path=path, format=fmt)
    issues: list[Issue] = []
    try:
        dataset = load_detection_dataset(path, split, format=fmt, issues=issues)
    except AnnotationFormatError as err:
        report.issues.append(Issue("unreadable", path, str(err)))
        return report
    report.issues += issues
    report.class_names, report.num_images = dataset.class_names, len(dataset)
    for image in dataset.images:
        if not os.path.isfile(dataset.image_path(image)):
            if not any(i.kind == "missing_image" and i.file == dataset.image_path(image) for i in issues):
                report.issues.append(Issue("missing_image", image.file, "image file not found"))
        elif fmt != "yolo":  # YOLO's sizes are read from these very headers
            report.issues += _size_issues(image, dataset.image_path(image))
    if fmt == "yolo":
        _yolo_file_checks(dataset, report)
    else:
        for image in dataset.images:
            if len(image) == 0:
                report.notes.append(Issue("no_objects", image.file, "image without objects: background image"))
    report.issues += validate_annotations(dataset)
    boxes = [img.boxes for img in dataset.images if len(img)]
    if boxes:
        all_boxes = np.concatenate(boxes)
        sizes = np.concatenate([np.tile([[img.width, img.height]], (len(img), 1)) for img in dataset.images if len(img)])
        report.box_wh = np.stack([all_boxes[:, 2] - all_boxes[:, 0], all_boxes[:, 3] - all_boxes[:, 1]], 1)
        report.box_centers = ((all_boxes[:, :2] + all_boxes[:, 2:]) / 2 / np.maximum(sizes, 1)).astype(np.float32)
        report.box_labels = np.concatenate([img.labels for img in dataset.images])
    return report


def plot_report(report: CheckReport, out_dir: str) -> list[str]:
    """Save ``class_counts.png``, ``box_centers.png`` and ``box_sizes.png`` (matplotlib Agg) to ``out_dir``.

    Returns:
        The paths written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(out_dir, exist_ok=True)
    paths = []
    counts = report.class_counts()
    fig, ax = plt.subplots(figsize=(max(4.0, 0.4 * len(counts) + 2), 3.5))
    ax.bar(range(len(counts)), list(counts.values()), color="tab:blue")
    ax.set_xticks(range(len(counts)), list(counts), rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("boxes")
    ax.set_title("objects per class")
    paths.append(_save(fig, os.path.join(out_dir, "class_counts.png")))

    fig, ax = plt.subplots(figsize=(4.5, 4))
    hist = ax.hist2d(report.box_centers[:, 0], report.box_centers[:, 1], bins=20, range=[[0, 1], [0, 1]], cmap="viridis")
    ax.invert_yaxis()  # image coordinates: y grows downwards
    ax.set_xlabel("centre x / width")
    ax.set_ylabel("centre y / height")
    ax.set_title("box centres")
    fig.colorbar(hist[3], ax=ax)
    paths.append(_save(fig, os.path.join(out_dir, "box_centers.png")))

    fig, axes = plt.subplots(1, 2, figsize=(8, 3.5))
    axes[0].scatter(report.box_wh[:, 0], report.box_wh[:, 1], s=4, alpha=0.5)
    axes[0].set_xlabel("width (px)")
    axes[0].set_ylabel("height (px)")
    axes[0].set_title("box width vs height")
    axes[1].hist([report.box_wh[:, 0], report.box_wh[:, 1]], bins=30, label=["width", "height"])
    axes[1].set_xlabel("pixels")
    axes[1].legend()
    axes[1].set_title("box size distribution")
    paths.append(_save(fig, os.path.join(out_dir, "box_sizes.png")))
    return paths


def _save(fig, path: str) -> str:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
