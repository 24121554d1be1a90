"""LoRA adapters served beside the base model: listed by /v1/models, picked by a request's `model`."""

from __future__ import annotations

import openai
import torch

from llm_platform.trainer.adapters import LoraConfig, apply_lora, save_peft_adapter
from llm_platform.trainer.adapters.inject import adapter_modules
from llm_platform.trainer.inference.engine import LLMEngine
from llm_platform.trainer.inference.params import SamplingParams
from llm_platform.trainer.model.hf import load_pretrained

from .conftest import MODEL_NAME, running_server
from .tiny_model import GREETING

ADAPTER = "shouty"
PROMPT = "import json\n"


def make_adapter(model_dir, folder):
    """A PEFT adapter on the tiny model whose update is far from zero (a fresh LoRA's B is zero: no change)."""
    torch.manual_seed(1)
    model = load_pretrained(model_dir)
    apply_lora(model, LoraConfig(rank=4, alpha=8, targets=("q_proj", "v_proj")))
    for module in adapter_modules(model).values():
        torch.nn.init.normal_(module.lora_B.weight, std=0.5)
    save_peft_adapter(model, folder, base_model=str(model_dir))
    return folder


def test_an_adapter_is_listed_and_answers_as_the_engine_does_with_it(model_dir, tmp_path):
    adapter = make_adapter(model_dir, tmp_path / "adapter")
    with running_server(model_dir, adapters={ADAPTER: str(adapter)}) as served:
        client = openai.OpenAI(base_url=served.base_url, api_key="none", max_retries=0)
        models = {m.id: m.parent for m in client.models.list().data}
        assert models == {MODEL_NAME: None, ADAPTER: MODEL_NAME}
        kwargs = {"prompt": PROMPT, "max_tokens": 12, "temperature": 0, "extra_body": {"ignore_eos": True}}
        tuned = client.completions.create(model=ADAPTER, **kwargs).choices[0].text
        base = client.completions.create(model=MODEL_NAME, **kwargs).choices[0].text
        assert client.chat.completions.create(model=ADAPTER, messages=[{"role": "user", "content": GREETING}])
    engine = LLMEngine.from_pretrained(model_dir, adapters={ADAPTER: str(adapter)})
    (direct,) = engine.generate([PROMPT], SamplingParams(max_tokens=12, temperature=0, ignore_eos=True), ADAPTER)
    assert tuned == direct.outputs[0].text
    assert tuned != base
