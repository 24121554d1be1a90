"""Weight-only INT8 / INT4: round-trip error bounds, kernels against the dequantized reference, whole-model logits,
save/load. Tolerances (fp32 on CPU): kernel vs ``x @ deq(W).T`` rtol 1e-5 relative to the output's norm; tiny-model
logits within 3% (INT8) and 15% (INT4, group 32) of the float logits' norm, with the same greedy next token for
most positions."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from llm_platform.trainer.inference.quantize import (
    Int4Linear,
    Int8Linear,
    dequantize_int4,
    dequantize_int8,
    load_quantized,
    pack_int4,
    quantize_int4,
    quantize_int8,
    quantize_model,
    save_quantized,
    unpack_int4,
)
from llm_platform.trainer.model import get_config
from llm_platform.trainer.model.transformer import Transformer


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.detach().float() - b.detach().float()).norm() / b.detach().float().norm())


def _model(**overrides) -> Transformer:
    torch.manual_seed(0)
    model = Transformer(get_config("llama-tiny", max_seq_len=64, **overrides))
    model.init_weights(seed=0)
    return model.eval()


def test_int8_round_trip_is_within_half_a_step_per_channel():
    w = torch.randn(48, 96) * torch.logspace(-2, 1, 48)[:, None]  # rows of very different magnitude
    codes, scales = quantize_int8(w)
    assert codes.dtype == torch.int8 and scales.shape == (48,)
    err = (dequantize_int8(codes, scales) - w).abs()
    assert bool((err <= scales[:, None] / 2 + 1e-7).all())
    assert bool((err.amax(1) <= w.abs().amax(1) / 254 + 1e-7).all())


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("group_size", [32, 64, 128])
def test_int4_round_trip_is_within_half_a_step_per_group(group_size, symmetric):
    w = torch.randn(40, 256)
    codes, scales, offsets = quantize_int4(w, group_size, symmetric=symmetric)
    assert int(codes.max()) <= 15 and scales.shape == (40, 256 // group_size)
    err = (dequantize_int4(codes, scales, offsets) - w).abs().reshape(40, -1, group_size)
    assert bool((err <= scales[..., None] / 2 + 1e-6).all())
    if not symmetric:
        span = w.reshape(40, -1, group_size)
        assert bool((err.amax(-1) <= (span.amax(-1) - span.amin(-1)) / 30 + 1e-6).all())
    assert torch.equal(unpack_int4(pack_int4(codes)), codes)


def test_int4_packing_puts_the_even_column_in_the_high_nibble():
    codes = torch.tensor([[1, 2, 15, 0]], dtype=torch.uint8)
    assert pack_int4(codes).tolist() == [[0x12, 0xF0]]


@pytest.mark.parametrize("bias", [False, True])
def test_quantized_linears_match_the_dequantized_matmul(bias):
    torch.manual_seed(1)
    linear = nn.Linear(256, 64, bias=bias)
    x = torch.randn(2, 5, 256)
    for module in (Int8Linear.from_linear(linear), Int4Linear.from_linear(linear, 32), Int4Linear.from_linear(linear)):
        reference = x @ module.dequantized(torch.float32).T + (linear.bias if bias else 0)
        out = module(x)
        assert out.shape == (2, 5, 64)
        assert _rel(out, reference) < 1e-5, type(module).__name__
        assert _rel(out, linear(x)) < (0.01 if isinstance(module, Int8Linear) else 0.15)


def test_int4_cpu_kernel_is_used_where_available():
    module = Int4Linear.from_linear(nn.Linear(128, 32, bias=False), 32)
    if not hasattr(torch.ops.aten, "_convert_weight_to_int4pack_for_cpu"):
        pytest.skip("this PyTorch has no CPU int4 kernel")
    assert module.kernel_weight is not None
    x = torch.randn(3, 128)
    module_reference = x @ module.dequantized().T
    assert _rel(module(x), module_reference) < 1e-5


@pytest.mark.parametrize(("scheme", "tolerance"), [("int8", 0.03), ("int4", 0.15)])
def test_quantized_tiny_model_logits_stay_close_to_float(scheme, tolerance):
    model = _model()
    ids = torch.randint(0, 512, (2, 24), generator=torch.Generator().manual_seed(0))
    reference = model(ids)
    quantize_model(model, scheme, group_size=32)
    kinds = {type(m) for m in model.modules()}
    assert (Int8Linear if scheme == "int8" else Int4Linear) in kinds and nn.Linear in kinds  # lm_head stays float
    logits = model(ids)
    assert _rel(logits, reference) < tolerance
    assert (logits.argmax(-1) == reference.argmax(-1)).float().mean() > 0.8


def test_int4_leaves_layers_that_do_not_divide_into_groups_in_float():
    model = _model(ffn_dim=320)  # down_proj reads 320 = 2.5 groups of 128
    quantize_model(model, "int4", group_size=128)
    assert isinstance(model.layers[0].mlp.down_proj, nn.Linear)
    assert "layers.0.mlp.down_proj" in model.quantization["skipped"]
    assert isinstance(model.layers[0].mlp.up_proj, Int4Linear)


def test_bad_scheme_and_group_size_are_named():
    with pytest.raises(ValueError, match="quantization must be one of"):
        quantize_model(_model(), "int3")
    with pytest.raises(ValueError, match="group_size must be one of"):
        quantize_model(_model(), "int4", group_size=48)


@pytest.mark.parametrize("scheme", ["int8", "int4"])
def test_save_and_load_give_the_same_logits(tmp_path, scheme):
    model = quantize_model(_model(), scheme, group_size=32, lm_head=True)
    ids = torch.randint(0, 512, (1, 16), generator=torch.Generator().manual_seed(0))
    path = tmp_path / "q.safetensors"
    save_quantized(model, path)
    fresh = Transformer(get_config("llama-tiny", max_seq_len=64)).eval()
    load_quantized(fresh, path)
    assert fresh.quantization["scheme"] == scheme
    assert torch.equal(fresh(ids), model(ids))


def test_load_rejects_a_float_checkpoint(tmp_path):
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(ValueError, match="no 'quantization' metadata"):
        load_quantized(_model(), tmp_path / "plain.safetensors")
