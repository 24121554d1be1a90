"""The serve stage end to end: the server on the job's model, the sample chat answered over HTTP, a bounded run."""

from __future__ import annotations

import json
import time

from llm_platform.api import parse_job
from llm_platform.storage import ArtifactStore
from llm_platform.trainer.stages import run_stage
from tests.observability.prometheus import free_port
from tests.services.serving.tiny_model import GREETING, GREETING_ANSWER


def serve_job(model: str, serve: dict):
    return parse_job(
        {
            "apiVersion": "llmplatform.dev/v1alpha1",
            "kind": "LLMJob",
            "metadata": {"name": "chatty"},
            "spec": {"model": {"from": model}, "stages": [{"name": "serve", "kind": "serve", "serve": serve}]},
        }
    )


def test_the_stage_answers_its_sample_and_stops_after_its_duration(tiny_chat_model, tmp_path):
    serve = {"port": free_port(), "duration": 1.0, "sample": {"prompt": GREETING, "max_tokens": 40}}
    store = ArtifactStore.open(str(tmp_path / "store"))
    started = time.monotonic()
    manifest = run_stage(serve_job(str(tiny_chat_model), serve), "serve", store)
    assert time.monotonic() - started < 60
    assert manifest.meta["metrics"]["answer"] == GREETING_ANSWER
    report = json.loads((store.fetch("serve") / "report" / "serve.json").read_text())
    assert report["sample"]["finish_reason"] == "stop"
    assert report["url"] == f"http://127.0.0.1:{serve['port']}/v1"


def test_a_port_another_program_holds_is_refused_naming_the_field_before_the_model_loads(tiny_chat_model, tmp_path):
    import socket

    import pytest

    from llm_platform.trainer.stages.preflight import PreflightError

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        store = ArtifactStore.open(str(tmp_path / "store"))
        job = serve_job(str(tiny_chat_model), {"port": port, "duration": 1.0})
        with pytest.raises(PreflightError) as refused:
            run_stage(job, "serve", store)
    (problem,) = refused.value.problems
    assert problem.loc == ("spec", "stages", 0, "serve", "port") and f"127.0.0.1:{port} is not free" in problem.message
    assert "set serve.port to a free port" in problem.hint
    assert store.manifest("serve") is None  # nothing committed
