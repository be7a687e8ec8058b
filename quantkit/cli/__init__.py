"""The ``quantkit`` command: one subcommand module per verb, each with ``add_parser`` and ``run``.

Exit codes: 0 success, 1 a gate failed (or a verification found differences), 2 a usage or input error (one
line on stderr, never a traceback: a typo, a damaged --model, an unwritable --out or cache, a full disk), 130 an
interrupted run (Ctrl-C; what was cached is kept and a rerun resumes).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from quantkit.errors import QuantkitError
from quantkit.quiet import silence_third_party_noise

SUBCOMMANDS: tuple[str, ...] = (
    "study",
    "quantize",
    "report",
    "golden",
    "prompts",
    "plan",
    "ablate",
    "history",
    "sensitivity",
)
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


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
        return EXIT_USAGE
    except OSError as err:  # the environment refused something quantkit did not wrap: still one line
        where = f" ({err.filename})" if err.filename else ""
        print(f"quantkit {args.command}: error: {err.strerror or err}{where}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as err:
        print(f"quantkit {args.command}: interrupted" + (f": {err}" if str(err) else ""), file=sys.stderr)
        return EXIT_INTERRUPTED
