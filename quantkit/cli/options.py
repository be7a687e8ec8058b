"""Options shared by the commands that run variants (``study``, ``quantize``) and their tiny-model defaults."""

from __future__ import annotations

import argparse
import os

from quantkit.errors import QuantkitError
from quantkit.gguf_variant import parse_variants
from quantkit.pipelines.ideogram4 import EMBEDDED_PRESETS, TINY, TINY_RESOLUTION
from quantkit.profiles import SKIP_REASONS
from quantkit.study import DEFAULT_VARIANTS, METRICS, StudyConfig

# The embedded tiny models run a small study (the trained default with its text-capable sampler, the random one with
# the smoke sampler); real weights run the published protocol.
TINY_DEFAULTS = {"prompt_limit": 10, "preset": EMBEDDED_PRESETS[TINY], "resolution": TINY_RESOLUTION}
EMBEDDED_DEFAULTS = {name: {**TINY_DEFAULTS, "preset": preset} for name, preset in EMBEDDED_PRESETS.items()}
REAL_DEFAULTS = {"prompt_limit": None, "preset": "V4_QUALITY_48", "resolution": (1024, 1024)}


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
    defaults = EMBEDDED_DEFAULTS.get(args.model, REAL_DEFAULTS)
    return StudyConfig(
        model=args.model,
        variants=parse_variants(args.variants),
        reference=args.reference,
        metrics=_names(args.metrics),
        prompts=args.prompts,
        prompt_limit=args.prompt_limit if args.prompt_limit is not None else defaults["prompt_limit"],
        categories=_names(args.categories) if args.categories else None,
        shard=parse_shard(args.shard) if args.shard else None,
        preset=args.preset or defaults["preset"],
        resolution=parse_resolution(args.resolution) if args.resolution else defaults["resolution"],
        device=args.device or _default_device(),
        offload=args.offload,
        cache_dir=args.cache,
    )


def _names(text: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in text.split(",") if n.strip())


def parse_shard(text: str) -> tuple[int, int]:
    try:
        index, count = (int(x) for x in text.split("/"))
    except ValueError as err:
        raise QuantkitError(f"--shard {text!r}: expected I/N, e.g. 2/4") from err
    return index, count


def parse_resolution(text: str) -> tuple[int, int]:
    try:
        parts = [int(x) for x in text.lower().split("x")]
    except ValueError as err:
        raise QuantkitError(f"--resolution {text!r}: expected H or HxW in pixels") from err
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or any(p <= 0 or p % 16 for p in parts):
        raise QuantkitError(f"--resolution {text!r}: give H or HxW, each a positive multiple of 16")
    return parts[0], parts[1]


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
