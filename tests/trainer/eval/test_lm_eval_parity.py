"""Our lm-eval model against lm-eval's own HFLM on the same exported checkpoint: the same requests get the same scores.

Both read one folder (our `save_pretrained` weights, our tokenizer.json loaded by `AutoTokenizer` on the HFLM side), so
any difference comes from tokenization, context/continuation splitting, truncation, windowing or the forward pass.
"""

from __future__ import annotations

import pytest

from tests.conftest import shared_path

pytest.importorskip("lm_eval", reason="the lm-eval tests need the eval extra: pip install 'llm-platform[eval]'")

from lm_eval.api.instance import Instance  # noqa: E402

from llm_platform.trainer.eval.benchmarks import run_tasks  # noqa: E402
from tests.trainer.train.fixtures import stdlib_texts  # noqa: E402

from .stops import first_stop  # noqa: E402

TOLERANCE = 1e-4
TASKS = ["mmlu_anatomy", "hellaswag"]


def per_item_scores(results: dict) -> dict[tuple[str, int], list[tuple[float, bool]]]:
    """(task, doc id) -> (log-likelihood, greedy) of each choice, as lm-eval logged them."""
    return {
        (task, sample["doc_id"]): [resp[0] for resp in sample["resps"]]
        for task, samples in results["samples"].items()
        for sample in samples
    }


@pytest.fixture(scope="module")
def both(ours, hflm):
    """20 MMLU anatomy questions and 20 HellaSwag items, zero-shot, through lm-eval with each model."""
    data = shared_path("data")
    return [run_tasks(lm, TASKS, data_dir=data, limit=20, log_samples=True) for lm in (ours, hflm)]


def test_benchmark_loglikelihoods_match_hflm(both):
    mine, reference = (per_item_scores(results) for results in both)
    assert mine.keys() == reference.keys() and len(mine) == 40
    diffs = [
        abs(a[0] - b[0]) for key in mine for a, b in zip(mine[key], reference[key], strict=True)
    ]  # fmt: skip
    assert max(diffs) < TOLERANCE
    assert all(a[1] == b[1] for key in mine for a, b in zip(mine[key], reference[key], strict=True)), (
        "greedy flags differ"
    )


def test_benchmark_accuracies_match_hflm(both):
    mine, reference = (results["results"] for results in both)
    for task, metric in [("mmlu_anatomy", "acc,none"), ("hellaswag", "acc,none"), ("hellaswag", "acc_norm,none")]:
        assert mine[task][metric] == reference[task][metric], (task, metric)


def rolling_requests(texts: list[str]) -> list[Instance]:
    return [
        Instance(request_type="loglikelihood_rolling", doc={}, arguments=(text,), idx=i) for i, text in enumerate(texts)
    ]


def test_rolling_loglikelihood_matches_hflm(ours, hflm):
    """A one-word text, a paragraph, and a module source of several 128-token windows."""
    texts = ["Hello", stdlib_texts()[3][:400], stdlib_texts()[0]]
    assert len(ours.tok_encode(texts[2])) > 4 * ours.max_length
    mine = ours.loglikelihood_rolling(rolling_requests(texts))
    reference = hflm.loglikelihood_rolling(rolling_requests(texts), disable_tqdm=True)
    # sums over thousands of float32 log-probabilities: equal to float32 precision of the total, 1e-4 at least
    assert mine == pytest.approx(reference, rel=2e-7, abs=TOLERANCE)


def generation_requests(prompts_and_stops: list[tuple[str, list[str]]]) -> list[Instance]:
    return [
        Instance(request_type="generate_until", doc={}, arguments=(prompt, {"until": stops, "max_gen_toks": 20}), idx=i)
        for i, (prompt, stops) in enumerate(prompts_and_stops)
    ]


def test_generate_until_matches_hflm(ours, hflm):
    """Greedy continuations of prompts of different lengths (HFLM batches them left-padded), one cut by a stop string
    the model is certain to write."""
    free = ours.generate_until(generation_requests([("def parse(text):\n    ", [])]))[0]
    stop = first_stop(free)
    requests = [("def parse(text):\n    ", [stop]), ("class Formatter:", ["\n\n"]), ("import os\n", [])]
    mine = ours.generate_until(generation_requests(requests))
    assert mine[0] == free[: free.index(stop)]
    assert mine == hflm.generate_until(generation_requests(requests), disable_tqdm=True)
