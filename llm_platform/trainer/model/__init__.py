"""The model library: config + presets (torch-free), the decoder, and Hugging Face import/export.

``from llm_platform.trainer.model import get_config`` does not import torch; ``Transformer`` is loaded on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .config import PRESETS, ModelConfig, get_config
from .counting import flops_per_token, num_params

if TYPE_CHECKING:
    from .transformer import Transformer

__all__ = ["PRESETS", "ModelConfig", "Transformer", "flops_per_token", "get_config", "num_params"]


def __getattr__(name: str) -> Any:
    if name == "Transformer":
        from .transformer import Transformer

        return Transformer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
