"""A local jobs API on real uvicorn (127.0.0.1) with three tokens: read-write and read-only for namespace `team`,
read-write for namespace `other`."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
import pytest

from llm_platform.api.policy import SpecPolicy
from llm_platform.services.jobs_api import ApiSettings, create_app
from llm_platform.services.local_jobs import LocalJobs
from llm_platform.services.tokens import TokenFile

from .server import add_token, auth, serving, stop_all


@dataclass
class Api:
    client: httpx.Client
    jobs: LocalJobs
    team: dict[str, str]  # headers of each token
    read_only: dict[str, str]
    other: dict[str, str]


@pytest.fixture
def api(tmp_path, request):
    options = getattr(request, "param", {})
    tokens = tmp_path / "tokens.json"
    team, read_only, other = add_token(tokens, "team"), add_token(tokens, "team", True), add_token(tokens, "other")
    jobs = LocalJobs(tmp_path / "jobs", **options.get("jobs", {}))
    # jobs of these tests may read and write under the test's own folder, nothing else
    settings = {"policy": SpecPolicy.strict(read_roots=(tmp_path,), write_roots=(tmp_path,))} | options.get(
        "settings", {}
    )
    app = create_app(jobs, TokenFile(tokens), ApiSettings(**settings))
    try:
        with serving(app) as url, httpx.Client(base_url=url, timeout=60) as client:
            yield Api(client, jobs, auth(team), auth(read_only), auth(other))
    finally:
        stop_all(jobs)
        jobs.close()
