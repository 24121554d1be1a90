"""Several named adapters on one base: switch between them, turn them off, fold one into the base and back out, and
make weighted combinations.

    apply_lora(model, LoraConfig(...), name="sql")     # each apply adds a named adapter and installs it
    apply_lora(model, LoraConfig(...), name="chat")
    set_adapter(model, "sql")                           # switch; set_adapter(model, None) = the base alone
    combine_adapters(model, {"sql": 0.7, "chat": 0.3}, name="mix")
    merge_adapter(model); unmerge_adapter(model)        # fold the installed adapter into the base weight, and back

A combination is exact, not a fit: the weighted sum of the deltas, sum_i w_i s_i B_i A_i, is the product of the
ranks stacked (A = [A_1; A_2; ...], B = [w_1 s_1 B_1, w_2 s_2 B_2, ...]) with scaling 1, so its rank is the sum
of theirs (peft's ``combination_type="cat"``), zero blocks filling in where a layer lacks one of them. DoRA adapters
do not combine or unmerge linearly and are refused.
"""

from __future__ import annotations

import torch
from torch import nn

from .inject import adapter_layers, freeze_all_but_installed
from .layer import LoraLinear


def adapter_names(model: nn.Module) -> list[str]:
    """Every named adapter on the model, installed or parked."""
    return sorted({n for layer in adapter_layers(model).values() for n in layer.names()})


def active_adapter(model: nn.Module) -> str | None:
    """The installed adapter's name, or None when the model computes its base only."""
    names = {layer.adapter_name for layer in adapter_layers(model).values()} - {None}
    return names.pop() if names else None


def _known(model: nn.Module, name: str) -> None:
    names = adapter_names(model)
    if name not in names:
        raise ValueError(f"no adapter named {name!r} on this model (adapters: {', '.join(names) or 'none'})")


def set_adapter(model: nn.Module, name: str | None) -> None:
    """Installs adapter ``name`` on every layer that has it (the others compute their base); None turns every
    adapter off. The installed adapter alone trains."""
    if name is not None:
        _known(model, name)
    if any(layer.merged for layer in adapter_layers(model).values()):
        raise ValueError("an adapter is merged into the base weights; unmerge_adapter(model) before switching")
    for layer in adapter_layers(model).values():
        layer.install(name)
    freeze_all_but_installed(model)


def _delta(layer: LoraLinear) -> torch.Tensor:
    """s B A of the installed adapter, fp32."""
    return layer.scaling * (layer.lora_B.weight.float() @ layer.lora_A.weight.float())


def _plain_lora(layer: LoraLinear, what: str) -> None:
    if layer.dora:
        raise ValueError(f"{what}: adapter {layer.adapter_name!r} is DoRA, whose update is not a sum; use LoRA")
    if layer.quantized is not None:
        raise ValueError(f"{what}: the base is in NF4 (QLoRA); merge_lora(model) then dequantize_base(model)")


@torch.no_grad()
def merge_adapter(model: nn.Module) -> str:
    """Adds the installed adapter's delta to the base weights in place (the layers stay adapter layers, computing
    the same); returns its name. ``unmerge_adapter`` takes it out again."""
    name = active_adapter(model)
    if name is None:
        raise ValueError("no adapter is installed; set_adapter(model, name) first")
    layers = [layer for layer in adapter_layers(model).values() if layer.adapter_name == name]
    for layer in layers:
        _plain_lora(layer, "merge_adapter")
    for layer in layers:
        layer.weight.add_(_delta(layer).to(layer.weight.dtype))
        layer.merged = True
    return name


@torch.no_grad()
def unmerge_adapter(model: nn.Module) -> str:
    """Subtracts the merged adapter's delta from the base weights (equal to before the merge up to rounding);
    returns its name."""
    layers = [layer for layer in adapter_layers(model).values() if layer.merged]
    if not layers:
        raise ValueError("no adapter is merged")
    for layer in layers:
        layer.weight.sub_(_delta(layer).to(layer.weight.dtype))
        layer.merged = False
    return layers[0].adapter_name


@torch.no_grad()
def combine_adapters(model: nn.Module, weights: dict[str, float], name: str) -> None:
    """Adds adapter ``name`` = sum of weights[n] * (adapter n's delta), exactly, and installs it."""
    if not weights:
        raise ValueError("combine_adapters: give at least one {adapter name: weight}")
    for source in weights:
        _known(model, source)
    if name in adapter_names(model):
        raise ValueError(f"combine_adapters: an adapter named {name!r} exists already; choose a new name")
    layers = adapter_layers(model).values()
    if any(layer.merged for layer in layers):
        raise ValueError("combine_adapters: an adapter is merged into the base weights; unmerge_adapter(model) first")
    for layer in layers:  # refuse before changing anything
        for source in weights:
            parked = layer.parked.get(source)
            if (parked.magnitude is not None) if parked else (layer.adapter_name == source and layer.dora):
                raise ValueError(f"combine_adapters: adapter {source!r} is DoRA, whose update is not a sum; use LoRA")
            if source in layer.names() and layer.quantized is not None:
                raise ValueError("combine_adapters: the base is in NF4 (QLoRA); combine over a plain base")
    ranks = {}
    for layer in layers:
        for source in layer.names():
            if source in weights:
                adapter = layer.parked.get(source)
                ranks[source] = adapter.rank if adapter is not None else layer.rank
    for layer in layers:
        parts = []
        for source, weight in weights.items():
            if source not in layer.names():  # zero blocks keep one rank for every layer (peft files need that)
                zeros_a = torch.zeros(ranks[source], layer.in_features, device=layer.adapter_device())
                parts.append((zeros_a, torch.zeros(layer.out_features, ranks[source], device=zeros_a.device)))
                continue
            layer.install(source)
            parts.append((layer.lora_A.weight.float(), weight * layer.scaling * layer.lora_B.weight.float()))
        layer.park()
        if all(source not in layer.names() for source in weights):
            continue
        rank = sum(ranks.values())
        layer.add_adapter(name, rank, alpha=float(rank))  # scaling 1
        layer.lora_A.weight.copy_(torch.cat([a for a, _ in parts]))
        layer.lora_B.weight.copy_(torch.cat([b for _, b in parts], dim=1))
    set_adapter(model, name)
