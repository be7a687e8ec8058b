"""``quantkit report``: merge per-prompt score files (CI shards) and write the table, gates and report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from quantkit.cli.options import add_allow_skip


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "report",
        help="merge score files from CI shards, apply the gates, write the report",
        description=(
            "Merge the per-prompt score tables written by `quantkit study --scores-out` on several runners (a "
            "prompt scored twice with different values is an error), take the paired CIs on the merged table, "
            "apply a gate profile and write report.md / index.html / scores.json. Exits 1 if a gate fails or is "
            "skipped for a reason neither the profile nor --allow-skip allows."
        ),
    )
    parser.add_argument("scores", nargs="+", type=Path, help="score table JSON files")
    parser.add_argument(
        "--reference", default="fp8", help="variant the others are compared with (default: %(default)s)"
    )
    parser.add_argument("--gates", default=None, help="gate profile name or TOML path (default: no gates)")
    add_allow_skip(parser)
    parser.add_argument("--n-resamples", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=Path("quantkit-out/report"), help="default: %(default)s")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from quantkit.atomic import check_writable_dir
    from quantkit.profiles import check_skip_reasons, load_profile
    from quantkit.report.build import render
    from quantkit.scores import ScoreTable

    profile = load_profile(args.gates) if args.gates else None
    allow_skip = check_skip_reasons(args.allow_skip, "--allow-skip")
    check_writable_dir(args.out, "report folder (--out)")
    table = ScoreTable.merge_files(args.scores)
    report = render(
        table,
        reference=args.reference,
        profile=profile,
        out_dir=args.out,
        title="quantkit report",
        settings={"score files": len(args.scores), "prompts": len(table.categories)},
        n_resamples=args.n_resamples,
        allow_skip=allow_skip,
    )
    print(report.printed())
    print(f"report: {report.index}", file=sys.stderr)
    return 1 if report.failed else 0
