"""Document-masked attention equals running each document on its own: the attention call, and the whole model."""

import pytest
import torch
from torch.nn import functional as F

from llm_platform.trainer.model import get_config
from llm_platform.trainer.model.document_mask import (
    DocumentMask,
    dense_document_mask,
    document_ids_from_eos,
    positions_in_documents,
)
from llm_platform.trainer.model.transformer import Transformer

LENGTHS = [5, 9, 3, 7]  # documents of one packed row of 24 tokens


def _documents(lengths) -> torch.Tensor:
    return torch.cat([torch.full((n,), i) for i, n in enumerate(lengths)])[None]


def test_document_ids_and_positions_from_eos():
    tokens = torch.tensor([[4, 5, 0, 6, 0, 0, 7, 8]])  # EOS = 0 closes a document
    documents = document_ids_from_eos(tokens, eos_id=0)
    assert documents.tolist() == [[0, 0, 0, 1, 1, 2, 3, 3]]
    assert positions_in_documents(documents).tolist() == [[0, 1, 2, 0, 1, 0, 0, 1]]


def test_dense_mask_is_causal_within_documents_and_window():
    mask = dense_document_mask(torch.tensor([[0, 0, 0, 1, 1]]), window=2)[0, 0]
    expected = torch.tensor(
        [[1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [0, 1, 1, 0, 0], [0, 0, 0, 1, 0], [0, 0, 0, 1, 1]], dtype=torch.bool
    )
    assert torch.equal(mask, expected)


@pytest.mark.parametrize("kv_heads", [4, 2])
def test_masked_attention_equals_documents_run_separately(kv_heads):
    torch.manual_seed(0)
    total = sum(LENGTHS)
    q = torch.randn(1, 4, total, 16, requires_grad=True)
    k = torch.randn(1, kv_heads, total, 16, requires_grad=True)
    v = torch.randn(1, kv_heads, total, 16, requires_grad=True)
    out = DocumentMask(_documents(LENGTHS))(q, k, v, scale=0.25)
    out.square().sum().backward()
    grads = [t.grad.clone() for t in (q, k, v)]
    for t in (q, k, v):
        t.grad = None
    pieces, start = [], 0
    for n in LENGTHS:
        part = slice(start, start + n)
        pieces.append(
            F.scaled_dot_product_attention(
                q[:, :, part], k[:, :, part], v[:, :, part], is_causal=True, scale=0.25, enable_gqa=kv_heads != 4
            )
        )
        start += n
    separate = torch.cat(pieces, dim=2)
    separate.square().sum().backward()
    torch.testing.assert_close(out, separate)
    for got, want in zip(grads, (q.grad, k.grad, v.grad), strict=True):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("preset", ["llama-tiny", "mistral-tiny", "deepseek-tiny"])
def test_model_logits_equal_documents_run_separately(preset):
    torch.manual_seed(0)
    model = Transformer(get_config(preset, sliding_window=4) if preset == "mistral-tiny" else get_config(preset))
    model.eval()
    tokens = torch.randint(1, 512, (1, sum(LENGTHS)))
    documents = _documents(LENGTHS)
    with torch.no_grad():
        packed = model(tokens, attend=DocumentMask(documents), positions=positions_in_documents(documents))
        separate = torch.cat([model(part) for part in tokens.split(LENGTHS, dim=1)], dim=1)
    torch.testing.assert_close(packed, separate, atol=1e-5, rtol=1e-4)


def test_without_restarting_positions_documents_still_see_only_themselves():
    """Masked but with positions that keep counting: each document equals itself run at its offset in the row."""
    torch.manual_seed(0)
    model = Transformer(get_config("llama-tiny")).eval()
    tokens = torch.randint(1, 512, (1, sum(LENGTHS)))
    with torch.no_grad():
        packed = model(tokens, attend=DocumentMask(_documents(LENGTHS)))
        start = LENGTHS[0]
        second = tokens[:, start : start + LENGTHS[1]]
        alone = model(second, positions=torch.arange(start, start + LENGTHS[1])[None])
    torch.testing.assert_close(packed[:, start : start + LENGTHS[1]], alone, atol=1e-5, rtol=1e-4)


def test_a_kv_cache_forward_is_refused():
    model = Transformer(get_config("llama-tiny"))
    mask = DocumentMask(_documents([2, 2]))
    with pytest.raises(ValueError, match="document masks cover training forwards"):
        mask(torch.zeros(1, 4, 1, 32), torch.zeros(1, 2, 4, 32), torch.zeros(1, 2, 4, 32), scale=1.0)
    with pytest.raises(ValueError, match="training forwards of RoPE or NoPE models"):
        model(torch.zeros(1, 4, dtype=torch.long), attend=mask, cache=object())
