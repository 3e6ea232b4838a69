"""``cvzoo export``: ONNX (dynamic batch, checked in onnxruntime, optionally with NMS inside) and TorchScript."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export", help="export a checkpoint to ONNX / TorchScript",
        epilog="example: cvzoo export runs/classify/exp/weights/best.pt --format all",
    )
    parser.add_argument("weights", help="a cvzoo training checkpoint")
    parser.add_argument("--format", default="onnx",
                        help="onnx | onnx-int8 | openvino | openvino-int8 | torchscript (comma-separated for several) "
                             "| all (onnx, torchscript); int8 and OpenVINO are made from the ONNX file, written too")
    parser.add_argument("--out", help="output path without suffix (default: next to the checkpoint)")
    parser.add_argument("--batch", type=int, default=1, help="example batch size (the ONNX batch is dynamic)")
    parser.add_argument("--imgsz", type=int, help="input size (default: the training size)")
    parser.add_argument("--opset", type=int, help="ONNX opset (default: 18 with the dynamo exporter, 17 with torchscript)")
    parser.add_argument("--onnx-exporter", choices=("dynamo", "torchscript"),
                        help="ONNX exporter (default: the model's; torch.export-based unless the model declares "
                             "the TorchScript tracer, e.g. NMS in the graph, R-CNN)")
    parser.add_argument("--no-check", action="store_true", help="skip the onnxruntime / reload parity check")
    parser.add_argument("--nms", action="store_true",
                        help="detection, ONNX: NMS inside the graph; outputs boxes, scores, labels, num_dets")
    parser.add_argument("--conf", type=float, default=0.25, help="with --nms: confidence threshold")
    parser.add_argument("--iou", type=float, default=0.7, help="with --nms: NMS IoU threshold")
    parser.add_argument("--max-det", type=int, default=300, help="with --nms: detections per image (padded)")
    parser.add_argument("--calib", type=int, default=64, help="int8: calibration images")
    parser.add_argument("--calib-split", default="train", help="int8: the split they come from")
    parser.add_argument("--calib-data", help="int8: their dataset (default: the training data)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cvzoo.api import export
    from cvzoo.cli.main import CliError

    try:
        paths = export(args.weights, format=args.format, out=args.out, batch=args.batch, imgsz=args.imgsz,
                       check=not args.no_check, opset=args.opset, nms=args.nms, conf=args.conf, iou=args.iou,
                       max_det=args.max_det, calib=args.calib, calib_split=args.calib_split,
                       calib_data=args.calib_data, onnx_exporter=args.onnx_exporter)
    except (FileNotFoundError, ValueError, RuntimeError, ImportError) as err:
        raise CliError(str(err)) from err
    for path in paths:
        print(f"exported {path}")
    return 0
