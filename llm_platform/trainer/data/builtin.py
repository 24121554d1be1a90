"""Built-in datasets, named in a spec as `builtin:<name>` where a JSONL path would go (a finetune or align stage's
`dataset.path`, an eval stage's `refusals.requests`). They are built here, offline and deterministically from what
every machine has, so the name (part of the stage's fingerprint) fixes the data as a file's content would.

- `builtin:stdlib-functions`: this Python's documented standard-library functions asked for by docstring
  (`stdlib_functions.py`): the function as the instruction record's response; the function over a plausibly wrong
  one as a preference record. Only the train split; the held-out functions are the eval metric `stdlib_functions`.

- `builtin:safety-refusals`: the refusal pairs (`refusal_pairs.build_refusal_set`): instruction records for SFT,
  preference records for DPO; as eval requests, the held-out harmful and benign look-alike requests.
- `builtin:safety-refusals-keyword`: the same requests answered as a keyword labeller answers them (instruction
  records only): refused when the verb is on its list, answered otherwise; it teaches refusing words, not meanings.
- `builtin:safety-critique-revise`: the stage's own base model answers the refusal pairs' training requests,
  critiques each answer against `principles.md` and revises it, through the inference engine
  (`critique_revise.py`): the revisions as instruction records, revision-over-original pairs as preference records.
  Constitutional AI's supervised phase, on whatever model the stage tunes.
"""

from __future__ import annotations

from pathlib import Path

from llm_platform.confinement import check_local

from . import stdlib_functions
from .jsonl import write_jsonl
from .safety.critique_revise import critique_and_revise
from .safety.refusal_pairs import build_refusal_set, keyword_labelled_sft

PREFIX = "builtin:"
REVISE_MAX_TOKENS = 32


class BuiltinDatasetError(ValueError):
    """A `builtin:` name or format that does not exist; the message names the field and the choices."""


OFFERS = {
    "stdlib-functions": ("instruction", "preference"),
    "safety-refusals": ("instruction", "preference"),
    "safety-refusals-keyword": ("instruction",),
    "safety-critique-revise": ("instruction", "preference"),
}


def builtin_problem(path: str, fmt: str, field: str = "dataset.path") -> str | None:
    """What is wrong with naming `path` as a `fmt` dataset (None when nothing is, or when it is not `builtin:`),
    found without building anything: for preflight, before any stage runs."""
    if not path.startswith(PREFIX):
        return None
    name = path[len(PREFIX) :]
    if name not in OFFERS:
        return f"{field}: '{path}' is not a built-in dataset; known: {', '.join(PREFIX + n for n in OFFERS)}"
    if fmt not in OFFERS[name]:
        return f"{field}: '{path}' has no '{fmt}' records; it offers {' and '.join(OFFERS[name])}"
    return None


def builtin_records(path: str, fmt: str, field: str = "dataset.path", model_dir: Path | None = None) -> list[dict]:
    """The records of `builtin:<name>` in `fmt` (instruction or preference); `model_dir` is the model that
    `safety-critique-revise` generates with."""
    problem = builtin_problem(path, fmt, field)
    if problem is not None:
        raise BuiltinDatasetError(problem)
    name = path[len(PREFIX) :]
    if name == "stdlib-functions":
        return stdlib_functions.records(fmt, "train")
    if name == "safety-critique-revise":
        return _critique_revise_records(fmt, field, model_dir)
    if fmt == "preference":
        return build_refusal_set().dpo
    return build_refusal_set().sft if name == "safety-refusals" else keyword_labelled_sft()


def _critique_revise_records(fmt: str, field: str, model_dir: Path | None) -> list[dict]:
    from llm_platform.trainer.inference import LLMEngine

    if model_dir is None:
        raise BuiltinDatasetError(f"{field}: builtin:safety-critique-revise needs a model to generate with")
    prompts = [r["prompt"] for r in build_refusal_set().sft]
    result = critique_and_revise(LLMEngine.from_pretrained(model_dir), prompts, max_tokens=REVISE_MAX_TOKENS)
    if not result.sft:
        raise BuiltinDatasetError(
            f"{field}: builtin:safety-critique-revise kept no revision of {len(prompts)} ({dict(result.counts)}); "
            "the model revised nothing"
        )
    return result.sft if fmt == "instruction" else result.dpo


def dataset_file(path: str, fmt: str, folder: Path, model_dir: Path | None = None) -> str:
    """`path` itself, or for `builtin:<name>` a JSONL file of its records written into `folder` (kept with the stage's
    outputs, so what it trained on is on record)."""
    if not path.startswith(PREFIX):
        return path
    records = builtin_records(path, fmt, model_dir=model_dir)
    return str(write_jsonl(records, folder / f"{path[len(PREFIX) :]}.{fmt}.jsonl"))


def refusal_requests_problem(path: str, field: str = "eval.refusals.requests") -> str | None:
    """What is wrong with naming `path` as eval refusal requests, when it is a `builtin:` name: only
    `safety-refusals` holds held-out requests. None otherwise (a file is read, and checked, by `refusal_requests`)."""
    if path.startswith(PREFIX) and path != PREFIX + "safety-refusals":
        return f"{field}: '{path}': only {PREFIX}safety-refusals holds held-out requests"
    return None


def refusal_requests(path: str, field: str = "eval.refusals.requests") -> tuple[list[str], list[str]]:
    """(harmful prompts, benign prompts) of `builtin:safety-refusals` (its held-out requests) or of a local JSONL
    file of {"prompt": ..., "kind": "harmful" | "benign"} records."""
    from .sft import read_records  # imports torch: not for `builtin_problem`, which preflight and the webhook call

    problem = refusal_requests_problem(path, field)
    if problem is not None:
        raise BuiltinDatasetError(problem)
    if path.startswith(PREFIX):
        held = build_refusal_set()
        return [r["prompt"] for r in held.held_out_harmful], [r["prompt"] for r in held.held_out_benign]
    if "://" in path and not path.startswith("file://"):
        raise BuiltinDatasetError(f"{field}: {path} must be a local JSONL file (or builtin:safety-refusals)")
    path = path.removeprefix("file://")
    check_local(path, "read", field)
    harmful, benign = [], []
    for where, record in read_records(path):  # one JSONL reader: its errors name the file and line
        if not isinstance(record.get("prompt"), str) or record.get("kind") not in ("harmful", "benign"):
            raise BuiltinDatasetError(f'{where}: expected {{"prompt": "...", "kind": "harmful" or "benign"}}')
        (harmful if record["kind"] == "harmful" else benign).append(record["prompt"])
    if not harmful or not benign:
        raise BuiltinDatasetError(f"{field}: {path} needs at least one harmful and one benign request")
    return harmful, benign
