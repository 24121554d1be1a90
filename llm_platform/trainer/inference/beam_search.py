"""Beam search with transformers' semantics, over a static KV cache with one row per beam.

Each step scores every (beam, token) continuation by its accumulated log-probability (after the repetition penalty
and n-gram ban, applied to log-probabilities as transformers does), keeps the best 2 x num_beams (more with several
end ids), moves those that end (an end id, or the length limit) among the top num_beams into the finished set scored
sum(logprob) / generated_length ** length_penalty, and continues with the best num_beams that did not end. It stops
when every candidate ends, when ``early_stopping`` is True and num_beams hypotheses finished, or when the best running
beam cannot beat the worst finished hypothesis: scored at its current length (early_stopping False, transformers'
heuristic) or, with "never" and a positive length penalty, at the longest length it could reach (the exact bound).
"""

from __future__ import annotations

import torch

from llm_platform.trainer.model.transformer import Transformer

from .kv_cache import StaticKVCache
from .params import BeamSearchParams
from .sampling import apply_repetition_penalty, banned_ngram_tokens, seen_mask

PRUNED = -1.0e9


@torch.no_grad()
def beam_search(
    model: Transformer, prompt: list[int], params: BeamSearchParams, end_ids: set[int], max_model_len: int
) -> list[tuple[list[int], float, str]]:
    """(generated ids, score, finish reason) of the best ``num_return_sequences`` hypotheses, best first."""
    beams = params.num_beams
    device = next(model.parameters()).device
    prompt_len = len(prompt)
    max_length = min(prompt_len + params.max_tokens, max_model_len)
    keep = max(2, 1 + len(end_ids)) * beams
    top_beams = torch.arange(keep, device=device) < beams
    lp = params.length_penalty

    running = torch.zeros(beams, max_length, dtype=torch.long, device=device)
    running[:, :prompt_len] = torch.tensor(prompt, device=device)
    running_lengths = torch.zeros(beams, dtype=torch.long, device=device)  # generated tokens per running beam
    running_scores = torch.full((beams,), PRUNED, device=device)
    running_scores[0] = 0.0
    finished = running.clone()
    finished_lengths = torch.zeros(beams, dtype=torch.long, device=device)
    finished_scores = torch.full((beams,), PRUNED, device=device)
    is_finished = torch.zeros(beams, dtype=torch.bool, device=device)
    improvable = True

    param = next(model.parameters())
    cache = StaticKVCache(model.config, beams, max_length, device=device, dtype=param.dtype)
    model.eval()
    logits = model(running[:, :prompt_len], cache=cache, start_pos=0)[:, -1]
    cur_len = prompt_len
    while True:
        log_probs = logits.float().log_softmax(dim=-1)
        history = running[:, :cur_len].tolist()
        if params.repetition_penalty != 1.0:
            penalty = torch.full((beams,), params.repetition_penalty, device=device)
            log_probs = apply_repetition_penalty(log_probs, seen_mask(history, log_probs.shape[-1], device), penalty)
        for row in range(beams):
            banned = banned_ngram_tokens(history[row], params.no_repeat_ngram_size)
            if banned:
                log_probs[row, banned] = float("-inf")
        vocab = log_probs.shape[-1]
        totals = (log_probs + running_scores[:, None]).reshape(-1)
        top_scores, top_index = totals.topk(keep)
        source = top_index // vocab
        token = top_index % vocab
        candidates = running[source].clone()
        candidates[:, cur_len] = token
        candidate_lengths = running_lengths[source] + 1
        ends = torch.tensor([t in end_ids for t in token.tolist()], device=device) | (cur_len + 1 >= max_length)

        # the best num_beams continuations that go on
        alive_scores = top_scores + ends.float() * PRUNED
        next_index = alive_scores.topk(beams).indices
        running, running_scores = candidates[next_index], alive_scores[next_index]
        running_lengths = candidate_lengths[next_index]
        beam_rows = source[next_index]

        # candidates among the top num_beams that end join the finished set if they beat its worst
        just_finished = ends & top_beams
        normalized = top_scores / float(cur_len + 1 - prompt_len) ** lp
        if bool(is_finished.all()) and params.early_stopping is True:
            normalized = normalized + PRUNED
        if not improvable:
            normalized = normalized + PRUNED
        normalized = normalized + (~just_finished).float() * PRUNED
        merged_scores = torch.cat((finished_scores, normalized))
        best = merged_scores.topk(beams).indices
        finished = torch.cat((finished, candidates))[best]
        finished_lengths = torch.cat((finished_lengths, candidate_lengths))[best]
        finished_scores = merged_scores[best]
        is_finished = torch.cat((is_finished, just_finished))[best]

        cur_len += 1
        if improvable:
            exact = params.early_stopping == "never" and lp > 0
            best_possible = running_scores[0] / float((max_length if exact else cur_len) - prompt_len) ** lp
            worst = torch.where(is_finished, finished_scores.min(), torch.full_like(finished_scores, PRUNED))
            improvable = bool((best_possible > worst).any())
        all_done = bool(is_finished.all()) and params.early_stopping is True
        if not improvable or all_done or bool(ends.all()):
            break
        cache.reorder(beam_rows)
        logits = model(running[:, cur_len - 1 : cur_len], cache=cache, start_pos=cur_len - 1)[:, -1]

    out = []
    for row in range(params.num_return_sequences):
        length = int(finished_lengths[row])
        tokens = finished[row, prompt_len : prompt_len + length].tolist()
        reason = "stop" if tokens and tokens[-1] in end_ids else "length"
        out.append((tokens, float(finished_scores[row]), reason))
    return out
