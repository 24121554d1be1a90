"""Attention that stays inside each document of a packed sequence.

A packed row holds several documents back to back. Plain causal attention lets a token see the end of the previous
document, which it has nothing to do with; a document mask limits it to the tokens of its own document. The mask is
described by one document id per token ([B, T], any integers, equal ids = same document), so it costs nothing to
carry and builds what each device wants:

- on CUDA, a FlexAttention block mask (built once per forward and shared by the layers): the compiled kernel skips
  the blocks between documents instead of computing and discarding them, and no T x T tensor ever exists;
- elsewhere, a dense boolean [B, 1, T, T] mask for SDPA (CPU tests and small models).

Both give the result of running each document on its own (tests/trainer/model/test_document_mask.py checks that).
Pretraining marks documents by their end-of-sequence token (`document_ids_from_eos`); packed fine-tuning rows carry
their ids from the batcher. `positions_in_documents` gives positions that restart at each document, for RoPE.
"""

from __future__ import annotations

import functools

import torch
from torch.nn import functional as F


def document_ids_from_eos(tokens: torch.Tensor, eos_id: int) -> torch.Tensor:
    """[B, T] document ids of token windows cut from an EOS-separated stream: the EOS closes its document, the token
    after it opens the next one. Computed on the tokens' device, without a host sync."""
    is_eos = (tokens == eos_id).to(torch.int32)
    return torch.cumsum(is_eos, dim=-1) - is_eos  # EOS tokens strictly before each position


def positions_in_documents(document_ids: torch.Tensor) -> torch.Tensor:
    """[B, T] positions that restart at 0 wherever the document id changes."""
    index = torch.arange(document_ids.shape[-1], device=document_ids.device).expand_as(document_ids)
    starts = torch.ones_like(document_ids, dtype=torch.bool)
    starts[..., 1:] = document_ids[..., 1:] != document_ids[..., :-1]
    first = torch.where(starts, index, torch.zeros_like(index)).cummax(dim=-1).values  # start of each token's doc
    return index - first


def dense_document_mask(document_ids: torch.Tensor, window: int | None = None) -> torch.Tensor:
    """Boolean [B, 1, T, T] (True = attend): causal, same document, inside the sliding window if any."""
    q, k = document_ids.unsqueeze(-1), document_ids.unsqueeze(-2)
    index = torch.arange(document_ids.shape[-1], device=document_ids.device)
    distance = index[:, None] - index[None, :]
    allowed = (q == k) & (distance >= 0)
    if window is not None:
        allowed &= distance < window
    return allowed.unsqueeze(1)


@functools.cache
def _compiled_flex():
    """FlexAttention compiled once per process: uncompiled it materialises the full score matrix."""
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=False)


@torch.compiler.disable  # built eagerly (its own compiled kernel) even when the forward around it is compiled
def _block_mask(document_ids: torch.Tensor, window: int | None):
    from torch.nn.attention.flex_attention import create_block_mask

    def mask_mod(b, _head, q_idx, kv_idx):
        allowed = (document_ids[b, q_idx] == document_ids[b, kv_idx]) & (q_idx >= kv_idx)
        if window is not None:
            allowed = allowed & (q_idx - kv_idx < window)
        return allowed

    batch, seq = document_ids.shape
    return create_block_mask(mask_mod, batch, None, seq, seq, device=document_ids.device, _compile=True)


class DocumentMask:
    """The document structure of one training batch: a drop-in attention function for every layer of a forward
    (``AttentionContext.attend``). Masks are built lazily, once per distinct sliding window, and reused by the layers.

    use_flex: None picks FlexAttention on CUDA and dense SDPA masks elsewhere.
    """

    def __init__(self, document_ids: torch.Tensor, use_flex: bool | None = None) -> None:
        self.document_ids = document_ids
        self.use_flex = document_ids.is_cuda if use_flex is None else use_flex
        self._masks: dict[int | None, object] = {}

    def _mask(self, window: int | None):
        if window not in self._masks:
            build = _block_mask if self.use_flex else dense_document_mask
            self._masks[window] = build(self.document_ids, window)
        return self._masks[window]

    def __call__(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, scale: float, window: int | None = None
    ) -> torch.Tensor:
        """Softmax attention of [B, H, T, D] queries over [B, H_kv, T, D] keys/values of the same tokens."""
        if q.shape[2] != k.shape[2] or q.shape[2] != self.document_ids.shape[-1]:
            raise ValueError(
                f"document masks cover training forwards of the whole batch: {self.document_ids.shape[-1]} tokens, "
                f"got {q.shape[2]} queries and {k.shape[2]} keys (a KV cache does not take document ids)"
            )
        grouped = k.shape[1] != q.shape[1]
        if self.use_flex:
            return _compiled_flex()(q, k, v, block_mask=self._mask(window), scale=scale, enable_gqa=grouped)
        if grouped:
            group = q.shape[1] // k.shape[1]
            k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=self._mask(window), scale=scale)
