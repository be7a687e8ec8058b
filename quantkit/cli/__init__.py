"""The ``quantkit`` command: one subcommand module per verb, each with ``add_parser`` and ``run``."""

from __future__ import annotations

import argparse
import importlib
import sys

from quantkit.errors import QuantkitError
from quantkit.quiet import silence_third_party_noise

SUBCOMMANDS: tuple[str, ...] = ("study", "quantize", "report", "golden", "plan", "ablate")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="quantkit",
        description="Quantize Ideogram 4 and gate the variants on quality with paired bootstrap intervals.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"quantkit.cli.{name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    silence_third_party_noise()
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except QuantkitError as err:
        print(f"quantkit {args.command}: error: {err}", file=sys.stderr)
        return 2
