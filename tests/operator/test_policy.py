"""What the operator's configuration admits: allow-lists of images, Secrets, claims, priority classes, storage
endpoints and storage prefixes, and the preflight of `llmp run` against what the trainer image provides; refused by
the webhook (and the jobs API's cluster backend) with the field path."""

from __future__ import annotations

import re
import socket
import tomllib
from pathlib import Path

import pytest

from llm_platform.api import parse_job
from llm_platform.operator.admission import admission_problems
from llm_platform.operator.handlers import HandlerSettings
from llm_platform.operator.options import DEFAULT_IMAGE_PACKAGES, AllowList, RenderOptions, options_from_env
from llm_platform.operator.policy import allowed_images, image_repository, policy_problems
from llm_platform.operator.render import render_problems
from llm_platform.trainer.stages.preflight import NOT_BUILT, needs

from .cluster import wait_for
from .helpers import CLUSTER_EXAMPLES, DATA, PRETRAIN, REPO, SERVE, TOKENIZER, child, example, job_dict

FINETUNE = {
    "name": "sft",
    "kind": "finetune",
    "needs": ["pretrain"],
    "finetune": {"method": "lora", "dataset": {"path": "s3://data/sft.jsonl"}},
}
QLORA = {**FINETUNE, "finetune": {**FINETUNE["finetune"], "method": "qlora"}}
QLORA_GPU = {**QLORA, "train": {"steps": 10, "parallel": {"gpus_per_node": 1}}}
QLORA_PAGED = {**QLORA_GPU, "train": {**QLORA_GPU["train"], "optimizer": "paged_adamw8bit"}}
DEEPSPEED = {**PRETRAIN, "train": {"steps": 10, "parallel": {"strategy": "deepspeed", "gpus_per_node": 8}}}
FP8 = {**PRETRAIN, "train": {"steps": 10, "fp8": True}}
TENSORBOARD = {**PRETRAIN, "train": {"steps": 10, "tensorboard": True}}  # in no extra the image installs
# a trainer image built without the gpu extra, declared as such to the operator
LEAN_IMAGE = RenderOptions(
    image_packages=tuple(p for p in DEFAULT_IMAGE_PACKAGES if p not in ("deepspeed", "torchao", "bitsandbytes"))
)
# what the examples' cluster offers beyond the defaults: the priority classes pretrain.yaml asks for, and the in-cluster
# MinIO tokenizer.yaml stores its artifacts in
EXAMPLES_CLUSTER = RenderOptions(
    allow=AllowList(priority_classes=("research-*",), storage_endpoints=("http://minio.minio:9000",))
)
MINIO = RenderOptions(allow=AllowList(storage_endpoints=("http://minio.minio:9000",)))
ATTACKER = "http://attacker.example:9000"


def sent_to(endpoint: str | None, secret: str = "s3-credentials") -> dict:
    """A job whose pods would send `secret`'s credentials to `endpoint` (AWS_ENDPOINT_URL)."""
    storage = {"uri": "s3://bucket/team/p", "secret_ref": secret} | ({"endpoint_url": endpoint} if endpoint else {})
    return job_dict(DATA, storage=storage)


def refusal(body: dict, options: RenderOptions | None = None) -> str | None:
    return admission_problems(body, options=options or RenderOptions())


# ------------------------------------------------------------------------------------------------ allow-lists
def test_an_image_outside_the_allow_list_is_refused_with_its_field_path():
    body = job_dict(DATA, {**TOKENIZER, "image": "evil.example/miner:1"}, image="ghcr.io/llm-platform/trainer:dev")
    message = refusal(body)
    assert message.startswith("LLMJob cannot run on a cluster (1 problem):\n  - spec.stages[1].image: image ")
    assert "'evil.example/miner:1' is not allowed by this operator" in message
    assert "allowed: ghcr.io/llm-platform/trainer:*, ghcr.io/llm-platform/trainer@*, vllm/vllm-openai:*" in message
    assert "--allow-image" in message
    assert refusal(job_dict(DATA, image="docker.io/library/python:3")).count("spec.image: image") == 1


