"""An exported folder is what vLLM loads unchanged, and every part of the platform follows one BOS rule.

vLLM reads `config.json` through transformers' AutoConfig (its `architectures` must be in vLLM's model registry),
the tokenizer through AutoTokenizer (`tokenizer.json` + `tokenizer_config.json`, whose `chat_template` its chat
endpoint renders), and stops on every `eos_token_id` of `generation_config.json` (vllm-project/vllm#4182). vLLM itself
cannot run here, so transformers, which vLLM delegates all three to, stands in for it.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from transformers import AutoConfig, AutoTokenizer, GenerationConfig

from llm_platform.services.openai_api.prompts import completion_prompts
from llm_platform.services.openai_api.protocol import CompletionRequest
from llm_platform.trainer.data.pack import write_split
from llm_platform.trainer.inference.engine import LLMEngine
from llm_platform.trainer.stages.tokenizer import _encode_stream
from llm_platform.trainer.tokenizer import Tokenizer

# text-only decoder architectures of vLLM's supported-models list that our exporter writes
VLLM_ARCHITECTURES = {
    "LlamaForCausalLM",
    "MistralForCausalLM",
    "MixtralForCausalLM",
    "Qwen2ForCausalLM",
    "Qwen3ForCausalLM",
    "DeepseekV3ForCausalLM",
}
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello."}]


def test_config_names_a_vllm_architecture_and_the_special_ids(tiny_chat_model):
    ours = Tokenizer.load(tiny_chat_model)
    config = AutoConfig.from_pretrained(tiny_chat_model)
    assert set(config.architectures) <= VLLM_ARCHITECTURES
    assert (config.bos_token_id, config.eos_token_id, config.pad_token_id) == (ours.bos_id, ours.eos_id, ours.pad_id)


def test_generation_config_stops_at_eos_and_at_the_end_of_a_chat_turn(tiny_chat_model):
    ours = Tokenizer.load(tiny_chat_model)
    generation = GenerationConfig.from_pretrained(tiny_chat_model)
    assert generation.eos_token_id == [ours.eos_id, ours.token_to_id("<|end|>")]
    assert generation.bos_token_id == ours.bos_id and generation.pad_token_id == ours.pad_id


def test_the_hf_tokenizer_renders_and_encodes_chats_as_we_do(tiny_chat_model):
    ours = Tokenizer.load(tiny_chat_model)
    hf = AutoTokenizer.from_pretrained(tiny_chat_model)
    assert json.loads((tiny_chat_model / "tokenizer_config.json").read_text())["chat_template"] == ours.chat_template
    rendered = hf.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=False)
    assert hf(rendered, add_special_tokens=False)["input_ids"] == ours.encode_chat(MESSAGES, add_generation_prompt=True)
    assert hf.eos_token_id == ours.eos_id and hf.bos_token_id == ours.bos_id


@pytest.mark.parametrize("text", ["def main():\n    return 0\n", "Hello"])
def test_one_bos_rule_everywhere(tiny_chat_model, text):
    """A plain-text sequence starts with exactly one BOS in pretraining data, in transformers/vLLM/lm-eval (the
    exported tokenizer), in the engine, and in the server's completion prompts."""
    ours = Tokenizer.load(tiny_chat_model)
    bos = ours.bos_id
    (pretraining,) = list(_encode_stream(ours, iter([text])))
    exported = AutoTokenizer.from_pretrained(tiny_chat_model)(text)["input_ids"]
    engine = LLMEngine.from_pretrained(tiny_chat_model)._prompt_ids(text)
    (served,) = completion_prompts(CompletionRequest(model="m", prompt=text), ours)
    assert pretraining == exported == engine == served
    assert pretraining[0] == bos and bos not in pretraining[1:]


def test_packed_pretraining_documents_each_start_with_bos(tiny_chat_model, tmp_path):
    ours = Tokenizer.load(tiny_chat_model)
    docs = ["import os\n", "class A:\n    pass\n", "x = 1\n"]
    write_split(tmp_path, "train", _encode_stream(ours, iter(docs)), ours.eos_id, ours.vocab_size)
    tokens = np.fromfile(tmp_path / "train.bin", dtype=np.uint16)
    starts = np.fromfile(tmp_path / "train.idx", dtype=np.int64)
    assert [int(tokens[s]) for s in starts] == [ours.bos_id] * len(docs)
