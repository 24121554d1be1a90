"""PEFT adapter folders: ``adapter_config.json`` + ``adapter_model.safetensors``, as peft writes them.

    save_peft_adapter(model, "out/adapter", base_model="meta-llama/Llama-3.2-1B")
    PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), "out/adapter")   # loads it, same logits
    load_peft_adapter(model, "some/peft/adapter")                                           # and the reverse

Tensor names are peft's: ``base_model.model.`` + the Hugging Face module path + ``.lora_A.weight`` /
``.lora_B.weight`` / ``.lora_magnitude_vector`` (DoRA). ``target_modules`` lists the full Hugging Face paths of the
adapted layers, as peft records an ``all-linear`` adapter; peft, vLLM and transformers match such names exactly.
Loading reads which layers are adapted from the tensors, so any ``target_modules`` form (suffixes, full paths, a
regular expression) loads. Refused with a message: other peft types, rsLoRA, per-module rank/alpha patterns, trained
biases, ``modules_to_save``, embedding adapters and pickled ``adapter_model.bin`` files.

Known limit on peft's side: peft (0.21) on transformers 5 reads ``gate_proj``/``up_proj``/``down_proj`` targets of
DeepSeek-V3 models as the fused routed experts, so it cannot load adapters on DeepSeek's dense or shared-expert MLP
layers (its own or ours); DeepSeek attention adapters and every Llama/Mistral/Qwen2/Mixtral adapter load.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from llm_platform.trainer.model.transformer import Transformer

from .config import LoraConfig
from .inject import adapter_modules, apply_lora
from .layer import DEFAULT_ADAPTER
from .naming import hf_module_name, hf_row_order, our_module_name

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
KEY_PREFIX = "base_model.model."
TENSOR_SUFFIXES = {".lora_A.weight": "lora_A", ".lora_B.weight": "lora_B", ".lora_magnitude_vector": "magnitude"}
# settings peft may record that change what an adapter computes and that we do not implement: (field, plain value)
_UNSUPPORTED = {
    "use_rslora": False,
    "rank_pattern": {},
    "alpha_pattern": {},
    "bias": "none",
    "modules_to_save": None,
    "fan_in_fan_out": False,
    "layer_replication": None,
    "lora_bias": False,
    "trainable_token_indices": None,
    "target_parameters": None,
    "alora_invocation_tokens": None,
}


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else float(value)


def peft_adapter_config(config: LoraConfig, target_modules: list[str], base_model: str) -> dict:
    """The ``adapter_config.json`` peft writes for a LoRA/DoRA adapter of a causal LM (the fields peft, vLLM and
    transformers read; the rest take peft's defaults on load)."""
    return {
        "alpha_pattern": {},
        "base_model_name_or_path": base_model,
        "bias": "none",
        "fan_in_fan_out": False,
        "inference_mode": True,
        "init_lora_weights": True,
        "layers_pattern": None,
        "layers_to_transform": None,
        "lora_alpha": _number(config.alpha),
        "lora_dropout": config.dropout,
        "modules_to_save": None,
        "peft_type": "LORA",
        "r": config.rank,
        "rank_pattern": {},
        "revision": None,
        "target_modules": sorted(target_modules),
        "task_type": "CAUSAL_LM",
        "use_dora": config.dora,
        "use_rslora": False,
    }


def _model_lora_config(model: Transformer) -> LoraConfig:
    """The LoraConfig the model's adapters were built with (all adapters share rank, alpha, dropout and kind)."""
    adapters = adapter_modules(model)
    if not adapters:
        raise ValueError("model has no adapters: apply_lora(model, config) or load_peft_adapter(model, folder) first")
    kinds = {(m.rank, m.alpha, getattr(m.dropout, "p", 0.0), m.dora) for m in adapters.values()}
    if len(kinds) > 1:
        raise ValueError(f"adapters differ in (rank, alpha, dropout, dora): {sorted(kinds)}; peft files hold one")
    rank, alpha, dropout, dora = kinds.pop()
    return LoraConfig(rank=rank, alpha=alpha, dropout=dropout, targets=sorted(adapters), dora=dora)


def adapter_tensors_to_peft(model: Transformer) -> dict[str, torch.Tensor]:
    """The adapter weights under peft's tensor names, rows in Hugging Face order (CPU, contiguous)."""
    out: dict[str, torch.Tensor] = {}
    for name, adapter in adapter_modules(model).items():
        key = KEY_PREFIX + hf_module_name(name, model.config)
        tensors = {".lora_A.weight": adapter.lora_A.weight, ".lora_B.weight": adapter.lora_B.weight}
        if adapter.lora_magnitude_vector is not None:
            tensors[".lora_magnitude_vector"] = adapter.lora_magnitude_vector
        rows = hf_row_order(name, model.config, adapter.out_features, to_hf=True)
        for suffix, tensor in tensors.items():
            tensor = tensor.detach()
            if rows is not None and suffix != ".lora_A.weight":
                tensor = tensor[rows.to(tensor.device)]
            out[key + suffix] = tensor.to("cpu").contiguous()
    return out


def save_peft_adapter(model: Transformer, folder: str | os.PathLike, base_model: str) -> None:
    """Writes the model's adapters as a peft adapter folder (created if needed; other files left alone).

    base_model: what ``base_model_name_or_path`` records (a hub id or path; peft loads the base from it when the
    folder is opened with ``AutoPeftModelForCausalLM``). Files are written under temporary names and renamed.
    """
    config = _model_lora_config(model)
    tensors = adapter_tensors_to_peft(model)
    targets = [hf_module_name(name, model.config) for name in config.targets]
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tmp_weights, tmp_config = folder / f".{WEIGHTS_FILE}.tmp", folder / f".{CONFIG_FILE}.tmp"
    save_file(tensors, str(tmp_weights), metadata={"format": "pt"})
    os.chmod(tmp_weights, 0o644)  # safetensors creates its file owner-only; an adapter is shared like any export
    tmp_config.write_text(json.dumps(peft_adapter_config(config, targets, base_model), indent=2, sort_keys=True))
    os.replace(tmp_weights, folder / WEIGHTS_FILE)
    os.replace(tmp_config, folder / CONFIG_FILE)


def read_peft_config(folder: Path, targets: list[str]) -> LoraConfig:
    """The adapter's rank, alpha, dropout and kind from ``adapter_config.json``, for the given target paths;
    ValueError for settings we do not implement."""
    path = folder / CONFIG_FILE
    if not path.exists():
        raise FileNotFoundError(f"{folder}: no {CONFIG_FILE}; expected a peft adapter folder")
    raw = json.loads(path.read_text())
    if raw.get("peft_type") != "LORA":
        raise ValueError(f"{path}: peft_type {raw.get('peft_type')!r} is not supported; only LORA (with use_dora)")
    for field, plain in _UNSUPPORTED.items():
        value = raw.get(field, plain)
        if value != plain and value not in (None, {}, [], False):
            raise ValueError(f"{path}: {field}={value!r} is not supported; only adapters with {field}={plain!r} load")
    return LoraConfig(
        rank=int(raw["r"]),
        alpha=raw["lora_alpha"],
        dropout=float(raw.get("lora_dropout") or 0.0),
        targets=targets,
        dora=bool(raw.get("use_dora")),
    )


def _read_peft_tensors(folder: Path, model: Transformer) -> dict[str, dict[str, torch.Tensor]]:
    """{our module path: {"lora_A" | "lora_B" | "magnitude": tensor}} from the adapter file."""
    path = folder / WEIGHTS_FILE
    if not path.exists():
        found = "adapter_model.bin (pickle) " if (folder / "adapter_model.bin").exists() else ""
        raise FileNotFoundError(f"{folder}: no {WEIGHTS_FILE} {found}(only safetensors adapters load)")
    by_module: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in load_file(str(path)).items():
        suffix = next((s for s in TENSOR_SUFFIXES if key.endswith(s)), None)
        if not key.startswith(KEY_PREFIX) or suffix is None:
            raise ValueError(
                f"{path}: unexpected tensor {key!r}; a LoRA/DoRA adapter holds only {KEY_PREFIX}<module>"
                f"{{{', '.join(TENSOR_SUFFIXES)}}}"
            )
        name = our_module_name(key[len(KEY_PREFIX) : -len(suffix)], model.config)
        by_module.setdefault(name, {})[TENSOR_SUFFIXES[suffix]] = tensor
    return by_module


def load_peft_adapter(model: Transformer, folder: str | os.PathLike, name: str = DEFAULT_ADAPTER) -> list[str]:
    """Adds the adapter in a peft folder to ``model`` as adapter ``name`` (``apply_lora`` with its settings, then
    its weights), installed.

    Returns the adapted module paths. The base weights stay frozen and the adapters trainable, so training can go
    on from a loaded adapter.
    """
    folder = Path(folder)
    tensors = _read_peft_tensors(folder, model)
    if not tensors:
        raise ValueError(f"{folder / WEIGHTS_FILE}: holds no adapter tensors")
    settings = read_peft_config(folder, sorted(tensors))
    names = apply_lora(model, settings, name=name)
    adapters = adapter_modules(model)
    expected = {"lora_A", "lora_B"} | ({"magnitude"} if settings.dora else set())
    with torch.no_grad():
        for name in names:
            adapter, found = adapters[name], tensors[name]
            if set(found) != expected:
                raise ValueError(f"{folder / WEIGHTS_FILE}: {name} has {sorted(found)}, expected {sorted(expected)}")
            rows = hf_row_order(name, model.config, adapter.out_features, to_hf=False)
            params = {"lora_A": adapter.lora_A.weight, "lora_B": adapter.lora_B.weight}
            if settings.dora:
                params["magnitude"] = adapter.lora_magnitude_vector
            for kind, param in params.items():
                tensor = found[kind]
                if tensor.shape != param.shape:
                    raise ValueError(
                        f"{folder / WEIGHTS_FILE}: {name} {kind} has shape {tuple(tensor.shape)}, the model needs "
                        f"{tuple(param.shape)} (r={settings.rank}); is this adapter for another base model?"
                    )
                param.copy_(tensor[rows] if rows is not None and kind != "lora_A" else tensor)
    return names