DIGEST = "0" * 64


def test_image_patterns_are_the_administrators_and_default_to_the_operators_own_repositories():
    options = RenderOptions(image="registry:5000/team/trainer:2", allow=AllowList(images=("registry:5000/team/*",)))
    assert allowed_images(options) == ("registry:5000/team/*",)
    assert refusal(job_dict(DATA, image="registry:5000/team/trainer:3"), options) is None
    assert image_repository("registry:5000/team/trainer:3") == "registry:5000/team/trainer"
    assert image_repository("ghcr.io/x/y@sha256:abc") == "ghcr.io/x/y"
    own = RenderOptions(image="registry:5000/team/trainer:2")
    assert (
        refusal(
            job_dict(
                DATA,
                image=f"registry:5000/team/trainer@sha256:{DIGEST}",
            ),
            own,
        )
        is None
    )
    assert refusal(job_dict(DATA, image="registry:5000/team/trainer-evil:1"), own) is not None


def test_a_secret_outside_the_allow_list_is_refused_and_patterns_may_name_the_namespace():
    body = job_dict(DATA, storage={"uri": "s3://bucket/team/p", "secret_ref": "prod-db-password"})
    message = refusal(body)
    assert "  - spec.storage.secret_ref: Secret 'prod-db-password' is not allowed by this operator" in message
    assert "(allowed: s3-credentials)" in message and "--allow-secret" in message
    assert refusal(body, RenderOptions(allow=AllowList(secrets=("team/prod-*",)))) is None  # the job is in 'team'
    assert refusal(body, RenderOptions(allow=AllowList(secrets=("other/prod-*",)))) is not None
    assert refusal(job_dict(DATA, storage={"uri": "s3://bucket/team/p", "secret_ref": "s3-credentials"})) is None


def test_a_serving_api_key_secret_outside_the_allow_list_is_refused():
    serve = {**SERVE, "serve": {"api_key_secret": "prod-db-password"}}
    message = refusal(job_dict(DATA, TOKENIZER, PRETRAIN, serve))
    assert "  - spec.stages[3].serve.api_key_secret: Secret 'prod-db-password' is not allowed" in message
    allowed = RenderOptions(allow=AllowList(secrets=("s3-credentials", "team/serve-key")))
    assert (
        refusal(job_dict(DATA, TOKENIZER, PRETRAIN, {**SERVE, "serve": {"api_key_secret": "serve-key"}}), allowed)
        is None
    )


def test_a_claim_and_a_priority_class_outside_the_allow_lists_are_refused_with_their_annotation():
    body = job_dict(DATA, storage={"uri": "file:///mnt/llm"})
    body["metadata"]["annotations"] = {
        "llmplatform.dev/storage-claim": "other-teams-data",
        "llmplatform.dev/priority-class": "system-node-critical",
    }
    message = refusal(body)
    assert "  - metadata.annotations['llmplatform.dev/storage-claim']: PersistentVolumeClaim 'other-teams-data'" in (
        message
    )
    assert "  - metadata.annotations['llmplatform.dev/priority-class']: PriorityClass 'system-node-critical'" in message
    assert "(allowed: none)" in message
    allowed = RenderOptions(allow=AllowList(claims=("other-teams-*",), priority_classes=("system-*",)))
    assert refusal(body, allowed) is None


