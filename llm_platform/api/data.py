"""The `data` stage: where documents come from, and what cleaning, filtering and deduplication they get.

Every step beyond cleaning and exact dedup is opt-in, and each step's defaults are its published thresholds (Gopher,
C4, FineWeb, datatrove's MinHash). These models mirror the library's config dataclasses in
`llm_platform.trainer.data` field for field (a test holds them equal), so the trainer library needs no pydantic.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from .base import SpecModel
from .fields import CredentialName, EndpointUrl, ReadPath

LanguageCode = Annotated[str, Field(pattern=r"^[a-z]{2}$")]  # ISO 639-1
NgramSize = Annotated[int, Field(ge=1, le=64)]
Fraction = Annotated[float, Field(ge=0, le=1)]
PII_KINDS = ("email", "phone", "ip", "credit_card", "iban", "secret")
PiiKind = Literal["email", "phone", "ip", "credit_card", "iban", "secret"]


class Source(SpecModel):
    """One corpus source. `type` says how `path` is read."""

    type: Literal["stdlib", "files", "jsonl", "parquet", "hf"] = Field(
        description="stdlib: this Python's own standard-library source tree (needs no path); files: a glob of text "
        "files; jsonl: a glob of JSON-lines files; parquet: a glob of Parquet files; hf: a Hugging Face dataset name "
        "or local dataset folder, streamed. Globs may be local or s3://bucket/prefix*."
    )
    path: ReadPath | None = Field(None, description="Glob of files, or the dataset for `hf` (not used by `stdlib`).")
    include: str = Field(
        "*.py",
        min_length=1,
        max_length=200,
        description="For `stdlib`: which files of the tree to read, a glob inside it (e.g. *.py, email/*.py).",
    )
    field: str = Field("text", description="For jsonl/parquet/hf: the field or column holding the text.")
    max_docs: int | None = Field(None, ge=1, le=2**40, description="Read at most this many documents from the source.")
    config: str | None = Field(None, description="For `hf`: the dataset's configuration (subset) name.")
    split: str = Field("train", description="For `hf`: the split to stream.")

    @field_validator("include")
    @classmethod
    def _inside_the_tree(cls, include: str) -> str:
        if include.startswith(("/", "~")) or ".." in include.replace("\\", "/").split("/"):
            raise ValueError("a glob inside the standard library's tree: no leading '/' or '~', no '..'")
        return include

    @model_validator(mode="after")
    def _path_needed(self) -> Source:
        if self.type != "stdlib" and not self.path:
            example = "allenai/c4" if self.type == "hf" else f"corpus/*.{self.type}"
            raise ValueError(f"a '{self.type}' source needs `path` (e.g. '{example}')")
        return self


class CleanSpec(SpecModel):
    """Text normalisation applied to every document."""

    normalize: Literal["NFC", "NFKC", "none"] = "NFC"
    strip_control: bool = Field(
        True, description="Remove control characters other than newline and tab, and invisible format characters."
    )
    fix_mojibake: bool = Field(False, description="Repair UTF-8 text that was decoded as Windows-1252 ('cafÃ©').")
    boilerplate: bool = Field(False, description="Remove short lines of site chrome (cookie banners, footers).")
    min_chars: int = Field(32, ge=0, description="Drop documents shorter than this after cleaning.")
    max_chars: int | None = Field(None, ge=1, description="Truncate longer documents to this many characters.")


class LanguageSpec(SpecModel):
    """Language identification with lingua (models ship in the wheel); FineWeb's threshold by default."""

    keep: list[LanguageCode] = Field(
        ["en"], description="ISO 639-1 codes to keep; empty: tag every document, drop none."
    )
    threshold: float = Field(0.65, ge=0, le=1, description="Minimum confidence of the top language.")
    candidates: list[LanguageCode] | None = Field(
        None, description="Languages to tell apart (faster); default: all 75."
    )
    max_chars: int = Field(2000, ge=1, description="Identify on the first this-many characters.")
    low_accuracy: bool = Field(False, description="lingua's low-accuracy mode: faster, weaker on short texts.")


class GopherQualitySpec(SpecModel):
    """Gopher's quality rules (Rae et al. 2021); null turns a rule off."""

    min_doc_words: int | None = Field(50, ge=0)
    max_doc_words: int | None = Field(100_000, ge=0)
    min_avg_word_length: float | None = Field(3, ge=0)
    max_avg_word_length: float | None = Field(10, ge=0)
    max_symbol_word_ratio: float | None = Field(0.1, ge=0, description="'#' and ellipses per word.")
    max_bullet_lines_ratio: float | None = Field(0.9, ge=0, le=1)
    max_ellipsis_lines_ratio: float | None = Field(0.3, ge=0, le=1)
    min_alpha_words_ratio: float | None = Field(0.8, ge=0, le=1, description="Share of words with a letter.")
    min_stop_words: int | None = Field(2, ge=0)
    stop_words: list[str] = Field(["the", "be", "to", "of", "and", "that", "have", "with"])


