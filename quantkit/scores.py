"""Per-prompt scores of every variant: what the statistics pair, what CI shards merge, what the report shows.

A ``ScoreTable`` maps variant -> metric -> prompt id -> value, with each metric's direction, each prompt's category
and, for metrics that could not be computed here, the reason they were not measured. Shards of a prompt set scored on
different runners merge into one table before any statistic is taken.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path

from quantkit.atomic import write_json
from quantkit.errors import StoreError

FORMAT_VERSION = 1


@dataclasses.dataclass
class ScoreTable:
    values: dict[str, dict[str, dict[str, float]]] = dataclasses.field(default_factory=dict)
    directions: dict[str, str] = dataclasses.field(default_factory=dict)
    categories: dict[str, str] = dataclasses.field(default_factory=dict)
    not_measured: dict[str, str] = dataclasses.field(default_factory=dict)

    def add(self, variant: str, metric: str, scores: Mapping[str, float], *, direction: str) -> None:
        """Record ``scores`` (prompt id -> value) of one metric for one variant."""
        if direction not in ("higher", "lower"):
            raise ValueError(f"direction of {metric!r} must be 'higher' or 'lower', got {direction!r}")
        known = self.directions.setdefault(metric, direction)
        if known != direction:
            raise StoreError(f"metric {metric!r} recorded as {known}-is-better and now as {direction}-is-better")
        self.values.setdefault(variant, {}).setdefault(metric, {}).update(
            {pid: float(value) for pid, value in scores.items()}
        )

    def scores(self, variant: str, metric: str) -> dict[str, float]:
        return self.values.get(variant, {}).get(metric, {})

    @property
    def variants(self) -> list[str]:
        return list(self.values)

    @property
    def metrics(self) -> list[str]:
        return list(self.directions)

    def merge(self, other: ScoreTable) -> ScoreTable:
        """The union of two tables; the same (variant, metric, prompt) with two different values is an error."""
        merged = ScoreTable.from_json(self.to_json())
        for variant, by_metric in other.values.items():
            for metric, scores in by_metric.items():
                mine = merged.scores(variant, metric)
                clashes = [p for p, v in scores.items() if p in mine and not _same(mine[p], v)]
                if clashes:
                    raise StoreError(
                        f"cannot merge score tables: {variant}/{metric} has different values for prompt(s) "
                        f"{', '.join(sorted(clashes)[:5])}; were the shards made with different settings?"
                    )
                merged.add(variant, metric, scores, direction=other.directions[metric])
        merged.categories.update(other.categories)
        for metric, reason in other.not_measured.items():
            merged.not_measured.setdefault(metric, reason)
        return merged

    def to_json(self) -> dict[str, object]:
        return {
            "format": FORMAT_VERSION,
            "directions": self.directions,
            "categories": self.categories,
            "not_measured": self.not_measured,
            "values": self.values,
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, object]) -> ScoreTable:
        if obj.get("format") != FORMAT_VERSION:
            raise StoreError(f"score table format {obj.get('format')!r} is not {FORMAT_VERSION}")
        return cls(
            values=json.loads(json.dumps(obj["values"])),
            directions=dict(obj["directions"]),
            categories=dict(obj["categories"]),
            not_measured=dict(obj["not_measured"]),
        )

    def save(self, path: str | Path) -> None:
        write_json(path, self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> ScoreTable:
        try:
            obj = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise StoreError(f"cannot read score table {path}: {err}") from err
        return cls.from_json(obj)

    @classmethod
    def merge_files(cls, paths: Iterable[str | Path]) -> ScoreTable:
        merged = cls()
        for path in paths:
            merged = merged.merge(cls.load(path))
        return merged


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))
