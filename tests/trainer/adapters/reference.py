"""Shared by the adapter tests: tiny models of ours with random weights, their transformers twins, and peft twins of
our adapters (same weights, copied over through the peft file names).

Plain helpers (transformers and peft are imported inside them), so modules importing this can still skip without them.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.nn import functional as F

from llm_platform.trainer.adapters import LoraConfig
from llm_platform.trainer.adapters.inject import adapter_modules
from llm_platform.trainer.adapters.peft_format import adapter_tensors_to_peft
from llm_platform.trainer.model import Transformer, get_config
from llm_platform.trainer.model.hf import save_pretrained
from tests.trainer.model.hf_parity import randomize

LOGITS_TOLERANCE = 1e-4
MODELS = {
    # Llama with grouped-query attention (4 query heads, 2 KV heads) and an untied head, so lm_head can be adapted.
    "llama-gqa": ("llama-tiny", {"tie_embeddings": False}),
    # DeepSeek's latent attention, dense: its query and kv_a rows are permuted between our layout and Hugging Face's.
    # One router group, because a dense export with the preset's four does not load back (config_from_hf).
    "deepseek-mla": (
        "deepseek-tiny",
        {"n_experts": 0, "router_groups": 1, "router_topk_groups": 1, "tie_embeddings": False},
    ),
}


def our_model(kind: str = "llama-gqa", seed: int = 0) -> Transformer:
    """A tiny model of ours with random weights everywhere (norms included)."""
    preset, overrides = MODELS[kind]
    torch.manual_seed(seed)
    model = Transformer(get_config(preset, **overrides))
    randomize(model, seed=seed)
    return model.eval()


def hf_twin(model: Transformer, folder: Path) -> torch.nn.Module:
    """The transformers model loaded from our export of ``model`` (base weights only)."""
    from transformers import AutoModelForCausalLM

    save_pretrained(model, folder)
    return AutoModelForCausalLM.from_pretrained(folder).eval()


def randomize_adapters(model: Transformer, seed: int = 1) -> None:
    """Non-zero A and B, and DoRA magnitudes off the base norms, so that every adapter term shows in the output."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for adapter in adapter_modules(model).values():
            for param in (adapter.lora_A.weight, adapter.lora_B.weight):
                param.copy_(torch.randn(param.shape, generator=generator) * 0.1)
            if adapter.lora_magnitude_vector is not None:
                noise = torch.randn(adapter.out_features, generator=generator) * 0.1
                adapter.lora_magnitude_vector.mul_(1 + noise)


def peft_config(config: LoraConfig):
    import peft

    return peft.LoraConfig(
        r=config.rank,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        target_modules=config.targets,
        use_dora=config.dora,
        task_type="CAUSAL_LM",
    )


def peft_twin(hf_model: torch.nn.Module, model: Transformer, config: LoraConfig):
    """peft's adapter on ``hf_model`` for ``config``, holding our adapter weights (copied by peft file name)."""
    import peft

    twin = peft.get_peft_model(hf_model, peft_config(config))
    ours = adapter_tensors_to_peft(model)
    result = peft.set_peft_model_state_dict(twin, ours)
    assert not result.unexpected_keys, result.unexpected_keys
    lora_params = [name for name, _ in twin.named_parameters() if "lora_" in name]
    assert len(lora_params) == len(ours), (len(lora_params), len(ours))
    return twin.eval()


def token_batch(vocab_size: int, batch: int = 2, seq: int = 24, seed: int = 3) -> torch.Tensor:
    return torch.randint(0, vocab_size, (batch, seq), generator=torch.Generator().manual_seed(seed))


def next_token_loss(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten())


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()
