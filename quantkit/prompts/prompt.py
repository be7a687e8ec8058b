"""One benchmark prompt: the unit that pairs scores across variants."""

from __future__ import annotations

import dataclasses
import hashlib


def seed_for(prompt_id: str, base_seed: int = 0) -> int:
    """The generation seed of a prompt, derived from its id so it never depends on batching or workers."""
    digest = hashlib.sha256(f"{base_seed}:{prompt_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & 0x7FFF_FFFF


@dataclasses.dataclass(frozen=True)
class Prompt:
    """A benchmark line. ``caption`` is the canonical JSON caption string fed to the model; ``texts`` are the
    literal strings its text elements ask to render (the OCR targets); ``id`` is stable and pairs scores."""

    id: str
    category: str
    raw: str
    caption: str
    texts: tuple[str, ...] = ()
    seed: int = -1

    def __post_init__(self) -> None:
        if self.seed < 0:
            object.__setattr__(self, "seed", seed_for(self.id))
