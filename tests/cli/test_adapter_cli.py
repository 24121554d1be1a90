"""`llmp adapter list|merge|export` on real PEFT folders: the merged model and the exported combination compute
what the weighted sum of the adapters' deltas over the base computes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from llm_platform.cli import app
from llm_platform.cli_adapter import parse_adapters
from llm_platform.trainer.adapters import LoraConfig, apply_lora, combine_adapters, load_peft_adapter, save_peft_adapter
from llm_platform.trainer.model import get_config
from llm_platform.trainer.model.hf import load_pretrained, save_pretrained
from llm_platform.trainer.model.transformer import Transformer

ADAPTERS = {"sql": LoraConfig(rank=4, alpha=8, targets=["q_proj", "v_proj"]),
            "chat": LoraConfig(rank=2, alpha=2, targets=["v_proj", "up_proj"])}  # fmt: skip


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("adapters")
    model = Transformer(get_config("llama-tiny"))
    model.init_weights(seed=0)
    save_pretrained(model, root / "base")
    for i, (name, config) in enumerate(ADAPTERS.items()):
        adapted = load_pretrained(root / "base")
        apply_lora(adapted, config)
        generator = torch.Generator().manual_seed(i)
        with torch.no_grad():
            for p in adapted.parameters():
                if p.requires_grad:
                    p.copy_(torch.randn(p.shape, generator=generator) * 0.05)
        save_peft_adapter(adapted, root / name, base_model="base")
    return root


def expected_logits(root, weights, ids):
    model = load_pretrained(root / "base")
    for name in weights:
        load_peft_adapter(model, root / name, name=name)
    combine_adapters(model, weights, name="mix")
    with torch.no_grad():
        return model.eval()(ids)


def test_list_names_each_adapter(folders):
    result = CliRunner().invoke(app, ["adapter", "list", str(folders / "sql"), str(folders / "chat")])
    assert result.exit_code == 0, result.output
    assert "sql" in result.output and "chat" in result.output and "lora" in result.output
    bad = CliRunner().invoke(app, ["adapter", "list", str(folders / "base")])
    assert bad.exit_code == 2 and "not a readable PEFT adapter folder" in bad.output


def test_merge_and_export_compute_the_weighted_sum(folders, tmp_path):
    weights = {"sql": 0.7, "chat": -0.4}
    args = [arg for name, w in weights.items() for arg in ("-a", f"{folders / name}={w}")]
    ids = torch.randint(0, 512, (2, 10), generator=torch.Generator().manual_seed(3))
    expected = expected_logits(folders, weights, ids)
    merged = CliRunner().invoke(app, ["adapter", "merge", str(folders / "base"), str(tmp_path / "merged"), *args])
    assert merged.exit_code == 0, merged.output
    with torch.no_grad():
        torch.testing.assert_close(load_pretrained(tmp_path / "merged").eval()(ids), expected, atol=1e-5, rtol=1e-5)
    exported = CliRunner().invoke(app, ["adapter", "export", str(folders / "base"), str(tmp_path / "mix"), *args])
    assert exported.exit_code == 0, exported.output
    model = load_pretrained(folders / "base")
    load_peft_adapter(model, tmp_path / "mix")
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(ids), expected, atol=1e-5, rtol=1e-5)


def test_bad_adapter_arguments_are_named():
    assert parse_adapters(["a", "b=0.5"]) == [(Path("a"), 1.0), (Path("b"), 0.5)]
    with pytest.raises(ValueError, match="--adapter 'x=heavy': weight 'heavy' is not a number"):
        parse_adapters(["x=heavy"])
    with pytest.raises(ValueError, match="finite weight"):
        parse_adapters(["x=nan"])
    result = CliRunner().invoke(app, ["adapter", "merge", "nowhere", "out"])
    assert result.exit_code == 2 and "give at least one adapter folder" in result.output
