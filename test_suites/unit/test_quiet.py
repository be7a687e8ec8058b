"""Known third-party noise stays off the user's terminal in the CLI and the plugin; quantkit's own output does not."""

from __future__ import annotations

import logging
import subprocess
import sys
import warnings

from quantkit.cli import main
from quantkit.quiet import silence_third_party_noise

BNB_MESSAGE = "Failed to load CPU gemm_4bit_forward from kernels-community: %s. Please `pip install kernels`"
EMIT = f"""
import logging, warnings
logging.basicConfig()
{{setup}}
logging.getLogger("bitsandbytes.backends.cpu.ops").warning({BNB_MESSAGE!r}, "No module named 'kernels'")
warnings.warn_explicit("`past_key_values` is deprecated", FutureWarning, "x.py", 1, module="transformers.models.x")
logging.getLogger("quantkit.study").warning("quantkit's own warning")
warnings.warn("quantkit's own user warning")
"""


def run_python(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stderr


def test_without_the_filters_the_noise_reaches_stderr():
    stderr = run_python(EMIT.format(setup=""))
    assert "gemm_4bit_forward" in stderr and "past_key_values" in stderr


def test_the_filters_drop_exactly_the_known_noise():
    setup = "from quantkit.quiet import silence_third_party_noise; silence_third_party_noise()"
    stderr = run_python(EMIT.format(setup=setup))
    assert "gemm_4bit_forward" not in stderr and "past_key_values" not in stderr
    assert "quantkit's own warning" in stderr and "quantkit's own user warning" in stderr


def test_the_command_line_and_the_plugin_install_the_filters(pytestconfig, tmp_path):
    bnb = logging.getLogger("bitsandbytes.backends.cpu.ops")
    assert any(type(f).__name__ == "_DropMatching" for f in bnb.filters), "the plugin did not silence the noise"
    with warnings.catch_warnings():
        warnings.resetwarnings()
        for installed in list(bnb.filters):
            bnb.removeFilter(installed)
        main(["golden", "verify", "--prompt-set", "absent", "--root", str(tmp_path)])
        assert any(type(f).__name__ == "_DropMatching" for f in bnb.filters), "the CLI did not silence the noise"
    silence_third_party_noise()
