"""Small builders for operator tests: LLMJobs from dicts and the examples folder."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from llm_platform.api import LLMJob, load_job, parse_job
from llm_platform.operator.naming import child_name

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
LOCAL_EXAMPLES = ("quickstart.yaml", "safety-align.yaml")  # run on a laptop with `llmp run`; no cluster storage
CLUSTER_EXAMPLES = sorted(p for p in EXAMPLES.glob("*.yaml") if p.name not in LOCAL_EXAMPLES)


def example(name: str) -> LLMJob:
    return load_job(EXAMPLES / name)


def job_dict(*stages: dict[str, Any], name: str = "demo", **spec: Any) -> dict[str, Any]:
    """An LLMJob as the API would hold it: S3 storage and a preset model unless the test says otherwise."""
    body = {
        "apiVersion": "llmplatform.dev/v1alpha1",
        "kind": "LLMJob",
        "metadata": {"name": name, "namespace": "team"},
        "spec": {
            "storage": {"uri": "s3://bucket/team/demo"},
            "model": {"preset": "llama-tiny"},
            "stages": copy.deepcopy(list(stages)),
        },
    }
    body["spec"].update(copy.deepcopy(spec))
    return body


def job(*stages: dict[str, Any], **spec: Any) -> LLMJob:
    return parse_job(job_dict(*stages, **spec))


DATA = {"name": "data", "kind": "data", "data": {"sources": [{"type": "stdlib"}]}}
TOKENIZER = {"name": "tok", "kind": "tokenizer", "needs": ["data"]}
PRETRAIN = {"name": "pretrain", "kind": "pretrain", "needs": ["tok"], "train": {"steps": 100}}
EVAL = {"name": "eval", "kind": "eval", "needs": ["pretrain"]}
SERVE = {"name": "serve", "kind": "serve", "needs": ["pretrain"]}
# for tests that run a job through admission or the operator: what vLLM serves passes preflight in any version (the
# builtin server's runner is checked by preflight like every runner of ours)
SERVE_VLLM = {**SERVE, "serve": {"engine": "vllm"}}


def child(job_name: str, stage: str, namespace: str = "team") -> str:
    """The name of a stage's workload, as the operator names it."""
    return child_name(namespace, job_name, stage)


def rendering_variants() -> dict[str, dict[str, Any]]:
    """Rendering paths the examples do not take on their own."""
    elastic = job_dict(
        DATA, TOKENIZER, {**PRETRAIN, "train": {"steps": 5, "parallel": {"nodes": 3, "gpus_per_node": 8}}}
    )
    elastic["metadata"]["annotations"] = {"llmplatform.dev/elastic-nodes": "2:4"}
    queued = job_dict(DATA, TOKENIZER, PRETRAIN, suspend=True)
    queued["metadata"]["labels"] = {"kueue.x-k8s.io/queue-name": "q"}
    local = job_dict(DATA, TOKENIZER, PRETRAIN, SERVE, storage={"uri": "file:///mnt/llm"})
    local["metadata"]["annotations"] = {"llmplatform.dev/storage-claim": "shared"}
    ray_train = job_dict(
        DATA,
        TOKENIZER,
        {**PRETRAIN, "train": {"steps": 5, "parallel": {"nodes": 2, "gpus_per_node": 1, "launcher": "ray"}}},
    )
    return {"elastic": elastic, "kueue-suspended": queued, "storage-claim": local, "ray-train": ray_train}
