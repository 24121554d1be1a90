"""bench/train.py's variant names: toggles of our model, and a clear refusal of one given to transformers' model."""

from __future__ import annotations

import re

import pytest

from tests.processes import bench_module


def test_a_variant_name_is_ours_with_its_toggles():
    variant = bench_module("train").Variant.parse("ours+proj+triton+plainloss")
    assert variant.overrides == {"fused_projections": True, "kernels": "triton"}
    assert variant.kind == "ours" and not variant.fused_loss and not variant.fp8


def test_transformers_model_takes_only_fp8():
    bench = bench_module("train")
    assert bench.Variant.parse("hf+fp8").fp8
    for name in ("hf+proj", "hf+plainloss"):
        with pytest.raises(SystemExit, match=re.escape(f"variant '{name}': hf takes only the fp8 toggle")):
            bench.Variant.parse(name)
    with pytest.raises(SystemExit, match=r"unknown toggle 'fast'"):
        bench.Variant.parse("ours+fast")
