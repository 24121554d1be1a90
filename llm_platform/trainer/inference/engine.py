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

from llm_platform.trainer.model.config import ModelConfig
from llm_platform.trainer.model.transformer import Transformer
from llm_platform.trainer.tokenizer import Tokenizer

from .decode_graphs import DecodeGraphs
from .emit import (
    check_stop,
    finish,
    plain_greedy,
    record_token,
    request_output,
    sampling_batch,
    token_logprobs,
)
from .lora import MultiLora
from .model_runner import ModelRunner
from .outputs import CompletionOutput, EngineStats, RequestOutput, TokenLogprob
from .paged_cache import PagedKVCache
from .params import BeamSearchParams, InvalidRequest, SamplingParams
from .sampling import process_logits, sample
from .scheduler import Scheduler
from .sequence import Sequence


@dataclass(frozen=True)
class EngineConfig:
    """block_size: tokens per KV block. num_blocks: blocks in the full-attention pool (None: room for
    max_num_seqs sequences of max_model_len, within kv_cache_bytes). kv_cache_bytes: memory for the KV pool when
    num_blocks is None (None: half the free GPU memory on CUDA, 1 GiB on CPU). max_num_batched_tokens: the token
    budget of one step (decodes + prefill chunks). max_model_len: prompt + output limit (None: the model's
    max_seq_len). add_bos: string prompts start with the tokenizer's bos token when it has one. cuda_graphs: decode
    batches run as padded static-shape steps replayed from CUDA graphs (``decode_graphs``; on CPU the same padded
    steps run eagerly); None (the default) turns them on for a model on CUDA, where they took the 1.1B bench from
    667 to 2,923 tok/s (bench/RESULTS.md), and leaves them off on CPU."""

    block_size: int = 16
    num_blocks: int | None = None
    max_num_seqs: int = 64
    max_num_batched_tokens: int = 2048
    max_model_len: int | None = None
    kv_cache_bytes: int | None = None
    enable_prefix_caching: bool = True
    add_bos: bool = True
    seed: int = 0
    cuda_graphs: bool | None = None

    def __post_init__(self) -> None:
        for name in ("block_size", "max_num_seqs", "max_num_batched_tokens"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"EngineConfig.{name}: must be a positive integer, got {value!r}")
        for name in ("num_blocks", "max_model_len", "kv_cache_bytes"):
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
        num_blocks = config.num_blocks or default_num_blocks(config, model.config, self.max_model_len, param)
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
        graphs = None
        if config.cuda_graphs or (config.cuda_graphs is None and param.device.type == "cuda"):
            graphs = DecodeGraphs(model, self.cache, max_num_seqs=config.max_num_seqs, max_model_len=self.max_model_len)
            if graphs.enabled and graphs.capture:
                with torch.no_grad():
                    graphs.capture_all()
        self.runner = ModelRunner(model, self.cache, self.lora, graphs)
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
        what our stages export, or any Llama/Mistral/Qwen2/Qwen3/Mixtral/DeepSeek-V3 checkpoint.

        quantization: "int8" or "int4" weight-only linears (``quantize.quantize_model``); adapters: {name: PEFT
        folder} served side by side (not together with quantization: adapters wrap float linears)."""
        from llm_platform.trainer.model.hf import load_pretrained

        if draft_model is not None:
            raise ValueError(
                "draft_model: speculative decoding runs at batch 1 through inference.speculative, not in the "
                "batched engine; leave draft_model unset here"
            )
        path = Path(path)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        model = load_pretrained(path, dtype=dtype, device=device)
        if quantization is not None:
            from . import quantize  # weight-only INT8/INT4 linears (the engine-fast branch's module)

            quantize.quantize_model(model, quantization)
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
        if params.stop and self.tokenizer is None:
            raise InvalidRequest("stop", "stop strings need a tokenizer, and this engine has none; use stop_token_ids")
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
                finish(seq, "abort")
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
            finish(seq, "length")
            advanced[seq.request_id] = None
        wanted = [item.seq for item in plan.scheduled if item.samples]  # the scheduler's order: who draws first
        drawing, logits = self.runner.execute(plan.scheduled) if plan.scheduled else ([], None)
        for item in plan.scheduled:
            seq = item.seq
            seq.num_computed += item.num_tokens
            if self.cache.has_unregistered_blocks(seq.blocks, seq.num_computed):
                self.cache.register_full_blocks(seq.blocks, seq.tokens, seq.num_computed, seq.adapter)
        if logits is not None:
            if any(a is not b for a, b in zip(wanted, drawing, strict=True)):
                row_of = {s.seq_id: row for row, s in enumerate(drawing)}
                logits = logits[torch.tensor([row_of[s.seq_id] for s in wanted], device=logits.device)]
                drawing = wanted
            self._emit(drawing, logits)
            advanced.update(dict.fromkeys(s.request_id for s in drawing))
        return [self._request_output(rid) for rid in advanced if rid in self.requests]

    def _emit(self, seqs: list[Sequence], logits: torch.Tensor) -> None:
        if all(plain_greedy(s.params) for s in seqs):  # nothing to process: argmax, one host sync for the step
            chosen: list[int] = logits.argmax(dim=-1).tolist()
            logprobs: list[TokenLogprob | None] = [None] * len(seqs)
        else:
            settings = sampling_batch(seqs, logits.shape[-1], logits.device)
            processed = process_logits(logits, settings)
            tokens = sample(processed, settings.temperature, [s.generator for s in seqs], self.generator)
            chosen, logprobs = tokens.tolist(), token_logprobs(seqs, logits, tokens)
        for seq, token, logprob in zip(seqs, chosen, logprobs, strict=True):
            record_token(seq, token, logprob)
            reason = check_stop(seq, token, self.eos_token_ids, self.max_model_len, self._decode)
            if reason is not None:
                self.scheduler.remove(seq)
                finish(seq, reason)

    def _decode(self, ids: list[int]) -> str:
        """Output text; ids the tokenizer does not know (a model vocabulary padded past it) decode to nothing."""
        if self.tokenizer is None or not ids:
            return ""
        try:
            return self.tokenizer.decode(ids, skip_special=True)
        except ValueError:
            known = [i for i in ids if i < self.tokenizer.vocab_size and self.tokenizer.id_to_token(i) is not None]
            return self.tokenizer.decode(known, skip_special=True)

    def _request_output(self, request_id: str) -> RequestOutput:
        seqs = self.requests[request_id]
        out = request_output(request_id, seqs)
        if out.finished:
            del self.requests[request_id]
        return out

    # ------------------------------------------------------------------ conveniences
    def generate(
        self,
        prompts: Seq[str | list[int]],
        params: SamplingParams | Seq[SamplingParams],
        adapter: str | None = None,
    ) -> list[RequestOutput]:
        """Runs the prompts to completion (all validated before any is queued); outputs in prompt order.

        For offline use: it drives ``step`` itself, so on an engine that also serves streamed requests the other
        requests' outputs of those steps are not returned to anyone (a server calls ``step`` itself instead)."""
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
        """The best ``num_return_sequences`` beams for one prompt, best first (transformers' beam search).

        Runs to completion right away on its own static cache (one row per beam), outside the paged pool and the
        step loop. Each output's ``cumulative_logprob`` is the beam score transformers reports as
        ``sequences_scores``: sum of token logprobs / generated_length ** length_penalty."""
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


