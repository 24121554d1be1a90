"""Generative benchmarks scored by our metrics, where lm-eval has no task that runs offline: HumanEval (pass@k in our
sandbox; lm-eval's own needs the hub's `code_eval` metric), SQuAD v1.1 (EM/F1), FLORES-200 translation (BLEU/chrF)
and summarisation of any local JSONL (ROUGE).

Prompts follow the usual published forms: HumanEval's prompt as it is, with Codex's stop strings; SQuAD as lm-eval's
squadv2 asks (title, background, question, " Answer:"); translation as lm-eval's WMT tasks ("English phrase: ...");
summarisation as GPT-2's zero-shot "TL;DR:" induction.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path

from .benchmark_files import (
    HUMANEVAL_FILE,
    BenchmarkDataError,
    benchmark_file,
    read_humaneval,
    read_jsonl,
    read_lines,
    read_squad,
)
from .metrics import bleu, chrf, exact_match, pass_at_k, rouge, squad_f1
from .sandbox import humaneval_program, run_programs
from .task_building import ConfigurableTask, DatasetDict, build_task, splits

VERSION = 1.0
HUMANEVAL_STOPS = ["\nclass", "\ndef", "\n#", "\nif", "\nprint"]  # Chen et al.: the end of one function
HUMANEVAL_SAMPLES = 20
LANGUAGES = {"eng": "English", "deu": "German", "fra": "French"}


def _mean(name: str) -> dict:
    return {"metric": name, "aggregation": "mean", "higher_is_better": True}


# HumanEval


def _humaneval_docs(data_dir: str, **_lm_eval_metadata) -> DatasetDict:
    return splits(test=read_humaneval(benchmark_file(data_dir, HUMANEVAL_FILE)))


def run_in_sandbox(resps: Sequence[Sequence[str]], docs: Sequence[dict]) -> list[list[bool]]:
    """lm-eval filter: each completion of each problem run against the problem's tests, all problems at once."""
    programs = [humaneval_program(doc, completion) for doc, completions in zip(docs, resps, strict=True)
                for completion in completions]  # fmt: skip
    passed = iter([outcome.passed for outcome in run_programs(programs, workers=4)])
    return [[next(passed) for _ in completions] for completions in resps]


def _pass_at_ks(doc: dict, results: list[list[bool]], ks: tuple[int, ...]) -> dict[str, float]:  # noqa: ARG001  # lm-eval process_results(doc, results)
    """pass@k of one problem from the sandbox's verdicts on its samples (lm-eval hands them over as one list)."""
    (verdicts,) = results
    n, c = len(verdicts), sum(verdicts)
    return {f"pass_at_{k}": pass_at_k(n, c, k) for k in ks}


def humaneval(data_dir: str | Path, sampled: bool) -> ConfigurableTask:
    """The 164 problems. humaneval: one greedy completion each, pass@1. humaneval_sampled: 20 samples each at
    temperature 0.8, top-p 0.95 (Chen et al.'s setting for k > 1), pass@1 and pass@10 by the unbiased estimator."""
    ks = (1, 10) if sampled else (1,)
    decoding = {"do_sample": True, "temperature": 0.8, "top_p": 0.95} if sampled else {"do_sample": False}
    return build_task(
        {
            "task": "humaneval_sampled" if sampled else "humaneval",
            "custom_dataset": partial(_humaneval_docs, str(data_dir)),
            "test_split": "test",
            "output_type": "generate_until",
            "doc_to_text": "prompt",
            "doc_to_target": "entry_point",
            "generation_kwargs": {"until": HUMANEVAL_STOPS, "max_gen_toks": 1024, **decoding},
            "repeats": HUMANEVAL_SAMPLES if sampled else 1,
            "num_fewshot": 0,
            "filter_list": [{"name": "sandbox", "filter": [{"function": "custom", "filter_fn": run_in_sandbox}]}],
            "process_results": partial(_pass_at_ks, ks=ks),
            "metric_list": [_mean(f"pass_at_{k}") for k in ks],
            "metadata": {"version": VERSION},
        }
    )


# SQuAD v1.1


def _squad_docs(data_dir: str, **_lm_eval_metadata) -> DatasetDict:
    return splits(validation=read_squad(benchmark_file(data_dir, "squad_v1.1/dev-v1.1.json")))


def _squad_scores(doc: dict, results: list[str]) -> dict[str, float]:
    answers = doc["answers"]["text"]
    return {"exact_match": exact_match(results[0], answers), "f1": squad_f1(results[0], answers)}


def squad(data_dir: str | Path) -> ConfigurableTask:
    """SQuAD v1.1 dev (10,570 questions): a greedy answer up to the end of the line, EM and F1 (0-1, the official
    normalisation) against all reference answers."""
    return build_task(
        {
            "task": "squad",
            "custom_dataset": partial(_squad_docs, str(data_dir)),
            "validation_split": "validation",
            "output_type": "generate_until",
            "doc_to_text": "Title: {{title}}\n\nBackground: {{context}}\n\nQuestion: {{question}}\n\n Answer:",
            "doc_to_target": "{{answers.text[0]}}",
            "generation_kwargs": {"until": ["\n"], "max_gen_toks": 32, "do_sample": False},
            "process_results": _squad_scores,
            "metric_list": [_mean("exact_match"), _mean("f1")],
            "metadata": {"version": VERSION},
        }
    )


