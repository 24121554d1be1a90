"""Shared by the parity tests: round-trip a transformers model through our loader and saver, compare logits."""

from __future__ import annotations

import tempfile

import torch

from llm_platform.trainer.model.hf import load_pretrained, save_pretrained

TOLERANCE = 1e-4


def randomize(hf_model: torch.nn.Module, seed: int = 0) -> None:
    """Random values everywhere, norms and biases included, so that a mis-mapped tensor cannot hide behind an init of
    ones or zeros."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in list(hf_model.named_parameters()) + list(hf_model.named_buffers()):
            if not tensor.is_floating_point() or "inv_freq" in name:
                continue
            noise = torch.randn(tensor.shape, generator=generator) * 0.05
            tensor.copy_(noise + 1.0 if "norm" in name else noise)


def roundtrip_max_diffs(hf_model: torch.nn.Module, seq_len: int = 40, batch: int = 2) -> tuple[float, float]:
    """(|HF - ours loaded from HF|, |HF - HF loaded from our save|), max abs over all logits."""
    from transformers import AutoModelForCausalLM

    hf_model.eval()
    ids = torch.randint(0, hf_model.config.vocab_size, (batch, seq_len), generator=torch.Generator().manual_seed(1))
    with tempfile.TemporaryDirectory() as hf_dir, tempfile.TemporaryDirectory() as our_dir, torch.no_grad():
        hf_model.save_pretrained(hf_dir)
        ours = load_pretrained(hf_dir).eval()
        reference = hf_model(ids).logits
        loaded_diff = (ours(ids) - reference).abs().max().item()
        save_pretrained(ours, our_dir)
        reloaded = AutoModelForCausalLM.from_pretrained(our_dir).eval()
        saved_diff = (reloaded(ids).logits - reference).abs().max().item()
    return loaded_diff, saved_diff
