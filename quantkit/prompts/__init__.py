"""Benchmark prompts: Ideogram 4's caption schema and validator, the expanders, and the frozen prompt sets."""

from quantkit.prompts.benchmark import load_benchmark, read_prompts
from quantkit.prompts.caption import Caption, Element, Finding, Style, canonical_json, parse, validate
from quantkit.prompts.prompt import Prompt, seed_for

__all__ = [
    "Caption",
    "Element",
    "Finding",
    "Prompt",
    "Style",
    "canonical_json",
    "load_benchmark",
    "parse",
    "read_prompts",
    "seed_for",
    "validate",
]
