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


END_OF_TURN = "<|end|>"
"""The token that closes a chat turn in our template (`specials.CHAT_ROLE_TOKENS`): a chat answer ends there."""


def write_generation_files(path: Path, tokenizer) -> None:
    """Complete an exported folder (weights, config and tokenizer already in it) so vLLM and transformers generate
    from it as we do: `config.json` gains the bos/eos/pad ids, and `generation_config.json` lists every token that
    ends a generation, EOS and the chat turn's end (vLLM stops on each `eos_token_id` of the generation config, so a
    chat answer ends at `<|end|>` instead of running on into a made-up next turn)."""
    import json

    ids = {
        "bos_token_id": tokenizer.bos_id,
        "eos_token_id": tokenizer.eos_id,
        "pad_token_id": tokenizer.pad_id,
    }
    config_file = path / "config.json"
    config = json.loads(config_file.read_text())
    config.update({k: v for k, v in ids.items() if v is not None})
    stops = [i for i in (tokenizer.eos_id, tokenizer.token_to_id(END_OF_TURN)) if i is not None]
    generation = {k: v for k, v in ids.items() if v is not None and k != "eos_token_id"}
    if stops:
        generation["eos_token_id"] = stops if len(stops) > 1 else stops[0]
    for name, content in (("config.json", config), ("generation_config.json", generation)):
        tmp = path / f".{name}.tmp"
        tmp.write_text(json.dumps(content, indent=2) + "\n")
        tmp.replace(path / name)
