"""The content filter of the serving path: the data pipeline's detectors, applied to prompts and completions.

Checks, each with its own name in the metrics: `toxicity` (the data pipeline's word list, as C4 filters pages),
`pii` (its detectors of emails, phone numbers, cards, keys...), `blocklist` (the deployment's own words and phrases,
`stem*` matching any ending) and `classifier` (a hashed n-gram classifier the data stage trains, flagging a score
above the threshold). `mode` decides what a flag does: `log` counts and logs it and lets the text through, `block`
replaces the answer with the refusal message.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from llm_platform.api.serve import ContentFilterSpec
from llm_platform.observability.serving import ServingMetrics
from llm_platform.trainer.data.pii import find_pii
from llm_platform.trainer.data.toxicity import bad_words, compile_word_list

log = logging.getLogger("llmp.serve.content_filter")


@dataclass(frozen=True)
class Verdict:
    """What the filter decided about one text: `flags` names the checks that fired; `blocked` is whether to refuse."""

    flags: tuple[str, ...] = ()
    blocked: bool = False


class ContentFilter:
    def __init__(self, spec: ContentFilterSpec, metrics: ServingMetrics | None = None):
        self.spec = spec
        self.metrics = metrics
        self.blocklist = compile_word_list(tuple(spec.blocklist)) if spec.blocklist else None
        self.classifier = None
        if spec.classifier and spec.mode != "off":
            from llm_platform.trainer.data.classifier import HashedNgramClassifier

            self.classifier = HashedNgramClassifier.load(spec.classifier)
            self.classifier.label_index(spec.classifier_label)  # an unknown label fails at start-up, not per request

    @property
    def refusal(self) -> str:
        return self.spec.refusal

    def applies(self, direction: str) -> bool:
        return self.spec.mode != "off" and (self.spec.input if direction == "input" else self.spec.output)

    def flags(self, text: str) -> tuple[str, ...]:
        """The checks that fire on `text`, in a fixed order. Pure."""
        found = []
        if self.spec.toxicity and bad_words(text):
            found.append("toxicity")
        if self.spec.pii and find_pii(text):
            found.append("pii")
        if self.blocklist is not None and self.blocklist.search(text):
            found.append("blocklist")
        if self.classifier is not None:
            score = float(self.classifier.score([text], self.spec.classifier_label)[0])
            if score > self.spec.classifier_max_score:
                found.append("classifier")
        return tuple(found)

    def check(self, text: str, direction: str) -> Verdict:
        """Flag `text` going `direction` (input: the prompt, output: the completion), count it, and decide."""
        if not text or not self.applies(direction):
            return Verdict()
        found = self.flags(text)
        if not found:
            return Verdict()
        blocked = self.spec.mode == "block"
        action = "blocked" if blocked else "logged"
        for name in found:
            if self.metrics is not None:
                self.metrics.flagged(name, direction, action)
        log.warning("content filter: %s %s flagged by %s", direction, action, ", ".join(found))
        return Verdict(found, blocked)
