"""Exception types. Each says what went wrong, where, and how to fix it.

Every error quantkit raises on bad input derives from :class:`QuantkitError`, so callers (the CLI, the pytest
plugin) can print one readable line instead of a traceback. Each also derives from the builtin it refines
(``ValueError``, ``FileNotFoundError``) so generic handlers keep working.
"""

from __future__ import annotations


class QuantkitError(Exception):
    """Base class for every error quantkit raises deliberately."""


class FormatError(QuantkitError, ValueError):
    """A tensor cannot be encoded in, or decoded from, a quantization format (shape, NaN/Inf, bad bytes)."""


class WeightRangeError(FormatError):
    """A finite weight lies beyond what a format's scales can hold (it would decode to Inf or NaN)."""


class MetaTensorError(FormatError):
    """A codec was handed a tensor without values (the ``meta`` device): it can only encode real weights."""


class CheckpointError(QuantkitError, ValueError):
    """A checkpoint file is truncated, corrupted, or lacks / misshapes a tensor the model needs."""


class RecipeError(QuantkitError, ValueError):
    """A recipe has an unknown field, a wrong type, or an impossible combination of settings."""


class CaptionError(QuantkitError, ValueError):
    """A caption is not valid under Ideogram 4's caption schema."""


class MissingWeightsError(QuantkitError, FileNotFoundError):
    """Model weights needed for a metric or pipeline are not on this machine (and the hub is offline)."""


class MissingDataError(QuantkitError, FileNotFoundError):
    """quantkit's data folder (gate profiles, benchmark prompts, tiny models) is not where it was looked for."""


class StoreError(QuantkitError):
    """A cache entry or golden file is missing, extra, or does not match its recorded hash."""


class StatsError(QuantkitError, ValueError):
    """Scores cannot be compared: unpaired prompt ids, too few prompts, NaN scores."""


class UsageError(QuantkitError, ValueError):
    """An option or argument names something that does not exist or has an impossible value (a typo, -1 prompts)."""


class WriteError(QuantkitError, OSError):
    """A file or folder cannot be written: the path is a file, permission is denied, or the disk is full."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, with what the run kept (``str()`` says it, e.g. "16 images cached; rerun resumes")."""