def test_an_allowed_secret_cannot_be_sent_to_a_storage_endpoint_of_the_jobs_choosing():
    """The exfiltration: an allowed storage Secret, and an endpoint_url pods would send its credentials to."""
    message = refusal(sent_to(ATTACKER))
    assert message == (
        "LLMJob cannot run on a cluster (1 problem):\n  - spec.storage.endpoint_url: storage endpoint "
        f"'{ATTACKER}' is not one this site allows (allowed: none); leave endpoint_url out to use the store the site "
        "configures (the AWS_ENDPOINT_URL of the storage Secret, or of a local jobs server, else AWS S3), name an "
        "allowed one, or ask an administrator to allow it (operator flag --allow-storage-endpoint or env "
        "LLMP_ALLOW_STORAGE_ENDPOINTS, chart value operator.allow.storageEndpoints)"
    )
    assert refusal(sent_to(None)) is None  # the default: the Secret's own endpoint, or AWS
    assert "(allowed: http://minio.minio:9000)" in refusal(sent_to(ATTACKER), MINIO)
    # an endpoint is its scheme, host and port: the host's case, a trailing slash or a path below do not matter
    for same in ("http://minio.minio:9000", "http://MinIO.minio:9000/", "http://minio.minio:9000/s3"):
        assert refusal(sent_to(same), MINIO) is None, same
    for other in ("https://minio.minio:9000", "http://minio.minio:9001", "http://minio.minio.attacker.example:9000"):
        assert "spec.storage.endpoint_url" in refusal(sent_to(other), MINIO), other
    port_80 = RenderOptions(allow=AllowList(storage_endpoints=("http://minio.minio:80",)))
    assert refusal(sent_to("http://minio.minio"), port_80) is None  # the scheme's default port


def stored_at(uri: str) -> dict:
    return job_dict(DATA, storage={"uri": uri, "secret_ref": "s3-credentials"})


def test_a_store_outside_its_namespaces_prefix_is_refused_so_no_job_reaches_another_teams_artifacts():
    """The confused deputy: the operator and the jobs API open a job's store with their own credentials (checkpoints,
    cleanup, status, consoles), so a job in 'team' must not name 's3://bucket/other/...'. By default the first
    segment below the bucket is the namespace; segments compare whole, since S3 keys are flat strings."""
    message = refusal(stored_at("s3://bucket/other/their-job"))
    assert message == (
        "LLMJob cannot run on a cluster (1 problem):\n  - spec.storage.uri: store 's3://bucket/other/their-job' is "
        "not under a prefix this site allows (allowed: s3://*/team); put the store under an allowed prefix (by "
        "default the bucket's first segment is the job's namespace: s3://BUCKET/NAMESPACE/JOB), or ask an "
        "administrator to allow it (operator flag --allow-storage-prefix or env LLMP_ALLOW_STORAGE_PREFIXES, chart "
        "value operator.allow.storagePrefixes)"
    )
    for inside in ("s3://bucket/team", "s3://bucket/team/", "s3://any-bucket/team/a/b"):
        assert refusal(stored_at(inside)) is None, inside
    outside = ("s3://bucket/teammates/x", "s3://bucket/team/../other/x", "s3://bucket//team/x", "s3://bucket",
               "s3://team", "s3://bucket/x/team", "gs://bucket/team/x")  # fmt: skip
    for uri in outside:
        assert "\n  - spec.storage.uri: " in refusal(stored_at(uri)), uri  # '..': the schema's own refusal
    site = RenderOptions(allow=AllowList(storage_prefixes=("s3://llm-artifacts/{namespace}", "s3://shared/*")))
    assert refusal(stored_at("s3://llm-artifacts/team/x"), site) is None
    assert refusal(stored_at("s3://shared/anyone/x"), site) is None  # an administrator's deliberate shared prefix
    for uri in ("s3://other-bucket/team/x", "s3://llm-artifacts/other/x", "s3://shared"):
        assert "(allowed: s3://llm-artifacts/team, s3://shared/*)" in refusal(stored_at(uri), site), uri
    assert (
        refusal(stored_at("s3://bucket/x"), RenderOptions(allow=AllowList(storage_prefixes=()))).count(
            "(allowed: none)"
        )
        == 1
    )
    claimed = job_dict(DATA, storage={"uri": "file:///mnt/llm"})  # a file:// store is the claim allow-list's
    claimed["metadata"]["annotations"] = {"llmplatform.dev/storage-claim": "shared"}
    assert refusal(claimed, RenderOptions(allow=AllowList(claims=("shared",)))) is None


