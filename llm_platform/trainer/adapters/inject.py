"""Putting adapters into a model, folding them back out, and counting what trains.

Targets are matched the way peft matches ``target_modules``: a target names a module when it equals the module's
path or is a dot-separated suffix of it. A module counts under both its own path (``layers.0.attn.q_proj``) and its
Hugging Face path (``model.layers.0.self_attn.q_proj``), so the names in a peft ``adapter_config.json`` work as they
are. ``"all-linear"`` is peft's definition: every ``nn.Linear`` except the output head. MoE experts are stacked
parameters rather than linear layers, here as in transformers 5, so neither side adapts them.
"""

from __future__ import annotations

from torch import nn

from llm_platform.trainer.model.transformer import Transformer

from .config import ALL_LINEAR, LoraConfig
from .layer import DEFAULT_ADAPTER, LoraLinear
from .naming import hf_module_name
from .qlora import NF4Linear

OUTPUT_HEAD = "lm_head"


def adapter_layers(model: nn.Module) -> dict[str, LoraLinear]:
    """Every adapter layer of ``model`` by module path, whether an adapter is installed on it or not."""
    return {name: m for name, m in model.named_modules() if isinstance(m, LoraLinear)}


def adapter_modules(model: nn.Module) -> dict[str, LoraLinear]:
    """The layers of ``model`` with an adapter installed (the active one), by module path."""
    return {name: m for name, m in adapter_layers(model).items() if m.lora_A is not None}


def _aliases(model: nn.Module, name: str) -> list[str]:
    if isinstance(model, Transformer):
        return [name, hf_module_name(name, model.config)]
    return [name]


def _matches(target: str, aliases: list[str]) -> bool:
    return any(alias == target or alias.endswith("." + target) for alias in aliases)


def select_targets(model: nn.Module, config: LoraConfig) -> list[str]:
    """Paths of the linear layers ``config.targets`` names, in module order; ValueError for a target naming none."""
    wrapped = tuple(f"{name}." for name in adapter_layers(model))  # an adapter layer's own parts are not targets
    linear = [
        name
        for name, m in model.named_modules()
        if isinstance(m, (nn.Linear, NF4Linear, LoraLinear)) and not name.startswith(wrapped or ("\0",))
    ]
    if config.targets == ALL_LINEAR:
        return [name for name in linear if name != OUTPUT_HEAD]
    aliases = {name: _aliases(model, name) for name in linear}
    for target in config.targets:
        if not any(_matches(target, aliases[name]) for name in linear):
            leaves = sorted({name.rsplit(".", 1)[-1] for name in linear})
            raise ValueError(
                f"LoraConfig.targets: {target!r} matches no linear layer of the model; available names: "
                f"{', '.join(leaves)} (or any longer suffix of a path such as {linear[0]!r}), or {ALL_LINEAR!r}"
            )
    return [name for name in linear if any(_matches(t, aliases[name]) for t in config.targets)]


def apply_lora(model: nn.Module, config: LoraConfig, name: str = DEFAULT_ADAPTER) -> list[str]:
    """Replaces the targeted ``nn.Linear`` layers with ``LoraLinear`` in place and freezes every other parameter.

    A model that has adapters already gets a further one under ``name`` (which must be new): it is installed and
    trains, the others are parked (see ``named.py`` to switch, combine, merge).

    Returns the replaced module paths. Adapters are created on each base weight's device (float32 over a bf16/fp16
    base). Call before wrapping the model (FSDP, DDP, ``torch.compile``) and before building the optimizer.
    For QLoRA, ``quantize_base(model)`` first: the NF4 layers are targeted as the linear layers they replace.
    """
    layers = adapter_layers(model)
    existing = sorted({n for layer in layers.values() for n in layer.names()})
    if name in existing:
        raise ValueError(
            f"model already has an adapter named {name!r} (adapters: {', '.join(existing)}); give the new one "
            "another name, or merge_lora(model) first"
        )
    if any(layer.merged for layer in layers.values()):
        raise ValueError("an adapter is merged into the base weights; unmerge_adapter(model) before adding another")
    names = select_targets(model, config)
    if OUTPUT_HEAD in names and isinstance(model, Transformer) and model.config.tie_embeddings:
        raise ValueError(
            "LoraConfig.targets: lm_head shares its weight with embed_tokens (tie_embeddings), and an adapter on it "
            "would untie them on merge; leave lm_head out of the targets"
        )
    for layer in layers.values():
        layer.park()
    for path in names:
        parent_name, _, child = path.rpartition(".")
        parent = model.get_submodule(parent_name)
        base = getattr(parent, child)
        if isinstance(base, LoraLinear):
            base.add_adapter(name, config.rank, config.alpha, config.dropout, config.dora)
            base.train(base.training)
        else:
            adapter = LoraLinear(base, config.rank, config.alpha, config.dropout, config.dora, name=name)
            setattr(parent, child, adapter.train(base.training))  # an eval-mode model stays in eval mode
    freeze_all_but_installed(model)
    return names


def freeze_all_but_installed(model: nn.Module) -> None:
    """Only the installed adapters' parameters train."""
    adapter_params = {id(p) for m in adapter_modules(model).values() for p in _adapter_parameters(m)}
    for param in model.parameters():
        param.requires_grad_(id(param) in adapter_params)


def _adapter_parameters(module: LoraLinear) -> list[nn.Parameter]:
    params = [module.lora_A.weight, module.lora_B.weight]
    return params + ([module.lora_magnitude_vector] if module.lora_magnitude_vector is not None else [])


def merge_lora(model: nn.Module) -> list[str]:
    """Folds every adapter into a plain ``nn.Linear`` (W + s B A for LoRA, m / ||W'|| * W' for DoRA), in place.

    The result is the original architecture again, so ``save_pretrained`` exports it unchanged. The merged weights
    keep the base weights' dtype, device and (frozen) requires_grad. Returns the merged module paths. Run it on the
    unwrapped model (not under FSDP or ``torch.compile``).
    """
    merged = adapter_layers(model)
    for name, adapter in merged.items():
        linear = nn.Linear(adapter.in_features, adapter.out_features, bias=adapter.bias is not None, device="meta")
        frozen = adapter.weight is None or not adapter.weight.requires_grad
        linear.weight = nn.Parameter(adapter.merged_weight(), requires_grad=not frozen)
        linear.bias = adapter.bias
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name), child, linear)
    return list(merged)


def trainable_parameters(model: nn.Module) -> tuple[int, int]:
    """(parameters that require grad, all parameters), counting tied weights once."""
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)
