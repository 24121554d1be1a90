"""Synthetic instruction data: generate -> deduplicate -> respond -> critique -> filter, over any OpenAI-compatible
chat endpoint (our own server, vLLM, or a hosted API), or over the built-in inference engine with no server at all
(`endpoint: engine:<model folder>`, a Hugging Face format folder with tokenizer files).

A generator model writes instructions per seed topic; near-duplicate instructions (word 3-gram MinHash similarity
above `max_similarity` to one already kept) are dropped so the set stays diverse; the model answers each; a judge
model (the same one by default) scores every pair 1-5 for helpfulness, correctness and coherence as JSON; pairs whose
mean score is below `min_score`, or whose critique cannot be read, are dropped. Output rows are instruction JSONL
(`prompt`, `response`, plus `scores` and `topic`), the format the finetune stage reads.

An optional last step, `reward_filter`, scores the pairs the judge kept with a reward model (the `model/` folder of an
`align.method: reward` stage) and keeps those at or above `min_reward`, or the best `top_fraction` of them: the judge
reads the text against fixed criteria, the reward model ranks it as the preference data it learned from would.

The API key is passed in by the caller, never looked up here from a name the spec chose: the stage resolves the spec's
`credential` through the site's allow-list, which binds each key to the endpoints it may be sent to.
"""

from __future__ import annotations

import json
import math
import re
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from llm_platform.confinement import check_local

from .minhash import MinHashConfig, MinHasher

CRITERIA = ("helpfulness", "correctness", "coherence")

INSTRUCTION_PROMPT = (
    "Write one new, self-contained instruction that a user might give an AI assistant about the topic: {topic}.\n"
    "Make it specific and different from typical examples (variation {variant}). "
    "Reply with the instruction only, no preamble."
)
CRITIQUE_PROMPT = (
    "Rate the assistant's response to the instruction below on three criteria, each an integer from 1 (poor) "
    "to 5 (excellent): helpfulness, correctness, coherence.\n"
    'Reply with JSON only, e.g. {{"helpfulness": 4, "correctness": 5, "coherence": 4}}.\n\n'
    "Instruction:\n{instruction}\n\nResponse:\n{response}"
)
_JSON_OBJECT = re.compile(r"\{[^{}]*\}")
_PREAMBLE = re.compile(r"^\s*(?:instruction|task|prompt)\s*:\s*", re.IGNORECASE)


class EndpointError(RuntimeError):
    pass


class ChatClient:
    """Minimal client for `POST {base_url}/chat/completions`, with retries on rate limits and server errors."""

    def __init__(self, base_url: str, model: str, api_key: str | None = None, timeout_s: float = 120, retries: int = 3):
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.api_key = api_key
        self.timeout_s = timeout_s
        self.retries = retries

    def chat(self, prompt: str, temperature: float = 0.7, max_tokens: int = 512) -> str:
        body = {
            "model": self.model,
            "messages": [{"role": "user", "content": prompt}],
            "temperature": temperature,
            "max_tokens": max_tokens,
        }
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.url, json.dumps(body).encode(), headers, method="POST")
        attempt = 0
        while True:
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    payload = json.loads(response.read())
                return payload["choices"][0]["message"]["content"] or ""
            except urllib.error.HTTPError as e:
                if e.code not in (429, 500, 502, 503, 504) or attempt >= self.retries:
                    detail = e.read()[:300].decode("utf-8", "replace")
                    raise EndpointError(f"{self.url} answered HTTP {e.code}: {detail}") from None
            except urllib.error.URLError as e:
                if attempt >= self.retries:
                    raise EndpointError(f"{self.url} is unreachable ({e.reason}); check `endpoint`") from None
            except (KeyError, IndexError, TypeError, json.JSONDecodeError) as e:
                raise EndpointError(f"{self.url} did not answer in the OpenAI chat format ({e!r})") from None
            time.sleep(0.5 * 2**attempt)  # rate limited, overloaded or not up yet: back off and retry
            attempt += 1


ENGINE_PREFIX = "engine:"


