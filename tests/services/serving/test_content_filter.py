"""The content filter on a real server: prompts and answers checked by the data pipeline's detectors and a block
list, refused in block mode, counted (and let through) in log mode."""

from __future__ import annotations

import openai
import pytest

from llm_platform.api.serve import ContentFilterSpec
from llm_platform.services.openai_api.content_filter import ContentFilter

from .conftest import MODEL_NAME, running_server
from .test_operations import samples
from .tiny_model import GREETING, GREETING_ANSWER

GREET = [{"role": "user", "content": GREETING}]
REFUSAL = "Sorry, not that."


def test_each_check_names_itself():
    spec = ContentFilterSpec(mode="block", blocklist=["frobnicat*"])
    flags = ContentFilter(spec).flags
    assert flags("write to jane.doe@example.com") == ("pii",)
    assert flags("frobnicating the widget") == ("blocklist",)
    assert flags("what a load of bullshit") == ("toxicity",)
    assert flags("a perfectly fine sentence") == ()


def test_the_classifier_hook_flags_what_it_scores_above_the_threshold(tmp_path):
    from llm_platform.trainer.data.classifier import HashedNgramClassifier

    hostile = [f"you are a worthless idiot number {i}" for i in range(20)]
    kind = [f"thank you for the lovely gift number {i}" for i in range(20)]
    model = HashedNgramClassifier(["ok", "toxic"], buckets=1 << 12).fit(hostile + kind, ["toxic"] * 20 + ["ok"] * 20)
    model.save(tmp_path / "toxic.npz")
    spec = ContentFilterSpec(mode="block", toxicity=False, pii=False, classifier=str(tmp_path / "toxic.npz"))
    flags = ContentFilter(spec).flags
    assert flags("you worthless idiot") == ("classifier",)
    assert flags("thank you for the gift") == ()
    with pytest.raises(ValueError, match="not one of this classifier's labels"):
        ContentFilter(spec.model_copy(update={"classifier_label": "spam"}))


def test_blocked_input_is_refused_before_the_model(model_dir):
    spec = ContentFilterSpec(mode="block", blocklist=["hello"], output=False, refusal=REFUSAL)
    with running_server(model_dir, content_filter=spec) as served:
        client = openai.OpenAI(base_url=served.base_url, api_key="none", max_retries=0)
        with pytest.raises(openai.BadRequestError) as refused:
            client.chat.completions.create(model=MODEL_NAME, messages=GREET)
        assert refused.value.body == {
            "message": REFUSAL, "type": "invalid_request_error", "param": "messages", "code": "content_filter"
        }  # fmt: skip
        metrics = samples(served.url)
        key = (("action", "blocked"), ("direction", "input"), ("filter", "blocklist"))
        assert metrics[("llmp_serve_content_filter_total", key)] == 1
        assert ("vllm:prompt_tokens_total", ()) not in metrics or metrics[("vllm:prompt_tokens_total", ())] == 0


def test_a_blocked_answer_is_replaced_whole_and_streamed(model_dir):
    spec = ContentFilterSpec(mode="block", blocklist=["help"], input=False, refusal=REFUSAL)
    with running_server(model_dir, content_filter=spec) as served:
        client = openai.OpenAI(base_url=served.base_url, api_key="none", max_retries=0)
        answer = client.chat.completions.create(model=MODEL_NAME, messages=GREET, temperature=0)
        assert answer.choices[0].message.content == REFUSAL
        assert answer.choices[0].finish_reason == "content_filter"
        chunks = list(client.chat.completions.create(model=MODEL_NAME, messages=GREET, temperature=0, stream=True))
        shown = "".join(c.choices[0].delta.content or "" for c in chunks)
        # the words before the flagged one went out; the flagged word never did
        assert shown == GREETING_ANSWER[: GREETING_ANSWER.index("help")] + REFUSAL
        assert chunks[-1].choices[0].finish_reason == "content_filter"
        key = (("action", "blocked"), ("direction", "output"), ("filter", "blocklist"))
        assert samples(served.url)[("llmp_serve_content_filter_total", key)] == 2


def test_log_mode_lets_text_through_and_counts_it(model_dir):
    spec = ContentFilterSpec(mode="log", blocklist=["help"])
    with running_server(model_dir, content_filter=spec) as served:
        client = openai.OpenAI(base_url=served.base_url, api_key="none", max_retries=0)
        messages = [{"role": "user", "content": f"{GREETING} Mail me at jane.doe@example.com"}]
        assert client.chat.completions.create(model=MODEL_NAME, messages=messages, temperature=0).choices
        metrics = samples(served.url)
        assert (
            metrics[
                ("llmp_serve_content_filter_total", (("action", "logged"), ("direction", "input"), ("filter", "pii")))
            ]
            == 1
        )
        answer = client.chat.completions.create(model=MODEL_NAME, messages=GREET, temperature=0)
        assert answer.choices[0].message.content == GREETING_ANSWER
        key = (("action", "logged"), ("direction", "output"), ("filter", "blocklist"))
        assert samples(served.url)[("llmp_serve_content_filter_total", key)] == 1
