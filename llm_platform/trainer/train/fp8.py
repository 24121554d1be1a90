"""FP8 training through torchao's float8 linear layers (dynamic tensorwise scaling), on GPUs with FP8 tensor cores.

Matmul inputs are cast to float8 (e4m3 forward, e5m2 gradients) with per-tensor scales; weights and optimizer state
stay in their usual precision. The LM head is left in bf16: its output feeds the softmax over the whole vocabulary,
where FP8 rounding costs the most quality for little speed.
"""

from __future__ import annotations

import importlib

import torch
from torch import nn


def convert_to_fp8(model: nn.Module, device: torch.device) -> None:
    """Swap the model's linear layers (except the LM head and shapes FP8 kernels cannot take) for float8 ones."""
    if device.type != "cuda" or torch.cuda.get_device_capability(device) < (8, 9):
        raise RuntimeError("train.fp8 needs a GPU with FP8 tensor cores (compute capability 8.9+, e.g. H100/H200)")
    try:
        float8 = importlib.import_module("torchao.float8")
    except ImportError as e:
        raise ImportError("train.fp8 needs torchao: pip install torchao (the 'gpu' extra)") from e

    def eligible(module: nn.Module, name: str) -> bool:
        # FP8 GEMMs need both dims divisible by 16; the head stays bf16 (see module docstring).
        return (
            isinstance(module, nn.Linear)
            and "lm_head" not in name
            and module.in_features % 16 == 0
            and module.out_features % 16 == 0
        )

    float8.convert_to_float8_training(model, module_filter_fn=eligible)
