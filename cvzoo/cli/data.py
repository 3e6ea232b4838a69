"""``cvzoo data check``: find problems in a detection dataset and summarise it; ``cvzoo data synth``: write
generated scenes (real Fashion-MNIST objects on textures, exact boxes and masks) in a dataset layout;
``cvzoo data synth-video``: generated motion clips (the class is the motion) for ``--task video``;
``cvzoo data from-labels``: instance label images (microscopy) -> a COCO instance-segmentation dataset."""

from __future__ import annotations

import argparse

from cvzoo.cli.main import CliError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="dataset tools (check, synth, synth-video, from-labels)")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    check = actions.add_parser(
        "check", help="report missing files, bad boxes, unknown classes and statistics",
        description="Exit code 0 when no issues are found, 1 otherwise.",
        epilog="example: cvzoo data check data/coco8/data.yaml --plots runs/check",
    )
    check.add_argument("path", help="dataset folder, COCO .json or YOLO .yaml")
    check.add_argument("--format", default="auto", choices=["auto", "voc", "coco", "yolo", "labelme"])
    check.add_argument("--split", help="check one split only (default: all)")
    check.add_argument("--plots", metavar="DIR", help="save class/centre/size plots here")
    check.add_argument("--max-examples", type=int, default=10, help="examples listed per issue kind")
    check.set_defaults(func=run)
    synth = actions.add_parser(
        "synth", help="write generated detection / instance / semantic segmentation scenes",
        description="Scenes of Fashion-MNIST objects pasted on textured backgrounds (cvzoo.data.synthetic), with "
                    "exact boxes and instance masks, written as a YOLO dataset (data.yaml), a COCO dataset "
                    "(annotations/instances_{train,val}.json with RLE masks) or a VOC segmentation folder.",
        epilog="example: cvzoo data synth data/coco_scenes --format coco --train 200 --val 50 --size 256",
    )
    synth.add_argument("out", help="output folder (must not exist)")
    synth.add_argument("--format", default="yolo", choices=["yolo", "coco", "voc"])
    synth.add_argument("--train", type=int, default=200, help="training scenes")
    synth.add_argument("--val", type=int, default=50, help="validation scenes")
    synth.add_argument("--size", type=int, nargs="+", default=[320], metavar="PX",
                       help="scene side, or MIN MAX for sides drawn per scene")
    synth.add_argument("--seed", type=int, default=0)
    synth.set_defaults(func=run_synth)
    motion = actions.add_parser(
        "synth-video", help="write generated motion clips (the class is the motion) for --task video",
        description="Clips of a moving Fashion-MNIST item whose class is its motion (left, right, up, down, rotate "
                    "cw/ccw, zoom in/out; cvzoo.data.synthetic_video), written as out/{train,val}/<motion>/<clip>: "
                    "folders of PNG frames, or H.264 .mp4 files (needs PyAV: pip install 'cvzoo[video]').",
        epilog="example: cvzoo data synth-video data/moving --train 1024 --val 256 --format mp4",
    )
    motion.add_argument("out", help="output folder (must not exist)")
    motion.add_argument("--format", default="frames", choices=["frames", "mp4"])
    motion.add_argument("--train", type=int, default=1024, help="training clips")
    motion.add_argument("--val", type=int, default=256, help="validation clips")
    motion.add_argument("--frames", type=int, default=8, help="frames per clip")
    motion.add_argument("--size", type=int, default=32, help="frame side, pixels")
    motion.add_argument("--seed", type=int, default=0)
    motion.set_defaults(func=run_synth_video)
    labels = actions.add_parser(
        "from-labels", help="instance label images (one id per object, 0 = background) -> COCO instances",
        description="Pairs each image with its label image (two lists of files in the same order, or two folders "
                    "matched by file stem), optionally cuts both into tiles, and writes images/{train,val}/*.png "
                    "and annotations/instances_{train,val}.json (one class, RLE masks) for --task instance. "
                    "Images deeper than 8 bits are scaled between their 1st and 99.8th percentiles.",
        epilog="example: cvzoo data from-labels data/nuclei --images img2d.tif --labels mask2d.tif --tile 128 "
               "--class nucleus",
    )
    labels.add_argument("out", help="output folder (must not exist)")
    labels.add_argument("--images", nargs="+", required=True, help="image files, or one folder")
    labels.add_argument("--labels", nargs="+", required=True, help="label images in the same order, or one folder")
    labels.add_argument("--tile", type=int, help="cut into non-overlapping TILE x TILE tiles (default: whole images)")
    labels.add_argument("--val-fraction", type=float, default=0.25,
                        help="every round(1/F)-th tile (raster order) goes to val (default 0.25)")
    labels.add_argument("--class", dest="class_name", default="object", help="the class name (default: object)")
    labels.add_argument("--min-area", type=int, default=10,
                        help="drop objects (or their parts inside a tile) smaller than this many pixels (default 10)")
    labels.set_defaults(func=run_from_labels)


