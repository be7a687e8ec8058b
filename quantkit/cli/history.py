"""``quantkit history``: the quality trend recorded by every study, per variant and metric, over commits."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "history",
        help="print the quality trend over commits (mean [CI] and verdicts per variant and metric)",
        description=(
            "Read the quality history every `quantkit study` (and pytest run of the plugin) appends to, and print, "
            "per variant and metric, one line per recorded run in order: commit (+ for a dirty tree), time, model, "
            "mean [95% CI of the mean], number of prompts and the statuses of the gates on that variant and metric."
        ),
    )
    parser.add_argument(
        "--history", type=Path, default=None, help="history file (default: history.sqlite in the cache folder)"
    )
    parser.add_argument(
        "--cache", default=None, help="cache folder holding the history (default: $QUANTKIT_CACHE or .quantkit-cache)"
    )
    parser.add_argument("--variant", action="append", default=[], help="only this variant (repeatable)")
    parser.add_argument("--metric", action="append", default=[], help="only this metric (repeatable)")
    parser.add_argument("--model", default=None, help="only runs of this model ('tiny', a folder)")
    parser.add_argument("--last", type=int, default=None, metavar="N", help="only the last N runs of each series")
    parser.add_argument("--json", action="store_true", help="print the series as JSON")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from quantkit.errors import UsageError
    from quantkit.history import History, default_path, format_trend
    from quantkit.store.cache import ImageCache

    if args.last is not None and args.last < 1:
        raise UsageError(f"--last must be a positive number of runs, got {args.last}")
    history = History(args.history or default_path(ImageCache(args.cache).root))
    series = history.trend(variants=args.variant, metrics=args.metric, model=args.model, last=args.last)
    if args.json:
        payload = [
            {"variant": variant, "metric": metric, "runs": [dataclasses.asdict(p) for p in points]}
            for (variant, metric), points in series.items()
        ]
        print(json.dumps(payload, indent=2))
        return 0
    if not series:
        print(f"quality history {history.path}: no run matches the filters")
        return 0
    print(format_trend(series))
    return 0
