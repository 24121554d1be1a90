"""What a request asks of the engine: sampling or beam-search settings, checked before the request is queued.

Every check raises ``InvalidRequest`` naming the field and what to send instead, so the engine refuses one request
and keeps serving the others. Stop strings are bounded in count and length: each one is matched against the tail of
the text after every token, so an unbounded stop string is unbounded work per token.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MAX_STOP_STRINGS = 16
MAX_STOP_CHARS = 256
MAX_STOP_TOKEN_IDS = 256
MAX_LOGPROBS = 20
MAX_N = 64
MAX_BEAMS = 64
MAX_SEED = 2**63 - 1


class InvalidRequest(ValueError):
    """A request the engine refuses; ``field`` names the offending field (``prompt``, ``top_p``, ``adapter``...)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _require(ok: bool, field: str, message: str) -> None:
    if not ok:
        raise InvalidRequest(field, message)


def _finite(value: object, field: str) -> float:
    _require(
        isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value),
        field,
        f"must be a finite number, got {value!r}",
    )
    return float(value)  # type: ignore[arg-type]


def _integer(value: object, field: str) -> int:
    _require(isinstance(value, int) and not isinstance(value, bool), field, f"must be an integer, got {value!r}")
    return int(value)  # type: ignore[arg-type]


def _check_stop_token_ids(ids: object, vocab_size: int | None) -> None:
    _require(isinstance(ids, (tuple, list)), "stop_token_ids", "must be a list of token ids")
    _require(len(ids) <= MAX_STOP_TOKEN_IDS, "stop_token_ids", f"at most {MAX_STOP_TOKEN_IDS} ids, got {len(ids)}")
    for i, token in enumerate(ids):  # type: ignore[arg-type]
        _integer(token, f"stop_token_ids[{i}]")
        in_vocab = token >= 0 and (vocab_size is None or token < vocab_size)
        _require(in_vocab, f"stop_token_ids[{i}]", f"{token} is not a token id (vocabulary size {vocab_size})")


def _check_penalties(repetition: object, no_repeat_ngram_size: object) -> None:
    penalty = _finite(repetition, "repetition_penalty")
    _require(penalty > 0, "repetition_penalty", f"must be > 0 (1 = off), got {penalty}")
    size = _integer(no_repeat_ngram_size, "no_repeat_ngram_size")
    _require(size >= 0, "no_repeat_ngram_size", f"must be >= 0 (0 = off), got {size}")


@dataclass(frozen=True)
class SamplingParams:
    """Per-request decoding settings (vLLM/OpenAI names and meanings).

    temperature 0 is greedy. repetition_penalty follows transformers (logits of tokens seen in prompt or output are
    divided by it when positive, multiplied when negative); presence/frequency penalties follow OpenAI (subtracted
    once per distinct output token / once per occurrence). logprobs=k returns the chosen token's log-probability and
    the k most likely alternatives, from the model's distribution before any processing.
    """

    max_tokens: int = 16
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    no_repeat_ngram_size: int = 0
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()
    ignore_eos: bool = False
    seed: int | None = None
    logprobs: int | None = None
    n: int = 1

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def validate(self, vocab_size: int | None = None) -> None:
        """Raises ``InvalidRequest`` for the first field out of range."""
        max_tokens = _integer(self.max_tokens, "max_tokens")
        _require(max_tokens >= 1, "max_tokens", f"must be >= 1, got {max_tokens}")
        temperature = _finite(self.temperature, "temperature")
        _require(temperature >= 0, "temperature", f"must be >= 0 (0 = greedy), got {temperature}")
        top_k = _integer(self.top_k, "top_k")
        _require(top_k >= 0, "top_k", f"must be >= 0 (0 = off), got {top_k}")
        top_p = _finite(self.top_p, "top_p")
        _require(0 < top_p <= 1, "top_p", f"must be in (0, 1] (1 = off), got {top_p}")
        min_p = _finite(self.min_p, "min_p")
        _require(0 <= min_p <= 1, "min_p", f"must be in [0, 1] (0 = off), got {min_p}")
        _check_penalties(self.repetition_penalty, self.no_repeat_ngram_size)
        for name in ("presence_penalty", "frequency_penalty"):
            value = _finite(getattr(self, name), name)
            _require(-2 <= value <= 2, name, f"must be in [-2, 2] (0 = off), got {value}")
        _require(isinstance(self.stop, (tuple, list)), "stop", "must be a list of strings")
        _require(
            len(self.stop) <= MAX_STOP_STRINGS, "stop", f"at most {MAX_STOP_STRINGS} strings, got {len(self.stop)}"
        )
        for i, text in enumerate(self.stop):
            _require(isinstance(text, str) and text != "", f"stop[{i}]", "must be a non-empty string")
            _require(
                len(text) <= MAX_STOP_CHARS,
                f"stop[{i}]",
                f"{len(text)} characters; a stop string may have at most {MAX_STOP_CHARS}",
            )
        _check_stop_token_ids(self.stop_token_ids, vocab_size)
        _require(isinstance(self.ignore_eos, bool), "ignore_eos", "must be true or false")
        if self.seed is not None:
            seed = _integer(self.seed, "seed")
            _require(0 <= seed <= MAX_SEED, "seed", f"must be in [0, 2^63 - 1], got {seed}")
        if self.logprobs is not None:
            k = _integer(self.logprobs, "logprobs")
            _require(0 <= k <= MAX_LOGPROBS, "logprobs", f"must be in [0, {MAX_LOGPROBS}], got {k}")
        n = _integer(self.n, "n")
        _require(1 <= n <= MAX_N, "n", f"must be in [1, {MAX_N}], got {n}")
        _require(n == 1 or temperature > 0, "n", "n > 1 needs temperature > 0 (greedy samples are all the same)")


@dataclass(frozen=True)
class BeamSearchParams:
    """Beam search as transformers runs it: ``num_beams`` hypotheses, finished ones scored by
    sum(logprobs) / generated_length ** length_penalty; ``early_stopping`` True stops once ``num_beams`` hypotheses
    finished, False stops when no running beam can still beat the worst finished one (transformers' heuristic),
    "never" uses the exact bound (canonical beam search).
    ``num_return_sequences`` best hypotheses come back, best first."""

    num_beams: int = 4
    max_tokens: int = 16
    length_penalty: float = 1.0
    early_stopping: bool | str = False
    num_return_sequences: int = 1
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    stop_token_ids: tuple[int, ...] = ()
    ignore_eos: bool = False

    def validate(self, vocab_size: int | None = None) -> None:
        beams = _integer(self.num_beams, "num_beams")
        _require(1 <= beams <= MAX_BEAMS, "num_beams", f"must be in [1, {MAX_BEAMS}], got {beams}")
        max_tokens = _integer(self.max_tokens, "max_tokens")
        _require(max_tokens >= 1, "max_tokens", f"must be >= 1, got {max_tokens}")
        _finite(self.length_penalty, "length_penalty")
        _require(
            self.early_stopping is True or self.early_stopping is False or self.early_stopping == "never",
            "early_stopping",
            f'must be true, false or "never", got {self.early_stopping!r}',
        )
        returns = _integer(self.num_return_sequences, "num_return_sequences")
        _require(1 <= returns <= beams, "num_return_sequences", f"must be in [1, num_beams={beams}], got {returns}")
        _check_penalties(self.repetition_penalty, self.no_repeat_ngram_size)
        _check_stop_token_ids(self.stop_token_ids, vocab_size)
        _require(isinstance(self.ignore_eos, bool), "ignore_eos", "must be true or false")
