"""The `data` stage end to end: spec -> library configs -> corpus, report and manifest metrics in the store."""

import dataclasses
import json

import pytest
import yaml

from llm_platform.api import SpecError, load_job
from llm_platform.api import data as spec_models
from llm_platform.storage import ArtifactStore
from llm_platform.trainer.data import (
    c4,
    classifier,
    clean,
    decontaminate,
    fineweb,
    gopher,
    language,
    minhash,
    perplexity,
    pii,
    synthetic,
    toxicity,
)
from llm_platform.trainer.data.corpus import iter_corpus
from llm_platform.trainer.data.filters import FILTERS
from llm_platform.trainer.stages import run_stage
from llm_platform.trainer.stages.data import pipeline_config
from tests.trainer.data.corpus_fixture import write_mixed_corpus

# every spec section and the library config it becomes, with the values its required fields need
MIRRORS = [
    (spec_models.CleanSpec, clean.CleanConfig, {}),
    (spec_models.LanguageSpec, language.LanguageConfig, {}),
    (spec_models.GopherQualitySpec, gopher.GopherQualityConfig, {}),
    (spec_models.GopherRepetitionSpec, gopher.GopherRepetitionConfig, {}),
    (spec_models.C4Spec, c4.C4Config, {}),
    (spec_models.FineWebSpec, fineweb.FineWebQualityConfig, {}),
    (spec_models.ClassifierSpec, classifier.ClassifierConfig, {"model": "m.npz"}),
    (spec_models.PerplexitySpec, perplexity.PerplexityConfig, {"model": "ckpt"}),
    (spec_models.ToxicitySpec, toxicity.ToxicityConfig, {}),
    (spec_models.MinHashSpec, minhash.MinHashConfig, {}),
    (spec_models.PIISpec, pii.PIIConfig, {}),
    (spec_models.SyntheticSpec, synthetic.SyntheticConfig, {"endpoint": "http://x/v1", "model": "m", "topics": ["t"]}),
]


def _as_plain(value):
    return list(value) if isinstance(value, tuple) else value


@pytest.mark.parametrize(("spec", "config", "required"), MIRRORS, ids=[m[1].__name__ for m in MIRRORS])
def test_spec_sections_mirror_the_library_configs_with_the_same_defaults(spec, config, required):
    spec_values = spec(**required).model_dump()
    library_values = {
        f.name: _as_plain(getattr(config(**{k: v for k, v in required.items()}), f.name))
        for f in dataclasses.fields(config)
    }
    assert spec_values == library_values


def test_the_spec_offers_exactly_the_registered_filters_with_their_settings():
    assert list(spec_models.FilterStep.model_fields) == list(FILTERS)
    for name, registered in FILTERS.items():
        spec = spec_models.FilterStep.model_fields[name].annotation.__args__[0]  # `Spec | None`
        assert list(spec.model_fields) == [f.name for f in dataclasses.fields(registered.config)], name


def test_decontamination_spec_mirrors_its_config():
    spec = spec_models.DecontaminateSpec(sources=[{"type": "stdlib"}]).model_dump(exclude={"sources"})
    assert spec == dataclasses.asdict(decontaminate.DecontaminationConfig())


def _job(data_section: str, tmp_path) -> str:
    """An LLMJob of one data stage, as YAML text (so errors carry field paths as users see them)."""
    data = yaml.safe_load(data_section.replace("TMP", str(tmp_path)))
    job = {
        "apiVersion": "llmplatform.dev/v1alpha1",
        "kind": "LLMJob",
        "metadata": {"name": "data-test"},
        "spec": {"stages": [{"name": "data", "kind": "data", "data": data}]},
    }
    return yaml.safe_dump(job, sort_keys=False)


FULL = """\
sources: [{type: jsonl, path: TMP/in/*.jsonl}]
clean: {fix_mojibake: true}
language: {keep: [en], candidates: [en, de, fr]}
filters:
- gopher_repetition: {}
- gopher_quality: {}
- c4: {}
- fineweb: {}
- toxicity: {}
pii: {}
dedup: {exact: true, minhash: {}}
decontaminate: {sources: [{type: jsonl, path: TMP/eval.jsonl, field: question}]}
val_fraction: 0.05
workers: 2
plots: true
"""


def test_full_stage_commits_corpus_report_and_metrics(tmp_path):
    planted = write_mixed_corpus(tmp_path / "in")
    leaked = planted["wiki"][60]
    (tmp_path / "eval.jsonl").write_text(json.dumps({"question": " ".join(leaked.split()[10:40])}) + "\n")
    store = ArtifactStore.open(str(tmp_path / "store"))
    manifest = run_stage(load_job(_job(FULL, tmp_path)), "data", store)
    metrics = manifest.meta["metrics"]
    assert metrics["train_docs"] > 50 and metrics["val_docs"] > 0
    assert metrics["dropped_language"] == len(planted["german"]) + 10  # and the French
    assert metrics["dropped_duplicate"] == 5 and metrics["dropped_near_duplicate"] >= 15
    assert metrics["dropped_decontaminate"] == 1 and metrics["pii_docs_redacted"] >= 5
    folder = store.fetch("data")
    train = list(iter_corpus(folder / "corpus", "train"))
    assert len(train) == metrics["train_docs"] and leaked not in train
    report = json.loads((folder / "report" / "report.json").read_text())
    assert report["steps"]["decontaminate"]["dropped"] == {"eval_overlap": 1}
    assert {p.name for p in (folder / "report").glob("*.png")} == {"steps.png", "languages.png", "lengths.png"}


def test_default_stage_on_the_standard_library(tmp_path):
    job = load_job(_job("sources: [{type: stdlib, max_docs: 120}]\nclean: {min_chars: 200}", tmp_path))
    assert pipeline_config(job.spec.stage("data").data).filters == ()
    manifest = run_stage(job, "data", ArtifactStore.open(str(tmp_path / "store")))
    metrics = manifest.meta["metrics"]
    assert metrics["docs_in"] == 120
    assert metrics["train_docs"] + metrics["val_docs"] + metrics["dropped_short"] + metrics["dropped_duplicate"] == 120
    assert not (ArtifactStore.open(str(tmp_path / "store")).fetch("data") / "report" / "steps.png").exists()


def test_a_filter_entry_names_exactly_one_kind(tmp_path):
    bad = "sources: [{type: stdlib}]\nfilters:\n- {gopher_quality: {}, c4: {}}\n- {}"
    with pytest.raises(SpecError) as info:
        load_job(_job(bad, tmp_path))
    text = str(info.value)
    assert "data.filters[0]: each filter names exactly one kind" in text and "data.filters[1]" in text


def test_a_stage_that_keeps_nothing_says_why(tmp_path):
    job = load_job(_job("sources: [{type: stdlib, max_docs: 20}]\nclean: {min_chars: 100000000}", tmp_path))
    with pytest.raises(ValueError, match="kept no training documents.*dropped_short=20"):
        run_stage(job, "data", ArtifactStore.open(str(tmp_path / "store")))
