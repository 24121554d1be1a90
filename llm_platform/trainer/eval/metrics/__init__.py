"""Scores from model outputs: pure functions over predictions and references, one module per family.

token_accuracy(logits, targets)                   next-token argmax accuracy
bleu(hyps, refs), chrf(hyps, refs)                 corpus scores through sacrebleu
rouge(hyps, refs)                                  ROUGE-1/2/L F-measure means through rouge-score
squad_scores(prediction, answers)                  SQuAD v1.1 exact match and F1 (official normalisation)
choice_accuracy(loglikelihoods, choices, gold)     multiple choice, raw and length-normalised
pass_at_k(n, c, k)                                 the unbiased pass@k estimator
"""

from .choice import choice_accuracy, choice_correct
from .pass_at_k import mean_pass_at_k, pass_at_k
from .squad import exact_match, normalize_answer, squad_f1, squad_scores
from .text import bleu, chrf, rouge
from .tokens import token_accuracy

__all__ = [
    "bleu",
    "choice_accuracy",
    "choice_correct",
    "chrf",
    "exact_match",
    "mean_pass_at_k",
    "normalize_answer",
    "pass_at_k",
    "rouge",
    "squad_f1",
    "squad_scores",
    "token_accuracy",
]
