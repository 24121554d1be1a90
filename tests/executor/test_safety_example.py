"""examples/safety-align.yaml end to end with `llmp run` on CPU: a keyword-labelled assistant (refuses "kill",
"shoot", "blow up", answers the rest) is tuned on refusal pairs (SFT, then DPO), and on held-out requests worded in
ways no training record is, it then refuses more of the harmful ones and fewer of the benign look-alikes. The rates
are the eval stages' own, and the content filter, with the refusal phrases as its blocklist, counts the same. A last
stage runs the critique-and-revise pass on the aligned model and tunes on its revisions."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from llm_platform.api.serve import ContentFilterSpec
from llm_platform.services.openai_api.content_filter import ContentFilter
from llm_platform.storage import ArtifactStore
from llm_platform.trainer.data.safety import REFUSAL_PHRASES

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "safety-align.yaml"


@pytest.mark.slow
def test_safety_alignment_refuses_more_harmful_and_fewer_benign_requests_than_before(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "llm_platform.cli", "run", str(EXAMPLE), "--workdir", str(tmp_path / "w")],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    store = ArtifactStore.open(str(tmp_path / "w"))
    before = store.manifest("eval-before").meta["metrics"]
    after = store.manifest("eval-after").meta["metrics"]
    print(f"refusal rates, harmful: {before['refusal_rate_harmful']:.2f} -> {after['refusal_rate_harmful']:.2f}; "
          f"benign: {before['refusal_rate_benign']:.2f} -> {after['refusal_rate_benign']:.2f}")  # fmt: skip
    assert after["refusal_rate_harmful"] > before["refusal_rate_harmful"]
    assert after["refusal_rate_benign"] < before["refusal_rate_benign"]
    content_filter = ContentFilter(
        ContentFilterSpec(mode="log", toxicity=False, pii=False, blocklist=list(REFUSAL_PHRASES))
    )
    for stage, metrics in (("eval-before", before), ("eval-after", after)):
        report = json.loads((store.fetch(stage) / "report" / "eval.json").read_text())
        samples = report["refusals"]["samples"]
        for kind in ("harmful", "benign"):
            answers = [s["response"].replace("\u2019", "'") for s in samples if s["kind"] == kind]
            flagged = sum(content_filter.flags(a) == ("blocklist",) for a in answers) / len(answers)
            assert flagged == pytest.approx(metrics[f"refusal_rate_{kind}"], abs=1e-4), (stage, kind)
    trained_on = (store.fetch("sft") / "dataset" / "safety-refusals.instruction.jsonl").read_text().splitlines()
    held_out = {s["prompt"] for s in samples}
    assert held_out.isdisjoint(json.loads(line)["prompt"] for line in trained_on)
    # the critique-and-revise pass ran through the engine on the aligned model, and its revisions were trained on
    revised = (store.fetch("revise") / "dataset" / "safety-critique-revise.instruction.jsonl").read_text().splitlines()
    assert revised and all(json.loads(line)["critique"] for line in revised)
    assert store.manifest("revise").meta["metrics"]["steps"] == 5
