"""The README's example output, generated from a real run of the default study (what ``make study`` prints).

``python -m quantkit.report.readme`` runs the default study (the embedded tiny model, its smoke settings, every
variant, the ``tiny`` gates; warm runs come from the cache) and rewrites the block between the markers in
README.md. The block names the weights it was made from, so ``test_readme_example.py`` can tell a stale example
(a new default model, a changed quantizer) from a current one and fails until the block is regenerated.
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path
from typing import Any

from quantkit.atomic import write_text

README = Path(__file__).resolve().parents[2] / "README.md"
BEGIN = "<!-- study-output:begin"
END = "<!-- study-output:end -->"
REGENERATE = "python -m quantkit.report.readme"
_BLOCK = re.compile(
    re.escape(BEGIN) + r" weights=(?P<weights>[0-9a-f]+) -->\n```\n(?P<body>.*?)```\n" + re.escape(END), re.S
)


def default_config() -> Any:
    """The StudyConfig ``quantkit study`` runs with no arguments."""
    from quantkit.study import StudyConfig

    return StudyConfig.for_model()


def printed(study: Any) -> str:
    """What ``quantkit study`` prints for ``study`` on stdout: table, not-measured reasons, gate lines, summary."""
    from quantkit.profiles import load_profile
    from quantkit.report.build import build_report

    study.score_all()
    with tempfile.TemporaryDirectory() as out:
        report = build_report(study, load_profile("tiny" if study.config.model == "tiny" else "ideogram4"), out_dir=out)
    return report.printed()


def model_weights(study: Any) -> str:
    """The first 16 hex digits of the weights hash of the study's model."""
    from quantkit.pipelines.ideogram4 import model_dir
    from quantkit.store.cache import weights_hash

    return weights_hash(model_dir(study.config.model), study.cache)[:16]


def recorded(readme: Path = README) -> tuple[str, str]:
    """(weights, body) of the example block in the README."""
    match = _BLOCK.search(readme.read_text(encoding="utf-8"))
    if match is None:
        raise ValueError(f"{readme} has no example block between {BEGIN!r} and {END!r} markers")
    return match["weights"], match["body"]


def rewrite(study: Any, readme: Path = README) -> str:
    """Replace the README's example block with ``study``'s output; returns the new body."""
    body = printed(study).rstrip("\n") + "\n"
    block = f"{BEGIN} weights={model_weights(study)} -->\n```\n{body}```\n{END}"
    text = readme.read_text(encoding="utf-8")
    recorded(readme)  # the markers must be there
    write_text(readme, _BLOCK.sub(lambda _: block, text, count=1))
    return body


def main() -> int:
    from quantkit.quiet import silence_third_party_noise
    from quantkit.study import Study

    silence_third_party_noise()
    body = rewrite(Study(default_config()))
    print(f"rewrote the example output in {README} ({len(body.splitlines())} lines)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
