"""Perplexity filtering with a small language model of ours (CCNet's idea, with "Perplexed by Perplexity"'s finding
that a small reference model is enough to prune a corpus).

The model is any checkpoint this platform writes (Hugging Face format: `config.json`, `model.safetensors` and the
tokenizer files), typically a small model pretrained on clean reference text. Each document is scored on its first
`max_tokens` tokens; very high perplexity marks text unlike the reference (spam, garbled, machine-generated lists),
very low perplexity marks boilerplate repeated verbatim. torch is imported only when this step is built.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from .document import Document, Drop


@dataclass(frozen=True)
class PerplexityConfig:
    """The `perplexity` filter. No threshold is universal (perplexity depends on the model and its tokenizer), so
    both bounds default to off: the step then only records `meta['perplexity']` for the report."""

    model: str
    tokenizer: str | None = None
    min_perplexity: float | None = None
    max_perplexity: float | None = None
    max_tokens: int = 512
    batch_size: int = 8
    device: str = "cpu"


class PerplexityScorer:
    """Per-document perplexity under a causal LM: exp of the mean next-token negative log-likelihood."""

    def __init__(self, model_dir: str | Path, tokenizer_dir: str | Path | None = None, device: str = "cpu"):
        import torch

        from llm_platform.trainer.model.hf import load_pretrained
        from llm_platform.trainer.tokenizer import Tokenizer

        self.torch = torch
        self.device = device
        self.model = load_pretrained(model_dir, dtype=torch.float32, device=device).eval()
        self.tokenizer = Tokenizer.load(tokenizer_dir or model_dir)
        self.pad_id = 0

    def perplexities(self, texts: list[str], max_tokens: int = 512) -> list[float]:
        """One perplexity per text; NaN for a text of fewer than two tokens."""
        torch = self.torch
        ids = [seq[: max_tokens + 1] for seq in self.tokenizer.encode_batch(texts)]
        out = [math.nan] * len(texts)
        scored = [i for i, seq in enumerate(ids) if len(seq) >= 2]
        if not scored:
            return out
        width = max(len(ids[i]) for i in scored)
        batch = torch.full((len(scored), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(scored), width - 1), dtype=torch.float32)
        for row, i in enumerate(scored):
            batch[row, : len(ids[i])] = torch.tensor(ids[i])
            mask[row, : len(ids[i]) - 1] = 1.0
        batch = batch.to(self.device)
        with torch.no_grad():
            logits = self.model(batch[:, :-1]).float()
            nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), batch[:, 1:], reduction="none").cpu()
        mean_nll = (nll * mask).sum(dim=1) / mask.sum(dim=1)
        for row, i in enumerate(scored):
            out[i] = math.exp(min(float(mean_nll[row]), 700.0))
        return out


class PerplexityStep:
    name = "perplexity"

    def __init__(self, config: PerplexityConfig):
        self.config = config
        self.scorer = PerplexityScorer(config.model, config.tokenizer, config.device)

    def __call__(self, doc: Document) -> Document | Drop:
        return self.process_batch([doc])[0]

    def process_batch(self, docs: list[Document]) -> list[Document | Drop]:
        c = self.config
        scores: list[float] = []
        for start in range(0, len(docs), c.batch_size):
            chunk = [d.text for d in docs[start : start + c.batch_size]]
            scores += self.scorer.perplexities(chunk, c.max_tokens)
        out: list[Document | Drop] = []
        for doc, ppl in zip(docs, scores, strict=True):
            if math.isnan(ppl):
                out.append(doc)
            elif c.max_perplexity is not None and ppl > c.max_perplexity:
                out.append(Drop("perplexity_high"))
            elif c.min_perplexity is not None and ppl < c.min_perplexity:
                out.append(Drop("perplexity_low"))
            else:
                out.append(doc.with_meta(perplexity=round(ppl, 3)))
        return out
