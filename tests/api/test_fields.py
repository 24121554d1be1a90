"""Field grammars: container images, Kubernetes names and labels, storage paths, endpoints, model overrides, numbers.
Each bad value is refused naming its field; each good one of the same shape passes."""

from __future__ import annotations

import jsonschema
import pytest
import yaml

from llm_platform.api import SpecError, load_job
from llm_platform.api.crd import crd
from tests.api.test_validation import GOOD

DIGEST = "sha256:" + "ab" * 32


def with_spec(old: str, new: str) -> str:
    assert old in GOOD, old
    return GOOD.replace(old, new, 1)


def paths_of(text: str) -> list[str]:
    with pytest.raises(SpecError) as info:
        load_job(text)
    return [p.path for p in info.value.problems]


IMAGE = ("model: {preset: llama-tiny}", "image: 'IMAGE'\n  model: {preset: llama-tiny}")


@pytest.mark.parametrize(
    "image",
    ["ubuntu", "ghcr.io/org/trainer:1.4", "localhost:5000/a/b_c-d:v1", "nvcr.io/nvidia/pytorch:24.01-py3",
     f"repo/x@{DIGEST}", f"[::1]:5000/x:y@{DIGEST}"],
)  # fmt: skip
def test_image_references_in_the_grammar_pass(image):
    assert load_job(with_spec(IMAGE[0], IMAGE[1].replace("IMAGE", image))).spec.image == image


@pytest.mark.parametrize(
    "image",
    ["$(rm -rf /)", "Ubuntu", "ubuntu:", "a//b", "-x", "x:tag with space", "x@sha256:abc", "x" * 256,
     "a/b:" + "t" * 129, "ubuntu;reboot", "`id`"],
)  # fmt: skip
def test_image_references_outside_the_grammar_are_refused(image):
    assert "spec.image" in paths_of(with_spec(IMAGE[0], IMAGE[1].replace("IMAGE", image.replace("'", "''"))))


def test_the_crd_carries_the_image_grammar():
    schema = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    job = yaml.safe_load(GOOD)
    job["spec"]["image"] = "$(rm -rf /)"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft4Validator(schema).validate(job)
    job["spec"]["image"] = "ghcr.io/org/trainer:1.4"
    jsonschema.Draft4Validator(schema).validate(job)


META = "metadata: {name: demo}"


@pytest.mark.parametrize(
    ("metadata", "path"),
    [
        ("{name: demo, namespace: Team_A}", "metadata.namespace"),
        ("{name: demo, namespace: " + "a" * 64 + "}", "metadata.namespace"),
        ("{name: demo, labels: {'bad key!': x}}", "metadata.labels.bad key!"),
        ("{name: demo, labels: {team: 'has space'}}", "metadata.labels.team"),
        ("{name: demo, labels: {team: " + "v" * 64 + "}}", "metadata.labels.team"),
        ("{name: demo, labels: {'Example.com/x': y}}", "metadata.labels['Example.com/x']"),
        ("{name: demo, annotations: {'/x': y}}", "metadata.annotations['/x']"),
        ("{name: Demo}", "metadata.name"),
    ],
)
def test_names_and_labels_follow_kubernetes_rules(metadata, path):
    assert path in paths_of(with_spec(META, f"metadata: {metadata}")), path


def test_good_namespace_and_labels_pass():
    text = with_spec(META, "metadata: {name: demo, namespace: team-a, labels: {example.com/team: a.b_c-1, x: ''}}")
    assert load_job(text).metadata.labels == {"example.com/team": "a.b_c-1", "x": ""}


STORAGE = ("model: {preset: llama-tiny}", "storage: {uri: 'URI'}\n  model: {preset: llama-tiny}")


@pytest.mark.parametrize(
    "uri",
    ["/etc", "/etc/llmp", "/", "/usr/lib/x", "file:///proc/self", "../../etc", "runs/../../x", "s3://", "s3:///prefix",
     "s3://Bad_Bucket/x", "s3://ab/x", "s3://bucket/a/../b", "file://etc/x", "http://host/x", "a\tb", ""],
)  # fmt: skip
def test_storage_uris_that_escape_or_hit_system_folders_are_refused(uri):
    assert "spec.storage.uri" in paths_of(with_spec(STORAGE[0], STORAGE[1].replace("URI", uri)))


@pytest.mark.parametrize("uri", ["s3://my-bucket/runs/x", "file:///srv/llmp/runs", "runs/demo", "/home/me/etcetera"])
def test_ordinary_storage_uris_pass(uri):
    assert load_job(with_spec(STORAGE[0], STORAGE[1].replace("URI", uri))).spec.storage.uri == uri


OVERRIDES = "model: {preset: llama-tiny}"


