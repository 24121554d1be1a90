"""Export the trained model in Hugging Face format, whatever the data-parallel wrapping did to its parameters."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .deepspeed_backend import gathered_state_dict, is_partitioned
from .distributed import DistEnv


def full_state_dict(model: nn.Module, env: DistEnv) -> dict[str, torch.Tensor]:
    """Every parameter and buffer as a whole CPU tensor, gathered from FSDP shards or
    ZeRO-3 partitions when there are any.

    Every rank must call it (the gather is a collective); the tensors are complete on rank 0."""
    if is_partitioned(model):  # DeepSpeed ZeRO-3
        return gathered_state_dict(model)
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    if env.world_size == 1:
        return {k: v.detach().cpu() for k, v in model.state_dict().items()}
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_model_state_dict(model, options=options)


def export_pretrained(model: nn.Module, env: DistEnv, path: Path, dtype: torch.dtype | None = None) -> None:
    """Write `config.json` + `model.safetensors` of our `Transformer` into `path` (rank 0 writes)."""
    from llm_platform.trainer.model.hf import save_pretrained
    from llm_platform.trainer.model.transformer import Transformer

    if env.world_size == 1 and not is_partitioned(model):
        save_pretrained(model, path, dtype=dtype)
        return
    state = full_state_dict(model, env)
    if not env.is_main:
        return
    with torch.device("meta"):
        plain = Transformer(model.config)
    plain.load_state_dict(state, assign=True)
    plain.materialize_non_persistent("cpu")
    if model.config.tie_embeddings:
        plain.lm_head.weight = plain.embed_tokens.weight
    save_pretrained(plain, path, dtype=dtype)
