"""Hugging Face checkpoints (``config.json`` + safetensors) in and out.

    model = load_pretrained("path/to/Llama-3.2-1B")     # Llama, Mistral, Qwen2, Qwen3, Mixtral, DeepSeek-V3
    save_pretrained(model, "out/")                     # AutoModelForCausalLM.from_pretrained("out/") loads it

Other files in the folder (tokenizer, generation config, README) are ignored on load and left alone on save.
Expert weights are read both in the hub's per-expert layout and in transformers 5's fused layout, and written per
expert (the layout every transformers version and vLLM read). DeepSeek's interleaved RoPE channels are permuted to
our rotate-half layout on load and back on save. A model with ``fused_projections`` keeps one ``qkv_proj`` and one
``gate_up_proj`` per layer; checkpoints always hold the separate q/k/v and gate/up weights, joined on load and split
on save.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .checkpoint_overrides import apply_overrides
from .config import ModelConfig
from .hf_config import UnsupportedCheckpoint, config_from_hf, config_to_hf, hf_family
from .transformer import Transformer

_LAYER_RENAMES = [  # (HF suffix inside model.layers.N., ours inside layers.N.)
    ("input_layernorm.", "attn_norm."),
    ("post_attention_layernorm.", "mlp_norm."),
    ("self_attn.q_a_layernorm.", "attn.q_a_norm."),
    ("self_attn.kv_a_layernorm.", "attn.kv_a_norm."),
    ("self_attn.kv_a_proj_with_mqa.", "attn.kv_a_proj."),
    ("self_attn.", "attn."),
    ("block_sparse_moe.gate.weight", "mlp.router.weight"),
    ("mlp.gate.weight", "mlp.router.weight"),
    ("mlp.gate.e_score_correction_bias", "mlp.router.bias"),
    ("mlp.", "mlp."),
]
_TOP_LEVEL = {"model.embed_tokens.weight": "embed_tokens.weight", "model.norm.weight": "norm.weight"}
_EXPERT = re.compile(r"(?:mlp|block_sparse_moe)\.experts\.(\d+)\.(w1|w2|w3|gate_proj|up_proj|down_proj)\.weight$")
_FUSED_EXPERT = re.compile(r"mlp\.experts\.(gate_up_proj|down_proj)$")
_EXPERT_NAMES = {"w1": "gate_proj", "w3": "up_proj", "w2": "down_proj"}


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def read_safetensors(path: Path) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) for every tensor of a single-file or sharded (``*.index.json``) safetensors checkpoint."""
    index = path / "model.safetensors.index.json"
    if index.exists():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    elif (path / "model.safetensors").exists():
        files = ["model.safetensors"]
    else:
        raise FileNotFoundError(f"{path}: no model.safetensors or model.safetensors.index.json (only safetensors load)")
    for name in files:
        with safe_open(str(path / name), framework="pt") as f:
            for key in f.keys():  # noqa: SIM118 (safe_open is not a dict)
                yield key, f.get_tensor(key)


def rope_permutation(dim: int) -> torch.Tensor:
    """Channel order taking DeepSeek's interleaved pairs (x0,x1),(x2,x3).. to rotate-half: evens first, then odds."""
    return torch.cat((torch.arange(0, dim, 2), torch.arange(1, dim, 2)))


def _permute_mla_rope(state: dict[str, torch.Tensor], config: ModelConfig, *, to_hf: bool) -> None:
    perm = rope_permutation(config.qk_rope_head_dim)
    if to_hf:
        perm = torch.argsort(perm)
    nope, rope = config.qk_nope_head_dim, config.qk_rope_head_dim
    for i in range(config.n_layers):
        prefix = f"layers.{i}.attn."
        q_name = prefix + ("q_b_proj.weight" if config.q_lora_rank else "q_proj.weight")
        q = state[q_name].view(config.n_heads, nope + rope, -1)
        state[q_name] = torch.cat((q[:, :nope], q[:, nope:][:, perm]), dim=1).reshape(-1, q.shape[-1])
        kv = state[prefix + "kv_a_proj.weight"]
        rank = config.kv_lora_rank
        state[prefix + "kv_a_proj.weight"] = torch.cat((kv[:rank], kv[rank:][perm]))


