"""`llmp model import/export` through the real loader/saver, checked by loading the result in transformers."""

from __future__ import annotations

import torch
from typer.testing import CliRunner

from llm_platform.cli import app
from llm_platform.storage import ArtifactStore
from llm_platform.trainer.model import get_config
from llm_platform.trainer.model.hf import save_pretrained
from llm_platform.trainer.model.transformer import Transformer


def test_export_a_stage_model_then_import_it_into_transformers(tmp_path):
    import transformers

    model = Transformer(get_config("llama-tiny"))
    model.init_weights(seed=0)
    with ArtifactStore.open(str(tmp_path / "store")).writer("pretrain") as out:
        save_pretrained(model, out / "model")
    runner = CliRunner()
    exported = runner.invoke(
        app, ["model", "export", str(tmp_path / "store"), "pretrain", str(tmp_path / "hf"), "--dtype", "bf16"]
    )
    assert exported.exit_code == 0, exported.output
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf")
    assert hf.dtype == torch.bfloat16
    imported = runner.invoke(app, ["model", "import", str(tmp_path / "hf"), str(tmp_path / "again")])
    assert imported.exit_code == 0 and "llama model" in imported.output, imported.output
    ids = torch.randint(0, model.config.vocab_size, (1, 12))
    again = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "again", dtype=torch.float32)
    assert torch.allclose(again(ids).logits, hf.float()(ids).logits, atol=1e-5)


def test_export_of_an_uncommitted_stage_is_a_clear_error(tmp_path):
    result = CliRunner().invoke(app, ["model", "export", str(tmp_path), "pretrain", str(tmp_path / "x")])
    assert result.exit_code == 2 and "no committed artifact 'pretrain'" in result.output


def test_presets_list():
    result = CliRunner().invoke(app, ["model", "presets"])
    assert result.exit_code == 0 and "llama-125m" in result.output
