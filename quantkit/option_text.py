"""Option values as users type them (comma lists, ``I/N`` shards, ``HxW`` resolutions), parsed the same way for the
command line and the pytest plugin, with a one-line error naming the option."""

from __future__ import annotations

from quantkit.errors import QuantkitError


def parse_names(text: str) -> tuple[str, ...]:
    """``"a, b,"`` -> ``("a", "b")``."""
    return tuple(n.strip() for n in text.split(",") if n.strip())


def parse_shard(text: str, option: str = "--shard") -> tuple[int, int]:
    try:
        index, count = (int(x) for x in text.split("/"))
    except ValueError as err:
        raise QuantkitError(f"{option} {text!r}: expected I/N, e.g. 2/4") from err
    return index, count


def parse_resolution(text: str, option: str = "--resolution") -> tuple[int, int]:
    try:
        parts = [int(x) for x in text.lower().split("x")]
    except ValueError as err:
        raise QuantkitError(f"{option} {text!r}: expected H or HxW in pixels") from err
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or any(p <= 0 or p % 16 for p in parts):
        raise QuantkitError(f"{option} {text!r}: give H or HxW, each a positive multiple of 16")
    return parts[0], parts[1]
