"""Settings that may change on a trained checkpoint, and applying them.

A context-extension fine-tune starts from a model pretrained at a short context and changes how positions are
encoded (``rope_scaling``, ``rope_theta``) and how far they reach (``max_seq_len``); the weights stay as they are.
Anything that sizes a weight (``dim``, ``n_heads``, ``vocab_size``, ...) or changes what the weights compute
(``mlp``, ``norm``, ``attention``, ...) is fixed by the checkpoint, and overriding it is refused by name.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from .config import ModelConfig, unknown_fields_problem

CHANGEABLE = (
    "max_seq_len",
    "rope_theta",
    "rope_scaling",
    "sliding_window",
    "sliding_window_layers",
    "attn_impl",
    "router_aux_loss_coef",
    "router_bias_update_rate",
    "moe_capacity_factor",
)


def fixed_field_problems(keys) -> dict[str, str]:
    """For each key the checkpoint fixes: why it cannot be overridden on a checkpoint, and what can."""
    return {
        key: (
            f"{key} is fixed by the checkpoint's weights and cannot change on a model loaded with `from`; "
            f"a checkpoint takes overrides of {', '.join(CHANGEABLE)} only"
        )
        for key in keys
        if key not in CHANGEABLE
    }


def apply_overrides(config: ModelConfig, overrides: dict[str, Any] | None) -> ModelConfig:
    """`config` (a checkpoint's) with `overrides` applied and validated again; ValueError naming the field for an
    unknown or fixed one."""
    if not overrides:
        return config
    problem = unknown_fields_problem(overrides, "model override")
    if problem:
        raise ValueError(problem)
    fixed = fixed_field_problems(overrides)
    if fixed:
        key, message = next(iter(fixed.items()))
        raise ValueError(f"model.overrides.{key}: {message}")
    return dataclasses.replace(copy.deepcopy(config), **copy.deepcopy(overrides))
