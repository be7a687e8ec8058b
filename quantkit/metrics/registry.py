"""The metric registry: ``load(name, **options)`` gives a scorer with one value per image, loaded once per process.

Every metric shares one contract (:class:`Metric`): a ``name``, a ``direction`` ("higher" or "lower" is better),
the inputs it ``needs`` besides the images (a subset of prompts / references / texts), and
``score(images, *, prompts=None, references=None, texts=None) -> np.ndarray`` with one float64 per image, so that
paired statistics can be taken over prompts. ``availability(name, **options)`` says whether a metric can run here
(weights present, optional backend installed) without loading a model, so a report can say "not measured: <reason>"
instead of inventing numbers.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Hashable, Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from quantkit.errors import MissingWeightsError
from quantkit.metrics.catalog import CATALOG, Direction
from quantkit.metrics.images import ImageBatch, split, to_tensors

_LOADED: dict[tuple[str, tuple[tuple[str, Hashable], ...]], Metric] = {}


class Metric(ABC):
    """A per-image scorer. Subclasses set the class attributes and implement :meth:`_score_chunk`; every metric takes
    the keyword options ``device`` and ``batch_size`` (plus its own), so a harness can pass them uniformly."""

    name: ClassVar[str]
    direction: ClassVar[Direction]
    needs: ClassVar[frozenset[str]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A catalogued metric takes its direction and inputs from :mod:`quantkit.metrics.catalog`."""
        super().__init_subclass__(**kwargs)
        info = CATALOG.get(cls.__dict__.get("name", ""))
        if info is not None:
            cls.direction, cls.needs = info.direction, info.needs

    def __init__(self, *, batch_size: int) -> None:
        if batch_size < 1:
            raise ValueError(f"{self.name}: batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self.info: dict[str, str] = {}  # provenance recorded with results: model, weights file, conventions

    @classmethod
    def check(cls, **options: Any) -> None:
        """Raise MissingWeightsError / ModuleNotFoundError (saying how to fix it) if these options cannot run here.

        Cheap: resolves paths and imports, loads no model. Constructors fail with the same messages. The default
        is for metrics that need nothing beyond the declared dependencies.
        """
        return None

    def score(
        self,
        images: ImageBatch,
        *,
        prompts: Sequence[str] | None = None,
        references: ImageBatch | None = None,
        texts: Sequence[Sequence[str]] | None = None,
    ) -> np.ndarray:
        """One float64 per image. Inputs the metric does not need are ignored."""
        items = split(images)
        given = {"prompts": prompts, "references": references, "texts": texts}
        for key in sorted(self.needs):
            if given[key] is None:
                raise ValueError(f"metric {self.name!r} needs {key}= (one entry per image); none was given")
        prompt_list = _prompts(prompts, len(items)) if "prompts" in self.needs else None
        reference_items = split(references, "references") if "references" in self.needs else None
        if reference_items is not None and len(reference_items) != len(items):
            raise ValueError(f"{self.name}: {len(items)} images but {len(reference_items)} references")
        text_lists = _texts(texts, len(items)) if "texts" in self.needs else None

        chunks = []
        for start in range(0, len(items), self.batch_size):
            stop = start + self.batch_size
            chunk_refs = None if reference_items is None else to_tensors(reference_items[start:stop], "references")
            values = self._score_chunk(
                to_tensors(items[start:stop]),
                prompts=None if prompt_list is None else prompt_list[start:stop],
                references=chunk_refs,
                texts=None if text_lists is None else text_lists[start:stop],
            )
            chunks.append(np.asarray(values, dtype=np.float64).reshape(-1))
        return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float64)

    @abstractmethod
    def _score_chunk(
        self,
        images: list[torch.Tensor],
        *,
        prompts: list[str] | None,
        references: list[torch.Tensor] | None,
        texts: list[list[str]] | None,
    ) -> np.ndarray:
        """Score at most ``batch_size`` canonical images (see :mod:`quantkit.metrics.images`)."""


def available() -> list[str]:
    """Names ``load`` accepts."""
    return sorted(CATALOG)


def metric_class(name: str) -> type[Metric]:
    if name not in CATALOG:
        raise ValueError(f"unknown metric {name!r}; available: {', '.join(available())}")
    module_name, class_name = CATALOG[name].target.split(":")
    return getattr(importlib.import_module(module_name), class_name)


def load(name: str, **options: Hashable) -> Metric:
    """The metric ``name`` built with ``options``; the same object for the same arguments (models load once)."""
    key = (name, tuple(sorted(options.items())))
    if key not in _LOADED:
        _LOADED[key] = metric_class(name)(**options)
    return _LOADED[key]


def availability(name: str, **options: Any) -> tuple[bool, str]:
    """Whether ``load(name, **options)`` can work here, and if not, why — without loading any model."""
    try:
        metric_class(name).check(**options)
    except (MissingWeightsError, ModuleNotFoundError) as error:
        return False, str(error)
    return True, ""


def resolve_device(device: str | torch.device | None) -> torch.device:
    """The requested device, or CUDA when present, else CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_precision(precision: str | None, device: torch.device) -> str:
    """ "fp16" (autocast, as HPSv2 upstream runs) on CUDA by default, "fp32" elsewhere."""
    if precision is None:
        return "fp16" if device.type == "cuda" else "fp32"
    if precision not in ("fp16", "fp32"):
        raise ValueError(f"precision must be 'fp16' or 'fp32', got {precision!r}")
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("precision='fp16' needs a CUDA device; use 'fp32' on CPU")
    return precision


def _prompts(prompts: Sequence[str] | None, count: int) -> list[str]:
    if isinstance(prompts, str) or prompts is None:
        raise ValueError("prompts must be a list of strings, one per image")
    prompt_list = list(prompts)
    if len(prompt_list) != count:
        raise ValueError(f"{count} images but {len(prompt_list)} prompts")
    for index, prompt in enumerate(prompt_list):
        if not isinstance(prompt, str):
            raise ValueError(f"prompts[{index}] is {type(prompt).__name__}, expected str")
    return prompt_list


def _texts(texts: Sequence[Sequence[str]] | None, count: int) -> list[list[str]]:
    if isinstance(texts, str) or texts is None:
        raise ValueError("texts must be a list (one per image) of lists of target strings")
    text_lists = []
    for index, targets in enumerate(texts):
        if isinstance(targets, str) or not isinstance(targets, Sequence):
            raise ValueError(f"texts[{index}] must be a list of strings, got {type(targets).__name__}")
        if not all(isinstance(target, str) for target in targets):
            raise ValueError(f"texts[{index}] must contain only strings")
        text_lists.append(list(targets))
    if len(text_lists) != count:
        raise ValueError(f"{count} images but {len(text_lists)} text lists")
    return text_lists
