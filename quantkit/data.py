"""Where quantkit finds its data folder: gate profiles, benchmark prompts, the embedded tiny models, the golden
reference sets and the published recipes (``gates/``, ``prompts/``, ``models/``, ``references/``, ``recipes.json``).

``$QUANTKIT_GOLDEN_DIR`` wins; otherwise the copy an installed wheel ships inside the package (``quantkit/_golden``,
written by the build hook in ``setup.py``), else the ``golden/`` folder of the checkout this code runs from.
"""

from __future__ import annotations

import os
from pathlib import Path

from quantkit.errors import MissingDataError

GOLDEN_ENV = "QUANTKIT_GOLDEN_DIR"
PACKAGED = Path(__file__).resolve().parent / "_golden"
CHECKOUT = Path(__file__).resolve().parents[1] / "golden"


def golden_dir() -> Path:
    """The data folder (it may not exist: :func:`require` says what to pass then)."""
    if os.environ.get(GOLDEN_ENV):
        return Path(os.environ[GOLDEN_ENV])
    return PACKAGED if PACKAGED.is_dir() else CHECKOUT


GOLDEN_DIR = golden_dir()


def require(what: str) -> None:
    """One line saying what to pass when the data folder is absent (a wheel built without it, a wrong variable)."""
    if not GOLDEN_DIR.is_dir():
        raise MissingDataError(
            f"{what} needs quantkit's data folder, not found at {GOLDEN_DIR}: set {GOLDEN_ENV} to the golden/ folder "
            "of a quantkit checkout"
        )
