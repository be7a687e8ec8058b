"""``quantkit plan``: every recipe's decisions, disk bytes and 24 GB memory plan on the full-size model, no weights."""

from __future__ import annotations

import argparse

from quantkit.option_text import parse_resolution
from quantkit.recipes import default_variants


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "plan",
        help="dry-run every recipe on the full-size Ideogram 4 (meta device): layers, disk bytes, 3090 memory",
        description=(
            "Instantiate both full-size Ideogram 4 transformers on the meta device (no weights needed) and run each "
            "variant's recipe decisions without quantizing: layers quantized and kept (with the reason), on-disk "
            "bytes of both copies against the published sizes, and peak memory on a 24 GB RTX 3090 per --offload "
            "mode at 1024x1024 with the full text-token budget."
        ),
    )
    parser.add_argument(
        "--variants", default=",".join(default_variants()), help="comma-separated (default: %(default)s)"
    )
    parser.add_argument(
        "--protect", help="INT8 protect=N or 'auto' (needs calibration statistics: the plan says which)"
    )
    parser.add_argument("--resolution", default="1024", help="H or HxW (default: %(default)s)")
    parser.add_argument("--text-tokens", type=int, default=2048, help="text-token budget (default: %(default)s)")
    parser.add_argument("--gpu-gib", type=float, default=24.0, help="GPU memory in GiB (default: RTX 3090, 24)")
    parser.add_argument("--layers", action="store_true", help="also print every layer of every variant")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from quantkit.plan import format_plan, plan

    protect = None if args.protect is None else (args.protect if args.protect == "auto" else int(args.protect))
    plans = plan(
        tuple(v.strip() for v in args.variants.split(",") if v.strip()),
        protect=protect,
        resolution=parse_resolution(args.resolution),
        text_tokens=args.text_tokens,
        gpu_gib=args.gpu_gib,
    )
    print(format_plan(plans, layers=args.layers))
    return 0
