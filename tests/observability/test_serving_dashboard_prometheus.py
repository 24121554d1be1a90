"""The serving dashboard against a real Prometheus scraping our real server (uvicorn on 127.0.0.1, the tiny model):
requests answered, one flagged by the content filter, one refused with 429, then every query of the dashboard run
over Prometheus' HTTP API as Grafana would send it, and its panels showing what was sent."""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass

import openai
import pytest

from llm_platform.api.serve import ContentFilterSpec
from llm_platform.services.openai_api.state import Limits

from ..services.serving.conftest import running_server
from ..services.serving.tiny_model import GREETING
from .dashboards import exprs, instantiate, load, panels
from .prometheus import INSTALL_HINT, Prometheus, find_tool, free_port, scrape_config

MODEL = "tiny"
GRAFANA_VALUES = {"model_name": MODEL, "__rate_interval": "15s", "__range": "5m"}
ANSWERED = 6


@dataclass
class Scraped:
    prometheus: Prometheus
    answered: int
    generated: int


def drive(base_url: str, engine) -> int:
    """ANSWERED chat requests (their answers trip the log-mode filter), plus one refused while the queue is full;
    returns the tokens generated."""
    client = openai.OpenAI(base_url=base_url, api_key="none", max_retries=0)
    generated = 0
    for _ in range(ANSWERED - 1):
        answer = client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": GREETING}], temperature=0
        )
        generated += answer.usage.completion_tokens
    go, step = threading.Event(), engine.step
    engine.step = lambda: go.wait(30) and step()  # hold the engine: the one slot stays taken
    results = []
    held = threading.Thread(
        target=lambda: results.append(
            client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": GREETING}], temperature=0)
        )
    )
    held.start()
    while not engine.has_unfinished_requests():
        time.sleep(0.01)
    with pytest.raises(openai.RateLimitError):
        client.completions.create(model=MODEL, prompt="x", max_tokens=2)
    go.set()
    held.join(30)
    engine.step = step
    return generated + results[0].usage.completion_tokens


@pytest.fixture(scope="module")
def scraped(tmp_path_factory, tiny_chat_model) -> Scraped:
    binary = find_tool("prometheus")
    if binary is None:
        pytest.skip(f"needs the prometheus binary on PATH or in .tools/bin: run `{INSTALL_HINT}`")
    folder = tmp_path_factory.mktemp("prometheus-serving")
    port = free_port()
    config = folder / "prometheus.yml"
    config.write_text(scrape_config({"llmp-serving": f"127.0.0.1:{port}"}))
    prometheus = Prometheus(binary, config, folder / "data", free_port())
    content_filter = ContentFilterSpec(mode="log", blocklist=["help"])
    try:
        with running_server(
            tiny_chat_model, port=port, limits=Limits(max_pending=1), content_filter=content_filter
        ) as s:
            prometheus.wait_ready()
            prometheus.wait_for("count(up == 1) == 1", "the server scraped")
            generated = drive(s.base_url, s.state.engine.engine)
            done = time.time()
            prometheus.wait_for_scrapes_since(done)
            yield Scraped(prometheus, ANSWERED, generated)
    finally:
        prometheus.stop()


def test_every_serving_dashboard_query_returns_series(scraped):
    failures = []
    for expr in exprs(load("serving")):
        query = instantiate(expr, GRAFANA_VALUES)
        answer = scraped.prometheus.query(query)
        if answer["status"] != "success" or not answer["data"]["result"]:
            failures.append(f"{query}: {answer.get('error') or 'no series'}")
    assert not failures, "\n".join(failures)


def test_the_model_selector_offers_the_served_model(scraped):
    answer = scraped.prometheus.get("/api/v1/label/model_name/values", **{"match[]": "vllm:num_requests_running"})
    assert answer["data"] == [MODEL]


def test_panels_add_up_to_the_requests_sent(scraped):
    by_title = {p["title"]: p for p in panels(load("serving")) if p["type"] != "row"}

    def total(title: str) -> float:
        expr = instantiate(by_title[title]["targets"][0]["expr"], GRAFANA_VALUES)
        # the counters under the panel's rate, read as they stand: the same selector and grouping
        counted = re.sub(r"rate\((.+?)\[15s\]\)", r"\1", expr)
        return sum(round(v) for v in scraped.prometheus.values(counted))

    assert total("Finished requests / s") == scraped.answered
    assert total("Refused requests") == 1
    assert total("Content filter") == scraped.answered  # each answer says "help", the block-listed word
    stored = scraped.prometheus.values(f'vllm:generation_tokens_total{{model_name="{MODEL}"}}')
    assert stored == [scraped.generated]
