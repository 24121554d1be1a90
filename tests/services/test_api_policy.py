"""A submitted spec reaches only what the server's policy allows: the defects of issue 10 replayed over HTTP.

Before the policy was wired in, a spec sent anonymously could read `/etc/hostname` as training data, write its
artifacts over another job's, and send the server's `AWS_SECRET_ACCESS_KEY` to a host of its choosing."""

from __future__ import annotations

import pytest

from llm_platform.api.policy import SpecPolicy

from .server import job_body


def refusal(api, job: dict) -> list[dict]:
    response = api.client.post("/v1/jobs", json=job, headers=api.team)
    assert response.status_code == 422, response.text
    assert api.client.get("/v1/jobs", headers=api.team).json() == {"items": []}  # nothing was stored or started
    return response.json()["problems"]


def test_a_spec_cannot_read_the_servers_files(api):
    data = {"name": "data", "kind": "data", "data": {"sources": [{"type": "files", "path": "/etc/hostname"}]}}
    problems = refusal(api, job_body("reader", data))
    assert [p["path"] for p in problems] == ["spec.stages[0].data.sources[0].path"]


def test_a_spec_cannot_write_outside_the_servers_root(api, tmp_path_factory):
    victim = tmp_path_factory.mktemp("elsewhere") / "another-job"
    problems = refusal(api, job_body("writer", storage={"uri": str(victim)}))
    assert [p["path"] for p in problems] == ["spec.storage.uri"]
    assert not victim.exists()


def test_a_spec_cannot_send_a_server_secret_anywhere(api, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "server-secret")
    synthetic = {"endpoint": "http://127.0.0.1:9/v1", "model": "m", "topics": ["t"], "credential": "aws"}
    data = {"name": "data", "kind": "data", "data": {"sources": [{"type": "stdlib"}], "synthetic": synthetic}}
    problems = refusal(api, job_body("exfil", data))
    assert [p["path"] for p in problems] == ["spec.stages[0].data.synthetic.credential"]


@pytest.mark.parametrize("api", [{"settings": {"policy": SpecPolicy.strict(read_roots=("/etc",))}}], indirect=True)
def test_the_servers_configuration_opens_folders_on_purpose(api):
    data = {"name": "data", "kind": "data", "data": {"sources": [{"type": "files", "path": "/etc/hostname"}]}}
    response = api.client.post("/v1/jobs", json=job_body("reader", data), headers=api.team)
    assert response.status_code == 201, response.text
