"""Small random models whose greedy choices are not near-ties (larger init), so batched and alone runs agree."""

from __future__ import annotations

import torch

from llm_platform.trainer.model import get_config
from llm_platform.trainer.model.transformer import Transformer


def tiny_model(preset: str = "llama-tiny", **overrides) -> Transformer:
    torch.manual_seed(0)
    model = Transformer(get_config(preset, **{"max_seq_len": 128, "init_std": 0.1, **overrides}))
    model.init_weights(seed=0)
    return model.eval()
