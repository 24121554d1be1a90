"""The `openai` package, unmodified, against our server on a real uvicorn on 127.0.0.1."""

from __future__ import annotations

import json
import math

import httpx
import openai
import pytest

from .conftest import KEY, MODEL_NAME
from .tiny_model import GREETING, GREETING_ANSWER, WEATHER_CALL, WEATHER_QUESTION, WEATHER_TOOL

GREET = [{"role": "user", "content": GREETING}]
WEATHER = [{"role": "user", "content": WEATHER_QUESTION}]


@pytest.fixture(scope="module")
def client(served) -> openai.OpenAI:
    return openai.OpenAI(base_url=served.base_url, api_key=KEY, max_retries=0)


def test_models_lists_the_served_model(client):
    (model,) = client.models.list().data
    assert model.id == MODEL_NAME and model.owned_by == "llm-platform"


def test_chat_answers_through_the_template(client):
    answer = client.chat.completions.create(model=MODEL_NAME, messages=GREET, temperature=0, max_tokens=64)
    choice = answer.choices[0]
    assert choice.message.content == GREETING_ANSWER
    assert choice.finish_reason == "stop"  # at <|end|>, the generation config's second eos
    assert answer.usage.completion_tokens > 0 and answer.usage.total_tokens == sum(
        (answer.usage.prompt_tokens, answer.usage.completion_tokens)
    )


def test_streamed_chat_adds_up_to_the_whole_answer_and_ends_with_usage(client):
    chunks = list(
        client.chat.completions.create(
            model=MODEL_NAME, messages=GREET, temperature=0, stream=True, stream_options={"include_usage": True}
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == GREETING_ANSWER
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    pieces = [c for c in chunks if c.choices and c.choices[0].delta.content]
    # every token but the closing <|end|> (a stop token, counted, never shown) came as its own delta
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == len(pieces) + 1


def test_the_raw_stream_is_server_sent_events_ending_with_done(served):
    body = {"model": MODEL_NAME, "messages": GREET, "temperature": 0, "stream": True}
    headers = {"Authorization": f"Bearer {KEY}"}
    with httpx.stream("POST", f"{served.base_url}/chat/completions", json=body, headers=headers) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line for line in response.iter_lines() if line]
    assert all(line.startswith("data: ") for line in events)
    assert events[-1] == "data: [DONE]"
    json.loads(events[-2].removeprefix("data: "))


def test_completions_stream_and_whole_agree_and_stop_strings_cut(client):
    # ignore_eos (vLLM's extension, sent as an extra field) makes the model run to max_tokens
    kwargs = {"model": MODEL_NAME, "prompt": "def decode(self, s", "temperature": 0, "extra_body": {"ignore_eos": True}}
    whole = client.completions.create(max_tokens=12, **kwargs)
    streamed = client.completions.create(max_tokens=12, stream=True, **kwargs)
    assert "".join(c.choices[0].text for c in streamed) == whole.choices[0].text
    assert whole.choices[0].finish_reason == "length" and whole.usage.completion_tokens == 12
    stop = whole.choices[0].text.strip()[:3]
    cut = client.completions.create(max_tokens=12, stop=[stop], **kwargs)
    assert cut.choices[0].finish_reason == "stop"
    assert whole.choices[0].text.startswith(cut.choices[0].text) and stop not in cut.choices[0].text


def test_n_seed_and_several_prompts(client):
    kwargs = {"model": MODEL_NAME, "max_tokens": 8, "temperature": 1.0, "n": 3, "seed": 7}
    first = client.completions.create(prompt=["import json", "class Encoder"], **kwargs)
    again = client.completions.create(prompt=["import json", "class Encoder"], **kwargs)
    assert [c.index for c in first.choices] == list(range(6))
    assert [c.text for c in first.choices] == [c.text for c in again.choices]  # a seed makes sampling repeatable


def test_chat_logprobs_are_the_distribution_of_each_chosen_token(client):
    answer = client.chat.completions.create(
        model=MODEL_NAME, messages=GREET, temperature=0, logprobs=True, top_logprobs=3
    )
    entries = answer.choices[0].logprobs.content
    assert len(entries) == answer.usage.completion_tokens
    for entry in entries:
        assert len(entry.top_logprobs) == 3
        assert entry.top_logprobs[0].logprob == pytest.approx(entry.logprob)  # greedy takes the likeliest
        assert sum(math.exp(t.logprob) for t in entry.top_logprobs) <= 1 + 1e-5
    assert "".join(e.token for e in entries).startswith(GREETING_ANSWER)


def test_completion_logprobs_line_up_with_the_text(client):
    out = client.completions.create(model=MODEL_NAME, prompt="import ", max_tokens=6, temperature=0, logprobs=2)
    logprobs = out.choices[0].logprobs
    assert "".join(logprobs.tokens) == out.choices[0].text
    assert logprobs.text_offset == [sum(len(t) for t in logprobs.tokens[:i]) for i in range(len(logprobs.tokens))]
    assert all(len(top) <= 2 for top in logprobs.top_logprobs)


def test_a_tool_call_comes_back_parsed_and_valid(client):
    answer = client.chat.completions.create(
        model=MODEL_NAME, messages=WEATHER, tools=[WEATHER_TOOL], temperature=0, max_tokens=100
    )
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.function.name == WEATHER_CALL["name"]
    assert json.loads(call.function.arguments) == WEATHER_CALL["arguments"]


def test_a_streamed_tool_call_arrives_as_one_delta(client):
    chunks = list(
        client.chat.completions.create(
            model=MODEL_NAME, messages=WEATHER, tools=[WEATHER_TOOL], temperature=0, max_tokens=100, stream=True
        )
    )
    calls = [call for c in chunks if c.choices for call in c.choices[0].delta.tool_calls or []]
    assert [(c.function.name, json.loads(c.function.arguments)) for c in calls] == [
        (WEATHER_CALL["name"], WEATHER_CALL["arguments"])
    ]
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_a_call_the_schema_refuses_is_reported_not_returned(client):
    strict = json.loads(json.dumps(WEATHER_TOOL))
    strict["function"]["parameters"]["properties"]["city"]["enum"] = ["London"]  # the model will say Paris
    answer = client.chat.completions.create(
        model=MODEL_NAME, messages=WEATHER, tools=[strict], tool_choice="required", temperature=0, max_tokens=100
    )
    choice = answer.choices[0]
    # whatever the model wrote (the schema now refuses the only call it learned), no call reaches the client
    assert choice.finish_reason == "tool_call_error" and not choice.message.tool_calls
    assert choice.model_extra["tool_call_error"]


def test_tool_choice_none_offers_no_tools(client):
    answer = client.chat.completions.create(
        model=MODEL_NAME, messages=GREET, tools=[WEATHER_TOOL], tool_choice="none", temperature=0
    )
    assert answer.choices[0].message.content == GREETING_ANSWER


def test_errors_raise_the_clients_own_exception_types(served, client):
    with pytest.raises(openai.AuthenticationError) as missing:
        openai.OpenAI(base_url=served.base_url, api_key="wrong", max_retries=0).models.list()
    assert missing.value.body["code"] == "invalid_api_key"
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model=MODEL_NAME, messages=GREET, temperature=-1)
    assert bad.value.body["param"] == "temperature"
    with pytest.raises(openai.BadRequestError, match="max_tokens"):
        client.chat.completions.create(model=MODEL_NAME, messages=GREET, max_tokens=10_000)
    with pytest.raises(openai.BadRequestError, match="logit_bias"):
        client.chat.completions.create(model=MODEL_NAME, messages=GREET, logit_bias={"1": 5})
    with pytest.raises(openai.BadRequestError, match="not in tools"):
        client.chat.completions.create(
            model=MODEL_NAME,
            messages=GREET,
            tools=[WEATHER_TOOL],
            tool_choice={"type": "function", "function": {"name": "x"}},
        )
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4", messages=GREET)


