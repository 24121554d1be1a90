"""The `serve` stage: the OpenAI-compatible server on the stage's model.

Locally (`llmp run`) it serves on 127.0.0.1 for `serve.duration` seconds, or until Ctrl-C, printing the URL and a
`curl` to try; with `serve.sample` it first sends that chat request to itself over HTTP, and the answer becomes
the stage's `answer` metric (the run's summary shows it). In a pod (the operator's Deployment sets
`LLMP_SERVE_HOST=0.0.0.0`) it serves until the pod is stopped; SIGTERM finishes the requests in flight first.
`engine: vllm` runs vLLM's own OpenAI server on the exported folder instead (on a cluster, its image does).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from llm_platform.api.serve import ServeSpec
from llm_platform.services.openai_api.state import Limits
from llm_platform.services.openai_server import ServeOptions, api_keys_from, make_server

from .context import StageContext
from .inputs import SERVE_HOST_ENV

READY_TIMEOUT_S = 600.0


def run(ctx: StageContext, out: Path) -> dict:
    spec = ctx.stage.serve
    model_dir = ctx.input("model")
    host = os.environ.get(SERVE_HOST_ENV, "127.0.0.1")
    if spec.engine == "vllm":
        return _run_vllm(ctx, spec, model_dir, host)
    options = ServeOptions(
        model=model_dir,
        name=ctx.job.metadata.name,
        host=host,
        port=spec.port,
        quantization=None if spec.quantization == "none" else spec.quantization,
        api_keys=api_keys_from(None),
        limits=Limits(max_tokens=spec.max_tokens, max_pending=spec.max_pending),
        max_batch=spec.max_batch,
        content_filter=spec.content_filter,
    )
    server, state = make_server(options)
    report: dict = {"model": str(model_dir), "url": f"http://{host}:{spec.port}/v1", "name": options.name}
    failure: list[BaseException] = []

    def operate() -> None:
        """Beside the server (which keeps the main thread, for its signal handling): wait until it is ready, say
        how to reach it, send the sample request, and end it after `duration`."""
        try:
            if not _wait_ready(state):
                server.should_exit = True  # a model that failed to load ends the stage, with the reason
                return
            started = time.monotonic()
            _announce(ctx, options, spec)
            if spec.sample is not None:
                report["sample"] = _ask(options, spec)
                ctx.console.print(f"[bold]serve[/]: {spec.sample.prompt!r} -> {report['sample']['answer']!r}")
            if spec.duration is not None:
                time.sleep(max(0.0, spec.duration - (time.monotonic() - started)))
                server.should_exit = True
        except BaseException as error:  # reported by the stage, and the server stopped
            failure.append(error)
            server.should_exit = True

    threading.Thread(target=operate, name="serve-stage", daemon=True).start()
    server.run()
    if state.load_error is not None:
        raise RuntimeError(f"serve: the model did not load: {state.load_error}") from state.load_error
    if failure:
        raise failure[0]
    (out / "report").mkdir()
    (out / "report" / "serve.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    metrics: dict = {}
    if "sample" in report:
        metrics = {"answer": _one_line(report["sample"]["answer"]), "answer_tokens": report["sample"]["tokens"]}
    return metrics


def _wait_ready(state) -> bool:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not state.ready:
        if state.load_error is not None or time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _announce(ctx: StageContext, options: ServeOptions, spec: ServeSpec) -> None:
    local = "127.0.0.1" if options.host in ("0.0.0.0", "::") else options.host
    url = f"http://{local}:{options.port}/v1"
    body = json.dumps({"model": options.name, "messages": [{"role": "user", "content": "Hello!"}]})
    auth = ' -H "Authorization: Bearer $LLMP_API_KEY"' if options.api_keys else ""
    until = f"for {spec.duration:g} s" if spec.duration is not None else "until stopped (Ctrl-C)"
    ctx.console.print(f"[bold]serve[/]: {options.name} at {url} {until}", highlight=False)
    ctx.console.print(
        f"  curl {url}/chat/completions -H 'Content-Type: application/json'{auth} -d {shlex.quote(body)}",
        markup=False,
        highlight=False,
    )


def _ask(options: ServeOptions, spec: ServeSpec) -> dict:
    """The sample chat request, through the HTTP API like any client's."""
    local = "127.0.0.1" if options.host in ("0.0.0.0", "::") else options.host
    headers = {"Authorization": f"Bearer {options.api_keys[0]}"} if options.api_keys else {}
    sample = spec.sample
    body = {
        "model": options.name,
        "messages": [{"role": "user", "content": sample.prompt}],
        "max_tokens": sample.max_tokens,
        "temperature": sample.temperature,
    }
    response = httpx.post(
        f"http://{local}:{options.port}/v1/chat/completions", json=body, headers=headers, timeout=READY_TIMEOUT_S
    )
    if response.status_code != 200:
        raise RuntimeError(f"serve.sample: the server answered {response.status_code}: {response.text}")
    answer = response.json()
    return {
        "prompt": sample.prompt,
        "answer": answer["choices"][0]["message"]["content"] or "",
        "finish_reason": answer["choices"][0]["finish_reason"],
        "tokens": answer["usage"]["completion_tokens"],
    }


def _one_line(text: str, limit: int = 60) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _run_vllm(ctx: StageContext, spec: ServeSpec, model_dir: Path, host: str) -> dict:
    """vLLM's OpenAI server on the exported folder (preflight made sure `vllm` is installed)."""
    command = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model_dir),
        "--served-model-name",
        ctx.job.metadata.name,
        "--host",
        host,
        "--port",
        str(spec.port),
        "--max-num-seqs",
        str(spec.max_batch),
    ]
    ctx.console.print(f"[bold]serve[/]: {' '.join(command)}", markup=False)
    process = subprocess.Popen(command)
    try:
        process.wait(timeout=spec.duration)
    except subprocess.TimeoutExpired:
        process.terminate()
        process.wait(60)
    if process.returncode not in (0, -15):
        raise RuntimeError(f"serve: vLLM exited with status {process.returncode}")
    return {}
