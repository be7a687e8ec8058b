"""``quantkit golden record | verify | update``: the frozen reference images and scores of a model profile."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from quantkit import __version__
from quantkit.errors import CaptionError, StoreError
from quantkit.generation import generate_cached, pipeline_weights_hash, quantizer_version, recipe_id
from quantkit.pipelines.ideogram4 import (
    EMBEDDED_MODELS,
    EMBEDDED_PRESETS,
    OFFLOAD_MODES,
    PRESETS,
    TINY,
    TINY_RESOLUTION,
    SamplerSettings,
    load_pipeline,
    model_dir,
    runtime_fingerprint,
)
from quantkit.prompts.prompt import Prompt
from quantkit.store import golden
from quantkit.store.cache import ImageCache

REAL_RESOLUTION = (1024, 1024)
REFERENCE = "fp8"  # golden images are the reference variant's: what every fidelity metric compares against


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("golden", help="record, verify or update the golden reference images and scores")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for verb, help_text in (
        ("record", "generate and write a new golden set (refuses to overwrite)"),
        ("update", "regenerate and replace a golden set, printing what changed"),
    ):
        sub = verbs.add_parser(verb, help=help_text)
        sub.add_argument("--prompts", required=True, help="benchmark name (e.g. benchmark-v1) or JSON lines file")
        sub.add_argument("--prompt-limit", type=int, help="with a benchmark name: its stratified subset of this size")
        sub.add_argument("--prompt-set", help="name of the prompt set (default: golden_set_name of the prompts)")
        sub.add_argument("--scores", type=Path, help="JSON {prompt id: {metric: value}} computed by the metrics")
        sub.add_argument(
            "--preset",
            choices=sorted(PRESETS),
            help="sampler preset (tiny: TINY_TEXT, tiny-random: SMOKE, else V4_QUALITY_48)",
        )
        sub.add_argument("--resolution", type=_resolution, help="HxW (tiny: 128x128, else 1024x1024)")
        sub.add_argument("--max-text-tokens", type=int, help="text-token budget (default: the preset's)")
        _add_model_options(sub)
        _add_set_options(sub)
        sub.set_defaults(run=run)
    sub = verbs.add_parser("recipes", help="check the published recipes against golden/recipes.json")
    sub.add_argument("--update", action="store_true", help="rewrite the golden on purpose (say why in the commit)")
    sub.set_defaults(run=run_recipes)
    sub = verbs.add_parser(
        "verify", help="check golden sets' files against their manifests (default: every recorded set)"
    )
    _add_set_options(sub)
    sub.add_argument("--prompt-set", help="one set, e.g. benchmark-v1-limit10 (default: every set of the profile)")
    sub.add_argument(
        "--regenerate",
        action="store_true",
        help="also regenerate every image with the recorded settings and compare it to its reference",
    )
    sub.add_argument("--prompts", help="with --regenerate: the benchmark name or JSON lines file it was recorded from")
    sub.add_argument("--prompt-limit", type=int, help="with --regenerate and a benchmark name: the subset size")
    sub.add_argument(
        "--tolerance",
        type=int,
        default=golden.GoldenTolerance().max_pixel_difference,
        help="with --regenerate, in an environment other than the recording one: allowed pixel difference (0-255); "
        "in the recording environment the comparison is exact",
    )
    _add_model_options(sub)
    sub.set_defaults(run=run)


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="'tiny' or an Ideogram 4 folder (default: $QUANTKIT_IDEOGRAM4_DIR, else tiny)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--offload", choices=OFFLOAD_MODES, default="none")
    parser.add_argument("--cache", type=Path, help="image cache root (default: $QUANTKIT_CACHE or .quantkit-cache)")


def _add_set_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", help="model profile name (default: 'tiny' for the tiny model, else folder name)")
    parser.add_argument("--root", type=Path, default=golden.GOLDEN_ROOT, help="golden references root")


def _resolution(text: str) -> tuple[int, int]:
    try:
        height, width = (int(part) for part in text.lower().split("x"))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"resolution {text!r} is not HxW, e.g. 128x128") from err
    return height, width


def run_recipes(args: argparse.Namespace) -> int:
    from quantkit import published

    if args.update:
        changes = published.update()
        print(f"updated {published.GOLDEN}: " + ("; ".join(changes) or "no changes"))
        return 0
    changes = published.drift()
    if changes:
        print(f"{published.DRIFT} (`{published.UPDATE}`):\n  " + "\n  ".join(changes), file=sys.stderr)
        return 1
    print(f"{published.GOLDEN}: the published recipes match")
    return 0


def recorded_sets(root: Path, profile: str | None = None) -> list[golden.GoldenSet]:
    """Every golden set under ``root`` (of one model profile if given): folders holding a manifest."""
    manifests = sorted(Path(root).glob(f"{profile or '*'}/*/{golden.MANIFEST}"))
    return [golden.GoldenSet(m.parent.parent.name, m.parent.name, Path(root)) for m in manifests]


def run(args: argparse.Namespace) -> int:
    if args.verb == "verify" and args.prompt_set is None and not args.regenerate:
        return _verify_all(args)
    folder = model_dir(args.model)
    embedded = next((name for name, path in EMBEDDED_MODELS.items() if folder.resolve() == path.resolve()), None)
    profile = args.profile or (TINY if embedded == TINY else folder.name)
    if args.verb == "verify":
        if args.prompt_set is None:
            raise StoreError("--regenerate needs --prompt-set, the set to regenerate")
        target = golden.GoldenSet(profile, args.prompt_set, args.root)
        if not (target.dir / golden.MANIFEST).is_file():
            names = ", ".join(f"{s.profile}/{s.prompt_set}" for s in recorded_sets(args.root)) or "none"
            raise StoreError(f"no {target}; recorded sets: {names}")
        return _verify(args, target)
    prompts = read_prompts(args.prompts, args.prompt_limit)
    target = golden.GoldenSet(profile, args.prompt_set or golden_set_name(args.prompts, args.prompt_limit), args.root)
    settings = PRESETS[args.preset or EMBEDDED_PRESETS.get(embedded or "", "V4_QUALITY_48")]
    if args.max_text_tokens:
        settings = dataclasses.replace(settings, max_sequence_length=args.max_text_tokens)
    resolution = args.resolution or (TINY_RESOLUTION if embedded else REAL_RESOLUTION)
    scores = json.loads(args.scores.read_text(encoding="utf-8")) if args.scores else {}
    images, record = _generate(args, prompts, settings, resolution)
    if args.verb == "record":
        golden.record(target, images, scores, **record)
        print(f"recorded {target}: {len(images)} images")
    else:
        change = golden.update(target, images, scores, **record)
        print(f"updated {target}: {change.summary()}")
    return 0


def _verify_all(args: argparse.Namespace) -> int:
    """``golden verify`` with no set: every recorded set (of ``--profile`` if given); all problems, then exit 1."""
    sets = recorded_sets(args.root, args.profile)
    if not sets:
        raise StoreError(f"no golden sets under {args.root}" + (f" for profile {args.profile}" if args.profile else ""))
    failed = 0
    for target in sets:
        try:
            manifest = golden.verify(target)
        except StoreError as err:
            print(f"{target}: {err}", file=sys.stderr)
            failed += 1
        else:
            print(f"{target}: {len(manifest['files'])} files match the manifest")
    return 1 if failed else 0


def _verify(args: argparse.Namespace, target: golden.GoldenSet) -> int:
    manifest = golden.verify(target)
    print(f"{target}: {len(manifest['files'])} files match the manifest")
    if not args.regenerate:
        return 0
    if args.prompts is None:
        raise StoreError("--regenerate needs --prompts, the prompt set the golden set was recorded from")
    recorded = manifest["settings"]
    settings = SamplerSettings.from_dict(recorded["sampler"])
    prompts = read_prompts(args.prompts, args.prompt_limit)
    images, made = _generate(args, prompts, settings, tuple(recorded["resolution"]))
    if made["weights_hash"] != manifest["weights_hash"]:
        raise StoreError(
            f"{target} was recorded from weights {manifest['weights_hash'][:12]}, --model has "
            f"{made['weights_hash'][:12]}; regenerate with the recorded model"
        )
    tolerance = dataclasses.replace(golden.GoldenTolerance(), max_pixel_difference=args.tolerance)
    check = golden.compare(target, images, tolerance=tolerance)
    if not check.passed:
        print(f"{target}: {check.summary()}:\n  " + "\n  ".join(check.problems), file=sys.stderr)
        return 1
    print(f"{target}: {len(images)} regenerated images match their references ({check.summary()})")
    return 0


def _generate(
    args: argparse.Namespace, prompts: list[Prompt], settings: SamplerSettings, resolution: tuple[int, int]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The FP8 reference's images of ``prompts`` (through the cache) and what the manifest records about them."""
    from quantkit.study import apply_recipe, recipe_for

    cache = ImageCache(args.cache)
    pipe = load_pipeline(args.model, device=args.device, offload=args.offload)
    recipe = recipe_for(REFERENCE)
    apply_recipe(pipe, recipe)
    generated = generate_cached(pipe, prompts, settings, recipe=recipe, resolution=resolution, cache=cache)
    record = {
        "settings": {
            "sampler": settings.to_dict(),
            "resolution": list(resolution),
            "recipe": recipe_id(recipe),
            "runtime": json.loads(runtime_fingerprint(pipe)),
        },
        "weights_hash": pipeline_weights_hash(pipe, cache),
        "code_version": {"quantkit": __version__, "quantizer": quantizer_version()},
    }
    return {g.prompt_id: g.image for g in generated}, record


