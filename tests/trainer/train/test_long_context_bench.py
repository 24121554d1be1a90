"""bench/long_context.py's smoke mode: a tiny model through the retrieval, memory and needle phases on the CPU."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

BENCH = Path(__file__).resolve().parents[3] / "bench" / "long_context.py"


def _bench():
    spec = importlib.util.spec_from_file_location("long_context_bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_passkey_sequences_hide_and_ask_every_needle():
    bench = _bench()
    sentences = np.random.default_rng(0).integers(*bench.FILLER_VOCAB, (bench.SENTENCES, 12))
    tokens, scored = bench.passkey_sequence(np.random.default_rng(1), 200, 3, sentences)
    assert len(tokens) == 201 and scored.sum() == 3 * bench.PASSKEY_DIGITS
    for at in np.flatnonzero(np.isin(tokens, bench.KEYS)):
        if not scored[at + 1]:  # a needle: its question at the end asks for the same digits
            ask = [a for a in np.flatnonzero(tokens == tokens[at]) if scored[a + 1]]
            (ask,) = ask
            digits = slice(1, 1 + bench.PASSKEY_DIGITS)
            assert tokens[at:][digits].tolist() == tokens[ask:][digits].tolist()


def test_smoke_mode_runs_every_phase(capsys):
    bench = _bench()
    report = bench.run(bench.TINY, torch.device("cpu"), Console(file=sys.stderr))
    assert report["documents"]["dense mask ms"] > 0 and report["documents"]["causal, no mask ms"] > 0
    retrieval = report["retrieval"]
    assert all(math.isfinite(loss) for loss in retrieval["losses"])
    assert retrieval["loss_last"] < retrieval["loss_first"]
    measured = {(row["length"], row["option"]) for row in report["memory"]}
    assert measured == {(length, o) for length, options in bench.TINY.lengths.items() for o in options}
    assert all(row["tokens_per_s"] > 0 for row in report["memory"])
    assert [row["length"] for row in report["needle"]] == [128, 506]
    for row in report["needle"]:
        assert len(row["answer"]) == bench.PASSKEY_DIGITS and isinstance(row["retrieved"], bool)
