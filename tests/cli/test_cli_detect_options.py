"""The detection-only flags of predict, val and export parse, with the documented defaults."""

from cvzoo.cli.main import build_parser


def test_augment_and_nms_flags_parse():
    parser = build_parser()
    args = parser.parse_args(["predict", "best.pt", "street.jpg", "--augment"])
    assert args.augment is True
    assert parser.parse_args(["predict", "best.pt", "street.jpg"]).augment is False
    assert parser.parse_args(["val", "best.pt", "--augment"]).augment is True
    args = parser.parse_args(["export", "best.pt", "--nms", "--iou", "0.5", "--max-det", "50"])
    assert (args.nms, args.conf, args.iou, args.max_det) == (True, 0.25, 0.5, 50)
    assert parser.parse_args(["export", "best.pt"]).nms is False
