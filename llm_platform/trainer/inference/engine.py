"""``LLMEngine``: requests in, tokens out, one step at a time, over a paged KV cache.

    engine = LLMEngine.from_pretrained("out/model")
    engine.add_request("a", "Once upon a time", SamplingParams(max_tokens=64, temperature=0.7, seed=1))
    while engine.has_unfinished_requests():
        for out in engine.step():          # requests that advanced: cumulative tokens and text so far
            print(out.request_id, out.outputs[0].text)

A step is schedule (which sequences, how many tokens each: ``Scheduler``), execute (one padded forward per batch
kind: ``ModelRunner``), emit (draw tokens, apply stops, build outputs). New requests join at every step and
finished ones leave at once. Bad requests raise ``InvalidRequest`` from ``add_request`` and never reach the loop.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import time
from collections.abc import Sequence as Seq
from dataclasses import dataclass
from pathlib import Path

import torch

from llm_platform.trainer.model.transformer import Transformer
from llm_platform.trainer.tokenizer import Tokenizer

from .lora import MultiLora
from .model_runner import ModelRunner
from .outputs import CompletionOutput, EngineStats, RequestOutput, TokenLogprob
from .paged_cache import PagedKVCache
from .params import BeamSearchParams, InvalidRequest, SamplingParams
from .sampling import BatchSampling, process_logits, sample, top_logprobs
from .scheduler import Scheduler
from .sequence import Sequence, Status
from .stops import find_stop, held_back


@dataclass(frozen=True)
class EngineConfig:
    """block_size: tokens per KV block. num_blocks: blocks in the full-attention pool (None: room for
    max_num_seqs sequences of max_model_len, capped at max(one sequence, 4096 blocks)). max_num_batched_tokens: the
    token budget of one step (decodes + prefill chunks). max_model_len: prompt + output limit (None: the model's
    max_seq_len). add_bos: string prompts start with the tokenizer's bos token when it has one."""

    block_size: int = 16
    num_blocks: int | None = None
    max_num_seqs: int = 64
    max_num_batched_tokens: int = 2048
    max_model_len: int | None = None
    enable_prefix_caching: bool = True
    add_bos: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("block_size", "max_num_seqs", "max_num_batched_tokens"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"EngineConfig.{name}: must be a positive integer, got {value!r}")
        for name in ("num_blocks", "max_model_len"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"EngineConfig.{name}: must be a positive integer or None, got {value!r}")


