"""Every class of bad spec is rejected with a message naming the field path (and YAML line) and the fix."""

from __future__ import annotations

import textwrap

import pytest
from typer.testing import CliRunner

from llm_platform.api import SpecError, load_job
from llm_platform.cli import app

GOOD = textwrap.dedent("""\
    apiVersion: llmplatform.dev/v1alpha1
    kind: LLMJob
    metadata: {name: demo}
    spec:
      model: {preset: llama-tiny}
      stages:
      - name: data
        kind: data
        data: {sources: [{type: stdlib}]}
      - name: tok
        kind: tokenizer
        needs: [data]
        tokenizer: {vocab_size: 512}
      - name: pretrain
        kind: pretrain
        needs: [tok]
        train: {steps: 10, lr: 3.0e-4, seq_len: 64}
      - name: eval
        kind: eval
        needs: [pretrain]
    """)


def problems(text: str) -> list[str]:
    with pytest.raises(SpecError) as info:
        load_job(text)
    return [str(p) for p in info.value.problems]


def test_good_spec_loads_with_defaults():
    job = load_job(GOOD)
    assert [s.name for s in job.spec.stages] == ["data", "tok", "pretrain", "eval"]
    assert job.spec.stage("eval").eval.metrics == ["perplexity"]
    assert job.spec.stage("pretrain").train.steps == 10


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        # unknown field, with the closest valid name suggested
        (
            "train: {steps: 10, lr: 3.0e-4",
            "train: {steps: 10, learning_rate: 3.0e-4",
            "line 17: spec.stages[2].train.learning_rate: unknown field 'learning_rate'",
        ),
        # wrong type
        ("steps: 10,", "steps: ten,", "line 17: spec.stages[2].train.steps: Input should be a valid integer"),
        # out of range numbers
        ("lr: 3.0e-4", "lr: -1", "spec.stages[2].train.lr: Input should be greater than 0 (got -1)"),
        ("seq_len: 64", "seq_len: 0", "spec.stages[2].train.seq_len: Input should be greater than or equal to 8"),
        ("vocab_size: 512", "vocab_size: 10", "spec.stages[1].tokenizer.vocab_size"),
        # duplicate names
        ("- name: eval", "- name: tok", "spec.stages[3].name: duplicate stage name 'tok' (also stages[1])"),
        # needs naming an unknown stage
        ("needs: [tok]", "needs: [tokenizer]", "line 16: spec.stages[2].needs[0]: 'tokenizer' is not a stage"),
        # a cycle
        ("needs: [data]", "needs: [eval]", "stages form a cycle"),
        # inputs that cannot come from the needs
        ("needs: [pretrain]", "needs: [data]", "an 'eval' stage reads `model`, but none of the stages it needs"),
        # a section that does not belong to the kind
        ("tokenizer: {vocab_size: 512}", "train: {steps: 3}", "a 'tokenizer' stage takes only `tokenizer`"),
        # a kind that does not exist
        ("kind: eval", "kind: evaluate", "spec.stages[3].kind: Input should be 'data', 'tokenizer'"),
        # unknown preset and override
        ("preset: llama-tiny}", "preset: llama-tiny, overrides: {hidden: 3}}", "unknown model override(s) hidden"),
        ("preset: llama-tiny", "preset: gpt-5", "unknown preset 'gpt-5'"),
    ],
)
def test_bad_spec_names_path_and_fix(old, new, expected):
    assert old in GOOD
    found = problems(GOOD.replace(old, new, 1))
    assert any(expected in p for p in found), found


def test_unknown_field_suggests_the_right_name():
    found = problems(GOOD.replace("lr: 3.0e-4", "learning_rate: 3.0e-4"))
    assert any("did you mean 'lr'?" in p for p in found), found


def test_every_problem_is_listed_at_once():
    text = GOOD.replace("lr: 3.0e-4", "lr: 0").replace("needs: [pretrain]", "needs: [nope]")
    found = problems(text)
    assert any("train.lr" in p for p in found) and any("'nope' is not a stage" in p for p in found), found


def test_invalid_yaml_reports_the_line():
    found = problems(GOOD.replace("kind: data", "kind: [data"))
    assert found[0].startswith("line ") and "not valid YAML" in found[0]


def test_cli_validate_ok_and_bad(tmp_path):
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(GOOD)
    bad.write_text(GOOD.replace("lr: 3.0e-4", "lr: -1"))
    runner = CliRunner()
    ok = runner.invoke(app, ["validate", str(good)])
    assert ok.exit_code == 0 and "OK" in ok.output
    result = runner.invoke(app, ["validate", str(good), str(bad)])
    assert result.exit_code == 2
    assert "spec.stages[2].train.lr" in result.output and str(bad) in result.output
