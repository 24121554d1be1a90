"""The synthetic-data pipeline against an OpenAI-compatible HTTP endpoint on loopback.

The endpoint here is a scripted stand-in for a model server (no language model runs in this test environment): it
speaks the real wire format (`POST /v1/chat/completions`), and its answers are chosen to exercise every branch of
the pipeline: duplicate instructions, a wrong answer the judge scores low, an unreadable critique, a transient 503.
"""

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from llm_platform.trainer.data.jsonl import write_jsonl
from llm_platform.trainer.data.synthetic import (
    ChatClient,
    EndpointError,
    SyntheticConfig,
    generate_instructions,
    parse_scores,
)

INSTRUCTIONS = {
    ("sorting", 1): "Explain how merge sort splits and merges a list, with a worked example on eight numbers.",
    ("sorting", 2): "Instruction: Compare quicksort and heapsort in worst-case time and memory use.",
    ("sorting", 3): "Explain how merge sort splits and merges a list, with a worked example of eight numbers.",
    ("tides", 1): "Why are there two high tides a day on most coasts, when the Moon passes overhead only once?",
    ("tides", 2): "Describe what a spring tide is and when it happens in the lunar month.",
    ("tides", 3): "What does the Coriolis effect do to tidal currents in a wide bay?",
}


class _Handler(BaseHTTPRequestHandler):
    calls: list[dict] = []
    fail_next = 0

    def log_message(self, *args):
        pass

    def _answer(self, status: int, payload: dict) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).calls.append({"path": self.path, "auth": self.headers.get("Authorization"), **request})
        if self.path != "/v1/chat/completions":
            return self._answer(404, {"error": {"message": "not found"}})
        if type(self).fail_next:
            type(self).fail_next -= 1
            return self._answer(503, {"error": {"message": "loading"}})
        prompt = request["messages"][-1]["content"]
        if prompt.startswith("Write one new"):
            topic = re.search(r"the topic: (\w+)", prompt).group(1)
            variant = int(re.search(r"variation (\d+)", prompt).group(1))
            text = INSTRUCTIONS[(topic, variant)]
        elif prompt.startswith("Rate the assistant"):
            response = prompt.split("Response:\n", 1)[1]
            if "Coriolis" in prompt:
                text = "I think it is pretty good overall."  # no JSON: unreadable
            elif "WRONG" in response:
                text = 'Scores: {"helpfulness": 2, "correctness": 1, "coherence": 3}'
            else:
                text = '{"helpfulness": 5, "correctness": 4, "coherence": 5}'
        elif "heapsort" in prompt:
            text = "WRONG: heapsort needs linear extra memory."
        else:
            text = f"Here is a careful answer to: {prompt[:40]}"
        self._answer(200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]})


@pytest.fixture
def endpoint():
    _Handler.calls, _Handler.fail_next = [], 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def test_generate_critique_filter(endpoint, tmp_path):
    config = SyntheticConfig(endpoint=endpoint, model="tiny", topics=("sorting", "tides"), per_topic=3)
    rows, counts = generate_instructions(config, api_key="secret-token")
    assert counts == {
        "generated": 6,
        "dropped_similar": 1,  # merge sort asked twice in other words
        "dropped_low_score": 1,  # the wrong heapsort answer
        "dropped_unreadable_critique": 1,  # the Coriolis critique has no JSON
        "failed_requests": 0,
        "kept": 3,
    }
    assert [r["topic"] for r in rows] == ["sorting", "tides", "tides"]
    assert rows[0]["prompt"].startswith("Explain how merge sort")
    assert rows[0]["scores"] == {"helpfulness": 5.0, "correctness": 4.0, "coherence": 5.0}
    assert all(c["auth"] == "Bearer secret-token" and c["model"] == "tiny" for c in _Handler.calls)
    write_jsonl(rows, tmp_path / "instructions.jsonl")
    lines = (tmp_path / "instructions.jsonl").read_text().splitlines()
    assert [json.loads(line)["response"] for line in lines] == [r["response"] for r in rows]


def test_no_key_means_no_authorization_header(endpoint):
    config = SyntheticConfig(endpoint=endpoint, model="tiny", topics=("tides",), per_topic=1)
    generate_instructions(config)
    assert _Handler.calls and all(c["auth"] is None for c in _Handler.calls)


def test_client_retries_a_busy_server_and_reports_real_errors(endpoint):
    _Handler.fail_next = 2
    assert ChatClient(endpoint, "tiny").chat("Hello there").startswith("Here is a careful answer")
    with pytest.raises(EndpointError, match="HTTP 404"):
        ChatClient(endpoint.replace("/v1", "/v2"), "tiny").chat("Hello")
    with pytest.raises(EndpointError, match="unreachable"):
        ChatClient("http://127.0.0.1:9/v1", "tiny", retry_budget_s=0).chat("Hello")


def test_scores_are_read_from_json_in_free_text():
    assert parse_scores('Sure! {"helpfulness": 4, "correctness": 5, "coherence": 3} Hope it helps.') == {
        "helpfulness": 4.0, "correctness": 5.0, "coherence": 3.0
    }  # fmt: skip
    assert parse_scores('{"helpfulness": 9, "correctness": 5, "coherence": 3}') is None
    assert parse_scores("{not json} and nothing else") is None


def test_pipeline_runs_on_the_built_in_engine(tmp_path):
    """`endpoint: engine:<folder>` runs every stage through LLMEngine in this process, no server. The model is a
    small random one, so its texts are noise: the test checks the plumbing (every prompt answered, every outcome
    counted), not the quality."""
    from llm_platform.trainer.model import Transformer, get_config
    from llm_platform.trainer.model.hf import save_pretrained
    from llm_platform.trainer.tokenizer import train_bpe

    tokenizer = train_bpe([text for text in INSTRUCTIONS.values()] * 20, 300)
    model = Transformer(get_config("llama-tiny", vocab_size=tokenizer.vocab_size, max_seq_len=256))
    model.init_weights(seed=0)
    save_pretrained(model, tmp_path)
    tokenizer.save(tmp_path)
    config = SyntheticConfig(
        endpoint=f"engine:{tmp_path}", model="tiny", topics=("sorting", "tides"), per_topic=3, max_tokens=12
    )
    rows, counts = generate_instructions(config)
    assert counts["generated"] == 6
    dropped = sum(v for k, v in counts.items() if k.startswith("dropped_"))
    assert dropped + counts["kept"] == 6 and counts["kept"] == len(rows)
