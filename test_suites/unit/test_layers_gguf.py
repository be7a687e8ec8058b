"""GGUFLinear: GGUF block bytes dequantized on the fly with diffusers' decoder, exactly as gguf-py decodes them."""

import gguf
import numpy as np
import pytest
import torch
from torch import nn

from quantkit import codecs
from quantkit.codecs.base import Packed
from quantkit.errors import FormatError
from quantkit.nn import GGUFLinear

OUT, IN = 8, 512


def random_blocks(qtype: str, seed: int = 0) -> np.ndarray:
    """Valid GGUF rows of ``IN`` weights: random codes and scales, block scales finite fp16."""
    ggml = {"q4_k": gguf.GGMLQuantizationType.Q4_K, "q8_0": gguf.GGMLQuantizationType.Q8_0}[qtype]
    block, size = gguf.GGML_QUANT_SIZES[ggml]
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, size=(OUT * IN // block, size), dtype=np.uint8)
    scales = 2 if qtype == "q8_0" else 4  # q8_0: d; q4_k: d, dmin
    blocks[:, :scales] = rng.uniform(1e-4, 1e-2, size=(len(blocks), scales // 2)).astype(np.float16).view(np.uint8)
    return blocks.reshape(OUT, -1)


# Exact on every machine: every product in the GGUF decoders is exact in float32 (see test_suites/properties).
@pytest.mark.parametrize("qtype", ["q4_k", "q8_0"])
def test_dequantized_weight_equals_gguf_py_reference_decoder(qtype):
    rows = random_blocks(qtype)
    layer = GGUFLinear(Packed(qtype, (OUT, IN), torch.from_numpy(rows)))
    reference = gguf.quants.dequantize(rows, gguf.GGMLQuantizationType[qtype.upper()])
    assert reference.shape == (OUT, IN)
    assert torch.equal(layer.dequantized_weight(torch.float32), torch.from_numpy(reference))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_forward_is_a_linear_with_the_dequantized_weight_in_the_compute_dtype(dtype):
    bias = torch.randn(OUT)
    layer = GGUFLinear(Packed("q8_0", (OUT, IN), torch.from_numpy(random_blocks("q8_0", 1))), bias)
    x = torch.randn(2, 3, IN, dtype=dtype)
    expected = nn.functional.linear(x, layer.dequantized_weight(dtype), bias.to(dtype))
    assert torch.equal(layer(x), expected)
    assert layer(x).dtype == dtype


def test_state_dict_round_trip_and_byte_storage():
    source = GGUFLinear(Packed("q4_k", (OUT, IN), torch.from_numpy(random_blocks("q4_k", 2))), torch.randn(OUT))
    state = source.state_dict()
    assert state["weight"].dtype == torch.uint8
    assert tuple(state["weight"].shape) == (OUT, IN // 256 * 144)
    fresh = GGUFLinear(Packed("q4_k", (OUT, IN), torch.from_numpy(random_blocks("q4_k", 3))), torch.zeros(OUT))
    fresh.load_state_dict(state)
    x = torch.randn(4, IN)
    assert torch.equal(fresh(x), source(x))
    assert 8 * source.packed().nbytes / (OUT * IN) == 4.5


def test_other_formats_are_refused():
    with pytest.raises(FormatError, match="GGUFLinear stores q4_k, q8_0"):
        GGUFLinear(Packed("int8", (OUT, IN), torch.zeros(OUT, IN, dtype=torch.int8), torch.ones(OUT)))


def test_from_linear_q8_0_writes_the_bytes_gguf_py_writes():
    torch.manual_seed(0)
    linear = nn.Linear(IN, OUT)
    layer = GGUFLinear.from_linear(linear, "q8_0")
    expected = gguf.quants.quantize(linear.weight.detach().numpy(), gguf.GGMLQuantizationType.Q8_0)
    assert torch.equal(layer.weight, torch.from_numpy(expected))
    x = torch.randn(5, IN)
    error = (layer(x) - linear(x)).norm() / linear(x).norm()
    assert error < 0.01


def test_from_linear_q4_k_decodes_as_the_codec_and_gguf_py_do():
    torch.manual_seed(0)
    linear = nn.Linear(IN, OUT)
    layer = GGUFLinear.from_linear(linear, "q4_k")
    reference = gguf.quants.dequantize(layer.weight.numpy(), gguf.GGMLQuantizationType.Q4_K)
    assert torch.equal(layer.dequantized_weight(), torch.from_numpy(reference))
    assert torch.equal(layer.dequantized_weight(), codecs.dequantize(layer.packed()))


def test_rows_that_do_not_fill_q4_k_blocks_are_refused():
    with pytest.raises(FormatError, match="multiple of 256"):
        GGUFLinear.from_linear(nn.Linear(416, 8), "q4_k", name="llm_cond_proj")
