"""Streaming quantization's peak memory against checkpoint size: near one row chunk, not the model.

Goal from the issue: peak RSS at most 1.5x the largest tensor plus 1 GB. Each run happens in a fresh subprocess
that imports everything, resets the kernel's RSS high-water mark (``/proc/self/clear_refs``), notes its resident
size, streams, and reports the new high-water mark, so the working memory of streaming is separated from the
interpreter and torch.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import safetensors.torch
import torch

MB = 1024 * 1024
GB = 1024 * MB
FIRST_USE_ALLOWANCE = 64 * MB

RUN = textwrap.dedent(
    """
    import json, sys
    from quantkit.io.streaming import stream_quantize

    def status(field):
        line = next(l for l in open("/proc/self/status") if l.startswith(field + ":"))
        return int(line.split()[1]) * 1024

    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")  # reset VmHWM to the current RSS
    before = status("VmRSS")
    stream_quantize(sys.argv[1], sys.argv[2], sys.argv[3], chunk_bytes=int(sys.argv[4]))
    print(json.dumps({"before": before, "peak": status("VmHWM")}))
    """
)


def write_checkpoint(folder, *, shards: int, tensors_per_shard: int, rows: int, cols: int) -> tuple[int, int]:
    """bf16 linears of ``[rows, cols]`` in ``shards`` files, written one shard at a time; returns (total, largest)."""
    gen = torch.Generator().manual_seed(0)
    weight_map = {}
    for shard in range(shards):
        file = f"model-{shard + 1:05d}-of-{shards:05d}.safetensors"
        part = {
            f"layers.{shard * tensors_per_shard + i}.feed_forward.w2.weight": torch.randn(
                rows, cols, generator=gen, dtype=torch.float32
            ).to(torch.bfloat16)
            for i in range(tensors_per_shard)
        }
        part[f"layers.{shard}.ffn_norm1.weight"] = torch.ones(cols, dtype=torch.bfloat16)
        safetensors.torch.save_file(part, folder / file)
        weight_map.update(dict.fromkeys(part, file))
        del part
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    largest = rows * cols * 2
    return shards * tensors_per_shard * largest + shards * cols * 2, largest


def rss_during_streaming(*args: str) -> dict[str, int]:
    out = subprocess.run([sys.executable, "-c", RUN, *args], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(tmp_path, fmt: str, suffix: str, chunk_bytes: int, **shape: int) -> dict[str, float]:
    total, largest = write_checkpoint(tmp_path, **shape)
    rss = rss_during_streaming(str(tmp_path), str(tmp_path / f"out{suffix}"), fmt, str(chunk_bytes))
    numbers = {
        "checkpoint_bytes": total,
        "largest_tensor_bytes": largest,
        "peak_rss_bytes": rss["peak"],
        "rss_after_imports_bytes": rss["before"],
        "working_bytes": rss["peak"] - rss["before"],
        "goal_bytes": 1.5 * largest + GB,
    }
    print(f"\nstreaming {fmt}: " + ", ".join(f"{k}={v / MB:.0f} MiB" for k, v in numbers.items()))
    return numbers


@pytest.mark.parametrize(("fmt", "suffix"), [("int8", ".safetensors"), ("q8_0", ".gguf")])
def test_streaming_memory_stays_near_one_chunk_small(tmp_path, fmt, suffix):
    numbers = measure(tmp_path, fmt, suffix, 4 * MB, shards=2, tensors_per_shard=2, rows=2048, cols=4096)
    assert numbers["peak_rss_bytes"] <= numbers["goal_bytes"]
    # one 4 MiB chunk in flight, plus what torch allocates on the first use of its kernels
    assert numbers["working_bytes"] <= 1.5 * numbers["largest_tensor_bytes"] + FIRST_USE_ALLOWANCE


@pytest.mark.slow
def test_streaming_a_multi_gigabyte_checkpoint_stays_within_the_goal(tmp_path):
    numbers = measure(
        tmp_path, "int8", ".safetensors", 64 * MB, shards=8, tensors_per_shard=2, rows=8192, cols=16384
    )  # 16 bf16 tensors of 256 MiB in 8 shards: a 4 GiB checkpoint
    assert numbers["checkpoint_bytes"] >= 4 * GB
    assert numbers["peak_rss_bytes"] <= numbers["goal_bytes"]
    assert numbers["working_bytes"] < numbers["checkpoint_bytes"] / 4
