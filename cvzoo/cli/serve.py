"""``cvzoo serve``: predictions over HTTP (JSON API + a web page to drop images on); Ctrl-C stops it."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve", help="serve a model over HTTP: POST /predict (JSON) and a web page at /",
        epilog="example: cvzoo serve runs/detect/exp/weights/best.pt --port 8000  (then open http://127.0.0.1:8000)",
    )
    parser.add_argument("weights", help="a cvzoo training checkpoint or a file cvzoo exported")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--backend", choices=["torch", "onnxruntime", "openvino", "torchscript"],
                        help="runtime for a checkpoint (default torch; an exported file runs in its own)")
    parser.add_argument("--threads", type=int, default=0, help="exported files: intra-op threads (0: default)")
    parser.add_argument("--topk", type=int, default=5, help="classification: classes per image")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cvzoo.cli.main import CliError
    from cvzoo.server import serve

    try:
        serve(args.weights, args.host, args.port, args.backend, args.threads, args.topk)
    except (FileNotFoundError, ValueError, RuntimeError, ImportError) as err:
        raise CliError(str(err)) from err
    return 0