class LLMEngine:
    def __init__(
        self,
        model: Transformer,
        tokenizer: Tokenizer | None,
        config: EngineConfig | None = None,
        *,
        eos_token_ids: Seq[int] = (),
        adapters: dict[str, str] | None = None,
    ) -> None:
        config = config or EngineConfig()
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.config = config
        self.model_config = model.config
        self.max_model_len = min(config.max_model_len or model.config.max_seq_len, model.config.max_seq_len)
        self.vocab_size = model.config.vocab_size
        self.eos_token_ids = set(eos_token_ids)
        if tokenizer is not None and tokenizer.eos_id is not None:
            self.eos_token_ids.add(tokenizer.eos_id)
        param = next(model.parameters())
        blocks_per_seq = math.ceil(self.max_model_len / config.block_size)
        num_blocks = config.num_blocks or max(blocks_per_seq, min(config.max_num_seqs * blocks_per_seq, 4096))
        self.cache = PagedKVCache(
            model.config,
            num_blocks=num_blocks + 1,
            block_size=config.block_size,
            max_num_seqs=config.max_num_seqs,
            max_step_tokens=config.max_num_batched_tokens,
            device=param.device,
            dtype=param.dtype,
            enable_prefix_caching=config.enable_prefix_caching,
        )
        self.lora: MultiLora | None = None
        if adapters:
            self.lora = MultiLora(model)
            for name, folder in adapters.items():
                self.lora.load(name, folder)
        self.scheduler = Scheduler(
            self.cache, max_num_seqs=config.max_num_seqs, max_num_batched_tokens=config.max_num_batched_tokens
        )
        self.runner = ModelRunner(model, self.cache, self.lora)
        self.generator = torch.Generator(device=param.device).manual_seed(config.seed)
        self.requests: dict[str, list[Sequence]] = {}
        self._aborted: list[str] = []
        self._seq_ids = itertools.count()
        self._request_ids = itertools.count()

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        config: EngineConfig | None = None,
        quantization: str | None = None,
        adapters: dict[str, str] | None = None,
        draft_model: str | None = None,
    ) -> LLMEngine:
        """An engine over a Hugging Face format folder (config.json + safetensors, tokenizer files optional):
        what our stages export, or any Llama/Mistral/Qwen2/Qwen3/Mixtral/DeepSeek-V3 checkpoint."""
        from llm_platform.trainer.model.hf import load_pretrained

        if quantization is not None or draft_model is not None:
            raise ValueError("quantization and draft_model are not supported by this engine build")
        path = Path(path)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        model = load_pretrained(path, dtype=dtype, device=device)
        tokenizer = None
        with contextlib.suppress(FileNotFoundError):
            tokenizer = Tokenizer.load(path)
        return cls(model, tokenizer, config, eos_token_ids=checkpoint_eos_ids(path), adapters=adapters)

    # ------------------------------------------------------------------ requests
    def _prompt_ids(self, prompt: str | list[int]) -> list[int]:
        if isinstance(prompt, str):
            if self.tokenizer is None:
                raise InvalidRequest("prompt", "this engine has no tokenizer; send token ids instead of text")
            if not prompt:
                raise InvalidRequest("prompt", "is empty; send at least one character")
            add_bos = self.config.add_bos and self.tokenizer.bos_id is not None
            ids = self.tokenizer.encode(prompt, add_bos=add_bos)
        elif isinstance(prompt, (list, tuple)):
            ids = list(prompt)
            for i, token in enumerate(ids):
                if isinstance(token, bool) or not isinstance(token, int) or not 0 <= token < self.vocab_size:
                    raise InvalidRequest(f"prompt[{i}]", f"{token!r} is not a token id (vocabulary {self.vocab_size})")
        else:
            raise InvalidRequest("prompt", f"must be text or a list of token ids, got {type(prompt).__name__}")
        if not ids:
            raise InvalidRequest("prompt", "is empty; send at least one token")
        if len(ids) >= self.max_model_len:
            raise InvalidRequest(
                "prompt",
                f"{len(ids)} tokens leave no room to generate in this model's {self.max_model_len}-token context; "
                "shorten it",
            )
        if len(ids) > self.cache.capacity_tokens():
            raise InvalidRequest(
                "prompt", f"{len(ids)} tokens do not fit the KV cache ({self.cache.capacity_tokens()})"
            )
        return ids

    def check_request(
        self, request_id: str, prompt: str | list[int], params: SamplingParams, adapter: str | None
    ) -> list[int]:
        """Validates a request without queueing it; returns its prompt ids."""
        if not isinstance(request_id, str) or not request_id:
            raise InvalidRequest("request_id", "must be a non-empty string")
        if request_id in self.requests:
            raise InvalidRequest("request_id", f"{request_id!r} is already in flight")
        if not isinstance(params, SamplingParams):
            raise InvalidRequest("params", f"must be SamplingParams, got {type(params).__name__}")
        params.validate(self.vocab_size)
        if adapter is not None and (self.lora is None or adapter not in self.lora.names):
            known = sorted(self.lora.names) if self.lora else []
            raise InvalidRequest("adapter", f"unknown adapter {adapter!r}; this engine serves {known}")
        return self._prompt_ids(prompt)

    def add_request(
        self, request_id: str, prompt: str | list[int], params: SamplingParams, adapter: str | None = None
    ) -> None:
        """Queues a request (raises ``InvalidRequest`` naming the field, and queues nothing, when it is bad)."""
        ids = self.check_request(request_id, prompt, params, adapter)
        now = time.monotonic()
        seqs = []
        for index in range(params.n):
            generator = None
            if params.seed is not None:
                generator = torch.Generator(device=self.runner.device).manual_seed(params.seed + index)
            seq = Sequence(
                seq_id=next(self._seq_ids),
                request_id=request_id,
                index=index,
                prompt_ids=list(ids),
                params=params,
                adapter=adapter,
                arrival_time=now,
                blocks=self.cache.new_sequence(),
                generator=generator,
                logprobs=[] if params.logprobs is not None else None,
            )
            seqs.append(seq)
            self.scheduler.add(seq)
        self.requests[request_id] = seqs

    def abort_request(self, request_id: str) -> None:
        """Stops a request; the next ``step`` reports it finished with finish_reason "abort". Unknown ids are
        ignored (the request may have just finished)."""
        seqs = self.requests.get(request_id)
        if seqs is None:
            return
        for seq in seqs:
            if not seq.finished:
                self.scheduler.remove(seq)
                self._finish(seq, "abort")
        self._aborted.append(request_id)

    def has_unfinished_requests(self) -> bool:
        return bool(self.requests)

    def stats(self) -> EngineStats:
        used, total = self.cache.usage()
        return EngineStats(
            num_running=len(self.scheduler.running),
            num_waiting=len(self.scheduler.waiting),
            kv_blocks_used=used,
            kv_blocks_total=total,
            num_preemptions=self.scheduler.num_preemptions,
            prefix_cache_hit_tokens=self.scheduler.prefix_hit_tokens,
        )

    # ------------------------------------------------------------------ the loop
    def step(self) -> list[RequestOutput]:
        """Schedules, runs one step's forwards, draws tokens and returns the outputs of requests that advanced."""
        plan = self.scheduler.schedule()
        advanced: dict[str, None] = dict.fromkeys(self._aborted)
        self._aborted = []
        for seq in plan.cache_full:
            self._finish(seq, "length")
            advanced[seq.request_id] = None
        logits = self.runner.execute(plan.scheduled) if plan.scheduled else {}
        drawing = [item.seq for item in plan.scheduled if item.samples]
        for item in plan.scheduled:
            seq = item.seq
            seq.num_computed += item.num_tokens
            self.cache.register_full_blocks(seq.blocks, seq.tokens, seq.num_computed, seq.adapter)
        if drawing:
            self._emit(drawing, torch.stack([logits[s.seq_id] for s in drawing]))
            advanced.update(dict.fromkeys(s.request_id for s in drawing))
        return [self._request_output(rid) for rid in advanced if rid in self.requests]

    def _emit(self, seqs: list[Sequence], logits: torch.Tensor) -> None:
        device = logits.device
        settings = BatchSampling(
            temperature=torch.tensor([s.params.temperature for s in seqs], device=device),
            top_k=torch.tensor([s.params.top_k for s in seqs], device=device),
            top_p=torch.tensor([s.params.top_p for s in seqs], device=device),
            min_p=torch.tensor([s.params.min_p for s in seqs], device=device),
            repetition_penalty=torch.tensor([s.params.repetition_penalty for s in seqs], device=device),
            presence_penalty=torch.tensor([s.params.presence_penalty for s in seqs], device=device),
            frequency_penalty=torch.tensor([s.params.frequency_penalty for s in seqs], device=device),
            no_repeat_ngram_size=[s.params.no_repeat_ngram_size for s in seqs],
            history=[s.tokens for s in seqs],
            output_counts=output_counts(seqs, logits.shape[-1], device),
        )
        tokens = sample(
            process_logits(logits, settings), settings.temperature, [s.generator for s in seqs], self.generator
        )
        want = [s.params.logprobs for s in seqs if s.params.logprobs is not None]
        chosen_lp = top_lp = top_ids = None
        if want:
            chosen_lp, top_lp, top_ids = top_logprobs(logits, tokens, max(want))
            chosen_lp, top_lp, top_ids = chosen_lp.tolist(), top_lp.tolist(), top_ids.tolist()
        now = time.monotonic()
        for row, (seq, token) in enumerate(zip(seqs, tokens.tolist(), strict=True)):
            seq.output_ids.append(token)
            seq.first_token_time = seq.first_token_time or now
            if chosen_lp is not None:
                seq.cumulative_logprob += chosen_lp[row]
                if seq.logprobs is not None:
                    k = seq.params.logprobs
                    pairs = list(zip(top_ids[row][:k], top_lp[row][:k], strict=True))
                    seq.logprobs.append(TokenLogprob(token, chosen_lp[row], pairs))
            self._check_stop(seq, token)

    def _check_stop(self, seq: Sequence, token: int) -> None:
        p = seq.params
        reason: str | None = None
        if token in p.stop_token_ids:
            reason, seq.stop_reason = "stop", token
        elif token in self.eos_token_ids and not p.ignore_eos:
            reason = "stop"
        shown = seq.output_ids[:-1] if reason else seq.output_ids
        text = self._decode(shown)
        if reason is None and p.stop:
            hit = find_stop(text, p.stop, max(0, len(seq.text) - max(len(s) for s in p.stop)))
            if hit is not None:
                text, reason, seq.stop_reason = text[: hit[0]], "stop", hit[1]
        if reason is None and (len(seq.output_ids) >= p.max_tokens or seq.num_tokens >= self.max_model_len):
            reason = "length"
        if reason is None:
            text = text[: len(text) - held_back(text, p.stop)]
        seq.text = text
        if reason is not None:
            self.scheduler.remove(seq)
            self._finish(seq, reason)

    def _decode(self, ids: list[int]) -> str:
        """Output text; ids the tokenizer does not know (a model vocabulary padded past it) decode to nothing."""
        if self.tokenizer is None or not ids:
            return ""
        try:
            return self.tokenizer.decode(ids, skip_special=True)
        except ValueError:
            known = [i for i in ids if i < self.tokenizer.vocab_size and self.tokenizer.id_to_token(i) is not None]
            return self.tokenizer.decode(known, skip_special=True)

    def _finish(self, seq: Sequence, reason: str) -> None:
        seq.status = Status.FINISHED
        seq.finish_reason = reason
        seq.finished_time = time.monotonic()

    def _request_output(self, request_id: str) -> RequestOutput:
        seqs = self.requests[request_id]
        finished = all(s.finished for s in seqs)
        if finished:
            del self.requests[request_id]
        times = [s.first_token_time for s in seqs if s.first_token_time is not None]
        return RequestOutput(
            request_id=request_id,
            prompt_token_ids=list(seqs[0].prompt_ids),
            outputs=[
                CompletionOutput(
                    index=s.index,
                    token_ids=list(s.output_ids),
                    text=s.text,
                    finish_reason=s.finish_reason,
                    logprobs=list(s.logprobs) if s.logprobs is not None else None,
                    stop_reason=s.stop_reason,
                    cumulative_logprob=s.cumulative_logprob if s.logprobs is not None else None,
                )
                for s in seqs
            ],
            finished=finished,
            arrival_time=seqs[0].arrival_time,
            first_token_time=min(times) if times else None,
            finished_time=max(s.finished_time or 0.0 for s in seqs) if finished else None,
        )

    # ------------------------------------------------------------------ conveniences
    def generate(
        self,
        prompts: Seq[str | list[int]],
        params: SamplingParams | Seq[SamplingParams],
        adapter: str | None = None,
    ) -> list[RequestOutput]:
        """Runs the prompts to completion (all validated before any is queued); outputs in prompt order."""
        per_prompt = [params] * len(prompts) if isinstance(params, SamplingParams) else list(params)
        if len(per_prompt) != len(prompts):
            raise InvalidRequest("params", f"{len(per_prompt)} settings for {len(prompts)} prompts")
        ids = [f"generate-{next(self._request_ids)}" for _ in prompts]
        for rid, prompt, p in zip(ids, prompts, per_prompt, strict=True):
            self.check_request(rid, prompt, p, adapter)
        for rid, prompt, p in zip(ids, prompts, per_prompt, strict=True):
            self.add_request(rid, prompt, p, adapter)
        final: dict[str, RequestOutput] = {}
        while len(final) < len(ids):
            for out in self.step():
                if out.finished:
                    final[out.request_id] = out
        return [final[rid] for rid in ids]

    def beam_search(self, prompt: str | list[int], params: BeamSearchParams) -> list[CompletionOutput]:
        """The best ``num_return_sequences`` beams for one prompt, best first (transformers' beam search)."""
        from .beam_search import beam_search

        if not isinstance(params, BeamSearchParams):
            raise InvalidRequest("params", f"must be BeamSearchParams, got {type(params).__name__}")
        params.validate(self.vocab_size)
        ids = self._prompt_ids(prompt)
        eos = set() if params.ignore_eos else set(self.eos_token_ids)
        beams = beam_search(self.model, ids, params, eos | set(params.stop_token_ids), self.max_model_len)
        return [
            CompletionOutput(
                index=i,
                token_ids=tokens,
                text=self._decode([t for t in tokens if t not in eos and t not in params.stop_token_ids]),
                finish_reason=reason,
                cumulative_logprob=score,
            )
            for i, (tokens, score, reason) in enumerate(beams)
        ]


def output_counts(seqs: list[Sequence], vocab_size: int, device: torch.device) -> torch.Tensor | None:
    """[B, V] occurrences of each token in each sequence's output, when some row uses presence/frequency."""
    if not any(s.params.presence_penalty or s.params.frequency_penalty for s in seqs):
        return None
    counts = torch.zeros(len(seqs), vocab_size, device=device)
    for row, s in enumerate(seqs):
        if s.output_ids:
            ids = torch.as_tensor(s.output_ids, device=device)
            counts[row].index_add_(0, ids, torch.ones(len(s.output_ids), device=device))
    return counts


def checkpoint_eos_ids(path: Path) -> list[int]:
    """End-of-sequence ids named by config.json and generation_config.json (an id or a list of ids)."""
    ids: list[int] = []
    for name in ("config.json", "generation_config.json"):
        file = path / name
        if file.exists():
            value = json.loads(file.read_text()).get("eos_token_id")
            ids += [value] if isinstance(value, int) else [v for v in value or [] if isinstance(v, int)]
    return ids
