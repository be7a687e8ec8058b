"""Known third-party noise, silenced in the command line and the pytest plugin (never by importing the library).

Each entry names who emits it and why it is noise for a quantkit user; anything else, quantkit's own warnings
included, still reaches the terminal.
"""

from __future__ import annotations

import logging
import re
import warnings

# bitsandbytes >= 0.49 on CPUs with AVX512-BF16 tries an optional Hugging Face "kernels" download at import and
# logs this when the package is absent; its own CPU kernels are used instead, which is what quantkit wants.
BITSANDBYTES_KERNELS = ("bitsandbytes.backends.cpu.ops", re.compile(r"Failed to load CPU gemm_4bit_forward"))
# transformers 5.x warns about its own cache API whenever the text encoder runs without a KV cache, as the
# Ideogram 4 pipeline's single encoder pass does.
TRANSFORMERS_CACHE_WARNING = r".*past_key_values.*"


class _DropMatching(logging.Filter):
    def __init__(self, pattern: re.Pattern[str]) -> None:
        super().__init__()
        self.pattern = pattern

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.pattern.search(record.getMessage())


def silence_third_party_noise() -> None:
    """Install the filters; idempotent, and safe before or after the noisy packages are imported."""
    logger_name, pattern = BITSANDBYTES_KERNELS
    logger = logging.getLogger(logger_name)
    if not any(isinstance(f, _DropMatching) for f in logger.filters):
        logger.addFilter(_DropMatching(pattern))
    warnings.filterwarnings("ignore", message=TRANSFORMERS_CACHE_WARNING, category=FutureWarning, module="transformers")
