"""Several LoRA adapters over one base model, chosen per forward: the engine batches requests by adapter.

Each adapted linear keeps the base layer and every adapter's (A, B, scale); ``activate(name)`` picks which one the
next forward adds (None: the base model alone). Adapters come from PEFT folders (the finetune stage's output), read
with the same name mapping as ``load_peft_adapter``. DoRA adapters change the base weight's row norms and are
refused here: merge them into a checkpoint instead.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from llm_platform.trainer.adapters.naming import hf_row_order
from llm_platform.trainer.adapters.peft_format import WEIGHTS_FILE, _read_peft_tensors, read_peft_config
from llm_platform.trainer.model.transformer import Transformer


class MultiLoraLinear(nn.Module):
    """A base ``nn.Linear`` plus named low-rank updates: y = W x + b + scale * B A x for the active adapter."""

    def __init__(self, base: nn.Linear) -> None:
        super().__init__()
        self.base = base
        self.updates: dict[str, tuple[torch.Tensor, torch.Tensor, float]] = {}
        self.active: str | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        update = self.updates.get(self.active) if self.active is not None else None
        if update is None:
            return out
        a, b, scale = update
        return out + (x.to(a.dtype) @ a.T @ b.T * scale).to(out.dtype)


class MultiLora:
    """The adapters an engine serves, by name."""

    def __init__(self, model: Transformer) -> None:
        self.model = model
        self.names: set[str] = set()
        self.layers: dict[str, MultiLoraLinear] = {}

    def load(self, name: str, folder: str | Path) -> None:
        """Reads a PEFT LoRA folder and attaches it under ``name``."""
        folder = Path(folder)
        tensors = _read_peft_tensors(folder, self.model)
        if not tensors:
            raise ValueError(f"{folder / WEIGHTS_FILE}: holds no adapter tensors")
        settings = read_peft_config(folder, sorted(tensors))
        if settings.dora:
            raise ValueError(f"{folder}: DoRA adapters cannot be served side by side; merge it into the base model")
        device = next(self.model.parameters()).device
        for path, found in tensors.items():
            layer = self._wrap(path)
            a, b = found["lora_A"], found["lora_B"]
            expected = ((settings.rank, layer.base.in_features), (layer.base.out_features, settings.rank))
            if (tuple(a.shape), tuple(b.shape)) != expected:
                raise ValueError(
                    f"{folder / WEIGHTS_FILE}: {path} has A {tuple(a.shape)} and B {tuple(b.shape)}, the model needs "
                    f"{expected[0]} and {expected[1]}; is this adapter for another base model?"
                )
            rows = hf_row_order(path, self.model.config, layer.base.out_features, to_hf=False)
            if rows is not None:
                b = b[rows]
            layer.updates[name] = (a.float().to(device), b.float().to(device), settings.alpha / settings.rank)
        self.names.add(name)

    def _wrap(self, path: str) -> MultiLoraLinear:
        if path in self.layers:
            return self.layers[path]
        parent_path, _, leaf = path.rpartition(".")
        parent = self.model.get_submodule(parent_path)
        base = getattr(parent, leaf)
        if not isinstance(base, nn.Linear):
            raise ValueError(f"adapter targets {path}, which is not a linear layer of this model")
        layer = MultiLoraLinear(base)
        setattr(parent, leaf, layer)
        self.layers[path] = layer
        return layer

    def activate(self, name: str | None) -> None:
        for layer in self.layers.values():
            layer.active = name