def test_storage_prefix_entries_that_could_never_match_are_refused_where_they_are_configured():
    env = {"LLMP_ALLOW_STORAGE_PREFIXES": "s3://llm/{namespace}, s3://shared/*"}
    assert options_from_env(env).allow.storage_prefixes == ("s3://llm/{namespace}", "s3://shared/*")
    for entry, says in [
        ("llm/{namespace}", "is not an s3:// prefix"),
        ("s3://llm//{namespace}", "has an empty, '.' or '..' segment"),
        ("s3://llm/team-{namespace}", "must hold {namespace} as a whole segment"),
    ]:
        with pytest.raises(ValueError, match=f"^--allow-storage-prefix: '{re.escape(entry)}' {re.escape(says)}"):
            options_from_env({}, storage_prefixes=(entry,))
        with pytest.raises(ValueError, match=f"^LLMP_ALLOW_STORAGE_PREFIXES: '{re.escape(entry)}' "):
            options_from_env({"LLMP_ALLOW_STORAGE_PREFIXES": entry})


def test_the_configuration_comes_from_flags_then_the_environment_then_the_defaults():
    assert options_from_env({}) == RenderOptions()
    env = {"LLMP_ALLOW_SECRETS": "", "LLMP_ALLOW_IMAGES": "a/*, b/*", "LLMP_IMAGE_PACKAGES": "ray,deepspeed"}
    options = options_from_env(env, claims=("c",), images=("flag/*",))
    assert options.allow == AllowList(images=("flag/*",), secrets=(), claims=("c",), priority_classes=())
    assert options.image_packages == ("ray", "deepspeed")
    assert options_from_env({"LLMP_TRAINER_IMAGE": "x/t:1"}).image == "x/t:1"
    endpoints = {"LLMP_ALLOW_STORAGE_ENDPOINTS": "http://minio.minio:9000, https://s3.amazonaws.com"}
    listed = ("http://minio.minio:9000", "https://s3.amazonaws.com")
    assert options_from_env(endpoints).allow.storage_endpoints == listed
    assert options_from_env(endpoints, storage_endpoints=("http://x:1",)).allow.storage_endpoints == ("http://x:1",)
    with pytest.raises(ValueError, match=r"^--allow-storage-endpoint: 'minio:9000' is not an http\(s\) URL"):
        options_from_env({}, storage_endpoints=("minio:9000",))


# ------------------------------------------------------------------------------------------------ preflight
def test_qlora_needs_nothing_beyond_the_core_but_its_paged_optimizer_needs_an_image_with_the_gpu_extra():
    """QLoRA's NF4 base is pure PyTorch (core dependencies) on every device; its recipe's paged 8-bit AdamW is
    bitsandbytes', so an image that does not declare bitsandbytes is refused that setting at submit time."""
    assert not any(
        need.field.startswith("finetune")
        for need in needs(parse_job(job_dict(DATA, TOKENIZER, PRETRAIN, QLORA)).spec.stages[3])
    )
    assert refusal(job_dict(DATA, TOKENIZER, PRETRAIN, QLORA), RenderOptions(image_packages=())) is None
    assert refusal(job_dict(DATA, TOKENIZER, PRETRAIN, QLORA_GPU), LEAN_IMAGE) is None
    assert refusal(job_dict(DATA, TOKENIZER, PRETRAIN, QLORA_PAGED)) is None  # the default image installs it
    message = refusal(job_dict(DATA, TOKENIZER, PRETRAIN, QLORA_PAGED), LEAN_IMAGE)
    assert (
        "\n  - spec.stages[3].train.optimizer: needs the 'bitsandbytes' package, which the trainer image does not "
        "provide (it provides: datasets, fastapi, lingua, lm_eval, openai, pyarrow, ray); use an image "
        "built with it (pip install 'llm-platform[gpu]') and declare it to the operator (flag --image-package "
        "bitsandbytes"
    ) in message


