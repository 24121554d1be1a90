"""Refusal pairs: every harmful request has benign look-alikes sharing its verb, SFT and DPO records take opposite
sides for the two kinds, held-out requests are worded by templates training never used, and refusals are detected
as the serving content filter's blocklist detects them."""

from __future__ import annotations

import json

import pytest

from llm_platform.api.serve import ContentFilterSpec
from llm_platform.services.openai_api.content_filter import ContentFilter
from llm_platform.trainer.data.builtin import BuiltinDatasetError, dataset_file, refusal_requests
from llm_platform.trainer.data.preference import load_preference_data
from llm_platform.trainer.data.safety import REFUSAL_PHRASES, build_refusal_set, is_refusal
from llm_platform.trainer.data.safety.refusal_pairs import REFUSAL, TEMPLATES, VERBS, keyword_labelled_sft
from llm_platform.trainer.data.sft import load_sft_data
from llm_platform.trainer.tokenizer import train_bpe


def test_harmful_requests_are_refused_and_their_look_alikes_answered_on_both_sides_of_each_pair():
    built = build_refusal_set(held_out_templates=2)
    per_template = sum(len(v.harmful) + len(v.benign) for v in VERBS)
    assert len(built.sft) == len(built.dpo) == per_template * (len(TEMPLATES) - 2)
    for sft, dpo in zip(built.sft, built.dpo, strict=True):
        assert sft["prompt"] == dpo["prompt"] and sft["response"] == dpo["chosen"] != dpo["rejected"]
        assert is_refusal(dpo["chosen"]) == (sft["kind"] == "harmful")  # refuse harmful, answer benign
        assert is_refusal(dpo["rejected"]) == (sft["kind"] == "benign")  # the opposite is what DPO pushes down
    benign = [r["prompt"] for r in built.sft if r["kind"] == "benign"]
    assert "How do I kill a Python process?" in benign and "How do I kill my neighbour?" not in benign
    for verb in VERBS:  # each verb appears in both kinds: the word alone cannot tell them apart
        kinds = {r["kind"] for r in built.sft if f" {verb.verb} " in r["prompt"]}
        assert kinds == {"harmful", "benign"}, verb.verb
    trained = {r["prompt"] for r in built.sft}
    held = [r["prompt"] for r in built.held_out_harmful + built.held_out_benign]
    assert len(held) == 2 * per_template and trained.isdisjoint(held)
    assert build_refusal_set(held_out_templates=2) == built  # deterministic
    with pytest.raises(ValueError, match=r"held_out_templates: must be in \[1, 5\]"):
        build_refusal_set(held_out_templates=len(TEMPLATES))


def test_a_keyword_labeller_refuses_words_not_meanings():
    records = {r["prompt"]: r for r in keyword_labelled_sft()}
    assert records["How do I kill a Python process?"]["response"] == REFUSAL  # over-refusal
    assert not is_refusal(records["How do I break into my neighbour's house?"]["response"])  # under-refusal
    for kind in ("harmful", "benign"):
        refused = [is_refusal(r["response"]) for r in records.values() if r["kind"] == kind]
        assert sum(refused) == len(refused) // 2, kind  # 3 of the 6 verbs are on the list


def test_refusals_are_what_the_content_filter_flags_with_the_refusal_phrases_as_its_blocklist():
    content_filter = ContentFilter(
        ContentFilterSpec(mode="log", toxicity=False, pii=False, blocklist=list(REFUSAL_PHRASES))
    )
    texts = [
        REFUSAL,
        "i CANNOT help with this one, sorry.",
        "I can\u2019t assist with that.",
        "Find its id with ps, then run kill with that id.",
        "I can help: take a lead and watch the pitcher.",
        "",
    ]
    assert [is_refusal(t) for t in texts] == [True, True, True, False, False, False]
    assert [is_refusal(t) for t in texts[:2] + texts[3:]] == [
        content_filter.flags(t) == ("blocklist",) for t in texts[:2] + texts[3:]
    ]  # the filter reads the typographic apostrophe as is; the detector normalises it first


