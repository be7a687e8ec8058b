"""``quantkit prompts manifest FILE``: write the manifest a custom prompt file needs before a study can use it."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("prompts", help="prompt set tools (write the manifest of your own prompt file)")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    manifest = verbs.add_parser(
        "manifest",
        help="validate a prompt file (JSON lines) and write its manifest next to it",
        description=(
            "Check every line of a prompt file (keys id, category, raw, texts, seed, expander, caption; the caption "
            "valid under the Ideogram 4 schema and rendering exactly the target texts) and write "
            "<name>.manifest.json beside it: its sha256 and counts. A study then refuses the file if it changes, so "
            "paired scores always compare like with like. Refuses to overwrite a manifest of different content."
        ),
    )
    manifest.add_argument("file", type=Path, help="the .jsonl prompt file")
    manifest.add_argument("--force", action="store_true", help="replace an existing manifest of different content")
    manifest.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from quantkit.prompts.benchmark import write_manifest

    path = write_manifest(args.file, force=args.force)
    print(f"wrote {path}; use the prompts with --prompts {args.file}")
    return 0
