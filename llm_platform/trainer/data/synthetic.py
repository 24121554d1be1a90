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
import random
import re
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

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


RETRIED_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})
"""Answers worth another try: timeouts, conflicts, rate limits, overload, a server not up yet (the OpenAI SDK's set)."""
RETRY_BUDGET_S = 300.0
"""How long one request keeps retrying, waits included: long enough for a rate-limit window or a model server to
start, short enough that a dead endpoint fails the stage in minutes, not hours."""
BACKOFF_S = (0.5, 8.0)
"""First and largest wait between tries when the server names none (`Retry-After`): doubling, with jitter."""


def retry_after_s(headers) -> float | None:
    """The wait a 429 or 503 asks for: `retry-after-ms` (OpenAI's), or `Retry-After` in seconds or as an HTTP date."""
    import email.utils
    from datetime import UTC, datetime

    if headers is None:
        return None
    for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return max(0.0, float(value) * scale)
        except ValueError:
            pass
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            continue
        return max(0.0, (when - datetime.now(UTC)).total_seconds())
    return None


class ChatClient:
    """`POST {base_url}/chat/completions` through the `openai` SDK (the reference client of the format), retried on
    the answers in `RETRIED_STATUS` and on lost connections: it waits what `Retry-After` asks, else backs off
    exponentially with jitter, and gives up once `retry_budget_s` has passed since the first try."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout_s: float = 120,
        retry_budget_s: float = RETRY_BUDGET_S,
    ):
        try:
            import openai
        except ImportError:
            raise EndpointError(
                "data.synthetic needs the 'openai' package for an HTTP endpoint, which is not installed; "
                "pip install 'llm-platform[data]' (or use endpoint: engine:<model folder>)"
            ) from None
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.retry_budget_s = retry_budget_s
        self._openai = openai
        # Retries are ours (bounded in total time, not in count). Without a key no Authorization header is sent: the
        # SDK would otherwise send $OPENAI_API_KEY to whatever endpoint the spec names.
        self._headers = {} if api_key else {"Authorization": openai.Omit()}
        self._client = openai.OpenAI(base_url=base_url, api_key=api_key or "none", timeout=timeout_s, max_retries=0)

    def chat(self, prompt: str, temperature: float = 0.7, max_tokens: int = 512) -> str:
        openai = self._openai
        started = time.monotonic()
        attempt = 0
        while True:
            try:
                completion = self._client.chat.completions.create(
                    model=self.model,
                    messages=[{"role": "user", "content": prompt}],
                    temperature=temperature,
                    max_tokens=max_tokens,
                    extra_headers=self._headers,
                )
                return completion.choices[0].message.content or ""
            except openai.APIStatusError as e:
                if e.status_code not in RETRIED_STATUS:
                    detail = e.response.text[:300]
                    raise EndpointError(f"{self.url} answered HTTP {e.status_code}: {detail}") from None
                wait, why = retry_after_s(e.response.headers), f"HTTP {e.status_code}"
            except openai.APIConnectionError as e:  # refused, reset, timed out
                wait, why = None, f"unreachable ({e.__cause__ or e}); check `endpoint`"
            except (openai.APIResponseValidationError, IndexError, AttributeError) as e:
                raise EndpointError(f"{self.url} did not answer in the OpenAI chat format ({e!r})") from None
            if wait is None:
                wait = min(BACKOFF_S[0] * 2**attempt, BACKOFF_S[1]) * (1 - 0.25 * random.random())
            spent = time.monotonic() - started
            if spent + wait > self.retry_budget_s:
                raise EndpointError(f"{self.url}: {why}, still after {attempt + 1} tries over {spent:.0f}s") from None
            time.sleep(wait)
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


MAX_FAILED_FRACTION = 0.25
"""Requests of one step that may fail (after their retries) and be skipped before the whole step is given up: a few
lost records do not cost the stage, an endpoint that fails most requests does."""


def chat_all(
    client: ChatClient | EngineChat, prompts: Sequence[str], temperature: float, max_tokens: int, pool, counts: Counter
) -> list[str | None]:
    """Answers to every prompt, in order: one batched load on the engine, concurrent requests to an endpoint. A
    request that still fails after its retries is None here and counted in `counts["failed_requests"]`; more than
    `MAX_FAILED_FRACTION` of them raises EndpointError naming the first."""
    if not prompts:
        return []
    if isinstance(client, EngineChat):
        return list(client.chat_many(prompts, temperature, max_tokens))

    def ask(prompt: str) -> tuple[str | None, EndpointError | None]:
        try:
            return client.chat(prompt, temperature, max_tokens), None
        except EndpointError as e:
            return None, e

    answers = list(pool.map(ask, prompts))
    errors = [error for _, error in answers if error is not None]
    counts["failed_requests"] += len(errors)
    if len(errors) > MAX_FAILED_FRACTION * len(prompts):
        raise EndpointError(
            f"{len(errors)} of {len(prompts)} requests failed (more than {MAX_FAILED_FRACTION:.0%}); the first: "
            f"{errors[0]}"
        )
    return [text for text, _ in answers]


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
        drafts = chat_all(writer, prompts, config.temperature, config.max_tokens, pool, counts)
        counts["generated"] = sum(draft is not None for draft in drafts)
        diversity = DiversityFilter(config.max_similarity)
        chosen: list[tuple[str, str]] = []
        for (topic, _), draft in zip(jobs, drafts, strict=True):
            if draft is None:  # its request failed: counted in failed_requests
                continue
            instruction = clean_instruction(draft)
            if not instruction:
                counts["dropped_empty"] += 1
            elif not diversity.admit(instruction):
                counts["dropped_similar"] += 1
            else:
                chosen.append((topic, instruction))
        responses = chat_all(writer, [c[1] for c in chosen], config.temperature, config.max_tokens, pool, counts)
        answered = [(c, r) for c, r in zip(chosen, responses, strict=True) if r is not None]  # failed: counted
        critique_prompts = [CRITIQUE_PROMPT.format(instruction=c[1], response=r) for c, r in answered]
        critiques = chat_all(judge, critique_prompts, 0.0, 100, pool, counts)
    rows = []
    for ((topic, instruction), response), critique in zip(answered, critiques, strict=True):
        if critique is None:  # its request failed: counted in failed_requests
            continue
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
