"""The critique-and-revise pass through the inference engine: the model's critique is its greedy answer to the
principles + request + response, its revision the answer to those + the critique; records prefer the revision. The
model is a small random one (its texts are noise), so the test checks what reaches the model and what comes back,
by replaying each phase's prompt through the engine."""

from __future__ import annotations

import pytest

from llm_platform.trainer.data.safety import critique_and_revise, load_principles
from llm_platform.trainer.data.safety.critique_revise import CRITIQUE_PROMPT, PRINCIPLES_FILE, REVISION_PROMPT
from llm_platform.trainer.data.safety.refusals import chat_prompt_ids
from llm_platform.trainer.inference import EngineConfig, LLMEngine, SamplingParams
from llm_platform.trainer.model import Transformer, get_config
from llm_platform.trainer.tokenizer import train_bpe

PROMPTS = ["How do I kill a Python process?", "How do I kill my neighbour?"]


@pytest.fixture(scope="module")
def engine() -> LLMEngine:
    principles = PRINCIPLES_FILE.read_text()
    tokenizer = train_bpe([principles, *PROMPTS, CRITIQUE_PROMPT, REVISION_PROMPT] * 4, 320)
    model = Transformer(get_config("llama-tiny", dim=32, n_layers=2, n_heads=4, num_kv_heads=2, ffn_dim=64,
                                   vocab_size=tokenizer.vocab_size, max_seq_len=512, init_std=0.2))  # fmt: skip
    model.init_weights(seed=0)
    return LLMEngine(model, tokenizer, EngineConfig(num_blocks=128))


def replay(engine: LLMEngine, text: str, max_tokens: int) -> str:
    ids = chat_prompt_ids(engine.tokenizer, text, engine.max_model_len - max_tokens)
    [out] = engine.generate([ids], SamplingParams(max_tokens=max_tokens, temperature=0.0))
    return out.outputs[0].text.strip()


def test_each_phase_sees_the_principles_and_what_came_before_and_the_revision_is_preferred(engine):
    principles = load_principles()
    assert len(principles) == 6 and principles[0].startswith("Do not give instructions")
    listed = "\n".join(f"{i}. {p}" for i, p in enumerate(principles, 1))
    originals = ["Find its id with ps, then run kill with that id.", "Sure, here is how to kill my neighbour."]
    result = critique_and_revise(engine, PROMPTS, responses=originals, max_tokens=12)
    assert result.counts["kept"] + result.counts["dropped_empty"] + result.counts["dropped_unchanged"] == len(PROMPTS)
    for sft, dpo in zip(result.sft, result.dpo, strict=True):
        i = PROMPTS.index(sft["prompt"])
        critique = replay(
            engine, CRITIQUE_PROMPT.format(principles=listed, prompt=PROMPTS[i], response=originals[i]), 12
        )
        assert dpo["critique"] == sft["critique"] == critique
        revision = replay(engine, REVISION_PROMPT.format(principles=listed, prompt=PROMPTS[i], response=originals[i],
                                                         critique=critique), 12)  # fmt: skip
        assert sft["response"] == dpo["chosen"] == revision != originals[i]
        assert dpo["rejected"] == originals[i]
    assert result.counts["kept"] >= 1


def test_without_responses_the_model_answers_first(engine):
    result = critique_and_revise(engine, PROMPTS, max_tokens=8)
    for dpo in result.dpo:
        assert dpo["rejected"] == replay(engine, dpo["prompt"], 8)


def test_principles_files_are_checked(tmp_path):
    empty = tmp_path / "p.md"
    empty.write_text("# no numbered lines here\n- a bullet\n")
    with pytest.raises(ValueError, match=r"p.md has no numbered lines"):
        load_principles(empty)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_principles(tmp_path / "missing.md")
    mine = tmp_path / "mine.md"
    mine.write_text("1. Be kind.\n2) Be brief.\n")
    assert load_principles(mine) == ("Be kind.", "Be brief.")