_FUSED = {  # our fused projection -> the separate ones it stacks, in row order
    "qkv_proj": ("q_proj", "k_proj", "v_proj"),
    "gate_up_proj": ("gate_proj", "up_proj"),
}
_FUSED_NAME = re.compile(r"(.+\.)(qkv_proj|gate_up_proj)\.(weight|bias)$")
_SEPARATE_NAME = re.compile(r"(.+\.)(q_proj|gate_proj)\.(weight|bias)$")


def split_fused_projections(state: dict[str, torch.Tensor], config: ModelConfig) -> dict[str, torch.Tensor]:
    """``qkv_proj`` and ``gate_up_proj`` weights and biases (dense MLPs and shared experts) replaced by the separate
    projections they stack."""
    kv = config.kv_heads * config.head_size
    out: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        match = _FUSED_NAME.match(name)
        if match is None:
            out[name] = tensor
            continue
        prefix, fused, leaf = match.groups()
        pieces = tensor.split([tensor.shape[0] - 2 * kv, kv, kv]) if fused == "qkv_proj" else tensor.chunk(2)
        for part, piece in zip(_FUSED[fused], pieces, strict=True):
            out[f"{prefix}{part}.{leaf}"] = piece
    return out


def join_fused_projections(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of `split_fused_projections`: every q/k/v and gate/up set of weights (and biases) stacked."""
    out = dict(state)
    for name in list(state):
        match = _SEPARATE_NAME.match(name)
        if match is None:
            continue
        prefix, first, leaf = match.groups()
        fused = "qkv_proj" if first == "q_proj" else "gate_up_proj"
        names = [f"{prefix}{part}.{leaf}" for part in _FUSED[fused]]
        if all(n in out for n in names):
            out[f"{prefix}{fused}.{leaf}"] = torch.cat([out.pop(n) for n in names])
    return out


def our_param_name(hf_name: str, n_layers: int) -> str | None:
    """Our parameter name for a HF one; None for tensors we deliberately skip (MTP layers, rotary caches)."""
    if hf_name.endswith("rotary_emb.inv_freq"):
        return None  # a cache some older exports saved; we recompute frequencies
    if hf_name in _TOP_LEVEL:
        return _TOP_LEVEL[hf_name]
    if hf_name == "lm_head.weight":
        return hf_name
    match = re.match(r"model\.layers\.(\d+)\.(.+)$", hf_name)
    if match is None:
        raise UnsupportedCheckpoint(f"unexpected tensor {hf_name!r} in checkpoint")
    layer, rest = int(match.group(1)), match.group(2)
    if layer >= n_layers:
        return None  # DeepSeek's multi-token-prediction layers sit past the last decoder layer
    for hf_part, ours in _LAYER_RENAMES:
        if rest.startswith(hf_part):
            return f"layers.{layer}.{ours}{rest[len(hf_part) :]}"
    raise UnsupportedCheckpoint(f"unexpected tensor {hf_name!r} in checkpoint")


def hf_param_name(ours: str) -> str:
    """The HF name of one of our dense parameters (the inverse of `our_param_name`); routed experts and routers,
    which HF splits or renames per family, are mapped in `state_dict_to_hf`."""
    top = {v: k for k, v in _TOP_LEVEL.items()}
    if ours in top or ours == "lm_head.weight":
        return top.get(ours, ours)
    match = re.match(r"layers\.(\d+)\.(.+)$", ours)
    if match is None:
        raise UnsupportedCheckpoint(f"parameter {ours!r} has no Hugging Face name")
    layer, rest = match.groups()
    for hf_part, part in sorted(_LAYER_RENAMES, key=lambda pair: -len(pair[1])):  # most specific first
        if rest.startswith(part):
            return f"model.layers.{layer}.{hf_part}{rest[len(part) :]}"
    raise UnsupportedCheckpoint(f"parameter {ours!r} has no Hugging Face name")


def state_dict_from_hf(tensors: Iterator[tuple[str, torch.Tensor]], config: ModelConfig) -> dict[str, torch.Tensor]:
    """Our state dict from HF-named tensors."""
    state: dict[str, torch.Tensor] = {}
    experts: dict[tuple[int, str], dict[int, torch.Tensor]] = {}
    for hf_name, tensor in tensors:
        layer_match = re.match(r"model\.layers\.(\d+)\.", hf_name)
        layer = int(layer_match.group(1)) if layer_match else -1
        if layer >= config.n_layers:
            continue
        expert = _EXPERT.search(hf_name)
        fused = _FUSED_EXPERT.search(hf_name)
        if expert:
            kind = _EXPERT_NAMES.get(expert.group(2), expert.group(2))
            experts.setdefault((layer, kind), {})[int(expert.group(1))] = tensor
        elif fused and fused.group(1) == "gate_up_proj":
            gate, up = tensor.chunk(2, dim=1)
            state[f"layers.{layer}.mlp.experts.gate_proj"] = gate
            state[f"layers.{layer}.mlp.experts.up_proj"] = up
        elif fused:
            state[f"layers.{layer}.mlp.experts.down_proj"] = tensor
        else:
            name = our_param_name(hf_name, config.n_layers)
            if name is not None:
                state[name] = tensor
    for (layer, kind), by_index in experts.items():
        if sorted(by_index) != list(range(config.n_experts)):
            raise UnsupportedCheckpoint(f"layer {layer} {kind}: expected experts 0..{config.n_experts - 1}")
        state[f"layers.{layer}.mlp.experts.{kind}"] = torch.stack([by_index[i] for i in range(config.n_experts)])
    if config.attention == "mla":
        _permute_mla_rope(state, config, to_hf=False)
    return join_fused_projections(state) if config.fused_projections else state


def state_dict_to_hf(model: Transformer) -> dict[str, torch.Tensor]:
    """HF-named tensors for ``model`` (experts per expert; tied LM head left out, as transformers expects)."""
    config = model.config
    family = hf_family(config)
    state = split_fused_projections(model.state_dict(), config)
    if config.attention == "mla":
        _permute_mla_rope(state, config, to_hf=True)
    ours_to_hf = {v: k for k, v in _TOP_LEVEL.items()}
    out: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        if name in ours_to_hf:
            out[ours_to_hf[name]] = tensor
            continue
        if name == "lm_head.weight":
            if not config.tie_embeddings:
                out[name] = tensor
            continue
        match = re.match(r"layers\.(\d+)\.(.+)$", name)
        assert match is not None, name
        layer, rest = match.group(1), match.group(2)
        prefix = f"model.layers.{layer}."
        expert = re.match(r"mlp\.experts\.(gate_proj|up_proj|down_proj)$", rest)
        if expert:
            hf_kind = {v: k for k, v in _EXPERT_NAMES.items()}[expert.group(1)] if family == "mixtral" else None
            container = "block_sparse_moe" if family == "mixtral" else "mlp"
            for e in range(config.n_experts):
                out[f"{prefix}{container}.experts.{e}.{hf_kind or expert.group(1)}.weight"] = tensor[e]
            continue
        if rest == "mlp.router.bias":
            if family == "deepseek_v3":
                out[prefix + "mlp.gate.e_score_correction_bias"] = tensor
            elif tensor.any():
                raise UnsupportedCheckpoint(f"layer {layer}: Mixtral has no expert balancing bias; this one is nonzero")
            continue
        if rest == "mlp.router.weight":
            out[prefix + ("block_sparse_moe.gate.weight" if family == "mixtral" else "mlp.gate.weight")] = tensor
            continue
        out[hf_param_name(name)] = tensor
    if family == "qwen2" and not config.qkv_bias:  # Qwen2 always has q/k/v biases; zeros are exactly "no bias"
        for i in range(config.n_layers):
            for proj in ("q_proj", "k_proj", "v_proj"):
                weight = out[f"model.layers.{i}.self_attn.{proj}.weight"]
                out[f"model.layers.{i}.self_attn.{proj}.bias"] = weight.new_zeros(weight.shape[0])
    return out


def load_pretrained(
    path: str | os.PathLike,
    *,
    dtype: torch.dtype | None = None,
    device: str | torch.device = "cpu",
    fused_projections: bool = False,
    overrides: dict[str, Any] | None = None,
) -> Transformer:
    """A Transformer with the weights of the HF checkpoint in ``path`` (config.json + safetensors).

    dtype: parameter dtype; None keeps the checkpoint's ``torch_dtype``/``dtype`` (float32 if absent).
    fused_projections: build the model with fused QKV and gate/up projections (``ModelConfig.fused_projections``).
    overrides: settings of the checkpoint's config to change that leave the weights as they are (context extension:
        ``rope_scaling``, ``max_seq_len``; ``checkpoint_overrides.CHANGEABLE``); others are refused by name.
    """
    path = Path(path)
    config_file = path / "config.json"
    if not config_file.exists():
        raise FileNotFoundError(f"{path}: no config.json; expected a Hugging Face checkpoint folder")
    hf = json.loads(config_file.read_text())
    config = dataclasses.replace(apply_overrides(config_from_hf(hf), overrides), fused_projections=fused_projections)
    if dtype is None:
        dtype = getattr(torch, hf.get("dtype") or hf.get("torch_dtype") or "float32")
    state = state_dict_from_hf(read_safetensors(path), config)
    with torch.device("meta"):
        model = Transformer(config)
    expected = set(model.state_dict())
    if config.tie_embeddings:
        state.pop("lm_head.weight", None)
        expected.discard("lm_head.weight")
    for name in expected - set(state):
        if name.endswith("mlp.router.bias"):  # Mixtral checkpoints carry no balancing bias
            state[name] = torch.zeros(config.n_experts)
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise UnsupportedCheckpoint(
            f"{path}: checkpoint does not match config.json: missing {missing[:8]}, unexpected {unexpected[:8]}"
        )
    model.load_state_dict(
        {k: v.to(device=device, dtype=_param_dtype(k, dtype)) for k, v in state.items()}, strict=False, assign=True
    )
    model.materialize_non_persistent(device)
    if config.tie_embeddings:
        model.lm_head.weight = model.embed_tokens.weight
    return model


def _param_dtype(name: str, dtype: torch.dtype) -> torch.dtype:
    """Router weights and balancing biases stay in float32, as DeepSeek keeps them."""
    return torch.float32 if ".mlp.router." in name else dtype


def save_pretrained(model: Transformer, path: str | os.PathLike, *, dtype: torch.dtype | None = None) -> None:
    """Writes ``config.json`` and ``model.safetensors`` into ``path`` (created if needed; other files untouched).

    Files are written under temporary names and renamed, so a crash never leaves a half-written checkpoint.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tensors = state_dict_to_hf(model)
    if dtype is not None:
        tensors = {k: v.to(dtype) for k, v in tensors.items()}
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    weight_dtype = dtype or model.embed_tokens.weight.dtype
    hf_config = config_to_hf(model.config, dtype=_dtype_name(weight_dtype))
    tmp_weights, tmp_config = path / ".model.safetensors.tmp", path / ".config.json.tmp"
    save_file(tensors, str(tmp_weights), metadata={"format": "pt"})
    os.chmod(tmp_weights, 0o644)  # safetensors creates its file owner-only; an export is meant to be shared
    tmp_config.write_text(json.dumps(hf_config, indent=2) + "\n")
    os.replace(tmp_weights, path / "model.safetensors")
    os.replace(tmp_config, path / "config.json")