class GopherRepetitionSpec(SpecModel):
    """Gopher's repetition rules (table A1); null or {} turns a rule off."""

    dup_line_frac: float | None = Field(0.30, ge=0, le=1)
    dup_para_frac: float | None = Field(0.30, ge=0, le=1)
    dup_line_char_frac: float | None = Field(0.20, ge=0, le=1)
    dup_para_char_frac: float | None = Field(0.20, ge=0, le=1)
    top_ngram_char_frac: dict[NgramSize, Fraction] = Field(
        {2: 0.20, 3: 0.18, 4: 0.16}, description="n -> max share of characters in the most frequent n-gram."
    )
    dup_ngram_char_frac: dict[NgramSize, Fraction] = Field(
        {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10},
        description="n -> max share of characters in repeated n-grams.",
    )


class C4Spec(SpecModel):
    """C4's rules (Raffel et al. 2020): line removals and page drops; -1 disables a count."""

    remove_citations: bool = True
    filter_no_terminal_punct: bool = True
    min_num_sentences: int = Field(5, ge=-1)
    min_words_per_line: int = Field(3, ge=-1)
    max_word_length: int = Field(1000, ge=-1)
    filter_lorem_ipsum: bool = True
    filter_javascript: bool = True
    filter_curly_bracket: bool = True
    filter_policy: bool = True


class FineWebSpec(SpecModel):
    """FineWeb's own quality rules (Penedo et al. 2024)."""

    line_punct_thr: float = Field(0.12, ge=0, le=1, description="Min share of lines ending in punctuation.")
    line_punct_exclude_zero: bool = False
    short_line_thr: float = Field(0.67, ge=0, le=1, description="Max share of lines of <= short_line_length chars.")
    short_line_length: int = Field(30, ge=0)
    char_duplicates_ratio: float = Field(0.01, ge=0, le=1, description="Max share of characters in repeated lines.")
    new_line_ratio: float = Field(0.3, ge=0, description="Max newlines per word.")


class ClassifierSpec(SpecModel):
    """A hashed n-gram classifier (`HashedNgramClassifier.save`) scoring each document for `label`."""

    model: ReadPath = Field(description="Path of the classifier's .npz file.")
    label: str = Field("hq", description="The label whose probability is the score.")
    min_score: float | None = Field(0.5, ge=0, le=1, description="Drop documents scoring below.")
    max_score: float | None = Field(None, ge=0, le=1, description="Drop documents scoring above.")


class PerplexitySpec(SpecModel):
    """Perplexity under a small model of ours (an HF-format checkpoint folder with its tokenizer)."""

    model: ReadPath = Field(description="Checkpoint folder (config.json, model.safetensors, tokenizer files).")
    tokenizer: ReadPath | None = Field(None, description="Tokenizer folder, if not the model's.")
    min_perplexity: float | None = Field(None, gt=0, description="Drop documents below (verbatim boilerplate).")
    max_perplexity: float | None = Field(None, gt=0, description="Drop documents above (unlike the reference).")
    max_tokens: int = Field(512, ge=2, description="Score the first this-many tokens.")
    batch_size: int = Field(8, ge=1)
    device: str = Field("cpu", pattern=r"^(cpu|cuda(:[0-9]{1,2})?|mps)$")


class ToxicitySpec(SpecModel):
    """Word list (C4: drop a page with any listed word) plus an optional toxicity classifier (Dolma: 0.4)."""

    max_bad_words: int = Field(0, ge=0, description="Drop pages with more listed words than this.")
    builtin_words: bool = Field(True, description="Use the built-in English list.")
    word_list: ReadPath | None = Field(None, description="A file of extra words or phrases, one per line.")
    classifier: ReadPath | None = Field(None, description="A hashed n-gram classifier with a toxicity label.")
    label: str = "toxic"
    max_score: float = Field(0.4, ge=0, le=1)


class FilterStep(SpecModel):
    """One filter, named by the one field that is set, e.g. `{gopher_quality: {}}` or `{c4: {min_num_sentences: 3}}`."""

    gopher_repetition: GopherRepetitionSpec | None = None
    gopher_quality: GopherQualitySpec | None = None
    c4: C4Spec | None = None
    fineweb: FineWebSpec | None = None
    classifier: ClassifierSpec | None = None
    perplexity: PerplexitySpec | None = None
    toxicity: ToxicitySpec | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> FilterStep:
        chosen = self.kinds()
        if len(chosen) != 1:
            names = ", ".join(type(self).model_fields)
            raise ValueError(
                f"each filter names exactly one kind, e.g. {{gopher_quality: {{}}}}; got {chosen or 'none'} "
                f"(kinds: {names})"
            )
        return self

    def kinds(self) -> list[str]:
        return [name for name in type(self).model_fields if getattr(self, name) is not None]


