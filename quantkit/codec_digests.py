"""Golden bytes of the codecs: a sha256 per format of what it encodes from one fixed, seeded weight.

Our codecs are bit-exact (llama.cpp / bitsandbytes / the published FP8 layout), so any change to their bytes is a
regression even when it makes an image *more* faithful (a Q4_K encoder without its scale search raises PSNR on some
weights): fidelity gates, which bound how far a variant may fall, cannot see such a change, this check does. The
digests live in ``golden/codecs.json``; ``quantkit sensitivity`` checks them in every profile run, a unit test in the
default suite, and ``record`` rewrites them on purpose (an intended format change shows up in review).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from quantkit import atomic
from quantkit.errors import QuantkitError

GOLDEN_FILE = Path(__file__).resolve().parents[1] / "golden" / "codecs.json"
FORMATS = ("fp8_e4m3", "int8", "q4_k", "q8_0", "nf4")
SHAPE = (64, 512)  # whole Q4_K super-blocks and NF4 blocks per row


def probe_weight() -> torch.Tensor:
    """A transformer-like weight: Gaussian, a few outlier columns, one all-zero row, bf16-representable."""
    generator = torch.Generator().manual_seed(20261202)
    w = torch.randn(SHAPE, generator=generator) * 0.02
    w[:, ::97] *= 25.0
    w[7] = 0.0
    return w.to(torch.bfloat16).to(torch.float32)


def digest(fmt: str) -> str:
    """sha256 over every tensor the codec stores for :func:`probe_weight` (codes, scales, extra state)."""
    from quantkit import codecs

    packed = codecs.quantize(probe_weight(), fmt)
    parts = {"data": packed.data, "scale": packed.scale, **packed.extra}
    sha = hashlib.sha256()
    for name, tensor in parts.items():
        if tensor is not None:
            sha.update(
                name.encode() + b"\0" + tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes()
            )
    return sha.hexdigest()


def digests() -> dict[str, str]:
    return {fmt: digest(fmt) for fmt in FORMATS}


def load(path: Path = GOLDEN_FILE) -> dict[str, str]:
    if not path.is_file():
        raise QuantkitError(f"no golden codec digests at {path}: record them with quantkit.codec_digests.record()")
    return json.loads(path.read_text(encoding="utf-8"))["digests"]


def check(path: Path = GOLDEN_FILE) -> list[str]:
    """One line per format whose bytes differ from the golden digest (empty when every codec is unchanged)."""
    golden = load(path)
    return [
        f"codec {fmt}: bytes changed (sha256 {now[:12]}, golden {golden.get(fmt, 'none')[:12]})"
        for fmt, now in digests().items()
        if golden.get(fmt) != now
    ]


def record(path: Path = GOLDEN_FILE) -> dict[str, str]:
    """Write the current digests (an intended change of a codec's bytes)."""
    values = digests()
    atomic.write_json(path, {"weight": f"probe_weight() {list(SHAPE)}, seed 20261202", "digests": values})
    return values
