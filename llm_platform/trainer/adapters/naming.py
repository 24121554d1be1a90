"""Our module names <-> Hugging Face's, and the MLA row order, taken from the checkpoint mapping in ``model.hf``.

An adapter on module ``layers.0.attn.q_proj`` is peft's adapter on ``model.layers.0.self_attn.q_proj``: the same
renaming that ``save_pretrained``/``load_pretrained`` apply to weights, applied to module paths. DeepSeek's MLA keeps
the RoPE channels of its query and ``kv_a`` projections interleaved where we keep them rotate-half, so those layers'
output rows (lora_B's rows, DoRA's magnitude) are permuted on the way, as their weights are.
"""

from __future__ import annotations

import re

import torch

from llm_platform.trainer.model.config import ModelConfig
from llm_platform.trainer.model.hf import hf_param_name, our_param_name, rope_permutation
from llm_platform.trainer.model.hf_config import UnsupportedCheckpoint

_MLA_QUERY = re.compile(r"layers\.\d+\.attn\.(q_proj|q_b_proj)$")
_MLA_KV_A = re.compile(r"layers\.\d+\.attn\.kv_a_proj$")


def our_module_name(hf_module: str, config: ModelConfig) -> str:
    """``model.layers.0.self_attn.q_proj`` -> ``layers.0.attn.q_proj``."""
    name = our_param_name(hf_module + ".weight", config.n_layers)
    if name is None:
        raise UnsupportedCheckpoint(f"{hf_module!r} is not a module of this model (layer past n_layers?)")
    return name.removesuffix(".weight")


def hf_module_name(ours: str, config: ModelConfig) -> str:
    """``layers.0.attn.q_proj`` -> ``model.layers.0.self_attn.q_proj`` (the inverse of ``our_module_name``)."""
    hf = hf_param_name(ours + ".weight").removesuffix(".weight")  # the renames are written for parameter names
    if our_module_name(hf, config) != ours:
        raise UnsupportedCheckpoint(f"module {ours!r} has no Hugging Face name (tried {hf!r})")
    return hf


def hf_row_order(ours: str, config: ModelConfig, n_rows: int, *, to_hf: bool) -> torch.Tensor | None:
    """Index putting a tensor's output rows in the other side's order (rows = ``tensor[index]``); None when the
    module's rows are the same on both sides (everything but MLA's query and kv_a projections)."""
    if config.attention != "mla":
        return None
    perm = rope_permutation(config.qk_rope_head_dim)
    if to_hf:
        perm = torch.argsort(perm)
    nope = config.qk_nope_head_dim
    if _MLA_QUERY.search(ours):
        rows = torch.arange(n_rows).view(config.n_heads, nope + config.qk_rope_head_dim)
        return torch.cat((rows[:, :nope], rows[:, nope:][:, perm]), dim=1).reshape(-1)
    if _MLA_KV_A.search(ours):
        rank = config.kv_lora_rank
        return torch.cat((torch.arange(rank), rank + perm))
    return None