@pytest.mark.parametrize(
    ("overrides", "path", "words"),
    [
        ("{dim: -192}", "spec.model.overrides.dim", "greater than or equal to 0"),
        ("{dim: 0}", "spec.model.overrides.dim", "positive"),
        ("{dim: {a: 1}}", "spec.model.overrides.dim", "valid integer"),
        ("{dim: true}", "spec.model.overrides.dim", "boolean"),
        ("{dim: 100, n_heads: 3}", "spec.model.overrides", "n_heads=3 must be a multiple of num_kv_heads=2"),
        ("{rope_theta: .nan}", "spec.model.overrides.rope_theta", "finite"),
        ("{norm_eps: [1]}", "spec.model.overrides.norm_eps", "valid number"),
        ("{hidden: 3}", "spec.model.overrides.hidden", "unknown model override(s) hidden"),
        ("{n_layers: 99999999999}", "spec.model.overrides.n_layers", "less than or equal"),
        ("{rope_scaling: {type: linear, factor: {x: 1}}}", "spec.model.overrides.rope_scaling.factor", None),
        ("{mlp: swish}", "spec.model.overrides.mlp", "Input should be 'swiglu', 'geglu'"),
    ],
)
def test_model_overrides_are_typed_and_checked(overrides, path, words):
    text = with_spec(OVERRIDES, f"model: {{preset: llama-tiny, overrides: {overrides}}}")
    with pytest.raises(SpecError) as info:
        load_job(text)
    problems = {p.path: p.message for p in info.value.problems}
    assert any(p.startswith(path) for p in problems), problems
    assert words is None or any(words in m for m in problems.values()), problems


def test_valid_overrides_come_back_typed():
    text = with_spec(OVERRIDES, "model: {preset: llama-tiny, overrides: {dim: '192', n_heads: 4, norm_eps: 1.0e-6}}")
    assert load_job(text).spec.model.overrides == {"dim": 192, "n_heads": 4, "norm_eps": 1e-6}


TRAIN = "train: {steps: 10, lr: 3.0e-4, seq_len: 64}"


@pytest.mark.parametrize(
    ("train", "path"),
    [
        ("{steps: 10, warmup_steps: 11}", "spec.stages[2].train"),
        ("{steps: 10, betas: [.nan, 0.9]}", "spec.stages[2].train.betas[0]"),
        ("{steps: 10, betas: [true, 0.9]}", "spec.stages[2].train.betas"),
        ("{steps: 10, micro_batch: 1.0e+12}", "spec.stages[2].train.micro_batch"),
        ("{steps: 10, seed: -1}", "spec.stages[2].train.seed"),
        ("{steps: 10, parallel: {zero_stage: true}}", "spec.stages[2].train.parallel.zero_stage"),
        ("{tokens: .inf}", "spec.stages[2].train.tokens"),
    ],
)
def test_training_numbers_are_finite_and_sane(train, path):
    assert path in paths_of(with_spec(TRAIN, f"train: {train}"))


def test_warmup_up_to_steps_passes():
    assert load_job(with_spec(TRAIN, "train: {steps: 10, warmup_steps: 10}")).spec.stages[2].train.warmup_steps == 10


DATA = "data: {sources: [{type: stdlib}]}"


@pytest.mark.parametrize(
    ("data", "path"),
    [
        ("{sources: [{type: jsonl, path: ../../etc/passwd}]}", "spec.stages[0].data.sources[0].path"),
        ("{sources: [{type: jsonl, path: 'file://x/y'}]}", "spec.stages[0].data.sources[0].path"),
        ("{sources: [{type: stdlib}], synthetic: {endpoint: 'ftp://h/v1', model: m, topics: [t]}}",
         "spec.stages[0].data.synthetic.endpoint"),
        ("{sources: [{type: stdlib}], synthetic: {endpoint: 'http://u:p@h/v1', model: m, topics: [t]}}",
         "spec.stages[0].data.synthetic.endpoint"),
        ("{sources: [{type: stdlib}], synthetic: {endpoint: 'engine:../../models/m', model: m, topics: [t]}}",
         "spec.stages[0].data.synthetic.endpoint"),
        ("{sources: [{type: stdlib}], synthetic: {endpoint: 'http://h/v1', model: m, topics: [t], "
         "api_key_env: AWS_SECRET_ACCESS_KEY}}", "spec.stages[0].data.synthetic.api_key_env"),
        ("{sources: [{type: stdlib, include: '../../../etc/*'}]}", "spec.stages[0].data.sources[0].include"),
        ("{sources: [{type: stdlib}], language: {keep: [english]}}", "spec.stages[0].data.language.keep[0]"),
        ("{sources: [{type: stdlib}], filters: [{gopher_repetition: {top_ngram_char_frac: {-2: 0.2}}}]}",
         "spec.stages[0].data.filters[0].gopher_repetition.top_ngram_char_frac[-2]"),
        ("{sources: [{type: stdlib}], filters: [{perplexity: {model: /m, device: 'cuda; rm -rf /'}}]}",
         "spec.stages[0].data.filters[0].perplexity.device"),
    ],
)  # fmt: skip
def test_data_paths_and_endpoints_are_checked(data, path):
    assert path in paths_of(with_spec(DATA, f"data: {data}"))


def test_the_built_in_engine_is_an_endpoint():
    spec = "data: {sources: [{type: stdlib}], synthetic: {endpoint: 'engine:/models/m', model: m, topics: [t]}}"
    job = load_job(with_spec(DATA, spec))
    assert job.spec.stages[0].data.synthetic.endpoint == "engine:/models/m"


@pytest.mark.parametrize("task", ["mmlu_../../../etc/passwd", "mmlu_a/b", "has space", "", "-x"])
def test_eval_task_names_are_never_paths(task):
    text = with_spec(
        "    needs: [pretrain]\n", f"    needs: [pretrain]\n    eval: {{tasks: ['{task}'], data_dir: /d}}\n"
    )
    assert "spec.stages[3].eval.tasks[0]" in paths_of(text)


def test_node_selectors_are_label_maps():
    text = with_spec(DATA, DATA + "\n    resources: {node_selector: {'gpu type': a100}}")
    assert "spec.stages[0].resources.node_selector.gpu type" in paths_of(text)
