"""Norms return the autocast dtype under autocast (what the next matmul reads) and the input dtype otherwise."""

from __future__ import annotations

import pytest
import torch

from llm_platform.trainer.model.norm import LayerNorm, RMSNorm


@pytest.fixture(params=[RMSNorm, LayerNorm], ids=["rmsnorm", "layernorm"])
def norm(request):
    torch.manual_seed(0)
    module = request.param(64)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return module


def test_under_autocast_returns_what_the_next_matmul_would_read(norm):
    x = torch.randn(4, 64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = norm(x)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out, norm(x).to(torch.bfloat16), rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_without_autocast_returns_the_input_dtype(norm, dtype):
    assert norm(torch.randn(4, 64, dtype=dtype)).dtype == dtype


def test_rmsnorm_normalises_then_scales():
    norm = RMSNorm(64, eps=0.0)
    with torch.no_grad():
        norm.weight.fill_(2.0)
    x = torch.randn(3, 64, dtype=torch.float64)
    torch.testing.assert_close(norm(x), 2 * x / x.square().mean(-1, keepdim=True).sqrt(), rtol=1e-6, atol=1e-6)
