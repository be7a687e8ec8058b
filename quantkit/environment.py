"""Where a result was made: library versions, the CPU features torch dispatches on, and the dependency lock.

Floating-point kernels (oneDNN, MKL, torch's vectorised CPU loops) choose code paths by CPU instruction set and
change between releases, so pixel-exact equality means something only between identical environments. Golden
sets record this fingerprint; a comparison across different fingerprints falls back to a declared tolerance and
says in one line what changed.
"""

from __future__ import annotations

import functools
import hashlib
import platform
import re
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

LOCK_FILE = Path(__file__).resolve().parents[1] / "requirements.lock"
# The libraries whose float kernels or numerics can move a pixel or a score.
TRACKED_PACKAGES = (
    "torch",
    "diffusers",
    "transformers",
    "tokenizers",
    "numpy",
    "scipy",
    "safetensors",
    "bitsandbytes",
    "gguf",
    "pillow",
    "onnxruntime",
    "rapidocr",
    "numba",
)
# /proc/cpuinfo flags that torch's CPU dispatch (ATen's AVX2/AVX512 kernels) and oneDNN select code paths by.
DISPATCH_FLAGS = (
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
)
LOCK_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def normalize(name: str) -> str:
    """PEP 503 name: ``Open_Clip-Torch`` and ``open-clip-torch`` are one package."""
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


@functools.cache
def cpu() -> dict[str, Any]:
    """Vendor, model, torch's dispatch level, the dispatch-relevant ISA flags of this machine's CPU and torch's
    intra-op thread count (parallel reductions split by thread: the same CPU with 1 thread instead of 2 moves
    pixels by a level)."""
    info: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("vendor_id", "model name", "flags") and key not in info:
                info[key] = value.strip()
    except OSError:  # not Linux: the platform module is all we have
        pass
    flags = set(info.get("flags", "").split())
    return {
        "vendor": info.get("vendor_id", platform.processor() or "unknown"),
        "model": info.get("model name", platform.machine()),
        "torch_dispatch": _torch_dispatch(),
        "flags": [flag for flag in DISPATCH_FLAGS if flag in flags],
        "threads": _torch_threads(),
    }


def _torch_dispatch() -> str | None:
    try:
        import torch
    except ImportError:
        return None
    return torch.backends.cpu.get_cpu_capability()


def _torch_threads() -> int | None:
    try:
        import torch
    except ImportError:
        return None
    return torch.get_num_threads()


def pins(lock_text: str) -> dict[str, str]:
    """``package -> version`` of a pip-compile style lock's text (names normalised as PEP 503 does)."""
    found = {}
    for line in lock_text.splitlines():
        if match := LOCK_PIN.match(line.strip()):
            found[normalize(match.group(1))] = match.group(2)
    return found


def locked_versions(lock: Path = LOCK_FILE) -> dict[str, str]:
    """``package -> version`` pinned in the lock file; empty when there is no lock (a wheel install)."""
    return pins(lock.read_text(encoding="utf-8")) if lock.is_file() else {}


def lock_drift(lock: Path = LOCK_FILE, packages: tuple[str, ...] = TRACKED_PACKAGES) -> list[tuple[str, str, str]]:
    """``(package, locked, installed)`` for each tracked package whose installed version is not the locked one."""
    pins = locked_versions(lock)
    drift = []
    for package in packages:
        locked, installed = pins.get(normalize(package)), installed_version(package)
        if locked and installed and _release(installed) != _release(locked):
            drift.append((package, locked, installed))
    return drift


def _release(version: str) -> str:
    """``2.14.1+cu130`` and ``2.14.1`` are the same release of the same source."""
    return version.split("+", 1)[0]


def fingerprint() -> dict[str, Any]:
    """What a golden set records about the environment that made it."""
    lock_hash = hashlib.sha256(LOCK_FILE.read_bytes()).hexdigest() if LOCK_FILE.is_file() else None
    return {
        "python": platform.python_version(),
        "packages": {name: installed_version(name) for name in TRACKED_PACKAGES},
        "cpu": cpu(),
        "lock_sha256": lock_hash,
    }


def differences(recorded: Mapping[str, Any] | None, current: Mapping[str, Any]) -> list[str]:
    """Human-readable changes from ``recorded`` to ``current`` (``["torch 2.14.1 → 2.15.0", ...]``); an absent
    recording (a set made before fingerprints existed) is one change of its own."""
    if not recorded:
        return ["environment not recorded with the golden set"]
    changes = []
    old_packages, new_packages = recorded.get("packages", {}), current.get("packages", {})
    for name in sorted(old_packages.keys() | new_packages.keys()):
        old, new = old_packages.get(name), new_packages.get(name)
        if old != new:
            changes.append(f"{name} {old or 'absent'} → {new or 'absent'}")
    old_cpu, new_cpu = recorded.get("cpu", {}), current.get("cpu", {})
    if (old_cpu.get("vendor"), old_cpu.get("model")) != (new_cpu.get("vendor"), new_cpu.get("model")):
        changes.append(f"CPU {old_cpu.get('model')} → {new_cpu.get('model')}")
    if old_cpu.get("torch_dispatch") != new_cpu.get("torch_dispatch"):
        changes.append(f"torch CPU dispatch {old_cpu.get('torch_dispatch')} → {new_cpu.get('torch_dispatch')}")
    old_flags, new_flags = set(old_cpu.get("flags", ())), set(new_cpu.get("flags", ()))
    if old_flags != new_flags:
        moved = [f"+{f}" for f in sorted(new_flags - old_flags)] + [f"-{f}" for f in sorted(old_flags - new_flags)]
        changes.append("CPU flags " + " ".join(moved))
    if "threads" in old_cpu and old_cpu["threads"] != new_cpu.get("threads"):  # sets recorded before: not known
        changes.append(f"torch threads {old_cpu['threads']} → {new_cpu.get('threads')}")
    if recorded.get("python") != current.get("python"):
        changes.append(f"python {recorded.get('python')} → {current.get('python')}")
    return changes