class EngineChat:
    """The built-in inference engine as a chat client: each prompt is one user turn through the tokenizer's chat
    template (plain text when it has none), and a whole list of prompts runs as one continuously batched load."""

    def __init__(self, folder: str) -> None:
        from llm_platform.trainer.inference import LLMEngine

        self.engine = LLMEngine.from_pretrained(folder)
        if self.engine.tokenizer is None:
            raise EndpointError(f"{ENGINE_PREFIX}{folder}: the model folder has no tokenizer files")

    def _prompt_ids(self, prompt: str) -> list[int]:
        tokenizer = self.engine.tokenizer
        if tokenizer.chat_template is not None:
            ids = tokenizer.encode_chat([{"role": "user", "content": prompt}], add_generation_prompt=True)
        else:
            ids = tokenizer.encode(prompt, add_bos=tokenizer.bos_id is not None)
        return ids[-(self.engine.max_model_len // 2) :]  # keep room to answer

    def chat_many(self, prompts: Sequence[str], temperature: float, max_tokens: int) -> list[str]:
        from llm_platform.trainer.inference import SamplingParams

        room = self.engine.max_model_len - self.engine.max_model_len // 2
        params = SamplingParams(max_tokens=max(1, min(max_tokens, room)), temperature=temperature)
        outs = self.engine.generate([self._prompt_ids(p) for p in prompts], params)
        return [out.outputs[0].text for out in outs]


def chat_all(client: ChatClient | EngineChat, prompts: Sequence[str], temperature: float, max_tokens: int, pool):
    """Answers to every prompt, in order: one batched load on the engine, concurrent requests to an endpoint."""
    if not prompts:
        return []
    if isinstance(client, EngineChat):
        return client.chat_many(prompts, temperature, max_tokens)
    return list(pool.map(lambda p: client.chat(p, temperature, max_tokens), prompts))


def make_client(endpoint: str, model: str, key: str | None, engines: dict[str, EngineChat]) -> ChatClient | EngineChat:
    if not endpoint.startswith(ENGINE_PREFIX):
        return ChatClient(endpoint, model, key)
    folder = endpoint[len(ENGINE_PREFIX) :]
    check_local(folder, "read", "data.synthetic.endpoint")
    if folder not in engines:
        engines[folder] = EngineChat(folder)
    return engines[folder]


def parse_scores(critique: str) -> dict[str, float] | None:
    """The criteria scores from a judge's reply (the first JSON object holding all of them), or None."""
    for candidate in _JSON_OBJECT.findall(critique):
        try:
            data = json.loads(candidate)
        except json.JSONDecodeError:
            continue
        try:
            scores = {c: float(data[c]) for c in CRITERIA}
        except (KeyError, TypeError, ValueError):
            continue
        if all(1 <= v <= 5 for v in scores.values()):
            return scores
    return None


def clean_instruction(text: str) -> str:
    return _PREAMBLE.sub("", text.strip().strip('"').strip()).strip()


class DiversityFilter:
    """Keeps an item unless its word 3-gram MinHash similarity to an item already kept exceeds `max_similarity`."""

    def __init__(self, max_similarity: float = 0.6):
        self.max_similarity = max_similarity
        self.hasher = MinHasher(MinHashConfig(ngram=3, bands=16, rows=8))
        self.kept: list[np.ndarray] = []

    def admit(self, text: str) -> bool:
        signature = self.hasher.signature(text)
        if self.kept and float(np.max(np.mean(np.stack(self.kept) == signature, axis=1))) > self.max_similarity:
            return False
        self.kept.append(signature)
        return True


@dataclass(frozen=True)
class RewardFilterConfig:
    """Keep pairs whose reward is >= `min_reward`, or the `top_fraction` with the highest rewards (give one)."""

    model: str
    min_reward: float | None = None
    top_fraction: float | None = None

    def __post_init__(self) -> None:
        if (self.min_reward is None) == (self.top_fraction is None):
            raise ValueError("data.synthetic.reward_filter: give exactly one of min_reward or top_fraction")
        if self.top_fraction is not None and not 0 < self.top_fraction <= 1:
            raise ValueError(f"data.synthetic.reward_filter.top_fraction: must be in (0, 1], got {self.top_fraction}")


def reward_keep(rewards: Sequence[float], config: RewardFilterConfig) -> list[bool]:
    """Which scored pairs the filter keeps. Pure. A top fraction keeps ceil(fraction * n) pairs, ties broken by
    order, so 0.5 of 3 keeps 2 and any fraction of one pair keeps it."""
    if config.min_reward is not None:
        return [r >= config.min_reward for r in rewards]
    count = math.ceil(config.top_fraction * len(rewards))
    ranked = sorted(range(len(rewards)), key=lambda i: (-rewards[i], i))[:count]
    kept = set(ranked)
    return [i in kept for i in range(len(rewards))]


def filter_by_reward(rows: list[dict], config: RewardFilterConfig) -> tuple[list[dict], int]:
    """(the rows kept, each with its `reward`; how many were dropped), scored by the reward model in `config.model`."""
    from llm_platform.trainer.tokenizer import Tokenizer
    from llm_platform.trainer.train.reward import load_reward_model, score_responses

    if not rows:
        return rows, 0
    check_local(config.model, "read", "data.synthetic.reward_filter.model")
    reward = load_reward_model(config.model)
    rewards = score_responses(reward, Tokenizer.load(config.model), [(r["prompt"], r["response"]) for r in rows])
    keep = reward_keep(rewards, config)
    kept = [{**row, "reward": round(score, 6)} for row, score, k in zip(rows, rewards, keep, strict=True) if k]
    return kept, len(rows) - len(kept)


@dataclass(frozen=True)
class SyntheticConfig:
    """The `synthetic` section of a data stage."""

    endpoint: str
    model: str
    topics: tuple[str, ...]
    per_topic: int = 4
    judge_endpoint: str | None = None
    judge_model: str | None = None
    credential: str | None = None  # the name of the key (resolved by the caller), for the record
    temperature: float = 0.9
    max_tokens: int = 512
    min_score: float = 4.0
    max_similarity: float = 0.6
    concurrency: int = 4
    reward_filter: RewardFilterConfig | None = None


def generate_instructions(config: SyntheticConfig, api_key: str | None = None) -> tuple[list[dict], Counter[str]]:
    """Run generate -> dedup -> respond -> critique -> filter (-> reward filter); returns the kept rows and counts
    per outcome.

    `api_key` goes, as a bearer token, to `endpoint` and `judge_endpoint`; None sends no Authorization header.
    An `engine:<model folder>` endpoint runs on the built-in inference engine and sends nothing anywhere."""
    engines: dict[str, EngineChat] = {}
    writer = make_client(config.endpoint, config.model, api_key, engines)
    judge = make_client(config.judge_endpoint or config.endpoint, config.judge_model or config.model, api_key, engines)
    counts: Counter[str] = Counter()
    jobs = [(topic, v) for topic in config.topics for v in range(config.per_topic)]
    with ThreadPoolExecutor(max_workers=config.concurrency) as pool:
        prompts = [INSTRUCTION_PROMPT.format(topic=t, variant=v + 1) for t, v in jobs]
        drafts = chat_all(writer, prompts, config.temperature, config.max_tokens, pool)
        counts["generated"] = len(drafts)
        diversity = DiversityFilter(config.max_similarity)
        chosen: list[tuple[str, str]] = []
        for (topic, _), draft in zip(jobs, drafts, strict=True):
            instruction = clean_instruction(draft)
            if not instruction:
                counts["dropped_empty"] += 1
            elif not diversity.admit(instruction):
                counts["dropped_similar"] += 1
            else:
                chosen.append((topic, instruction))
        responses = chat_all(writer, [c[1] for c in chosen], config.temperature, config.max_tokens, pool)
        critique_prompts = [
            CRITIQUE_PROMPT.format(instruction=c[1], response=r) for c, r in zip(chosen, responses, strict=True)
        ]
        critiques = chat_all(judge, critique_prompts, 0.0, 100, pool)
    rows = []
    for (topic, instruction), response, critique in zip(chosen, responses, critiques, strict=True):
        scores = parse_scores(critique)
        if not response.strip():
            counts["dropped_empty"] += 1
        elif scores is None:
            counts["dropped_unreadable_critique"] += 1
        elif sum(scores.values()) / len(scores) < config.min_score:
            counts["dropped_low_score"] += 1
        else:
            rows.append({"prompt": instruction, "response": response.strip(), "scores": scores, "topic": topic})
    if config.reward_filter is not None:
        rows, counts["dropped_low_reward"] = filter_by_reward(rows, config.reward_filter)
    counts["kept"] = len(rows)
    return rows, counts


def write_jsonl(rows: Sequence[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