def test_cuda_only_settings_in_pods_without_a_gpu_are_refused_at_submit_time():
    """The webhook knows each pod's GPUs (train.parallel.gpus_per_node, else resources.gpus): none, and paging or FP8
    could only fail in the pod, at the first step."""
    cpu_only = {**PRETRAIN, "train": {"steps": 10, "optimizer": "paged_adamw8bit", "fp8": True}}
    message = refusal(job_dict(DATA, TOKENIZER, cpu_only))
    assert (
        "\n  - spec.stages[2].train.optimizer: paged_adamw8bit pages optimizer state between GPU and host memory, so "
        "it runs only on CUDA: its pods get no GPU (train.parallel.gpus_per_node and resources.gpus are 0); set "
        "train.parallel.gpus_per_node >= 1, or use optimizer: adamw8bit"
    ) in message
    assert "\n  - spec.stages[2].train.fp8: fp8 runs its matmuls on FP8 tensor cores" in message
    assert refusal(job_dict(DATA, TOKENIZER, {**cpu_only, "resources": {"gpus": 1}})) is None
    assert refusal(job_dict(DATA, TOKENIZER, PRETRAIN, QLORA_PAGED)) is None  # gpus_per_node: 1


def test_deepspeed_and_fp8_without_their_packages_in_the_image_are_refused_with_the_field_path():
    message = refusal(job_dict(DATA, TOKENIZER, DEEPSPEED), LEAN_IMAGE)
    assert (
        "\n  - spec.stages[2].train.parallel.strategy: needs the 'deepspeed' package, which the trainer image does not "
        "provide (it provides: datasets, fastapi, lingua, lm_eval, openai, pyarrow, ray); use an image "
        "built with it (pip install 'llm-platform[gpu]') and declare it to the operator (flag --image-package deepspeed"
    ) in message
    assert "spec.stages[2].train.fp8: needs the 'torchao' package" in refusal(
        job_dict(DATA, TOKENIZER, FP8), LEAN_IMAGE
    )
    assert refusal(job_dict(DATA, TOKENIZER, DEEPSPEED)) is None  # the default image has the gpu extra


def test_the_check_does_not_depend_on_what_the_operator_itself_has_installed():
    # deepspeed is installed here (a dev dependency), yet the image decides
    import importlib.util

    if importlib.util.find_spec("deepspeed") is None:
        pytest.skip("deepspeed (a dev dependency) is not installed here, so this case shows nothing")
    assert refusal(job_dict(DATA, TOKENIZER, DEEPSPEED), LEAN_IMAGE) is not None


def test_vllm_serving_runs_no_runner_of_ours_so_only_our_runners_are_preflighted():
    vllm = {"name": "serve", "kind": "serve", "needs": ["pretrain"], "serve": {"engine": "vllm"}}
    assert refusal(job_dict(DATA, TOKENIZER, PRETRAIN, vllm)) is None


@pytest.mark.parametrize("path", CLUSTER_EXAMPLES, ids=lambda p: p.stem)
def test_the_examples_pass_on_a_cluster_that_allows_what_they_name(path: Path):
    job = example(path.name)
    problems = policy_problems(job, EXAMPLES_CLUSTER) + render_problems(job, EXAMPLES_CLUSTER)
    # the only refusal left: a builtin serving stage while its runner is not built (preflight says so locally too)
    unbuilt = [
        f"spec.stages[{i}].kind: the '{s.kind}' runner is not built yet in this version of llm-platform"
        for i, s in enumerate(job.spec.stages)
        if s.kind in NOT_BUILT and not (s.kind == "serve" and s.serve.engine == "vllm")
    ]
    assert sorted({str(p) for p in problems}) == sorted(unbuilt)


def test_on_a_default_install_the_examples_needing_more_are_refused_at_submit():
    (endpoint,) = policy_problems(example("tokenizer.yaml"), RenderOptions())
    assert str(endpoint).startswith("spec.storage.endpoint_url: storage endpoint 'http://minio.minio:9000' is not")
    (priority,) = policy_problems(example("pretrain.yaml"), RenderOptions())
    assert priority.loc == ("metadata", "annotations", "llmplatform.dev/priority-class")
    assert str(priority).startswith(
        "metadata.annotations['llmplatform.dev/priority-class']: PriorityClass 'research-high'"
    )
    (deepspeed,) = policy_problems(example("align-dpo.yaml"), LEAN_IMAGE)
    assert deepspeed.loc == ("spec", "stages", 0, "train", "parallel", "strategy") and "gpu" in deepspeed.hint
    assert str(deepspeed).startswith("spec.stages[0].train.parallel.strategy: needs the 'deepspeed' package")