class MinHashSpec(SpecModel):
    """Near-duplicate removal by MinHash + LSH; datatrove's defaults (Jaccard ~0.8 caught with p = 0.92)."""

    ngram: int = Field(5, ge=1, le=64, description="Word n-gram (shingle) size.")
    bands: int = Field(14, ge=1, le=1024, description="LSH bands.")
    rows: int = Field(8, ge=1, le=1024, description="Minimum hashes per band.")
    seed: int = Field(1, ge=0, le=2**32 - 1)


class DedupSpec(SpecModel):
    exact: bool = Field(True, description="Drop documents whose normalised text hash was already seen.")
    minhash: MinHashSpec | None = Field(None, description="Also drop near-duplicates (keeps the first of a cluster).")


class PIISpec(SpecModel):
    """Replace personal data and secrets with placeholders such as <EMAIL>."""

    kinds: list[PiiKind] = Field(list(PII_KINDS), description="Which kinds to replace.")
    placeholders: dict[str, str] | None = Field(None, description="Kind -> placeholder text, overriding defaults.")


class DecontaminateSpec(SpecModel):
    """Drop documents sharing word n-grams with evaluation sets."""

    sources: list[Source] = Field(min_length=1, description="The eval sets, read like corpus sources.")
    ngram: int = Field(13, ge=1, le=64)
    min_item_words: int = Field(8, ge=1, description="Eval items shorter than this are not matched.")
    max_matches: int = Field(0, ge=0, description="Drop documents with more matching n-grams than this.")


class RewardFilterSpec(SpecModel):
    """The synthetic pipeline's last step: score the judge's kept pairs with a reward model, keep the best."""

    model: ReadPath = Field(
        description="The reward model: the `model/` folder an `align` stage with `method: reward` wrote (decoder, "
        "reward head and tokenizer)."
    )
    min_reward: float | None = Field(None, ge=-1e6, le=1e6, description="Keep pairs scoring at least this.")
    top_fraction: float | None = Field(
        None, gt=0, le=1, description="Keep this share of the pairs, highest rewards first (instead of min_reward)."
    )

    @model_validator(mode="after")
    def _one_rule(self) -> RewardFilterSpec:
        if (self.min_reward is None) == (self.top_fraction is None):
            raise ValueError("give exactly one of min_reward or top_fraction")
        return self


class SyntheticSpec(SpecModel):
    """Generate instruction data with an OpenAI-compatible endpoint; written to synthetic/instructions.jsonl."""

    endpoint: EndpointUrl = Field(description="Base URL of the API, e.g. http://localhost:8000/v1.")
    model: str = Field(max_length=256)
    topics: list[str] = Field(
        min_length=1, max_length=10_000, description="Seed topics; `per_topic` instructions each."
    )
    per_topic: int = Field(4, ge=1, le=10_000)
    judge_endpoint: EndpointUrl | None = Field(None, description="Endpoint of the critique model; default: `endpoint`.")
    judge_model: str | None = Field(None, max_length=256, description="Critique model; default: `model`.")
    credential: CredentialName | None = Field(
        None,
        description="Name of an API key the site's configuration allows for these endpoints (e.g. `openai` for "
        "https://api.openai.com/v1); none: no key is sent. A spec never names an environment variable.",
    )
    temperature: float = Field(0.9, ge=0, le=2)
    max_tokens: int = Field(512, ge=1, le=1_048_576)
    min_score: float = Field(4.0, ge=1, le=5, description="Minimum mean of helpfulness, correctness, coherence.")
    max_similarity: float = Field(0.6, ge=0, le=1, description="Max 3-gram similarity to a kept instruction.")
    concurrency: int = Field(4, ge=1, le=256)
    reward_filter: RewardFilterSpec | None = Field(
        None, description="Then keep only the pairs a reward model scores well (generate -> critique -> filter)."
    )


class DataSpec(SpecModel):
    sources: list[Source] = Field(min_length=1, description="Where the documents come from.")
    clean: CleanSpec = Field(default_factory=CleanSpec)
    language: LanguageSpec | None = Field(None, description="Identify languages, keep the wanted ones.")
    filters: list[FilterStep] = Field(default_factory=list, description="Quality and content filters, in order.")
    decontaminate: DecontaminateSpec | None = None
    pii: PIISpec | None = Field(None, description="Replace personal data with placeholders.")
    dedup: DedupSpec = Field(default_factory=DedupSpec)
    val_fraction: float = Field(
        0.02, ge=0.0, lt=0.5, description="Share of documents held out for validation (chosen by document hash)."
    )
    engine: Literal["local", "ray"] = Field("local", description="local: processes on this machine; ray: Ray Data.")
    workers: int = Field(1, ge=1, le=1024, description="Local processes, or Ray actors, running the steps.")
    plots: bool = Field(
        False, description="Also draw report/*.png (steps, languages, lengths); needs matplotlib, adds ~2 s."
    )
    synthetic: SyntheticSpec | None = Field(None, description="Also generate synthetic instruction data.")
