"""Build a benchmark set from its raw-prompt source: ``python -m quantkit.prompts.authoring --version NAME``.

The source (``golden/prompts/sources/<version>.txt``) is data: ``[category prefix]`` headers, one raw prompt per
line, rendered strings in double quotes. Each prompt is expanded with its id-derived seed; model expansions go
through the frozen cache in ``golden/prompts/expansions/`` so a GPU run is paid once.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
from pathlib import Path

from quantkit.errors import StoreError
from quantkit.prompts.benchmark import GOLDEN_PROMPTS, BenchmarkEntry, read_entries, summarize, write_benchmark
from quantkit.prompts.expanders.base import Expander, ExpansionCache, ExpansionRequest, expand
from quantkit.prompts.expanders.template import TemplateExpander
from quantkit.prompts.prompt import Prompt, seed_for

_HEADER = re.compile(r"\[(?P<category>[a-z0-9-]+) (?P<prefix>[a-z0-9]+)\]")
_QUOTED = re.compile(r'"([^"]+)"')


@dataclasses.dataclass(frozen=True)
class SourcePrompt:
    id: str
    category: str
    raw: str
    texts: tuple[str, ...]


def read_source(path: str | os.PathLike[str]) -> list[SourcePrompt]:
    """Prompts in file order; ids are ``<prefix>-NNN`` by position within the category."""
    prompts: list[SourcePrompt] = []
    category = prefix = None
    counts: dict[str, int] = {}
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if header := _HEADER.fullmatch(line):
            category, prefix = header["category"], header["prefix"]
            continue
        if prefix is None or category is None:
            raise StoreError(f"{path}:{number}: a prompt before any [category prefix] header")
        if line.count('"') % 2:
            raise StoreError(f"{path}:{number}: unbalanced double quote in {line!r}")
        counts[prefix] = counts.get(prefix, 0) + 1
        texts = tuple(_QUOTED.findall(line))
        prompts.append(SourcePrompt(f"{prefix}-{counts[prefix]:03d}", category, line, texts))
    return prompts


def expansion_cache(expander: Expander, directory: Path = GOLDEN_PROMPTS / "expansions") -> ExpansionCache:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", expander.id)
    return ExpansionCache(directory / f"{slug}.json")


def build(
    source: list[SourcePrompt],
    version: str,
    expander: Expander,
    *,
    directory: str | os.PathLike[str] = GOLDEN_PROMPTS,
    cache: ExpansionCache | None = None,
    max_attempts: int = 3,
) -> Path:
    entries = []
    for item in source:
        seed = seed_for(item.id)
        request = ExpansionRequest(item.raw, item.texts, seed, item.category)
        caption = expand(expander, request, max_attempts=max_attempts, cache=cache)
        prompt = Prompt(item.id, item.category, item.raw, caption.to_json(), item.texts, seed)
        entries.append(BenchmarkEntry(prompt, expander.id))
    return write_benchmark(entries, version, directory=directory)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m quantkit.prompts.authoring", description=__doc__)
    parser.add_argument("--version", default="benchmark-v1", help="name of the set to write (a new name per change)")
    parser.add_argument("--source", type=Path, help="raw-prompt source (default: sources/<version>.txt)")
    parser.add_argument("--expander", choices=("template", "transformers", "ideogram4"), default="template")
    parser.add_argument("--model", type=Path, help="local model directory for the transformers/ideogram4 expanders")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    source = args.source or GOLDEN_PROMPTS / "sources" / f"{args.version}.txt"
    expander: Expander
    cache = None
    if args.expander == "template":
        expander = TemplateExpander()
    else:
        if args.model is None:
            parser.error(f"--expander {args.expander} needs --model <local directory>")
        if args.expander == "transformers":
            from quantkit.prompts.expanders.transformers_chat import TransformersChatExpander

            expander = TransformersChatExpander.from_pretrained(args.model, device=args.device)
        else:
            from quantkit.prompts.expanders.ideogram4 import Ideogram4Expander

            expander = Ideogram4Expander.from_pretrained(args.model, device=args.device)
        cache = expansion_cache(expander)
    path = build(read_source(source), args.version, expander, cache=cache)
    print(f"wrote {path}: {summarize(read_entries(path))}")


if __name__ == "__main__":
    main()