def golden_set_name(prompts: str, limit: int | None) -> str:
    """The golden set of a prompt selection: the benchmark or file name, and the subset size if any."""
    return Path(prompts).stem + (f"-limit{limit}" if limit else "")


def read_prompts(source: str | Path, limit: int | None = None) -> list[Prompt]:
    """A benchmark by name (its evaluation split, with its stratified ``limit`` subset), or a prompt set file as
    JSON lines: ``id`` and ``caption`` (the canonical JSON caption string) are required; ``category``, ``raw``,
    ``texts``, ``seed`` are optional."""
    path = Path(source)
    if not path.suffix:
        from quantkit.prompts.benchmark import load_benchmark

        return load_benchmark(str(source), limit=limit, split="evaluation")  # the prompts a study evaluates
    prompts = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise CaptionError(f"cannot read prompt set {path}: {err}") from err
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            caption = row["caption"]
            if not isinstance(caption, str):
                raise TypeError("caption must be the canonical JSON caption as a string")
            prompts.append(
                Prompt(
                    id=str(row["id"]),
                    category=row.get("category", ""),
                    raw=row.get("raw", ""),
                    caption=caption,
                    texts=tuple(row.get("texts", ())),
                    seed=int(row.get("seed", -1)),
                )
            )
        except (ValueError, KeyError, TypeError) as err:
            raise CaptionError(f"{path}:{number}: bad prompt line ({err!r})") from err
    if not prompts:
        raise CaptionError(f"{path}: no prompts")
    return prompts
