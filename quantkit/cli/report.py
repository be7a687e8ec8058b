"""``quantkit report``: merge per-prompt score files (CI shards) and write the table, gates and report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "report",
        help="merge score files from CI shards, apply the gates, write the report",
        description=(
            "Merge the per-prompt score tables written by `quantkit study --scores-out` on several runners (a "
            "prompt scored twice with different values is an error), take the paired CIs on the merged table, "
            "apply a gate profile and write report.md / index.html / scores.json. Exits 1 if a gate fails."
        ),
    )
    parser.add_argument("scores", nargs="+", type=Path, help="score table JSON files")
    parser.add_argument(
        "--reference", default="fp8", help="variant the others are compared with (default: %(default)s)"
    )
    parser.add_argument("--gates", default=None, help="gate profile name or TOML path (default: no gates)")
    parser.add_argument("--n-resamples", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=Path("quantkit-out/report"), help="default: %(default)s")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from quantkit.profiles import load_profile
    from quantkit.report.build import render
    from quantkit.scores import ScoreTable

    table = ScoreTable.merge_files(args.scores)
    profile = load_profile(args.gates) if args.gates else None
    report = render(
        table,
        reference=args.reference,
        profile=profile,
        out_dir=args.out,
        title="quantkit report",
        settings={"score files": len(args.scores), "prompts": len(table.categories)},
        n_resamples=args.n_resamples,
    )
    print(report.table_text)
    for status, message in report.verdict_lines:
        print(f"{status.upper():7s} {message}")
    print(f"report: {report.index}", file=sys.stderr)
    return 1 if report.failed else 0
