"""A short run of hack/fuzz_api.py on every test run: schemathesis cases from the API's OpenAPI document and mutated
LLMJobs against `llmp serve-api` on 127.0.0.1. The full run (1,000+ requests) is `python hack/fuzz_api.py`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.operator.helpers import REPO

pytest.importorskip("schemathesis", reason="the fuzz run needs schemathesis (the dev extra)")


@pytest.fixture(scope="module")
def report() -> dict:
    command = [sys.executable, str(REPO / "hack" / "fuzz_api.py"), "--schema-cases", "30", "--mutated-cases", "30"]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)}
    )
    return json.loads(result.stdout)


def test_no_request_gets_a_5xx_or_an_unexplained_refusal(report):
    assert report["requests"] >= 60
    kinds = report["findings_by_kind"]
    assert {k: v for k, v in kinds.items() if k != "validation crashed"} == {}, report["first_findings"]
    assert report["server_healthy_after"]
    assert report["statuses"].keys() <= {"200", "201", "204", "401", "403", "404", "405", "409", "413", "422", "429"}


def test_validation_never_crashes(report):
    assert report["findings_by_kind"].get("validation crashed", 0) == 0, report["first_findings"]
    assert report["tracebacks_in_server_log"] == 0
