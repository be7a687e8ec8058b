"""What every codec promises whatever the input: values only (no autograd graph), a clear error for a tensor
without values or for weights a format cannot represent, and CPU work that a busy machine cannot stall."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from quantkit.codecs import FORMATS, Packed, codec, dequantize, quantize
from quantkit.codecs.base import run_in_chunks
from quantkit.errors import FormatError, MetaTensorError, WeightRangeError
from quantkit.quantize import decide_layers, quantize_
from quantkit.recipes import GGUF, NF4, FP8Reference, Int8W8A8


def weight(dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return (torch.randn(8, 512, generator=torch.Generator().manual_seed(0)) * 0.02).to(dtype)


def same_storage(a: Packed, b: Packed) -> bool:
    """Byte-identical data, scales and extra state (bytes, so that fp8 codes and NaN compare too)."""
    ta, tb = tensors_of(a), tensors_of(b)
    return len(ta) == len(tb) and all(
        x.dtype == y.dtype and torch.equal(bytes_of(x), bytes_of(y)) for x, y in zip(ta, tb, strict=True)
    )


def tensors_of(packed: Packed) -> list[torch.Tensor]:
    return [packed.data, *([packed.scale] if packed.scale is not None else []), *packed.extra.values()]


def bytes_of(t: torch.Tensor) -> torch.Tensor:
    return t.detach().contiguous().reshape(-1).view(torch.uint8)


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_parameter_that_requires_grad_encodes_like_its_values(fmt):
    parameter = nn.Parameter(weight())
    packed = quantize(parameter, fmt, name="layers.0.to_q.weight")
    assert not any(t.requires_grad for t in tensors_of(packed))
    plain = quantize(weight(), fmt)
    assert same_storage(packed, plain)
    assert torch.equal(dequantize(packed), dequantize(plain))


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_meta_tensor_is_a_clear_error_naming_the_tensor(fmt):
    with pytest.raises(
        MetaTensorError, match=rf"^layers\.3\.w2\.weight: {fmt} encodes .* this \(8, 512\) tensor .* meta device"
    ):
        quantize(torch.empty(8, 512, device="meta"), fmt, name="layers.3.w2.weight")


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_tensor_given_no_name_is_called_tensor_in_errors(fmt):
    """``name`` is optional for the dispatcher and for each format module; an error then still starts with a name."""
    meta = torch.empty(8, 512, device="meta")
    for encode in (lambda w: quantize(w, fmt), codec(fmt).quantize):
        with pytest.raises(MetaTensorError, match=r"^tensor: .* meta device"):
            encode(meta)


@pytest.mark.parametrize("fmt", FORMATS)
def test_float64_values_beyond_float32_are_refused_with_the_tensor_and_the_row(fmt):
    w = weight(torch.float64)
    w[5, 300] = -1e39  # finite in float64, Inf once cast to float32 (every codec computes in float32)
    with pytest.raises(WeightRangeError, match=r"proj\.weight: .* -1e\+39 at index \[5, 300\] \(row 5\)"):
        quantize(w, fmt, name="proj.weight")


@pytest.mark.parametrize("fmt", FORMATS)
def test_float64_weights_encode_as_their_float32_roundings(fmt):
    w = weight(torch.float64) + 1e-9 * torch.randn(
        8, 512, generator=torch.Generator().manual_seed(2), dtype=torch.float64
    )
    assert same_storage(quantize(w, fmt), quantize(w.float(), fmt))


@pytest.mark.parametrize("fmt", FORMATS)
def test_codecs_work_on_the_weight_s_device_whatever_torch_s_default_device(fmt):
    """Model loaders build layers under ``with torch.device("meta")`` (or set a CUDA default) while they pack real
    weights: every buffer a codec allocates must follow the weight, or the bytes land on the meta device."""
    w = weight()
    expected = quantize(w, fmt)
    with torch.device("meta"):
        packed = quantize(w, fmt)
        decoded = dequantize(packed)
    assert all(t.device.type == "cpu" for t in tensors_of(packed))
    assert same_storage(packed, expected)
    assert decoded.device.type == "cpu" and torch.equal(decoded, dequantize(expected))


def test_the_range_error_is_a_format_error_callers_already_catch():
    assert issubclass(WeightRangeError, FormatError) and issubclass(MetaTensorError, FormatError)


@pytest.mark.parametrize("recipe", [GGUF(qtype="q4_k"), GGUF(qtype="q8_0"), NF4(), FP8Reference(), Int8W8A8()])
def test_layer_decisions_need_shapes_only(recipe):
    # A dry run of a full-size model on the meta device reaches every keep/skip decision without touching a value.
    with torch.device("meta"):
        model = nn.Sequential(nn.Linear(512, 256), nn.Linear(256, 300), nn.Linear(300, 8))
    linears = {name: (name, module) for name, module in model.named_modules() if isinstance(module, nn.Linear)}
    decisions = decide_layers(linears, recipe, None)
    assert [d.name for d in decisions] == ["0", "1", "2"]


def test_quantizing_a_meta_model_is_one_clear_error_before_any_layer_changes():
    with torch.device("meta"):
        model = nn.Sequential(nn.Linear(512, 256), nn.Linear(256, 8))
    with pytest.raises(MetaTensorError, match=r"^0: q4_k encodes weight values.*meta device"):
        quantize_(model, GGUF(qtype="q4_k"))
    assert all(type(m) is nn.Linear for m in model)


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_cpu_chunks_run_with_single_threaded_torch_ops_and_the_thread_count_is_restored(two_threads):
    seen: list[tuple[int, int]] = []
    run_in_chunks(lambda part: seen.append((part.start, torch.get_num_threads())), 10, 3, torch.device("cpu"))
    assert sorted(seen) == [(0, 1), (3, 1), (6, 1), (9, 1)]
    assert torch.get_num_threads() == 2


@pytest.mark.parametrize("fmt", FORMATS)
def test_encoding_on_worker_threads_equals_encoding_on_one_thread(fmt, two_threads):
    w = torch.randn(512, 4096, generator=torch.Generator().manual_seed(1)) * 0.02
    threaded = quantize(w, fmt)
    torch.set_num_threads(1)
    assert same_storage(threaded, quantize(w, fmt))
