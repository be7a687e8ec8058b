"""``quantkit study``: quantize every variant, generate, score, take paired CIs, apply the gates, write the report."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from quantkit.cli.options import add_run_options, config_from_args


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "study",
        help="run the whole study: quantize, generate, score, gate, report",
        description=(
            "Quantize every variant of the model, generate the benchmark prompts with each, score every image, "
            "compare each variant with the reference through paired bootstrap CIs, apply a gate profile, print the "
            "study table and write a report folder (report.md, index.html, scores.json). Exits 1 if a gate fails. "
            "With no --model it runs on the embedded tiny Ideogram 4, which needs no weights."
        ),
    )
    add_run_options(parser)
    parser.add_argument(
        "--gates",
        default=None,
        help="gate profile name or TOML path (default: tiny for the tiny model, ideogram4 otherwise)",
    )
    parser.add_argument("--no-gates", action="store_true", help="score only (CI shards); gates run after the merge")
    parser.add_argument("--scores-out", type=Path, help="also write the per-prompt score table here (JSON)")
    parser.add_argument("--out", type=Path, default=Path("quantkit-out"), help="report folder (default: %(default)s)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from quantkit.profiles import load_profile
    from quantkit.report.build import build_report
    from quantkit.study import Study

    start = time.perf_counter()
    config = config_from_args(args)
    profile = None if args.no_gates else load_profile(args.gates or ("tiny" if config.model == "tiny" else "ideogram4"))
    study = Study(config, progress=not args.quiet)
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
    if args.scores_out:
        study.table.save(args.scores_out)
    report = build_report(study, profile, out_dir=args.out, n_resamples=args.n_resamples)
    print(report.table_text)
    for line in report.verdict_lines:
        print(f"{line[0].upper():7s} {line[1]}")
    _say(args, f"report: {report.index}  ({time.perf_counter() - start:.1f} s)")
    if report.failed:
        print(f"quantkit study: {report.failed} gate(s) failed", file=sys.stderr)
        return 1
    return 0


def _say(args: argparse.Namespace, text: str) -> None:
    if not args.quiet:
        print(text, file=sys.stderr)
