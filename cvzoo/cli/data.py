"""``cvzoo data check``: find problems in a detection dataset and summarise it."""

from __future__ import annotations

import argparse

from cvzoo.cli.main import CliError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="dataset tools (check)")
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
