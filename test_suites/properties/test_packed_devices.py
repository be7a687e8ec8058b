"""Moving a packed tensor moves every part of it (codes, outside scales, extra state) and changes nothing else."""

import pytest
import torch

from quantkit.codecs import quantize


def packed_parts(packed):
    return ["data", *(["scale"] if packed.scale is not None else []), *packed.extra]


@pytest.mark.parametrize(
    ("fmt", "options"), [("int8", {}), ("q8_0", {}), ("nf4", {"double_quant": True})], ids=["int8", "q8_0", "nf4_dq"]
)
def test_to_moves_data_scale_and_extra_to_the_device(fmt, options):
    packed = quantize(torch.randn(64, 256, generator=torch.Generator().manual_seed(0)), fmt, **options)
    moved = packed.to("meta")
    parts = {"data": moved.data, "scale": moved.scale, **moved.extra}
    assert {k: v.device.type for k, v in parts.items() if v is not None} == {k: "meta" for k in packed_parts(packed)}
    assert (moved.scale is None) == (packed.scale is None)
    assert set(moved.extra) == set(packed.extra)
    assert (moved.fmt, moved.shape, moved.nbytes) == (packed.fmt, packed.shape, packed.nbytes)
    assert packed.data.device.type == "cpu"