def test_the_default_image_packages_are_what_the_trainer_dockerfile_installs():
    dockerfile = (REPO / "images" / "trainer" / "Dockerfile").read_text()
    (installed,) = re.findall(r'pip install (?:--[a-z-]+ )*"\.\[([a-z,]+)\]"', dockerfile)
    extras = set(installed.split(","))
    every_need = job_dict(
        {
            "name": "data",
            "kind": "data",
            "data": {
                "sources": [{"type": "parquet", "path": "s3://corpus/*.parquet"}, {"type": "hf", "path": "x/y"}],
                "language": {},
                "plots": True,
                "engine": "ray",
                "synthetic": {"endpoint": "http://127.0.0.1:8000/v1", "model": "m", "topics": ["t"]},
            },
        },
        TOKENIZER,
        {**DEEPSPEED, "train": {**DEEPSPEED["train"], "fp8": True, "tensorboard": True, "wandb_project": "p"}},
        {"name": "eval", "kind": "eval", "needs": ["pretrain"], "eval": {"tasks": ["lm-eval:hellaswag"]}},
        SERVE,
        QLORA_PAGED,
    )
    found = [need for stage in parse_job(every_need).spec.stages for need in needs(stage)]
    assert len(found) == 12  # plots need nothing (matplotlib is core); synthetic data needs openai
    extra_of = {n.modules[0]: m[1] if (m := re.search(r"llm-platform\[(\w+)\]", n.install)) else None for n in found}
    assert set(DEFAULT_IMAGE_PACKAGES) == {module for module, extra in extra_of.items() if extra in extras}
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert extras <= set(pyproject)


# ------------------------------------------------------------------------------------------------ where it runs
def test_the_webhook_of_an_operator_with_a_lean_image_refuses_fp8_deepspeed_and_paged_qlora_over_http(cluster):
    post = cluster.start_webhook(handlers=HandlerSettings(render=LEAN_IMAGE, resync_seconds=1.0))
    for stage, field in (
        (FP8, "spec.stages[2].train.fp8"),
        (DEEPSPEED, "spec.stages[2].train.parallel"),
        (TENSORBOARD, "spec.stages[2].train.tensorboard"),
    ):
        answer = post(job_dict(DATA, TOKENIZER, stage))
        assert answer["allowed"] is False and answer["status"]["code"] == 422
        assert f"\n  - {field}" in answer["status"]["message"]
    answer = post(job_dict(DATA, TOKENIZER, PRETRAIN, QLORA_PAGED))
    assert answer["allowed"] is False and "\n  - spec.stages[3].train.optimizer" in answer["status"]["message"]
    assert post(job_dict(DATA, TOKENIZER, PRETRAIN, FINETUNE))["allowed"] is True
    assert post(job_dict(DATA, TOKENIZER, PRETRAIN, QLORA_GPU))["allowed"] is True


def test_the_webhook_refuses_a_job_sending_its_storage_credentials_to_an_endpoint_not_listed(cluster):
    post = cluster.start_webhook(handlers=HandlerSettings(render=MINIO, resync_seconds=1.0))
    answer = post(sent_to(ATTACKER))
    assert answer["allowed"] is False and answer["status"]["code"] == 422
    assert (
        f"\n  - spec.storage.endpoint_url: storage endpoint '{ATTACKER}' is not one this site allows"
        in (answer["status"]["message"])
    )
    assert "--allow-storage-endpoint" in answer["status"]["message"]
    assert post(sent_to("http://minio.minio:9000"))["allowed"] is True
    assert post(sent_to(None))["allowed"] is True


