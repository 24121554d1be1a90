from llm_platform.api import load_job
from llm_platform.api.dag import EXTERNAL, ancestors, descendants, input_sources, topological_order
from tests.api.test_validation import GOOD


def test_order_ancestry_and_inputs():
    stages = load_job(GOOD).spec.stages
    assert topological_order(stages) == ["data", "tok", "pretrain", "eval"]
    assert ancestors(stages, "eval") == ["pretrain", "tok", "data"]
    assert descendants(stages, "tok") == ["pretrain", "eval"]
    assert input_sources(stages, "eval") == {"model": "pretrain", "tokens": "tok"}
    assert input_sources(stages, "pretrain") == {"tokens": "tok", "tokenizer": "tok"}


def test_model_from_a_checkpoint_is_an_external_input():
    text = GOOD.replace("model: {preset: llama-tiny}", "model: {from: s3://bucket/llama}")
    text = text.split("  - name: pretrain")[0] + "  - {name: eval, kind: eval, needs: [tok]}\n"
    stages = load_job(text).spec.stages
    assert input_sources(stages, "eval", ["model"]) == {"model": EXTERNAL, "tokens": "tok"}
