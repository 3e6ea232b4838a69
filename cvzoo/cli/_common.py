"""Arguments shared by the run-oriented sub-commands (train, val, predict, export)."""

from __future__ import annotations

import argparse


class CliError(Exception):
    """An error the CLI reports as one line, without a traceback (bad input, missing file, ...)."""


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="YAML", help="recipe file (keys of cvzoo.config.Config)")
    parser.add_argument(
        "--set", dest="overrides", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
        help="override config keys, e.g. --set optim.lr=0.1 train.amp=true (repeatable)",
    )


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps (default: auto)")
