"""``quantkit ablate int8|prompts``: the paper's two ablations on the model, through the study's cache."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

from quantkit.cli.options import add_run_options, config_from_args


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("ablate", help="the paper's ablations: int8 (recipe parts, protection ladder), prompts")
    kinds = parser.add_subparsers(dest="ablation", required=True, metavar="ABLATION")
    int8 = kinds.add_parser(
        "int8",
        help="naive W8A8, SmoothQuant only, protection only, both, and the protection ladder vs the reference",
        description=(
            "Quantize the model with each part of the INT8 recipe (naive W8A8, SmoothQuant only, protection only, "
            "both) and with the protection ladder (k = 0, 1/4, 1/2, all of the FFN down-projections per branch, "
            "the real model's 8 and 17 of 34 mapped proportionally), score every arm against the reference with "
            "paired CIs, print the table and write ablate-int8.md and ablate-int8.png."
        ),
    )
    add_run_options(int8)
    int8.add_argument("--out", type=Path, default=Path("quantkit-out"), help="report folder (default: %(default)s)")
    int8.set_defaults(run=run_int8)
    prompts = kinds.add_parser(
        "prompts",
        help="raw strings vs JSON captions: OCR and quality per variant, paired",
        description=(
            "Generate the same prompts (ids, seeds) from their raw strings and from their JSON captions with every "
            "variant; print OCR exact match / edit distance and quality per variant with the paired difference."
        ),
    )
    add_run_options(prompts)
    prompts.set_defaults(run=run_prompts)


def run_int8(args: argparse.Namespace) -> int:
    from quantkit.ablate import run_int8 as ablate

    start = time.perf_counter()
    config = dataclasses.replace(config_from_args(args), variants=(args.reference,))
    print(ablate(config, out_dir=args.out, n_resamples=args.n_resamples, progress=not args.quiet))
    _say(args, f"report: {args.out / 'ablate-int8.md'} ({time.perf_counter() - start:.1f} s)")
    return 0


def run_prompts(args: argparse.Namespace) -> int:
    from quantkit.ablate import run_prompts as ablate

    start = time.perf_counter()
    print(ablate(config_from_args(args), n_resamples=args.n_resamples, progress=not args.quiet))
    _say(args, f"({time.perf_counter() - start:.1f} s)")
    return 0


def _say(args: argparse.Namespace, text: str) -> None:
    if not args.quiet:
        print(text, file=sys.stderr)
