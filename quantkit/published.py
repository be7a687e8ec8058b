"""The published recipes: what each variant of the study is, pinned in ``golden/recipes.json``.

A change to a recipe's defaults (INT8's SmoothQuant alpha, its protection rule, the GGUF thresholds, NF4's block
size or double quantization) passes every codec test, yet it changes what the study publishes. The golden records
each variant's full recipe, its hash, and for INT8 the protection rule and calibration split, and a test fails on
any drift. Update it on purpose with ``quantkit golden recipes --update`` and say why in the commit.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from pathlib import Path
from typing import Any

from quantkit.atomic import write_json
from quantkit.data import GOLDEN_DIR

GOLDEN = GOLDEN_DIR / "recipes.json"
DRIFT = "this changes the published recipe; update the golden on purpose"
UPDATE = "quantkit golden recipes --update"


def published() -> dict[str, Any]:
    """variant -> its recipe (every field), the recipe hash, and for calibrated recipes how they are calibrated."""
    from quantkit.calibrate import fragility
    from quantkit.prompts.benchmark import CALIBRATION_SPLIT
    from quantkit.study import DEFAULT_VARIANTS, StudyConfig, recipe_for

    out: dict[str, Any] = {}
    for name in DEFAULT_VARIANTS:
        recipe = recipe_for(name)
        entry: dict[str, Any] = {"recipe": recipe.to_dict(), "hash": recipe.hash}
        if getattr(recipe, "needs_calibration", False):
            rule = inspect.getsource(fragility._auto_count)
            entry["protection_rule"] = {
                "auto_min_gap": fragility.AUTO_MIN_GAP,
                "auto_count_source_sha256": hashlib.sha256(rule.encode()).hexdigest(),
            }
            entry["calibration"] = {
                "split_size": CALIBRATION_SPLIT,
                "prompts_used": StudyConfig.calibration_prompts,
            }
        out[name] = entry
    return out


def drift(golden: Path = GOLDEN) -> list[str]:
    """One line per difference between the recipes now and the golden (empty when they agree)."""
    try:
        recorded = json.loads(golden.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        return [f"cannot read {golden} ({err}); write it with `{UPDATE}`"]
    now = json.loads(json.dumps(published()))
    lines = []
    for name in sorted(recorded.keys() | now.keys()):
        for field in sorted(_flat(recorded.get(name, {})).keys() | _flat(now.get(name, {})).keys()):
            old, new = _flat(recorded.get(name, {})).get(field), _flat(now.get(name, {})).get(field)
            if old != new:
                lines.append(f"{name}.{field}: golden {json.dumps(old)}, now {json.dumps(new)}")
    return lines


def update(golden: Path = GOLDEN) -> list[str]:
    """Write the recipes now as the golden; returns what changed."""
    changes = drift(golden) if golden.is_file() else ["(new golden)"]
    write_json(golden, published())
    return changes


def _flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat |= _flat(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat
