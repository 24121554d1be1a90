"""The synthetic pipeline's reward-model filter (generate -> critique -> filter): a reward model trained on a
separable preference (worked answers preferred to brush-offs) keeps the worked answers the judge let through and
drops the brush-offs, by threshold or by top fraction. The endpoint is a loopback server speaking the OpenAI chat
format; the reward model is a real one, trained here, saved and loaded as an align stage writes it."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from llm_platform.trainer.data.synthetic import (
    RewardFilterConfig,
    SyntheticConfig,
    generate_instructions,
    reward_keep,
)
from llm_platform.trainer.model import Transformer, get_config
from llm_platform.trainer.model.hf import save_pretrained
from llm_platform.trainer.tokenizer import train_bpe
from llm_platform.trainer.train.reward import (
    RewardLoss,
    RewardModel,
    pad_rows,
    response_ids,
    save_reward_head,
    score_responses,
)

INSTRUCTIONS = {
    "sorting": "Explain sorting: why merge sort splits a list in halves before merging them back.",
    "tides": "Explain tides: what pulls the sea up twice a day on most coasts?",
    "rivers": "Explain rivers: how does a meander form and later become an oxbow lake?",
    "volcanoes": "Explain volcanoes: which kinds erupt explosively, and which pour out lava quietly?",
}
TOPICS = tuple(INSTRUCTIONS)
GOOD = "Here is a worked answer, step by step, with an example for {topic}."
BAD = "idk. no idea, look it up."


def worked(topic: str) -> bool:
    return topic in ("sorting", "rivers")


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        prompt = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["messages"][-1]["content"]
        if prompt.startswith("Write one new"):
            topic = re.search(r"the topic: (\w+)", prompt).group(1)
            text = INSTRUCTIONS[topic]
        elif prompt.startswith("Rate the assistant"):
            text = '{"helpfulness": 5, "correctness": 5, "coherence": 5}'  # a lenient judge keeps everything
        else:
            topic = re.search(r"Explain (\w+):", prompt).group(1)
            text = GOOD.format(topic=topic) if worked(topic) else BAD
        body = json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def endpoint():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


@pytest.fixture(scope="module")
def reward_folder(tmp_path_factory) -> Path:
    """A reward model trained on pairs about other topics than the pipeline's: worked answers over brush-offs."""
    folder = tmp_path_factory.mktemp("reward")
    train_topics = ["lenses", "magnets", "clouds", "bridges", "yeast", "comets", "rust", "tides of war"]
    brush_offs = [BAD, "no. ask someone else.", "dunno, not my problem.", "idk."]
    pairs = [
        (f"Explain {t} to a curious twelve-year-old.", GOOD.format(topic=t), brush_offs[i % len(brush_offs)])
        for i, t in enumerate(train_topics)
    ]
    tokenizer = train_bpe([text for pair in pairs for text in pair] * 4, 300)
    torch.manual_seed(0)
    decoder = Transformer(get_config("llama-tiny", dim=32, n_layers=2, n_heads=4, ffn_dim=64,
                                     vocab_size=tokenizer.vocab_size, max_seq_len=128))  # fmt: skip
    decoder.init_weights(seed=0)
    reward = RewardModel(decoder)
    rows = [response_ids(tokenizer, p, c) for p, c, _ in pairs] + [response_ids(tokenizer, p, r) for p, _, r in pairs]
    ids, mask = pad_rows(rows, torch.device("cpu"))
    optimizer = torch.optim.AdamW(reward.parameters(), lr=3e-3)
    for _ in range(40):
        RewardLoss(reward)({"input_ids": ids, "attention_mask": mask}).backward()
        optimizer.step()
        optimizer.zero_grad()
    save_pretrained(decoder, folder)
    save_reward_head(reward, folder)
    tokenizer.save(folder)
    return folder


def run(endpoint: str, rule: RewardFilterConfig) -> tuple[list[dict], dict]:
    config = SyntheticConfig(endpoint=endpoint, model="m", topics=TOPICS, per_topic=1, reward_filter=rule)
    rows, counts = generate_instructions(config)
    return rows, dict(counts)


def test_the_reward_filter_keeps_the_worked_answers_the_judge_let_through(endpoint, reward_folder):
    rows, counts = run(endpoint, RewardFilterConfig(model=str(reward_folder), min_reward=0.0))
    assert counts == {"generated": 4, "dropped_low_reward": 2, "kept": 2, "failed_requests": 0}
    assert [r["topic"] for r in rows] == ["sorting", "rivers"]
    assert all(r["reward"] > 0 for r in rows)
    rows, counts = run(endpoint, RewardFilterConfig(model=str(reward_folder), top_fraction=0.5))
    assert [r["topic"] for r in rows] == ["sorting", "rivers"] and counts["dropped_low_reward"] == 2


def test_rewards_are_those_of_the_saved_model_and_the_rules_are_pure(reward_folder):
    from llm_platform.trainer.tokenizer import Tokenizer
    from llm_platform.trainer.train.reward import load_reward_model

    reward, tokenizer = load_reward_model(reward_folder), Tokenizer.load(reward_folder)
    prompt = INSTRUCTIONS["rivers"]
    good, bad = score_responses(reward, tokenizer, [(prompt, GOOD.format(topic="rivers")), (prompt, BAD)])
    print(f"reward of a worked answer {good:.2f}, of a brush-off {bad:.2f}")
    assert good > 0 > bad
    rule = RewardFilterConfig(model="m", top_fraction=0.5)
    assert reward_keep([0.3, -1.0, 2.0], rule) == [True, False, True]  # ceil(1.5) = 2
    assert reward_keep([1.0, 1.0], RewardFilterConfig(model="m", top_fraction=0.5)) == [True, False]
    assert reward_keep([0.5, -0.5], RewardFilterConfig(model="m", min_reward=0.0)) == [True, False]
    with pytest.raises(ValueError, match="give exactly one of min_reward or top_fraction"):
        RewardFilterConfig(model="m")