def run(args: argparse.Namespace) -> int:
    from cvzoo.data.check import check_dataset, plot_report
    from cvzoo.data.formats._common import AnnotationFormatError

    # A COCO folder holds one JSON per split: without --split each is checked in turn.
    splits = [args.split] if args.split is not None else coco_splits(args.path, args.format) or [None]
    ok = True
    for split in splits:
        try:
            report = check_dataset(args.path, format=args.format, split=split)
        except AnnotationFormatError as err:
            raise CliError(str(err)) from err
        if split is not None and args.split is None:
            print(f"== split: {split}")
        print(report.to_text(max_per_kind=args.max_examples))
        if args.plots:
            plots = args.plots if len(splits) == 1 else f"{args.plots}/{split}"
            for path in plot_report(report, plots):
                print(f"plot: {path}")
        ok = ok and report.ok
    return 0 if ok else 1


def coco_splits(path: str, format: str) -> list[str]:
    """The splits of a COCO folder with ``annotations/instances_<split>.json`` files; [] for anything else."""
    import glob
    import os

    if format not in ("auto", "coco") or not os.path.isdir(path):
        return []
    files = sorted(glob.glob(os.path.join(path, "annotations", "instances_*.json")))
    return [os.path.basename(f)[len("instances_"):-len(".json")] for f in files] if len(files) > 1 else []


def run_synth(args: argparse.Namespace) -> int:
    from pathlib import Path

    from cvzoo.data import synthetic

    out = Path(args.out)
    if out.exists():
        raise CliError(f"{out} exists; cvzoo data synth writes a new folder")
    if len(args.size) not in (1, 2) or min(args.size) < 32:
        raise CliError(f"--size takes one side or MIN MAX, each at least 32 px, got {args.size}")
    sizes = {"image_size": (args.size[0], args.size[0])} if len(args.size) == 1 else {"size_range": tuple(args.size)}
    config = synthetic.SceneConfig(**sizes)
    writers = {"yolo": synthetic.write_yolo_dataset, "coco": synthetic.write_coco_dataset,
               "voc": synthetic.write_voc_segmentation}
    written = writers[args.format](out, args.train, args.val, config=config, seed=args.seed)
    print(f"wrote {args.train} train + {args.val} val scenes: {written}")
    return 0


def run_synth_video(args: argparse.Namespace) -> int:
    from pathlib import Path

    from cvzoo.data.synthetic import SyntheticConfigError
    from cvzoo.data.synthetic_video import MotionConfig, write_motion_dataset

    out = Path(args.out)
    if out.exists():
        raise CliError(f"{out} exists; cvzoo data synth-video writes a new folder")
    try:
        config = MotionConfig(frames=args.frames, size=args.size)
        write_motion_dataset(out, args.train, args.val, format=args.format, config=config, seed=args.seed)
    except (SyntheticConfigError, ImportError) as err:
        raise CliError(str(err)) from err
    print(f"wrote {args.train} train + {args.val} val clips of {args.frames} frames: {out}")
    return 0


def run_from_labels(args: argparse.Namespace) -> int:
    from cvzoo.data.formats._common import AnnotationFormatError
    from cvzoo.data.formats.label_images import pair_label_images, write_label_image_dataset

    try:
        pairs = pair_label_images(args.images, args.labels)
        out = write_label_image_dataset(pairs, args.out, tile=args.tile, val_fraction=args.val_fraction,
                                        class_name=args.class_name, min_area=args.min_area)
    except (AnnotationFormatError, ValueError) as err:
        raise CliError(str(err)) from err
    print(f"wrote {len(pairs)} image(s) as a COCO instance dataset: {out}")
    return 0
