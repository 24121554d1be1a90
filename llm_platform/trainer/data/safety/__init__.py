"""Safety alignment data: refusal pairs from templates and word lists, and a critique-and-revise pass through the
inference engine against a written list of principles; both as SFT records (`prompt`, `response`) and DPO records
(`prompt`, `chosen`, `rejected`), the formats the finetune and align stages read. `refusals` detects refusals in
generated text and measures refusal rates, the number safety tuning moves."""

from .critique_revise import CritiqueRevision, critique_and_revise, load_principles
from .refusal_pairs import RefusalSet, build_refusal_set
from .refusals import REFUSAL_PHRASES, is_refusal, refusal_rates

__all__ = [
    "REFUSAL_PHRASES",
    "CritiqueRevision",
    "RefusalSet",
    "build_refusal_set",
    "critique_and_revise",
    "is_refusal",
    "load_principles",
    "refusal_rates",
]
