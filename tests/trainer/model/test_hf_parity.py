"""Parity with transformers: HF model -> our loader -> same logits; our saver -> transformers loader -> same logits.

Small random fp32 configs on CPU, one per family and feature; max abs logit difference <= 1e-4.
"""

from __future__ import annotations

import pytest

pytest.importorskip("transformers")

from .hf_parity import CASES, TOLERANCE, build_hf_model, roundtrip_max_diffs  # noqa: E402


@pytest.mark.parametrize("case", sorted(CASES))
def test_roundtrip_matches_transformers_logits(case):
    loaded_diff, saved_diff = roundtrip_max_diffs(build_hf_model(case))
    assert loaded_diff <= TOLERANCE, f"our model loaded from HF differs by {loaded_diff}"
    assert saved_diff <= TOLERANCE, f"HF model loaded from our save differs by {saved_diff}"


@pytest.mark.parametrize("case", ["llama-gqa4-geglu-tanh", "llama-tied-bias-geglu", "qwen2-bias", "deepseek-v3"])
def test_fused_projections_load_from_and_export_to_separate_hf_weights(case):
    """qkv_proj / gate_up_proj joined from HF's q/k/v and gate/up on load, split again on save (GQA, biases, MLA's
    dense and shared-expert MLPs)."""
    loaded_diff, saved_diff = roundtrip_max_diffs(build_hf_model(case), fused_projections=True)
    assert loaded_diff <= TOLERANCE, f"our fused model loaded from HF differs by {loaded_diff}"
    assert saved_diff <= TOLERANCE, f"HF model loaded from our fused save differs by {saved_diff}"
