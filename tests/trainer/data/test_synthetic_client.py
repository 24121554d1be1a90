"""The synthetic-data client against a real HTTP server on loopback that rate-limits (429 with Retry-After), fails
(500) and then answers: waits are the ones asked for, retries stop within their time budget, and one lost record is
counted and skipped while an endpoint that fails most requests stops the step with the first reason."""

from __future__ import annotations

import json
import threading
import time
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from llm_platform.trainer.data.synthetic import (
    ChatClient,
    EndpointError,
    SyntheticConfig,
    generate_instructions,
    retry_after_s,
)


class Script(BaseHTTPRequestHandler):
    """Answers from a queue of (status, headers) first, then 200s; prompts containing 'doomed' always get a 400."""

    queue: list[tuple[int, dict]] = []
    seen: list[tuple[float, int, str | None]] = []  # (time, status sent, Authorization)

    def log_message(self, *args):
        pass

    def do_POST(self):
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        prompt = request["messages"][-1]["content"]
        status, headers = Script.queue.pop(0) if Script.queue else (200, {})
        if "doomed" in prompt:
            status, headers = 400, {}
        Script.seen.append((time.monotonic(), status, self.headers.get("Authorization")))
        if status == 200:
            text = '{"helpfulness": 5, "correctness": 5, "coherence": 5}' if prompt.startswith("Rate") else prompt[-60:]
            payload = {"choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]}
        else:
            payload = {"error": {"message": f"scripted {status}"}}
        body = json.dumps(payload).encode()
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", "Content-Length": str(len(body)), **headers}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def server():
    Script.queue, Script.seen = [], []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Script)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()


def test_rate_limit_waits_what_retry_after_asks_then_server_errors_back_off(server):
    Script.queue = [(429, {"Retry-After": "2"}), (500, {}), (500, {})]
    assert ChatClient(server, "m").chat("hello there") == "hello there"
    times = [t for t, _, _ in Script.seen]
    assert [status for _, status, _ in Script.seen] == [429, 500, 500, 200]
    assert times[1] - times[0] >= 1.95  # the server's Retry-After (the first backoff would be 0.5 s), honoured
    assert times[2] - times[1] >= 0.37  # then backoff: 0.5 s less up to 25 % jitter (upper bounds: load-dependent)
    assert times[3] - times[2] >= 0.75  # doubled


def test_retries_stop_within_their_time_budget(server):
    Script.queue = [(503, {})] * 100
    started = time.monotonic()
    with pytest.raises(EndpointError, match="HTTP 503, still after") as failure:
        ChatClient(server, "m", retry_budget_s=2.0).chat("hello")
    assert time.monotonic() - started < 6.0  # the 2 s budget, one request in flight, and slack for a loaded machine
    assert len(Script.seen) >= 3, failure.value


def test_a_refused_request_is_not_retried(server):
    with pytest.raises(EndpointError, match="HTTP 400"):
        ChatClient(server, "m").chat("doomed")
    assert len(Script.seen) == 1


def test_one_failed_record_is_counted_and_skipped(server):
    topics = ("tides", "doomed", "rivers", "clouds", "glaciers")
    rows, counts = generate_instructions(SyntheticConfig(endpoint=server, model="m", topics=topics, per_topic=1))
    assert counts["failed_requests"] == 1 and counts["generated"] == 4
    assert {row["topic"] for row in rows} <= {"tides", "rivers", "clouds", "glaciers"} and rows


def test_an_endpoint_failing_most_requests_stops_the_step_naming_the_first_reason(server):
    config = SyntheticConfig(endpoint=server, model="m", topics=("doomed a", "doomed b", "tides"), per_topic=1)
    with pytest.raises(EndpointError, match=r"2 of 3 requests failed .* HTTP 400"):
        generate_instructions(config)


def test_no_key_sends_no_authorization_even_with_openai_api_key_set(server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "the-users-own-key")  # must never reach an endpoint a spec chose
    ChatClient(server, "m").chat("hello")
    ChatClient(server, "m", api_key="site-key").chat("hello")
    assert [auth for _, _, auth in Script.seen] == [None, "Bearer site-key"]


def test_retry_after_forms():
    assert retry_after_s({"retry-after": "3"}) == 3.0
    assert retry_after_s({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert 8 <= retry_after_s({"retry-after": formatdate(time.time() + 10, usegmt=True)}) <= 10
    assert retry_after_s({"retry-after": "soon"}) is None and retry_after_s({}) is None