def test_without_a_webhook_the_operator_sends_nothing_to_an_endpoint_not_listed(cluster, monkeypatch):
    """Applied past admission, the job fails at reconcile with nothing created; the operator reads no checkpoint
    there (it would send its own credentials), and deleting the job with spec.cleanup: delete keeps the artifacts
    instead of listing the store. A listening socket on loopback stands in for the attacker's server."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "operator-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "operator-secret")
    with socket.socket() as attacker:
        attacker.bind(("127.0.0.1", 0))
        attacker.listen(8)
        endpoint = f"http://127.0.0.1:{attacker.getsockname()[1]}"
        cluster.start_operator(cluster.reconciler(read_artifacts=True))
        cluster.apply({**sent_to(endpoint), "spec": {**sent_to(endpoint)["spec"], "cleanup": "delete"}})
        wait_for(lambda: cluster.phase("demo") == "Failed", what="the job to fail")
        assert "spec.storage.endpoint_url: storage endpoint" in cluster.job("demo")["status"]["message"]
        assert cluster.child("Job", child("demo", "data")) is None
        cluster.delete_job("demo")
        wait_for(lambda: cluster.job("demo") is None, what="the job to be deleted")
        (kept,) = cluster.event_messages("CleanupRefused")
        assert kept.startswith("the artifacts are kept: spec.storage.endpoint_url: storage endpoint")
        attacker.settimeout(0.2)
        with pytest.raises(TimeoutError):
            attacker.accept()  # nobody connected


def test_deleting_a_job_that_names_another_namespaces_store_leaves_that_store_whole(cluster, s3_env, s3_bucket):
    """Applied past admission with spec.cleanup: delete, a job in 'team' naming 'other''s prefix fails at reconcile,
    and deleting it deletes nothing there, although the operator's own credentials could."""
    from llm_platform.storage import ArtifactStore

    theirs = ArtifactStore.open(f"s3://{s3_bucket}/other/demo")
    theirs.backend.put_bytes("data/model.bin", b"their weights")
    cluster.start_operator(cluster.reconciler(read_artifacts=True))
    cluster.apply(job_dict(DATA, storage={"uri": theirs.uri}, cleanup="delete"))
    wait_for(lambda: cluster.phase("demo") == "Failed", what="the job to fail")
    assert f"spec.storage.uri: store '{theirs.uri}' is not under" in cluster.job("demo")["status"]["message"]
    cluster.delete_job("demo")
    wait_for(lambda: cluster.job("demo") is None, what="the job to be deleted")
    (kept,) = cluster.event_messages("CleanupRefused")
    assert kept.startswith(f"the artifacts are kept: spec.storage.uri: store '{theirs.uri}' is not under a prefix")
    assert theirs.backend.get_bytes("data/model.bin") == b"their weights"


def test_the_jobs_api_cluster_backend_refuses_the_same(cluster):
    from llm_platform.services.cluster_jobs import ClusterJobs
    from llm_platform.trainer.stages.preflight import PreflightError

    jobs = ClusterJobs(cluster.kube, "team")
    with pytest.raises(PreflightError) as refused:
        jobs.submit("team", parse_job(job_dict(DATA, TOKENIZER, TENSORBOARD)))
    assert any(
        str(p).startswith("spec.stages[2].train.tensorboard: needs the 'tensorboard'") for p in refused.value.problems
    )
    assert jobs.list("team") == []


def test_without_a_webhook_the_operator_fails_such_a_job_before_creating_any_pod(cluster):
    cluster.start_operator()
    cluster.apply(job_dict(DATA, TOKENIZER, TENSORBOARD))
    wait_for(lambda: cluster.phase("demo") == "Failed", what="the job to fail")
    assert (
        "spec.stages[2].train.tensorboard: needs the 'tensorboard' package" in cluster.job("demo")["status"]["message"]
    )
    # the event follows the status write it describes, so it may land a moment after the phase
    wait_for(lambda: "InvalidSpec" in cluster.events(), what="the InvalidSpec event")
    assert cluster.child("Job", child("demo", "data")) is None
