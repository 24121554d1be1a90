"""bench/long_context.py's smoke mode: a tiny model through the retrieval, memory and needle phases on the CPU."""

from __future__ import annotations

import math
import sys

import numpy as np
import torch
from rich.console import Console

from tests.processes import bench_module


def test_a_passkey_sequence_hides_the_needle_and_scores_its_answer():
    bench = bench_module("long_context")
    tokens, scored = bench.passkey_sequence(np.random.default_rng(1), 200, bench.filler_sentences())
    digits = bench.PASSKEY_DIGITS
    assert len(tokens) == 201 and scored.tolist() == [False] * (201 - digits) + [True] * digits
    key = tokens[-digits - 1]
    (needle, question) = np.flatnonzero(tokens == key)
    assert question == 200 - digits and key in bench.KEYS
    assert tokens[needle + 1 : needle + 1 + digits].tolist() == tokens[-digits:].tolist()
    assert len(set(tokens[-digits:].tolist())) == digits


def test_smoke_mode_runs_every_phase(capsys):
    bench = bench_module("long_context")
    report = bench.run(bench.TINY, torch.device("cpu"), Console(file=sys.stderr))
    assert report["documents"]["dense mask ms"] > 0 and report["documents"]["causal, no mask ms"] > 0
    first = report["retrieval"][0]
    assert all(math.isfinite(loss) for stage in report["retrieval"] for loss in stage["losses"])
    assert first["loss_last"] < first["loss_first"]
    measured = {(row["length"], row["option"]) for row in report["memory"]}
    assert measured == {(length, o) for length, options in bench.TINY.lengths.items() for o in options}
    assert all(row["tokens_per_s"] > 0 for row in report["memory"])
    assert [row["length"] for row in report["needle"]] == [128, 506]
    for row in report["needle"]:
        assert len(row["answer"]) == bench.PASSKEY_DIGITS and isinstance(row["retrieved"], bool)
