"""Any Ideogram 4 GGUF as a study variant: ``--variants q4_k,gguf:COND.gguf[,UNCOND.gguf]``.

The files are run exactly as a diffusers user runs them (:func:`quantkit.io.gguf.load_transformer`), so a
third-party export (Q4_0, Q5_K, IQ4_NL, ... with or without ``general.architecture``, as stable-diffusion.cpp writes
them) goes through the same images, scores and gates as quantkit's own variants. With one file the unconditional
copy stays the study's source model. The variant's cache identity is the files' sha256, so a changed file is a new
variant.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from quantkit.errors import QuantkitError

PREFIX = "gguf:"
# The quantkit files a gguf: variant runs (its image keys hash them, besides the registry's COMMON_SOURCES): this
# module and quantkit's GGUF reader with its key mapping (whose modules import the nf4, q4_k and q8_0 codecs for
# their constants); the files are decoded by diffusers' GGUF layers.
SOURCES = (
    "gguf_variant.py",
    "io/__init__.py",
    "io/gguf.py",
    "io/ideogram_checkpoints.py",
    "codecs/nf4.py",
    "codecs/q4_k.py",
    "codecs/_q4_k_kernel.py",
    "codecs/q8_0.py",
)


def is_gguf_spec(name: str) -> bool:
    return name.startswith(PREFIX)


def parse_variants(text: str) -> tuple[str, ...]:
    """Split ``--variants`` on commas, keeping ``gguf:COND,UNCOND`` together: the item after a one-file ``gguf:``
    spec joins it when it names a ``.gguf`` file rather than a variant."""
    names: list[str] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        if names and is_gguf_spec(names[-1]) and "," not in names[-1] and item.endswith(".gguf"):
            names[-1] = f"{names[-1]},{item}"
        else:
            names.append(item)
    return tuple(names)


@dataclasses.dataclass(frozen=True)
class GGUFFiles:
    """The recipe-like identity of a ``gguf:`` variant: its files (conditional first) and their contents' hash."""

    spec: str
    paths: tuple[Path, ...]

    @classmethod
    def parse(cls, spec: str) -> GGUFFiles:
        paths = tuple(Path(p) for p in spec.removeprefix(PREFIX).split(",") if p)
        if not 1 <= len(paths) <= 2:
            raise QuantkitError(f"{spec!r}: give gguf:COND.gguf or gguf:COND.gguf,UNCOND.gguf")
        for path in paths:
            if not path.is_file():
                raise QuantkitError(f"{spec!r}: {path} is not a file")
        return cls(spec, paths)

    @property
    def name(self) -> str:
        return self.spec

    @property
    def format(self) -> str:
        return "gguf"

    @functools.cached_property
    def hash(self) -> str:
        digest = hashlib.sha256()
        for path in self.paths:
            with path.open("rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
        return digest.hexdigest()

    def skip_rules(self) -> tuple[str, ...]:
        copies = "both copies" if len(self.paths) == 2 else "the conditional copy (the unconditional one unchanged)"
        return (f"a third-party GGUF for {copies}: layers as the file stores them",)

    def to_dict(self) -> dict[str, Any]:
        return {"recipe": "GGUFFiles", "paths": [str(p) for p in self.paths], "sha256": self.hash}

    def apply(self, pipe: Any) -> Any:
        """Swap the pipeline's transformers for the files' (loaded through diffusers' GGUF classes); the report."""
        from quantkit.io.gguf import load_transformer
        from quantkit.pipelines.ideogram4 import execution_device

        branches = ("transformer", "unconditional_transformer")[: len(self.paths)]
        device, dtype = execution_device(pipe), pipe.transformer.dtype
        models = {
            b: load_transformer(p, getattr(pipe, b).config, compute_dtype=dtype, device=device)
            for b, p in zip(branches, self.paths, strict=True)
        }  # every file is checked before the pipeline changes
        for branch, model in models.items():
            setattr(pipe, branch, model)
        return report(self, pipe)


def report(recipe: GGUFFiles, pipe: Any) -> Any:
    """A :class:`~quantkit.quantize.SkipReport` of what the files hold: GGUF linears (bytes as stored) and the rest."""
    from torch import nn

    from quantkit.quantize import ReportRow, SkipReport

    rows = []
    for branch in ("transformer", "unconditional_transformer"):
        for name, module in getattr(pipe, branch).named_modules():
            params = list(module.parameters(recurse=False))
            if not params:
                continue
            rows.append(_row(f"{branch}.{name}", module, params, isinstance(module, nn.Linear), ReportRow))
    return SkipReport(recipe, tuple(rows))  # type: ignore[arg-type]


def _row(full: str, module: Any, params: Iterable[Any], linear: bool, row: Any) -> Any:
    params = list(params)
    weight = params[0]
    quant_type = getattr(weight, "quant_type", None)
    stored = sum(p.numel() * p.element_size() for p in params)
    if linear and quant_type is not None:
        numel = module.in_features * module.out_features + (0 if module.bias is None else module.out_features)
        shape = (module.out_features, module.in_features)
        return row(
            full, shape, "quantized", f"GGUF {quant_type.name} in the file", quant_type.name.lower(), stored, numel
        )
    numel = sum(p.numel() for p in params)
    kind = "linear" if linear else type(module).__name__
    return row(full, tuple(weight.shape), "kept", f"{kind} stored unquantized", str(weight.dtype)[6:], stored, numel)
