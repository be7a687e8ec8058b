"""``quantkit quantize``: quantize one variant of a model and save it (INT8/FP8/NF4 safetensors, GGUF)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from quantkit.cli.options import add_run_options, config_from_args
from quantkit.errors import Interrupted
from quantkit.recipes import known_variants


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "quantize",
        help="quantize one variant and save it next to its recipe.json",
        description=(
            "Quantize both transformers of the model with a variant's recipe (INT8 W8A8 is calibrated on the "
            "benchmark's calibration prompts first), print the skip report (every linear: kept or quantized, why, "
            "bytes) and save the variant: INT8/FP8/NF4 as safetensors + recipe.json, Q4_K/Q8_0 as one .gguf per "
            "transformer copy (-cond, -uncond) in ComfyUI's Ideogram 4 layout, loadable by ComfyUI-GGUF and by "
            "quantkit.io.gguf.load_transformer (diffusers' GGUF classes)."
        ),
    )
    add_run_options(parser)
    parser.add_argument("--variant", required=True, help=f"one of {', '.join(known_variants())}")
    parser.add_argument("--out", type=Path, required=True, help="folder to save the variant in")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from quantkit.atomic import check_writable_dir
    from quantkit.study import Study
    from quantkit.variants import save_variant

    args.variants = f"{args.variant},fp8" if args.variant != "fp8" else "fp8"
    study = Study(config_from_args(args), progress=not args.quiet)
    check_writable_dir(args.out, "variant folder (--out)")
    check_writable_dir(study.cache.root, "cache folder ($QUANTKIT_CACHE or --cache)")
    try:
        variant = study.variant(args.variant)
    except KeyboardInterrupt as err:
        raise Interrupted("nothing saved; the calibration, once finished, is cached") from err
    print(variant.report.format_table())
    save_variant(variant.pipeline, variant.recipe, args.out)
    files = ", ".join(
        sorted(p.name for p in args.out.iterdir() if p.name.startswith("ideogram4-") or p.name == "recipe.json")
    )
    print(f"saved {args.variant} to {args.out}: {files}", file=sys.stderr)
    return 0
