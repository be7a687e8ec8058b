"""The pytest plugin (entry point ``pytest11: quantkit``): markers, options, fixtures and the summary."""

from __future__ import annotations

import pytest

MARKERS = {
    "gpu": "needs a CUDA GPU; skipped where torch.cuda.is_available() is False",
    "needs_weights": "needs real model weights on this machine (see the skip reason for the variable to set)",
    "slow": "long-running; run with -m slow",
}


def pytest_configure(config: pytest.Config) -> None:
    for name, help_text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {help_text}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    import torch

    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="no CUDA GPU on this machine: run on the self-hosted RTX 3090 runner")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
