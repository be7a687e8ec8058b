"""``quantkit sensitivity``: run the gate profile against every planted fault and against no-op controls."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from quantkit.cli.options import add_run_options, config_from_args


def add_parser(sub: argparse._SubParsersAction) -> None:
    from quantkit.faults import CATALOGUE
    from quantkit.sensitivity import CONTROLS, QUICK_FAULTS

    parser = sub.add_parser(
        "sensitivity",
        help="measure what the gate profile catches: planted faults and no-op controls",
        description=(
            "Run the study's profile check (gates, golden reference images and scores, golden codec bytes) once "
            "unfaulted, then against each planted fault of quantkit.faults (its must-catch severity first, then "
            "the rest of each graded fault's severity sweep) and against no-op controls that must never alarm "
            f"({', '.join(CONTROLS)}). Writes sensitivity.json, .md and .html to --out after every run, so an "
            "interrupted sweep keeps its results. Exits 1 when a fault is missed at its must-catch severity or a "
            "control raises a false alarm. Faults: " + ", ".join(CATALOGUE) + "."
        ),
        epilog=f"--quick runs {', '.join(QUICK_FAULTS)} at their must-catch severity and 3 cheap controls.",
    )
    add_run_options(parser)
    parser.add_argument("--gates", default=None, help="gate profile (default: tiny on tiny, ideogram4 otherwise)")
    parser.add_argument(
        "--faults", default=None, metavar="NAME,...", help="faults to run, or none (controls only; default: all)"
    )
    parser.add_argument(
        "--controls", type=int, default=20, metavar="N", help="no-op control runs (default: %(default)s)"
    )
    parser.add_argument(
        "--must-catch-only", action="store_true", help="run each fault at its must-catch severity only (no sweep)"
    )
    parser.add_argument(
        "--exhaustive",
        action="store_true",
        help="run every check of every fault run (default: stop at the first failing stage, cheapest first: codec "
        "bytes, golden reference, gates)",
    )
    parser.add_argument("--quick", action="store_true", help="the fast subset (see below)")
    parser.add_argument(
        "--combine",
        nargs="+",
        type=Path,
        metavar="DIR",
        help="run nothing: combine the sensitivity.json of sweeps run side by side (e.g. controls in one process, "
        "faults in another) into one report in --out",
    )
    parser.add_argument("--out", type=Path, default=Path("quantkit-sensitivity"), help="(default: %(default)s)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from quantkit.atomic import check_writable_dir
    from quantkit.faults import CATALOGUE
    from quantkit.profiles import load_profile
    from quantkit.sensitivity import QUICK_FAULTS, run_sweep
    from quantkit.study import Study

    if args.combine:
        from quantkit.sensitivity import combine, load, write

        sweep = combine([load(folder / "sensitivity.json") for folder in args.combine])
        write(sweep, args.out)
        return _verdict(sweep, args.out)
    config = config_from_args(args)
    profile = load_profile(args.gates or ("tiny" if config.model == "tiny" else "ideogram4"))
    names = tuple(n.strip() for n in args.faults.split(",") if n.strip()) if args.faults else tuple(CATALOGUE)
    names = () if names == ("none",) else names
    if args.quick:
        names = tuple(n for n in names if n in QUICK_FAULTS) if args.faults else QUICK_FAULTS
    check_writable_dir(args.out, "sensitivity report folder (--out)")
    config = dataclasses.replace(config, cache_dir=str(Study(config).cache.root))
    sweep = run_sweep(
        config,
        profile,
        faults=names,
        severities="must_catch" if args.quick or args.must_catch_only else "all",
        controls=min(args.controls, 3) if args.quick else args.controls,
        expensive_controls=not args.quick,
        n_resamples=args.n_resamples,
        exhaustive=args.exhaustive,
        out=args.out,
        progress=not args.quiet,
    )
    return _verdict(sweep, args.out)


def _verdict(sweep: Any, out: Path) -> int:
    s = sweep.summary()
    print(
        f"quantkit sensitivity: {s['caught_at_must_catch']}/{s['faults_run_at_must_catch']} faults caught at their "
        f"must-catch severity, {s['false_alarms']}/{s['control_runs']} false alarms, {s['images_generated']} images, "
        f"{s['wall_seconds']:.0f} s; report: {out / 'sensitivity.md'}"
    )
    missed = s["faults_run_at_must_catch"] - s["caught_at_must_catch"]
    if missed or s["false_alarms"]:
        print(f"quantkit sensitivity: {missed} missed, {s['false_alarms']} false alarm(s)", file=sys.stderr)
        return 1
    return 0