def kv_bytes_per_token(config: ModelConfig, dtype: torch.dtype) -> int:
    """KV cache bytes one token takes over all layers: keys and values, or MLA's latent and RoPE key."""
    if config.attention == "mla":
        width = config.kv_lora_rank + config.qk_rope_head_dim
    else:
        width = 2 * config.kv_heads * config.head_size
    return config.n_layers * width * torch.tensor([], dtype=dtype).element_size()


def default_num_blocks(config: EngineConfig, model_config: ModelConfig, max_model_len: int, param: torch.Tensor) -> int:
    """Blocks for max_num_seqs full-length sequences, or as many as the memory budget holds (at least one)."""
    budget = config.kv_cache_bytes
    if budget is None:
        budget = torch.cuda.mem_get_info(param.device)[0] // 2 if param.is_cuda else 1 << 30
    per_block = kv_bytes_per_token(model_config, param.dtype) * config.block_size
    wanted = config.max_num_seqs * math.ceil(max_model_len / config.block_size)
    return max(1, min(wanted, budget // per_block))


def checkpoint_eos_ids(path: Path) -> list[int]:
    """End-of-sequence ids named by config.json and generation_config.json (an id or a list of ids)."""
    ids: list[int] = []
    for name in ("config.json", "generation_config.json"):
        file = path / name
        if file.exists():
            value = json.loads(file.read_text()).get("eos_token_id")
            ids += [value] if isinstance(value, int) else [v for v in value or [] if isinstance(v, int)]
    return ids
