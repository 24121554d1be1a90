"""How the server behaves under load and at its edges: readiness, the queue bound, clients that hang up, shutdown,
and 200 concurrent streams whose metrics add up."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from llm_platform.services.openai_api.state import Limits
from llm_platform.services.openai_server import ServeOptions, engine_loader, make_server

from ...observability.prometheus import free_port
from .conftest import MODEL_NAME, running_server
from .tiny_model import GREETING

GREET = [{"role": "user", "content": GREETING}]
LONG = {"model": MODEL_NAME, "prompt": "import", "max_tokens": 400, "temperature": 0, "ignore_eos": True}


def samples(url: str) -> dict[tuple[str, tuple], float]:
    """Every sample of /metrics by (name, sorted labels without model_name)."""
    found = {}
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics").text):
        for s in family.samples:
            labels = tuple(sorted((k, v) for k, v in s.labels.items() if k != "model_name"))
            found[(s.name, labels)] = s.value
    return found


def wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_health_says_not_ready_until_the_weights_are_loaded(model_dir):
    loaded = threading.Event()
    real = engine_loader(ServeOptions(model=model_dir))

    def slow_load():
        loaded.wait(30)
        return real()

    options = ServeOptions(model=model_dir, name=MODEL_NAME, port=free_port())
    server, state = make_server(options, slow_load)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{options.port}"
    try:
        wait_until(lambda: server.started)
        assert httpx.get(f"{url}/health").status_code == 503
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0)
        with pytest.raises(openai.InternalServerError, match="still loading"):
            client.chat.completions.create(model=MODEL_NAME, messages=GREET)
        loaded.set()
        wait_until(lambda: httpx.get(f"{url}/health").status_code == 200, 30)
        assert (
            client.chat.completions.create(model=MODEL_NAME, messages=GREET, temperature=0).choices[0].message.content
        )
    finally:
        loaded.set()
        server.should_exit = True
        thread.join(30)


def test_past_the_queue_bound_requests_get_429(model_dir):
    with running_server(model_dir, limits=Limits(max_pending=1)) as served:
        engine = served.state.engine.engine
        go, step = threading.Event(), engine.step
        engine.step = lambda: go.wait(30) and step()  # hold the engine, so the first request stays in flight
        client = openai.OpenAI(base_url=served.base_url, api_key="none", max_retries=0)
        held = threading.Thread(target=client.completions.create, kwargs={"model": MODEL_NAME, "prompt": "x"})
        held.start()
        wait_until(lambda: served.state.engine.pending == 1)
        with pytest.raises(openai.RateLimitError) as refused:
            client.completions.create(model=MODEL_NAME, prompt="x", max_tokens=2)
        assert refused.value.body["code"] == "queue_full"
        go.set()
        held.join(30)
        assert client.completions.create(model=MODEL_NAME, prompt="x", max_tokens=2).choices
        assert samples(served.url)[("llmp_serve_rejected_requests_total", (("reason", "queue_full"),))] == 1


@pytest.mark.parametrize("stream", [True, False])
def test_a_client_that_hangs_up_frees_its_slot_within_one_step(model_dir, stream):
    with running_server(model_dir) as served:
        front, engine = served.state.engine, served.state.engine.engine
        steps, aborts = [], []
        step, abort = engine.step, front.abort

        def slow_step():  # a few ms per step, so the request is mid-way when the client leaves
            steps.append(time.monotonic())
            time.sleep(0.005)
            return step()

        def noted_abort(request_id):
            aborts.append(time.monotonic())
            abort(request_id)

        engine.step, front.abort = slow_step, noted_abort
        with httpx.Client(timeout=30) as http:
            if stream:
                with http.stream("POST", f"{served.base_url}/completions", json={**LONG, "stream": True}) as r:
                    next(r.iter_lines())
            else:
                with pytest.raises(httpx.ReadTimeout):
                    http.post(f"{served.base_url}/completions", json=LONG, timeout=0.5)
        wait_until(lambda: not engine.has_unfinished_requests())
        assert front.pending == 0 and len(aborts) == 1
        # the server aborts as soon as it sees the hang-up; the engine applies it before its next step
        assert len([t for t in steps if t > aborts[0]]) <= 1
        finished = samples(served.url)
        assert finished[("vllm:request_success_total", (("finished_reason", "abort"),))] == 1


def test_shutdown_finishes_the_requests_in_flight(model_dir):
    with running_server(model_dir) as served:
        engine = served.state.engine.engine
        step = engine.step
        engine.step = lambda: time.sleep(0.01) or step()  # slow enough that shutdown starts mid-request
        body = {**LONG, "max_tokens": 60, "stream": True, "stream_options": {"include_usage": True}}
        with httpx.stream("POST", f"{served.base_url}/completions", json=body) as response:
            events = response.iter_lines()
            lines = [next(events)]
            served.server.should_exit = True  # what SIGTERM sets
            lines += list(events)
        served.thread.join(30)
        assert not served.thread.is_alive()
    lines = [line for line in lines if line]
    assert lines[-1] == "data: [DONE]"
    assert '"finish_reason":"length"' in lines[-3] and '"completion_tokens":60' in lines[-2]


async def _stream_one(client: openai.AsyncOpenAI, i: int) -> dict:
    start = time.perf_counter()
    times, text, usage = [], "", None
    stream = await client.completions.create(
        model=MODEL_NAME,
        prompt=f"def function_{i}(",
        max_tokens=8,
        temperature=0.8,
        seed=i,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"ignore_eos": True},
    )
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].text:
            times.append(time.perf_counter() - start)
            text += chunk.choices[0].text
        if chunk.usage:
            usage = chunk.usage
    return {"times": times, "text": text, "usage": usage}


def test_200_concurrent_streams_lose_nothing_and_the_metrics_add_up(model_dir):
    with running_server(model_dir, limits=Limits(max_pending=256), max_batch=64) as served:

        async def main():
            async with openai.AsyncOpenAI(
                base_url=served.base_url,
                api_key="none",
                max_retries=0,
                http_client=openai.DefaultAsyncHttpxClient(limits=httpx.Limits(max_connections=250)),
            ) as client:
                return await asyncio.wait_for(asyncio.gather(*(_stream_one(client, i) for i in range(200))), 120)

        results = asyncio.run(main())
        assert len(results) == 200 and all(r["usage"] is not None for r in results)
        assert all(r["usage"].completion_tokens == 8 for r in results)
        metrics = samples(served.url)
        assert metrics[("vllm:request_success_total", (("finished_reason", "length"),))] == 200
        assert metrics[("vllm:generation_tokens_total", ())] == sum(r["usage"].completion_tokens for r in results)
        assert metrics[("vllm:prompt_tokens_total", ())] == sum(r["usage"].prompt_tokens for r in results)
        assert metrics[("vllm:time_to_first_token_seconds_count", ())] == 200
        assert metrics[("vllm:e2e_request_latency_seconds_count", ())] == 200
        assert metrics[("vllm:inter_token_latency_seconds_count", ())] == 200 * 7
        assert metrics[("vllm:num_requests_running", ())] == 0
