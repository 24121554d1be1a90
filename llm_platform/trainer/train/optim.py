"""Optimizers: AdamW (fused on CUDA) and 8-bit AdamW, with weight decay on matrices only.

Norm gains, biases and other vectors are not decayed: shrinking them toward zero changes what the layer computes
rather than regularising it. Embedding and projection matrices are decayed.
"""

from __future__ import annotations

import importlib

import torch
from torch import nn

from .config import TrainConfig


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups: matrices (decayed) and everything else (not). Tied weights appear once."""
    decay, no_decay = [], []
    for param in model.parameters():  # parameters() already yields a tied tensor once
        if not param.requires_grad:
            continue
        (decay if param.dim() >= 2 else no_decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    groups = param_groups(model, config.weight_decay)
    on_cuda = all(p.is_cuda for g in groups for p in g["params"])
    if config.optimizer == "adamw8bit":
        return _adamw_8bit(groups, config, on_cuda)
    kwargs = {"fused": True} if on_cuda else {"foreach": True}
    return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas, eps=1e-8, **kwargs)


def _adamw_8bit(groups: list[dict], config: TrainConfig, on_cuda: bool) -> torch.optim.Optimizer:
    """bitsandbytes' AdamW8bit on CUDA when it is installed; our blockwise-quantized AdamW elsewhere."""
    if on_cuda:
        try:
            bnb = importlib.import_module("bitsandbytes")
        except ImportError:
            bnb = None
        if bnb is not None:
            return bnb.optim.AdamW8bit(groups, lr=config.lr, betas=config.betas, eps=1e-8)
    from .adamw8bit import AdamW8bit

    return AdamW8bit(groups, lr=config.lr, betas=config.betas, eps=1e-8)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
