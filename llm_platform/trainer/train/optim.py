"""Optimizers: AdamW (fused on CUDA), 8-bit AdamW and paged 8-bit AdamW, with weight decay on matrices only.

Norm gains, biases and other vectors are not decayed: shrinking them toward zero changes what the layer computes
rather than regularising it. Embedding and projection matrices are decayed.
"""

from __future__ import annotations

import importlib
import logging
import warnings

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
    if config.optimizer == "paged_adamw8bit":
        return _paged_adamw_8bit(groups, config, on_cuda)
    kwargs = {"fused": True} if on_cuda else {"foreach": True}
    return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas, eps=1e-8, **kwargs)


# where torchao has kept its 8-bit AdamW, newest first
TORCHAO_ADAMW8BIT = ("torchao.optim", "torchao.prototype.low_bit_optim")
_warned: set[str] = set()
log = logging.getLogger("llmp.train")


class OptimizerUnavailable(RuntimeError):
    """The configured optimizer cannot run here; the message names `train.optimizer` and what to install or set."""


def _paged_adamw_8bit(groups: list[dict], config: TrainConfig, on_cuda: bool) -> torch.optim.Optimizer:
    """bitsandbytes' PagedAdamW8bit: 8-bit states in CUDA unified memory, which the driver pages out to host memory
    when the GPU runs short (QLoRA's answer to memory spikes). There is no fallback: paging exists only on CUDA, and
    an unpaged optimizer would fail in exactly the memory-tight runs this setting is chosen for."""
    bnb = _optional("bitsandbytes")
    if bnb is None:
        raise OptimizerUnavailable(
            "train.optimizer: paged_adamw8bit needs the 'bitsandbytes' package, which is not installed; pip install "
            "'llm-platform[gpu]', or use optimizer: adamw8bit"
        )
    if not on_cuda:
        raise OptimizerUnavailable(
            "train.optimizer: paged_adamw8bit pages optimizer state between GPU and host memory, so it needs every "
            "trained parameter on CUDA; set train.parallel.gpus_per_node >= 1, or use optimizer: adamw8bit on CPU"
        )
    return bnb.optim.PagedAdamW8bit(groups, lr=config.lr, betas=config.betas, eps=1e-8)


def _adamw_8bit(groups: list[dict], config: TrainConfig, on_cuda: bool) -> torch.optim.Optimizer:
    """bitsandbytes' AdamW8bit on CUDA, else torchao's (any device), else ours, said once per device in the training
    log and as a warning: ours is vectorised but still several times slower than fp32 AdamW (bench/optim8bit.py), a
    cost nobody should pay unknowingly on a GPU. It is said rather than refused because it keeps the promise the
    setting makes (about 2 bytes of state per parameter instead of 8), so a run that fits only with 8-bit state
    still runs; the line names the extra that makes it fast."""
    kwargs = {"lr": config.lr, "betas": config.betas, "eps": 1e-8}
    if on_cuda and (bnb := _optional("bitsandbytes")) is not None:
        return bnb.optim.AdamW8bit(groups, **kwargs)
    for module in TORCHAO_ADAMW8BIT:
        found = _optional(module)
        if found is not None and hasattr(found, "AdamW8bit"):
            return found.AdamW8bit(groups, **kwargs)
    from .adamw8bit import AdamW8bit

    where = "CUDA" if on_cuda else "CPU"
    if where not in _warned:
        _warned.add(where)
        missing = "bitsandbytes and torchao are" if on_cuda else "torchao is"
        message = (
            f"optimizer adamw8bit: {missing} not installed, so llm_platform's own 8-bit AdamW runs on {where} "
            "(about 5x the step time of fp32 AdamW on CPU, see bench/optim8bit.py); pip install "
            "'llm-platform[gpu]' for the fused one, or use optimizer: adamw"
        )
        log.warning(message)
        warnings.warn(message, stacklevel=3)
    return AdamW8bit(groups, **kwargs)


def _optional(module: str):
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
