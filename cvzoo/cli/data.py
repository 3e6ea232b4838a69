"""``cvzoo data check``: find problems in a detection dataset and summarise it; ``cvzoo data synth``: write
generated scenes (real Fashion-MNIST objects on textures, exact boxes and masks) in a dataset layout."""

from __future__ import annotations

import argparse

from cvzoo.cli.main import CliError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="dataset tools (check, synth)")
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


def run(args: argparse.Namespace) -> int:
    from cvzoo.data.check import check_dataset, plot_report
    from cvzoo.data.formats._common import AnnotationFormatError

    try:
        report = check_dataset(args.path, format=args.format, split=args.split)
    except AnnotationFormatError as err:
        raise CliError(str(err)) from err
    print(report.to_text(max_per_kind=args.max_examples))
    if args.plots:
        for path in plot_report(report, args.plots):
            print(f"plot: {path}")
    return 0 if report.ok else 1


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
