"""`LLMEngine.from_pretrained(..., quantization=...)`: the serving path's INT8/INT4 weights (`llmp serve
--quantization`, `serve.quantization`) decode exactly as the same quantized model does through the static cache."""

from __future__ import annotations

import copy

import pytest
import torch

from llm_platform.trainer.inference import LLMEngine, SamplingParams
from llm_platform.trainer.inference.generate import generate
from llm_platform.trainer.inference.quantize import Int4Linear, Int8Linear, quantize_model
from llm_platform.trainer.model.hf import save_pretrained

from .conftest import tiny_model

PROMPTS = [[5, 17, 99, 3], [250, 1, 1, 1, 42, 8, 77]]


@pytest.mark.parametrize(("scheme", "layer"), [("int8", Int8Linear), ("int4", Int4Linear)])
def test_a_quantized_checkpoint_serves_the_tokens_its_quantized_model_generates(tmp_path, scheme, layer):
    model = tiny_model(dim=128, ffn_dim=256)  # int4 groups of 128 need in-features divisible by 128
    save_pretrained(model, tmp_path)
    engine = LLMEngine.from_pretrained(tmp_path, device="cpu", dtype=torch.float32, quantization=scheme)
    assert any(isinstance(m, layer) for m in engine.model.modules())
    reference = quantize_model(copy.deepcopy(model), scheme)
    outputs = engine.generate(PROMPTS, SamplingParams(max_tokens=12, temperature=0, ignore_eos=True))
    for prompt, output in zip(PROMPTS, outputs, strict=True):
        expected = generate(reference, prompt, 12, temperature=0)
        assert output.outputs[0].token_ids == expected
