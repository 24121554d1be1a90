"""Hostile documents: alias bombs, deep nesting, huge documents, thousands of stages. Each is refused with a
SpecError naming where (the YAML line or the field path), before anything expands or recurses."""

from __future__ import annotations

import json

import pytest

from llm_platform.api import SpecError, load_job, parse_job, parse_job_text
from llm_platform.api.limits import MAX_DEPTH, MAX_DOCUMENT_BYTES, MAX_NODES, MAX_STAGES
from tests.api.test_validation import GOOD


def refused(text: str) -> list[str]:
    with pytest.raises(SpecError) as info:
        parse_job_text(text)
    return [str(p) for p in info.value.problems]


ALIAS_BOMB = "\n".join(
    ["a0: &a0 [x, x, x, x, x, x, x, x, x]"] + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
)


@pytest.mark.parametrize("where", ["status", "model_overrides"])
def test_an_alias_bomb_is_refused_at_its_line(where):
    lines = ALIAS_BOMB.splitlines()
    if where == "status":
        text = GOOD + "status:\n  conditions:\n  - " + "\n    ".join(lines) + "\n"
    else:
        text = GOOD.replace("model: {preset: llama-tiny}", "model:\n    preset: llama-tiny\n    overrides:\n      x: 1")
        text = text + "x:\n  " + "\n  ".join(lines) + "\n"
    assert len(text) < 3000  # 9^10 values once expanded
    found = refused(text)
    assert len(found) == 1 and "anchors (&a0) are not accepted" in found[0] and found[0].startswith("line ")


def test_an_alias_alone_is_refused_too():
    found = refused(GOOD.replace("kind: eval", "kind: *missing"))
    assert "not valid YAML" in found[0] or "aliases" in found[0]


def test_duplicate_keys_are_refused_at_the_second_one():
    text = GOOD.replace("train: {steps: 10,", "train: {steps: 10, steps: 20,")
    found = refused(text)
    assert found == ["line 17: <root>: the key 'steps' appears twice in one mapping; keep one"]


@pytest.mark.parametrize("opener", ["[", "{a: "])
def test_deep_nesting_is_refused_without_recursion(opener):
    closer = "]" if opener == "[" else "}"
    text = GOOD + "status: {conditions: [" + opener * 450 + "1" + closer * 450 + "]}\n"
    found = refused(text)
    assert f"nested deeper than {MAX_DEPTH} levels" in found[0] and found[0].startswith("line ")


def test_deep_nesting_in_an_object_is_refused_with_its_path():
    body = json.loads(json.dumps(load_job(GOOD).to_dict()))
    deep: dict = {}
    cursor = deep
    for _ in range(450):
        cursor["x"] = {}
        cursor = cursor["x"]
    body["spec"]["model"]["overrides"] = deep
    with pytest.raises(SpecError) as info:
        parse_job(body)
    (problem,) = info.value.problems
    assert problem.path.startswith("spec.model.overrides.x.x") and "nested deeper" in problem.message


def test_documents_and_values_are_bounded():
    assert "larger than" in refused(GOOD + "#" * MAX_DOCUMENT_BYTES)[0]
    many = GOOD + "status: {conditions: [" + ", ".join(["1"] * (MAX_NODES + 1)) + "]}\n"
    assert f"more than {MAX_NODES} values" in refused(many)[0]


def _chain(n: int) -> dict:
    stages = [{"name": "s0", "kind": "data", "data": {"sources": [{"type": "stdlib"}]}}]
    stages += [{"name": f"s{i}", "kind": "tokenizer", "needs": [f"s{i - 1}"]} for i in range(1, n)]
    return {
        "apiVersion": "llmplatform.dev/v1alpha1",
        "kind": "LLMJob",
        "metadata": {"name": "c"},
        "spec": {"stages": stages},
    }


def test_the_largest_pipeline_validates_and_a_longer_one_is_refused_by_count():
    assert len(parse_job(_chain(MAX_STAGES)).spec.stages) == MAX_STAGES
    for n in (MAX_STAGES + 1, 3000):
        with pytest.raises(SpecError) as info:
            parse_job(_chain(n))
        assert [p.path for p in info.value.problems] == ["spec.stages"]
        assert f"at most {MAX_STAGES}" in info.value.problems[0].message


@pytest.mark.parametrize(
    ("old", "new", "path"),
    [
        ("kind: eval", "kind: []", "spec.stages[3].kind"),
        ("kind: eval", "kind: {a: 1}", "spec.stages[3].kind"),
        ("kind: LLMJob", "kind: []", "kind"),
        ("steps: 10,", "steps: .nan,", "spec.stages[2].train.steps"),
        ("lr: 3.0e-4", "lr: .inf", "spec.stages[2].train.lr"),
        ("lr: 3.0e-4", "lr: 'nan'", "spec.stages[2].train.lr"),
        ("steps: 10,", "steps: true,", "spec.stages[2].train.steps"),
        ("steps: 10,", f"steps: {2**70},", "spec.stages[2].train.steps"),
        ("seq_len: 64", "seq_len: !!python/object:os.system ls", "<root>"),
        ("seq_len: 64", "seq_len: !!binary aGVsbG8=", "<root>"),
        ("needs: [tok]", "needs: [[tok]]", "spec.stages[2].needs[0]"),
    ],
)
def test_wrong_types_are_spec_errors_naming_the_field(old, new, path):
    assert old in GOOD
    with pytest.raises(SpecError) as info:
        parse_job_text(GOOD.replace(old, new, 1))
    assert path in [p.path for p in info.value.problems], info.value


@pytest.mark.parametrize(
    "source", ["x" * 5000, "a\0b", "[unclosed", "", "42", "- a list", "x: 1\na: \x07", "a: \udc80", "a: b\n\tc: d"]
)
def test_load_job_never_raises_anything_but_spec_error(source):
    with pytest.raises(SpecError):
        load_job(source)


def test_characters_yaml_refuses_are_reported_at_their_line():
    found = refused("apiVersion: x\nkind: \x07\n")
    assert found == ["line 2: <root>: not valid YAML: control characters are not allowed (character 7)"]
    assert refused('kind: LLMJob\nmetadata: {name: "a\udc80"}\n')[0].startswith("line 2: ")
    with pytest.raises(SpecError, match="metadata.name: not valid text"):
        parse_job({"metadata": {"name": "a\ud800"}, "spec": {}})
