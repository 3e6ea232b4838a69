"""``cvzoo convert``: convert a detection dataset between VOC, COCO, YOLO (and from Labelme)."""

from __future__ import annotations

import argparse

from cvzoo.cli.main import CliError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert", help="convert annotations between voc, coco, yolo (and from labelme)",
        description="Convert one split of a detection dataset, copying its images into the new layout.",
        epilog="example: cvzoo convert --from voc --to yolo data/VOCdevkit data/voc_yolo --split val",
    )
    parser.add_argument("src", help="source dataset: folder, COCO .json or YOLO .yaml")
    parser.add_argument("dst", help="output folder (or .json file for --to coco)")
    parser.add_argument("--from", dest="src_format", default="auto",
                        choices=["auto", "voc", "coco", "yolo", "labelme"], help="source format (default: auto)")
    parser.add_argument("--to", dest="dst_format", required=True, choices=["voc", "coco", "yolo"])
    parser.add_argument("--split", default="train", help="split to read and write (default: train)")
    parser.add_argument("--classes", help="comma-separated class names (fixes order for voc/yolo/labelme)")
    parser.add_argument("--no-copy", action="store_true", help="write annotations only, do not copy images")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cvzoo.data.formats._common import AnnotationFormatError
    from cvzoo.data.formats.convert import convert_dataset

    class_names = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
    try:
        dataset = convert_dataset(args.src, args.src_format, args.dst, args.dst_format, split=args.split,
                                  class_names=class_names, copy=not args.no_copy)
    except (AnnotationFormatError, OSError) as err:
        raise CliError(str(err)) from err
    boxes = sum(len(img) for img in dataset.images)
    print(f"converted {len(dataset)} images, {boxes} boxes, {len(dataset.class_names)} classes "
          f"({args.split}) -> {args.dst} [{args.dst_format}]")
    return 0
