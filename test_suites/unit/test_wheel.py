"""quantkit works installed from its wheel, outside any checkout: the wheel ships the data folder (gate profiles,
prompts, the embedded tiny models) and ``quantkit study`` runs on the tiny default; without the data folder it says
in one line what to set."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_without_its_data_folder_quantkit_study_says_in_one_line_what_to_set(tmp_path):
    env = {**os.environ, "QUANTKIT_GOLDEN_DIR": str(tmp_path / "absent"), "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [sys.executable, "-m", "quantkit", "study", "--quiet"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [
        f"quantkit study: error: gate profile 'tiny' needs quantkit's data folder, not found at {tmp_path / 'absent'}:"
        " set QUANTKIT_GOLDEN_DIR to the golden/ folder of a quantkit checkout"
    ]


@pytest.mark.slow
def test_the_installed_wheel_runs_a_tiny_study_outside_the_checkout(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", str(ROOT), "-w", tmp_path / "dist"],
        check=True,
        capture_output=True,
    )
    (wheel,) = (tmp_path / "dist").glob("quantkit-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    python = venv / "bin" / "python"
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel], check=True)
    # The trick that keeps this test offline: the fresh venv holds only quantkit (not editable); a .pth file puts the
    # locked dependencies of the running environment behind it on sys.path. (CI installs them from the lock instead.)
    site = Path(
        subprocess.check_output(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True
        ).strip()
    )
    (site / "locked-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = {
        k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "QUANTKIT_GOLDEN_DIR", "QUANTKIT_IDEOGRAM4_DIR")
    }
    where = subprocess.run(
        [python, "-c", "import quantkit.data as d; print(d.__file__); print(d.GOLDEN_DIR)"],
        cwd=outside,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert where == [str(site / "quantkit" / "data.py"), str(site / "quantkit" / "_golden")]
    allow = ["--allow-skip", "variant not run", "--allow-skip", "metric not requested"]
    study = [venv / "bin" / "quantkit", "study", "--quiet", "--prompt-limit", "2", "--variants", "fp8,q8_0"]
    run = subprocess.run(
        [*study, "--metrics", "psnr,ssim", *allow, "--cache", tmp_path / "cache", "--out", tmp_path / "out"],
        cwd=outside,
        env=env,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("variant  PSNR")
    assert "gates (tiny): 2 passed, 0 failed" in run.stdout
