"""Entry point of the ``cvzoo`` console script.

Each sub-command lives in its own module of this package and exposes ``register(subparsers)``, which
adds its parser and sets ``func(args) -> int``. Modules are imported only when the CLI starts.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from cvzoo import __version__
from cvzoo.cli._common import CliError

# Module names under cvzoo.cli, in the order `cvzoo --help` lists them.
COMMAND_MODULES = (
    "train",
    "val",
    "predict",
    "export",
    "models",
    "info",
    "convert",
    "data",
    "calibrate",
    "features",
    "benchmark",
    "serve",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cvzoo",
        description="Deep learning for image processing: train, evaluate, predict and export.",
    )
    parser.add_argument("--version", action="version", version=f"cvzoo {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"cvzoo.cli.{name}")
        except ModuleNotFoundError as err:
            if err.name == f"cvzoo.cli.{name}":
                continue  # command not built yet in this checkout
            raise
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (CliError, FileNotFoundError, ValueError) as err:
        # Bad input (a missing file, an unknown name, a malformed annotation...) is reported in one
        # line; CVZOO_DEBUG=1 shows the traceback.
        if os.environ.get("CVZOO_DEBUG"):
            raise
        message = str(err) if not isinstance(err, KeyError) else str(err.args[0])
        print(f"cvzoo {args.command}: error: {message}", file=sys.stderr)
        return 2


__all__ = ["CliError", "build_parser", "main"]

if __name__ == "__main__":
    sys.exit(main())