# FLORES-200


def _flores_file(data_dir: str, language: str, split: str) -> Path:
    folder = Path(data_dir).expanduser() / "flores200" / split
    found = sorted(folder.glob(f"{language}_*.{split}"))
    if not found:
        raise BenchmarkDataError(
            f"{folder}/{language}_<script>.{split} does not exist; eval.data_dir ({data_dir}) must hold the FLORES-200 "
            f"files flores200/{{dev,devtest}}/<lang>_<script>.{{dev,devtest}} for {language}"
        )
    return found[0]


def _flores_docs(data_dir: str, source: str, target: str, **_lm_eval_metadata) -> DatasetDict:
    def pairs(split: str) -> list[dict]:
        src, tgt = (read_lines(_flores_file(data_dir, lang, split)) for lang in (source, target))
        if len(src) != len(tgt):
            raise BenchmarkDataError(f"flores200/{split}: {source} has {len(src)} lines but {target} {len(tgt)}")
        return [{"source": s, "target": t} for s, t in zip(src, tgt, strict=True)]

    return splits(devtest=pairs("devtest"), dev=pairs("dev"))


def _pair(doc: dict, results: list[str]) -> dict[str, tuple[str, str]]:
    item = (results[0].strip(), doc["target"])
    return {"bleu": item, "chrf": item}


def _corpus_bleu(items: list[tuple[str, str]]) -> float:
    return bleu([hyp for hyp, _ in items], [ref for _, ref in items])


def _corpus_chrf(items: list[tuple[str, str]]) -> float:
    return chrf([hyp for hyp, _ in items], [ref for _, ref in items])


def flores(data_dir: str | Path, source: str, target: str) -> ConfigurableTask:
    """Translation of FLORES-200 devtest (1,012 sentences) from `source` to `target` (ISO 639-3 codes), greedy to the
    end of the line; corpus BLEU and chrF (sacrebleu, 0-100). Few-shot examples come from the dev split."""
    if source == target:
        raise ValueError(f"flores200_{source}-{target}: source and target languages must differ")
    names = [LANGUAGES.get(code, code) for code in (source, target)]
    return build_task(
        {
            "task": f"flores200_{source}-{target}",
            "custom_dataset": partial(_flores_docs, str(data_dir), source, target),
            "test_split": "devtest",
            "fewshot_split": "dev",
            "fewshot_config": {"sampler": "first_n"},
            "output_type": "generate_until",
            "doc_to_text": f"{names[0]} phrase: {{{{source}}}}\n{names[1]} phrase:",
            "doc_to_target": " {{target}}",
            "target_delimiter": "",
            "generation_kwargs": {"until": ["\n"], "max_gen_toks": 256, "do_sample": False},
            "process_results": _pair,
            "metric_list": [
                {"metric": "bleu", "aggregation": _corpus_bleu, "higher_is_better": True},
                {"metric": "chrf", "aggregation": _corpus_chrf, "higher_is_better": True},
            ],
            "metadata": {"version": VERSION},
        }
    )


# summarisation


def _summarization_docs(data_dir: str, **_lm_eval_metadata) -> DatasetDict:
    path = benchmark_file(data_dir, "summarization/test.jsonl")
    return splits(
        test=[{"document": r["document"], "summary": r["summary"]} for r in read_jsonl(path, ("document", "summary"))]
    )


def _summary_pair(doc: dict, results: list[str]) -> dict[str, tuple[str, str]]:
    item = (results[0].strip(), doc["summary"])
    return dict.fromkeys(("rouge1", "rouge2", "rougeL"), item)


def _corpus_rouge(name: str, items: list[tuple[str, str]]) -> float:
    return rouge([hyp for hyp, _ in items], [ref for _, ref in items])[name]


def summarization(data_dir: str | Path) -> ConfigurableTask:
    """Any local JSONL of {document, summary} pairs (summarization/test.jsonl): a greedy summary up to a blank line,
    ROUGE-1/2/L F-measure with stemming (rouge-score, 0-100)."""
    return build_task(
        {
            "task": "summarization",
            "custom_dataset": partial(_summarization_docs, str(data_dir)),
            "test_split": "test",
            "output_type": "generate_until",
            "doc_to_text": "{{document}}\n\nTL;DR:",
            "doc_to_target": " {{summary}}",
            "target_delimiter": "",
            "generation_kwargs": {"until": ["\n\n"], "max_gen_toks": 128, "do_sample": False},
            "process_results": _summary_pair,
            "metric_list": [
                {"metric": name, "aggregation": partial(_corpus_rouge, name), "higher_is_better": True}
                for name in ("rouge1", "rouge2", "rougeL")
            ],
            "metadata": {"version": VERSION},
        }
    )