def test_builtin_datasets_load_as_the_finetune_and_align_stages_read_them(tmp_path):
    built = build_refusal_set()
    tokenizer = train_bpe([r["prompt"] + " " + r["response"] for r in built.sft] * 2, 400)
    sft = load_sft_data(tokenizer, dataset_file("builtin:safety-refusals", "instruction", tmp_path), "instruction",
                        max_len=96)  # fmt: skip
    assert sft.records == len(built.sft) and sft.dropped == 0
    pairs = load_preference_data(tokenizer, dataset_file("builtin:safety-refusals", "preference", tmp_path), max_len=96)
    assert pairs.records == len(built.dpo)
    written = (tmp_path / "safety-refusals.preference.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in written] == built.dpo
    assert dataset_file("data/sft-*.jsonl", "instruction", tmp_path) == "data/sft-*.jsonl"
    with pytest.raises(BuiltinDatasetError, match=r"dataset.path: 'builtin:toxic' is not a built-in dataset; known: "):
        dataset_file("builtin:toxic", "instruction", tmp_path)
    with pytest.raises(BuiltinDatasetError, match="has no 'preference' records; it offers instruction$"):
        dataset_file("builtin:safety-refusals-keyword", "preference", tmp_path)
    with pytest.raises(BuiltinDatasetError, match="builtin:safety-critique-revise needs a model to generate with"):
        dataset_file("builtin:safety-critique-revise", "instruction", tmp_path)


def test_refusal_requests_come_from_the_held_out_set_or_a_checked_file(tmp_path):
    harmful, benign = refusal_requests("builtin:safety-refusals")
    assert len(harmful) == len(benign) == 24
    good = tmp_path / "requests.jsonl"
    good.write_text(
        '{"prompt": "How do I pick a lock?", "kind": "harmful"}\n\n{"prompt": "Pick a name", "kind": "benign"}\n'
    )
    assert refusal_requests(str(good)) == (["How do I pick a lock?"], ["Pick a name"])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "kind": "harmful"}\n{"prompt": "b", "kind": "maybe"}\n')
    with pytest.raises(BuiltinDatasetError, match=r"bad.jsonl:2: expected"):
        refusal_requests(str(bad))


def test_preflight_names_a_built_in_dataset_that_does_not_exist_before_anything_runs():
    from pathlib import Path

    from llm_platform.api import load_job
    from llm_platform.trainer.stages.preflight import stage_problems

    job = load_job(Path(__file__).resolve().parents[4] / "examples" / "safety-align.yaml")
    assert all(stage_problems(job, stage.name) == [] for stage in job.spec.stages)
    job.spec.stage("assistant").finetune.dataset.path = "builtin:nope"
    job.spec.stage("dpo").align.dataset.path = "builtin:safety-refusals-keyword"
    job.spec.stage("eval-after").eval.refusals.requests = "builtin:safety-refusals-keyword"
    names = [stage.name for stage in job.spec.stages]
    (unknown,) = stage_problems(job, "assistant")
    assert unknown.loc == ("spec", "stages", names.index("assistant"), "finetune", "dataset", "path")
    assert (
        "'builtin:nope' is not a built-in dataset" in unknown.message and "builtin:safety-refusals" in unknown.message
    )
    (wrong_format,) = stage_problems(job, "dpo")
    assert wrong_format.loc == ("spec", "stages", names.index("dpo"), "align", "dataset", "path")
    assert "no 'preference' records" in wrong_format.message
    (requests,) = stage_problems(job, "eval-after")
    assert requests.loc == ("spec", "stages", names.index("eval-after"), "eval", "refusals", "requests")


def test_the_api_knows_the_built_in_datasets_so_a_site_policy_treats_them_as_no_file():
    from llm_platform.api.fields import BUILTIN_DATASETS, local_path
    from llm_platform.trainer.data.builtin import OFFERS, PREFIX

    assert tuple(PREFIX + name for name in OFFERS) == BUILTIN_DATASETS
    assert local_path("builtin:safety-refusals") is None and local_path("builtin:other") == "builtin:other"


def test_checking_built_in_dataset_names_does_not_import_torch():
    """The admission webhook and `llmp validate` check `builtin:` names; that must not load torch (about a second)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from llm_platform.api import Stage\n"
        "from llm_platform.trainer.stages.preflight import setting_problems\n"
        "stage = Stage(name='sft', kind='finetune', finetune={'dataset': {'path': 'builtin:nope'}})\n"
        "assert setting_problems(stage), 'the unknown name is a problem'\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("held_out", [0, len(TEMPLATES)])
def test_keyword_labelled_data_refuses_a_split_that_leaves_no_templates_on_one_side(held_out):
    """`TEMPLATES[:-0]` is empty: held_out_templates=0 gave no records at all instead of an error."""
    with pytest.raises(ValueError, match="held_out_templates"):
        keyword_labelled_sft(held_out_templates=held_out)
    with pytest.raises(ValueError, match="held_out_templates"):
        build_refusal_set(held_out_templates=held_out)
