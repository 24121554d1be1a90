"""Critique and revise (the supervised phase of Constitutional AI, Bai et al. 2022): the model answers a request,
critiques its own answer against a written list of principles, then rewrites the answer to address the critique.
The revision becomes the SFT target, and the DPO pair prefers the revision to the original.

Everything generates through the inference engine, one batched `generate` per phase (answer, critique, revision),
greedy so the pass is reproducible. The principles are a file (`principles.md` beside this module by default): each
line that starts with a number is one principle.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import refusals

PRINCIPLES_FILE = Path(__file__).with_name("principles.md")
MAX_PRINCIPLES = 64
_NUMBERED = re.compile(r"^\s*\d+[.)]\s+(.+?)\s*$")

CRITIQUE_PROMPT = (
    "Principles:\n{principles}\n\nRequest: {prompt}\nResponse: {response}\n\n"
    "Critique: name the principles this response breaks, if any, and say why."
)
REVISION_PROMPT = (
    "Principles:\n{principles}\n\nRequest: {prompt}\nResponse: {response}\nCritique: {critique}\n\n"
    "Rewrite the response so that it follows every principle. Reply with the new response only."
)


def load_principles(path: str | Path | None = None) -> tuple[str, ...]:
    """The numbered principles of a file, in order; raises naming the file when it has none."""
    path = Path(path) if path is not None else PRINCIPLES_FILE
    if not path.is_file():
        raise FileNotFoundError(f"principles: {path} does not exist (one numbered principle per line: '1. ...')")
    found = [m.group(1) for line in path.read_text(encoding="utf-8").splitlines() if (m := _NUMBERED.match(line))]
    if not found:
        raise ValueError(f"principles: {path} has no numbered lines ('1. Do not ...'); nothing to critique against")
    if len(found) > MAX_PRINCIPLES:
        raise ValueError(f"principles: {path} has {len(found)} principles; at most {MAX_PRINCIPLES}")
    return tuple(found)


@dataclass
class CritiqueRevision:
    """The pass's records: SFT (`prompt`, `response` = revision), DPO (`prompt`, `chosen` = revision, `rejected` =
    original), each with the `critique`; and counts of what was kept and why the rest was dropped."""

    sft: list[dict] = field(default_factory=list)
    dpo: list[dict] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)


def _generate(engine, texts: Sequence[str], max_tokens: int) -> list[str]:
    return [text.strip() for text in refusals.responses(engine, texts, max_tokens)]


def critique_and_revise(
    engine,
    prompts: Sequence[str],
    *,
    responses: Sequence[str] | None = None,
    principles: Sequence[str] | None = None,
    max_tokens: int = 64,
) -> CritiqueRevision:
    """Answer (unless `responses` are given), critique and revise each request with the engine's model. A pair is
    dropped when the original or the revision is empty, or when the revision repeats the original (nothing to
    prefer)."""
    if engine.tokenizer is None:
        raise ValueError("critique_and_revise: the engine has no tokenizer; load a model folder with tokenizer files")
    if responses is not None and len(responses) != len(prompts):
        raise ValueError(f"responses: {len(responses)} given for {len(prompts)} prompts")
    listed = "\n".join(f"{i}. {p}" for i, p in enumerate(principles or load_principles(), 1))
    originals = list(responses) if responses is not None else _generate(engine, prompts, max_tokens)
    critiques = _generate(
        engine,
        [
            CRITIQUE_PROMPT.format(principles=listed, prompt=p, response=r)
            for p, r in zip(prompts, originals, strict=True)
        ],
        max_tokens,
    )
    revisions = _generate(
        engine,
        [
            REVISION_PROMPT.format(principles=listed, prompt=p, response=r, critique=c)
            for p, r, c in zip(prompts, originals, critiques, strict=True)
        ],
        max_tokens,
    )
    result = CritiqueRevision()
    for prompt, original, critique, revision in zip(prompts, originals, critiques, revisions, strict=True):
        if not original.strip() or not revision:
            result.counts["dropped_empty"] += 1
        elif revision == original.strip():
            result.counts["dropped_unchanged"] += 1
        else:
            result.sft.append({"prompt": prompt, "response": revision, "critique": critique})
            result.dpo.append({"prompt": prompt, "chosen": revision, "rejected": original, "critique": critique})
    result.counts["kept"] = len(result.sft)
    return result
