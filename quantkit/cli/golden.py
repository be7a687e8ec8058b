"""``quantkit golden record | verify | update | recipes | plan``: the frozen reference images and scores of a model
profile, the published recipes, and the default study's INT8 plan.

A shell over :mod:`quantkit.golden`: the configuration is the study's (:meth:`StudyConfig.for_model`), except that
a golden set holds every prompt of its source unless ``--prompt-limit`` says otherwise, and runs on the CPU unless
``--device`` says otherwise.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from quantkit import golden as workflow
from quantkit.errors import StoreError
from quantkit.option_text import parse_resolution
from quantkit.pipelines.ideogram4 import OFFLOAD_MODES, PRESETS
from quantkit.prompts.benchmark import read_prompts
from quantkit.store import golden
from quantkit.study import StudyConfig


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
        sub.add_argument("--resolution", help="H or HxW (tiny: 128x128, else 1024x1024)")
        sub.add_argument("--max-text-tokens", type=int, help="text-token budget (default: the preset's)")
        _add_model_options(sub)
        _add_set_options(sub)
        sub.set_defaults(run=run)
    sub = verbs.add_parser("recipes", help="check the published recipes against golden/recipes.json")
    sub.add_argument("--update", action="store_true", help="rewrite the golden on purpose (say why in the commit)")
    sub.set_defaults(run=run_recipes)
    sub = verbs.add_parser("plan", help="compare the default study's INT8 plan with its golden copy (golden/plans)")
    sub.add_argument("--update", action="store_true", help="rewrite the golden plan on purpose (say why in the commit)")
    _add_model_options(sub)
    sub.set_defaults(run=run_plan)
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


def run_plan(args: argparse.Namespace) -> int:
    from quantkit import int8_plan
    from quantkit.study import Study

    overrides = {"device": args.device, "offload": args.offload}
    if args.cache:
        overrides["cache_dir"] = str(args.cache)
    study = Study(StudyConfig.for_model(args.model, **overrides))
    if args.update:
        print(f"wrote {int8_plan.record(study)}")
        return 0
    path = int8_plan.golden_path(study.config)
    if not path.is_file():
        print(f"no golden INT8 plan at {path}: record it with quantkit golden plan --update", file=sys.stderr)
        return 1
    problems = int8_plan.problems(study)
    print("\n".join(problems) if problems else f"{path}: the INT8 plan matches", file=sys.stderr if problems else None)
    return 1 if problems else 0


def run(args: argparse.Namespace) -> int:
    if args.verb == "verify" and args.prompt_set is None and not args.regenerate:
        return _verify_all(args)
    config = _config(args)
    profile = args.profile or workflow.profile_name(config.model)
    if args.verb == "verify":
        if args.prompt_set is None:
            raise StoreError("--regenerate needs --prompt-set, the set to regenerate")
        target = golden.GoldenSet(profile, args.prompt_set, args.root)
        if not (target.dir / golden.MANIFEST).is_file():
            names = ", ".join(f"{s.profile}/{s.prompt_set}" for s in workflow.recorded_sets(args.root)) or "none"
            raise StoreError(f"no {target}; recorded sets: {names}")
        return _verify(args, config, target)
    prompts = read_prompts(args.prompts, args.prompt_limit)
    name = args.prompt_set or workflow.golden_set_name(args.prompts, args.prompt_limit)
    target = golden.GoldenSet(profile, name, args.root)
    settings = PRESETS[config.preset]
    if args.max_text_tokens:
        settings = dataclasses.replace(settings, max_sequence_length=args.max_text_tokens)
    scores = json.loads(args.scores.read_text(encoding="utf-8")) if args.scores else {}
    if args.verb == "record":
        manifest = workflow.record(target, config, prompts, settings=settings, scores=scores)
        print(f"recorded {target}: {len(manifest['prompt_ids'])} images")
    else:
        change = workflow.update(target, config, prompts, settings=settings, scores=scores)
        print(f"updated {target}: {change.summary()}")
    return 0


def _config(args: argparse.Namespace) -> StudyConfig:
    """The study configuration of the reference (every prompt of the source unless --prompt-limit is given)."""
    config = StudyConfig.for_model(
        args.model,
        variants=(workflow.REFERENCE,),
        reference=workflow.REFERENCE,
        prompts=args.prompts,
        preset=getattr(args, "preset", None),
        resolution=parse_resolution(args.resolution) if getattr(args, "resolution", None) else None,
        device=args.device,
        offload=args.offload,
        cache_dir=args.cache and str(args.cache),
    )
    return dataclasses.replace(config, prompt_limit=args.prompt_limit)


def _verify_all(args: argparse.Namespace) -> int:
    """``golden verify`` with no set: every recorded set (of ``--profile`` if given); all problems, then exit 1."""
    sets = workflow.recorded_sets(args.root, args.profile)
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


def _verify(args: argparse.Namespace, config: StudyConfig, target: golden.GoldenSet) -> int:
    manifest = golden.verify(target)
    print(f"{target}: {len(manifest['files'])} files match the manifest")
    if not args.regenerate:
        return 0
    if args.prompts is None:
        raise StoreError("--regenerate needs --prompts, the prompt set the golden set was recorded from")
    tolerance = dataclasses.replace(golden.GoldenTolerance(), max_pixel_difference=args.tolerance)
    prompts = read_prompts(args.prompts, args.prompt_limit)
    check = workflow.regenerate(target, config, prompts, tolerance=tolerance)
    if not check.passed:
        print(f"{target}: {check.summary()}:\n  " + "\n  ".join(check.problems), file=sys.stderr)
        return 1
    print(f"{target}: {len(prompts)} regenerated images match their references ({check.summary()})")
    return 0
