"""Generated-text metrics through the reference implementations: BLEU and chrF by sacrebleu (its default
tokenisation, so the numbers are comparable with published sacrebleu scores), ROUGE by Google's rouge-score.

All scores are on a 0-100 scale. `refs` holds one reference per hypothesis, or several (a list per hypothesis).
"""

from __future__ import annotations

from collections.abc import Sequence

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")

References = Sequence[str] | Sequence[Sequence[str]]


def _reference_streams(hyps: Sequence[str], refs: References) -> list[list[str]]:
    """sacrebleu's layout: one stream per reference position, each as long as `hyps` (a missing reference is None)."""
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} references; give one entry per hypothesis")
    per_item = [[ref] if isinstance(ref, str) else list(ref) for ref in refs]
    if any(not item for item in per_item):
        raise ValueError("every hypothesis needs at least one reference")
    width = max(len(item) for item in per_item)
    return [[item[i] if i < len(item) else None for item in per_item] for i in range(width)]


def bleu(hyps: Sequence[str], refs: References) -> float:
    """Corpus BLEU (sacrebleu defaults: 13a tokenisation, exponential smoothing off for corpora)."""
    import sacrebleu

    return sacrebleu.corpus_bleu(list(hyps), _reference_streams(hyps, refs)).score


def chrf(hyps: Sequence[str], refs: References) -> float:
    """Corpus chrF (character 6-grams, beta 2), sacrebleu's defaults."""
    import sacrebleu

    return sacrebleu.corpus_chrf(list(hyps), _reference_streams(hyps, refs)).score


def rouge(hyps: Sequence[str], refs: References, *, use_stemmer: bool = True) -> dict[str, float]:
    """Mean F-measure of ROUGE-1, ROUGE-2 and ROUGE-L over the pairs; with several references a hypothesis takes its
    best (rouge-score's `score_multi`). Porter stemming on, as in the papers' reported numbers."""
    from rouge_score import rouge_scorer

    per_item = [[ref] if isinstance(ref, str) else list(ref) for ref in refs]
    if len(hyps) != len(per_item):
        raise ValueError(f"{len(hyps)} hypotheses but {len(per_item)} references; give one entry per hypothesis")
    if not hyps:
        raise ValueError("ROUGE needs at least one hypothesis")
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=use_stemmer)
    totals = dict.fromkeys(ROUGE_TYPES, 0.0)
    for hyp, targets in zip(hyps, per_item, strict=True):
        scores = scorer.score_multi(targets, hyp)
        for name in ROUGE_TYPES:
            totals[name] += scores[name].fmeasure
    return {name: 100 * total / len(hyps) for name, total in totals.items()}
