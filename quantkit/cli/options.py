"""Options shared by the commands that run variants (``study``, ``quantize``, ``ablate``); their per-model defaults
live in the library (:meth:`quantkit.study.StudyConfig.for_model`)."""

from __future__ import annotations

import argparse
import os

from quantkit.gguf_variant import parse_variants
from quantkit.option_text import parse_names, parse_resolution, parse_shard
from quantkit.profiles import SKIP_REASONS
from quantkit.study import DEFAULT_VARIANTS, METRICS, StudyConfig


def add_run_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("what to run")
    group.add_argument(
        "--model",
        default=os.environ.get("QUANTKIT_IDEOGRAM4_DIR") or "tiny",
        help="'tiny' (the embedded test model), 'tiny-random' or a local diffusers-layout Ideogram 4 folder "
        "(default: $QUANTKIT_IDEOGRAM4_DIR, else tiny)",
    )
    group.add_argument("--variants", default=",".join(DEFAULT_VARIANTS), help="comma-separated (default: %(default)s)")
    group.add_argument("--reference", default="fp8", help="variant the others are compared with (default: %(default)s)")
    group.add_argument("--metrics", default=",".join(METRICS), help="comma-separated (default: all)")
    group.add_argument(
        "--prompts", default="benchmark-v1", help="prompt set name or .jsonl path (default: %(default)s)"
    )
    group.add_argument("--prompt-limit", type=int, help="stratified subset size (default: 10 on tiny, all otherwise)")
    group.add_argument("--categories", help="comma-separated prompt categories to keep")
    group.add_argument("--shard", help="I/N: keep the I-th of N interleaved slices of the prompts (CI sharding)")
    group.add_argument(
        "--preset", help="sampler preset (default: TINY_TEXT on tiny, SMOKE on tiny-random, V4_QUALITY_48 otherwise)"
    )
    group.add_argument("--resolution", help="H or HxW in pixels (default: 128 on tiny, 1024 otherwise)")
    group.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    group.add_argument("--offload", default="none", choices=("none", "text_encoder", "model"))
    group.add_argument(
        "--cache", default=None, help="image and score cache (default: $QUANTKIT_CACHE or .quantkit-cache)"
    )
    group.add_argument("--n-resamples", type=int, default=10_000, help="bootstrap resamples (default: %(default)s)")
    group.add_argument("--quiet", action="store_true", help="no progress bars or status lines")


def add_allow_skip(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--allow-skip",
        action="append",
        default=[],
        metavar="REASON",
        help=f"let gates skipped for this reason pass, besides the profile's allow_skip (repeatable): "
        f"{'; '.join(SKIP_REASONS)}",
    )


def config_from_args(args: argparse.Namespace) -> StudyConfig:
    return StudyConfig.for_model(
        args.model,
        variants=parse_variants(args.variants),
        reference=args.reference,
        metrics=parse_names(args.metrics),
        prompts=args.prompts,
        prompt_limit=args.prompt_limit,
        categories=parse_names(args.categories) if args.categories else None,
        shard=parse_shard(args.shard) if args.shard else None,
        preset=args.preset,
        resolution=parse_resolution(args.resolution) if args.resolution else None,
        device=args.device,
        offload=args.offload,
        cache_dir=args.cache,
    )
