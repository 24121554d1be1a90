"""LoRA and DoRA adapters for our Transformer, numerically the same as peft's and saved in peft's folder format.

    config = LoraConfig(rank=16, alpha=32, dropout=0.05, targets="all-linear", dora=False)
    apply_lora(model, config)                  # adapters in place, the rest frozen; then optimizer, FSDP, compile
    trainable, total = trainable_parameters(model)
    ...train...
    save_peft_adapter(model, "out/adapter", base_model="meta-llama/Llama-3.2-1B")   # PeftModel.from_pretrained reads it
    merge_lora(model)                          # plain nn.Linear again; save_pretrained exports the merged model
    load_peft_adapter(other_model, "out/adapter")                                    # an adapter trained anywhere

Several named adapters per base (``named.py``): ``apply_lora(model, config, name="sql")`` adds one more;
``set_adapter``, ``combine_adapters``, ``merge_adapter`` / ``unmerge_adapter`` switch, mix and fold them.

QLoRA: ``quantize_base(model)`` before ``apply_lora`` holds every linear layer but the LM head in NF4 (``nf4.py``,
bitsandbytes' format, pure PyTorch); ``dequantize_base(model)`` after ``merge_lora`` makes it plain again.
``from llm_platform.trainer.adapters import LoraConfig`` does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .config import ALL_LINEAR, LoraConfig

if TYPE_CHECKING:
    from .inject import apply_lora, merge_lora, trainable_parameters
    from .layer import LoraLinear
    from .named import adapter_names, combine_adapters, merge_adapter, set_adapter, unmerge_adapter
    from .peft_format import load_peft_adapter, save_peft_adapter
    from .qlora import NF4Linear, dequantize_base, quantize_base

__all__ = [
    "ALL_LINEAR",
    "LoraConfig",
    "LoraLinear",
    "NF4Linear",
    "adapter_names",
    "apply_lora",
    "combine_adapters",
    "dequantize_base",
    "load_peft_adapter",
    "merge_adapter",
    "merge_lora",
    "quantize_base",
    "save_peft_adapter",
    "set_adapter",
    "trainable_parameters",
    "unmerge_adapter",
]

_LAZY = {
    "apply_lora": "inject",
    "merge_lora": "inject",
    "trainable_parameters": "inject",
    "LoraLinear": "layer",
    "load_peft_adapter": "peft_format",
    "save_peft_adapter": "peft_format",
    "adapter_names": "named",
    "combine_adapters": "named",
    "merge_adapter": "named",
    "set_adapter": "named",
    "unmerge_adapter": "named",
    "NF4Linear": "qlora",
    "quantize_base": "qlora",
    "dequantize_base": "qlora",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