def test_a_body_over_the_limit_is_413(served):
    response = httpx.post(
        f"{served.base_url}/completions",
        content=b"{" + b" " * (2 << 20) + b"}",
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
    )
    assert response.status_code == 413 and response.json()["error"]["type"] == "invalid_request_error"


def test_health_and_metrics_need_no_key(served):
    assert httpx.get(f"{served.url}/health").json()["status"] == "ok"
    metrics = httpx.get(f"{served.url}/metrics").text
    assert "vllm:num_requests_waiting" in metrics and "vllm:time_to_first_token_seconds_bucket" in metrics


def test_n_streamed_chat_answers_are_told_apart_by_index(client):
    kwargs = {"model": MODEL_NAME, "messages": GREET, "temperature": 1.0, "n": 2, "seed": 3, "max_tokens": 10}
    whole = client.chat.completions.create(**kwargs)
    chunks = list(client.chat.completions.create(stream=True, **kwargs))
    texts = {0: "", 1: ""}
    for chunk in chunks:
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
    assert texts == {c.index: c.message.content for c in whole.choices}  # the same seed, the same samples


def test_echo_returns_the_prompt_before_the_completion(client):
    out = client.completions.create(model=MODEL_NAME, prompt="import json", max_tokens=4, temperature=0, echo=True)
    assert out.choices[0].text.startswith("import json") and len(out.choices[0].text) > len("import json")
