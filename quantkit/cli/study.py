"""``quantkit study``: quantize every variant, generate, score, take paired CIs, apply the gates, write the report."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from quantkit.cli import EXIT_USAGE
from quantkit.cli.options import add_allow_skip, add_run_options, config_from_args
from quantkit.errors import Interrupted, UsageError


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "study",
        help="run the whole study: quantize, generate, score, gate, report",
        description=(
            "Quantize every variant of the model, generate the benchmark prompts with each, score every image, "
            "compare each variant with the reference through paired bootstrap CIs, apply a gate profile, print the "
            "study table and write a report folder (report.md, index.html, scores.json). Exits 1 if a gate fails "
            "or is skipped for a reason neither the profile nor --allow-skip allows, 2 on a usage or input error, "
            "130 when interrupted (a rerun resumes from the cache). With no --model it runs on the embedded tiny "
            "Ideogram 4, which needs no weights."
        ),
    )
    add_run_options(parser)
    parser.add_argument(
        "--gates",
        default=None,
        help="gate profile name or TOML path (default: tiny for the tiny model, ideogram4 otherwise)",
    )
    parser.add_argument("--no-gates", action="store_true", help="score only (CI shards); gates run after the merge")
    add_allow_skip(parser)
    parser.add_argument("--scores-out", type=Path, help="also write the per-prompt score table here (JSON)")
    parser.add_argument("--out", type=Path, default=Path("quantkit-out"), help="report folder (default: %(default)s)")
    add_history_options(parser)
    add_baseline_options(parser)
    parser.set_defaults(run=run)


def add_history_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--history",
        type=Path,
        default=None,
        help="quality history (SQLite) this run is appended to (default: history.sqlite in the cache folder)",
    )
    group.add_argument("--no-history", action="store_true", help="do not record this run in the quality history")


def add_baseline_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("merge gate (quantkit.baseline, quantkit.merge_gate)")
    group.add_argument(
        "--save-baseline",
        type=Path,
        metavar="DIR",
        help="after the study, save every variant's image keys, pixel hashes, scores and images here (run on main)",
    )
    group.add_argument(
        "--no-baseline-images",
        action="store_true",
        help="with --save-baseline: leave the PNGs out (real model); --baseline then reads main's from the cache",
    )
    group.add_argument(
        "--baseline",
        type=Path,
        metavar="DIR",
        help="judge against main's baseline: unchanged variants cost nothing, changed ones face the [baseline] gates",
    )
    group.add_argument(
        "--sequential",
        action="store_true",
        help="take the prompts in stratified batches and stop once every gate is decided (alpha spending)",
    )
    group.add_argument(
        "--looks", type=int, default=5, help="--sequential: number of batches, at most (default: %(default)s)"
    )


def run(args: argparse.Namespace) -> int:
    from quantkit.atomic import check_writable_dir
    from quantkit.profiles import check_skip_reasons, load_profile
    from quantkit.report.build import build_report
    from quantkit.study import Study

    start = time.perf_counter()
    config = config_from_args(args)
    gated = bool(args.baseline or args.sequential)
    if gated and (args.no_gates or args.save_baseline):
        raise UsageError(
            "--baseline/--sequential decide gates on part of the work: not with --no-gates or --save-baseline"
        )
    profile = None if args.no_gates else load_profile(args.gates or config.gate_profile)
    allow_skip = check_skip_reasons(args.allow_skip, "--allow-skip")
    check_writable_dir(args.out, "report folder (--out)")
    if args.scores_out:
        check_writable_dir(args.scores_out.parent, "folder of --scores-out")
    study = Study(config, progress=not args.quiet)
    check_writable_dir(study.cache.root, "cache folder ($QUANTKIT_CACHE or --cache)")
    if gated:
        return _run_gated(args, study, profile, allow_skip)
    try:
        _say(
            args,
            f"quantkit study: model {config.model}, {len(study.prompts)} prompts from {config.prompts}, "
            f"variants {', '.join(config.variants)} (reference {config.reference}), sampler {config.preset} "
            f"at {config.resolution[0]}x{config.resolution[1]}",
        )
        for name in config.variants:
            variant = study.variant(name)
            report = variant.report
            _say(
                args,
                f"  {name}: {len(report.quantized)} linears quantized, {len(report.kept)} kept, "
                f"{report.footprint_ratio:.2f}x smaller than bf16 on the quantized linears",
            )
            study.scores(name)
    except KeyboardInterrupt as err:
        raise Interrupted(f"{study.cache.stored} images cached; rerun resumes") from err
    if args.scores_out:
        study.table.save(args.scores_out)
    if args.save_baseline:
        from quantkit.baseline import save_baseline

        _say(args, f"baseline: {save_baseline(study, args.save_baseline, images=not args.no_baseline_images)}")
    history = None if args.no_history else _recording(args, study, start)
    report = build_report(
        study, profile, out_dir=args.out, n_resamples=args.n_resamples, allow_skip=allow_skip, history=history
    )
    print(report.printed())
    _say(args, f"report: {report.index}  ({time.perf_counter() - start:.1f} s)")
    unrecorded = history is not None and history.error is not None
    if unrecorded:  # the report is written all the same
        print(f"quantkit study: error: {history.error}", file=sys.stderr)
    elif history is not None:
        _say(args, f"history: {history.history.path}")
    if report.failed:
        print(f"quantkit study: {report.failed} gate(s) failed", file=sys.stderr)
        return 1
    return EXIT_USAGE if unrecorded else 0


def _recording(args: argparse.Namespace, study: Any, start: float) -> Any:
    """The history link of this run: where it goes and how many images it generated or found cached."""
    from quantkit.history import History, Recording, default_path

    images = [g for name in study.config.variants for g in study.images(name).values()]
    cached = sum(1 for g in images if g.cached)
    return Recording(
        History(args.history or default_path(study.cache.root)),
        model=study.config.model,
        settings=study.config.settings_dict(),
        images_generated=len(images) - cached,
        images_cached=cached,
        started=start,
    )


def _run_gated(args: argparse.Namespace, study: Any, profile: Any, allow_skip: tuple[str, ...]) -> int:
    """``--baseline`` / ``--sequential``: print each variant's status, the verdicts and the cost; save them as JSON."""
    from quantkit.atomic import write_json
    from quantkit.baseline import load_baseline
    from quantkit.merge_gate import run_gated

    baseline = load_baseline(args.baseline) if args.baseline else None
    try:
        outcome = run_gated(
            study,
            profile,
            baseline,
            sequential=args.sequential,
            looks=args.looks,
            n_resamples=args.n_resamples,
            allow_skip=allow_skip,
        )
    except KeyboardInterrupt as err:
        raise Interrupted(f"{study.cache.stored} images cached; rerun resumes") from err
    if args.scores_out:
        study.table.save(args.scores_out)
    lines = outcome.lines()
    print("\n".join(lines))
    write_json(
        args.out / "merge-gate.json",
        {
            "status": outcome.status,
            "failed": outcome.failed,
            "images_generated": outcome.images_generated,
            "calibration_images": outcome.calibration_images,
            "prompts_used": outcome.prompts_used,
            "prompts_total": outcome.prompts_total,
            "seconds": outcome.seconds,
            "lines": lines,
        },
    )
    if outcome.failed:
        print(f"quantkit study: {outcome.failed} gate(s) failed", file=sys.stderr)
        return 1
    return 0


def _say(args: argparse.Namespace, text: str) -> None:
    if not args.quiet:
        print(text, file=sys.stderr)
