"""Build hook: a wheel ships quantkit's data folder (``golden/``: gate profiles, benchmark prompts, the embedded tiny
models, golden references, published recipes; about 21 MB) inside the package as ``quantkit/_golden``, where
:mod:`quantkit.data` finds it when no checkout is around. Metadata lives in ``pyproject.toml``."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

DATA = Path(__file__).resolve().parent / "golden"


class BuildWithData(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):  # an editable install reads the checkout's golden/
            return
        target = Path(self.build_lib) / "quantkit" / "_golden"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(DATA, target, ignore=shutil.ignore_patterns("__pycache__", ".*"))


setup(cmdclass={"build_py": BuildWithData})
