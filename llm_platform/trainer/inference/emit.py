"""The emit half of a step: per-row sampling settings, the drawn token recorded with its logprobs, stop checks,
and the ``RequestOutput`` a caller sees. Functions over ``Sequence`` records; the engine wires them together."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from .outputs import CompletionOutput, RequestOutput, TokenLogprob
from .params import SamplingParams
from .sampling import BatchSampling, top_logprobs
from .sequence import Sequence, Status
from .stops import find_stop, held_back


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


def plain_greedy(p: SamplingParams) -> bool:
    """Whether the row's token is the plain argmax of its logits: greedy, no penalty or n-gram ban that would change
    the logits, no logprobs to report (``process_logits`` leaves such rows untouched)."""
    return (
        p.temperature == 0
        and p.repetition_penalty == 1
        and p.presence_penalty == 0
        and p.frequency_penalty == 0
        and not p.no_repeat_ngram_size
        and p.logprobs is None
    )


def sampling_batch(seqs: list[Sequence], vocab_size: int, device: torch.device) -> BatchSampling:
    def column(name: str) -> torch.Tensor:
        return torch.tensor([getattr(s.params, name) for s in seqs], device=device)

    needs_history = any(s.params.repetition_penalty != 1 or s.params.no_repeat_ngram_size for s in seqs)
    return BatchSampling(
        temperature=column("temperature"),
        top_k=column("top_k"),
        top_p=column("top_p"),
        min_p=column("min_p"),
        repetition_penalty=column("repetition_penalty"),
        presence_penalty=column("presence_penalty"),
        frequency_penalty=column("frequency_penalty"),
        no_repeat_ngram_size=[s.params.no_repeat_ngram_size for s in seqs],
        history=[s.tokens for s in seqs] if needs_history else [[] for _ in seqs],
        output_counts=output_counts(seqs, vocab_size, device),
    )


def token_logprobs(seqs: list[Sequence], logits: torch.Tensor, tokens: torch.Tensor) -> list[TokenLogprob | None]:
    """The drawn tokens' logprobs (with each row's top-k alternatives) for rows that asked for them."""
    wanted = [s.params.logprobs for s in seqs if s.params.logprobs is not None]
    if not wanted:
        return [None] * len(seqs)
    chosen, top, ids = (t.tolist() for t in top_logprobs(logits, tokens, max(wanted)))
    out: list[TokenLogprob | None] = []
    for row, (s, token) in enumerate(zip(seqs, tokens.tolist(), strict=True)):
        k = s.params.logprobs
        pairs = list(zip(ids[row][:k], top[row][:k], strict=True)) if k is not None else []
        out.append(TokenLogprob(token, chosen[row], pairs) if k is not None else None)
    return out


def record_token(seq: Sequence, token: int, logprob: TokenLogprob | None) -> None:
    seq.output_ids.append(token)
    seq.first_token_time = seq.first_token_time or time.monotonic()
    if logprob is not None and seq.logprobs is not None:
        seq.cumulative_logprob += logprob.logprob
        seq.logprobs.append(logprob)


def check_stop(
    seq: Sequence, token: int, eos_ids: set[int], max_model_len: int, decode: Callable[[list[int]], str]
) -> str | None:
    """Updates the sequence's visible text and returns its finish reason, or None to go on.

    A stop id or eos ends it with "stop" (the token stays in token_ids, not in the text); a stop string ends it
    with the text cut before the string; max_tokens or a full context end it with "length".
    """
    p = seq.params
    reason: str | None = None
    if token in p.stop_token_ids:
        reason, seq.stop_reason = "stop", token
    elif token in eos_ids and not p.ignore_eos:
        reason = "stop"
    text = decode(seq.output_ids[:-1] if reason else seq.output_ids)
    if reason is None and p.stop:
        hit = find_stop(text, p.stop, max(0, len(seq.text) - max(len(s) for s in p.stop)))
        if hit is not None:
            text, reason, seq.stop_reason = text[: hit[0]], "stop", hit[1]
    if reason is None and (len(seq.output_ids) >= p.max_tokens or seq.num_tokens >= max_model_len):
        reason = "length"
    seq.text = text if reason is not None else text[: len(text) - held_back(text, p.stop)]
    return reason


def finish(seq: Sequence, reason: str) -> None:
    seq.status = Status.FINISHED
    seq.finish_reason = reason
    seq.finished_time = time.monotonic()


def request_output(request_id: str, seqs: list[Sequence]) -> RequestOutput:
    finished = all(s.finished for s in seqs)
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
