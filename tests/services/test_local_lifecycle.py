"""The local backend's life cycle over HTTP with real `llmp run` processes: a bounded queue (429 past it, never more
processes than the limit), restarts of the server (kill -9) that keep every status and can still stop what the old
server started, delete-then-resubmit, and jobs whose store is dead or hangs that never break the listing."""

from __future__ import annotations

import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from llm_platform.operator.options import AllowList
from llm_platform.services.processes import group_members, is_alive

from .server import ApiProcess, add_token, auth, blocked_job, failing_data_stage, job_body, wait_for

LIMITS = {"jobs": {"max_running": 2, "max_queued": 3}}


def _processes_under(root) -> list[int]:
    """Live processes whose command line names a file under `root` (the jobs' `llmp run` and `llmp stage run`)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes()
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if str(root).encode() in argv and state != "Z":
                found.append(int(entry.name))
    return found


def _group(pid: int) -> int | None:
    try:
        return int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[2])
    except (OSError, IndexError, ValueError):
        return None


def phase(client: httpx.Client, headers: dict, name: str) -> str:
    return client.get(f"/v1/jobs/{name}", headers=headers).json()["status"]["phase"]


def stage_phase(client: httpx.Client, headers: dict, name: str, stage: str = "data") -> str:
    return client.get(f"/v1/jobs/{name}", headers=headers).json()["status"]["stages"][stage]["phase"]


@pytest.mark.parametrize("api", [LIMITS], indirect=True)
def test_a_burst_of_submissions_is_queued_then_refused_and_never_runs_more_than_the_limit(api, tmp_path):
    bodies = [blocked_job(f"burst-{i}", tmp_path / "pipe") for i in range(50)]  # one pipe, made before the burst

    def submit(i: int) -> httpx.Response:
        return api.client.post("/v1/jobs", json=bodies[i], headers=api.team)

    with ThreadPoolExecutor(50) as pool:
        responses = list(pool.map(submit, range(50)))
    codes = sorted(r.status_code for r in responses)
    assert codes == [201] * 5 + [429] * 45, [r.text for r in responses if r.status_code not in (201, 429)]
    refused = next(r for r in responses if r.status_code == 429)
    assert refused.headers["Retry-After"] and "2 running + 3 queued" in refused.json()["error"]

    running = api.jobs.table.in_state("running")
    assert len(running) == 2 and len(api.jobs.table.in_state("queued")) == 3
    assert all(is_alive(row.process) for row in running)
    groups = {row.process.pid for row in running}  # each job's `llmp run` leads its own process group
    wait_for(lambda: len(_processes_under(api.jobs.root)) >= 4, "each running job's `llmp run` and its stage process")
    time.sleep(1)
    assert {_group(pid) for pid in _processes_under(api.jobs.root)} - {None} <= groups  # none of a queued job
    phases = sorted(j["status"]["phase"] for j in api.client.get("/v1/jobs", headers=api.team).json()["items"])
    assert phases == ["Pending"] * 3 + ["Running"] * 2

    # a slot freed by a DELETE goes to the oldest queued job, and still no more than 2 run
    first_queued = api.jobs.table.in_state("queued")[0].name
    assert api.client.delete(f"/v1/jobs/{running[0].name}", headers=api.team).status_code == 204
    assert not group_members(running[0].process.pid)
    wait_for(lambda: phase(api.client, api.team, first_queued) == "Running", "the oldest queued job to start")
    assert len(api.jobs.table.in_state("running")) == 2


def test_a_restarted_server_keeps_status_and_stops_what_the_old_one_started(tmp_path):
    tokens, root = tmp_path / "tokens.json", tmp_path / "api"
    headers = auth(add_token(tokens, "team"))
    server = ApiProcess(root, tokens)
    try:
        with httpx.Client(base_url=server.url, headers=headers, timeout=60) as client:
            for name in ("stuck", "doomed"):
                assert client.post("/v1/jobs", json=blocked_job(name, tmp_path / "pipe")).status_code == 201
            for name in ("stuck", "doomed"):
                wait_for(lambda n=name: stage_phase(client, headers, n) == "Running", f"{name}'s data stage to run")
    finally:
        server.kill()  # kill -9: no chance to clean up or write anything

    from llm_platform.services.job_state import JobTable

    table = JobTable(root / "jobs.sqlite")
    stuck, doomed = table.get("team", "stuck").process, table.get("team", "doomed").process
    table.close()
    assert is_alive(stuck) and is_alive(doomed)
    from llm_platform.services.processes import stop_group

    stop_group(doomed)  # this one dies while no server watches

    server = ApiProcess(root, tokens)
    try:
        with httpx.Client(base_url=server.url, headers=headers, timeout=60) as client:
            assert phase(client, headers, "stuck") == "Running"
            assert stage_phase(client, headers, "stuck") == "Running"
            wait_for(lambda: phase(client, headers, "doomed") == "Failed", "the job that died meanwhile to be Failed")
            assert stage_phase(client, headers, "doomed") == "Failed"
            assert client.delete("/v1/jobs/stuck").status_code == 204
            assert not is_alive(stuck) and not group_members(stuck.pid)
            assert client.get("/v1/jobs/stuck").status_code == 404
    finally:
        server.kill()


def test_a_deleted_name_can_be_submitted_again(api, tmp_path):
    job = blocked_job("again", tmp_path / "pipe")
    for _ in range(3):
        created = api.client.post("/v1/jobs", json=job, headers=api.team)
        assert created.status_code == 201, created.text
        wait_for(lambda: stage_phase(api.client, api.team, "again") == "Running", "the data stage to run")
        process = api.jobs.table.get("team", "again").process
        assert api.client.delete("/v1/jobs/again", headers=api.team).status_code == 204
        assert not is_alive(process)


def test_a_failed_stage_is_failed_and_what_needs_it_is_skipped(api, tmp_path):
    empty = failing_data_stage(tmp_path)
    job = job_body("broken", empty, {"name": "tok", "kind": "tokenizer", "needs": ["data"]})
    assert api.client.post("/v1/jobs", json=job, headers=api.team).status_code == 201
    wait_for(lambda: phase(api.client, api.team, "broken") == "Failed", "the job to fail", timeout=120)
    status = api.client.get("/v1/jobs/broken", headers=api.team).json()["status"]
    assert status["stages"]["data"]["phase"] == "Failed"
    assert status["stages"]["tok"]["phase"] == "Skipped"
    assert "kept no training documents" in status["message"]  # the run's log, naming the cause


def test_a_source_matching_no_file_is_refused_before_anything_starts(api, tmp_path):
    missing = {"name": "data", "kind": "data", "data": {"sources": [{"type": "jsonl", "path": str(tmp_path / "no")}]}}
    response = api.client.post("/v1/jobs", json=job_body("missing", missing), headers=api.team)
    assert response.status_code == 422
    (problem,) = response.json()["problems"]
    assert problem["path"] == "spec.stages[0].data.sources[0].path" and "matches no file" in problem["message"]
    assert api.client.get("/v1/jobs", headers=api.team).json() == {"items": []}


@pytest.mark.parametrize("api", [{"jobs": {"status_timeout_s": 1.0}}], indirect=True)
def test_jobs_whose_store_is_dead_or_hangs_do_not_break_the_listing(api, monkeypatch):
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, "testing")  # so the reads get as far as the network
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with socket.socket() as closed, socket.socket() as silent:
        closed.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)  # accepts the connection (kernel backlog) and never answers
        stores = {"dead": closed.getsockname()[1], "hung": silent.getsockname()[1]}
        # this server's list (LLMP_ALLOW_STORAGE_ENDPOINTS) names the two stores, as an administrator would
        api.jobs.allow = AllowList(storage_endpoints=tuple(f"http://127.0.0.1:{port}" for port in stores.values()))
        for name, port in stores.items():
            storage = {"uri": f"s3://bucket/team/{name}", "endpoint_url": f"http://127.0.0.1:{port}"}
            response = api.client.post("/v1/jobs", json=job_body(name, storage=storage), headers=api.team)
            assert response.status_code == 201, response.text
        assert api.client.post("/v1/jobs", json=job_body("fine"), headers=api.team).status_code == 201
        for _ in range(2):
            started = time.monotonic()
            response = api.client.get("/v1/jobs", headers=api.team)
            assert response.status_code == 200 and time.monotonic() - started < 10
            items = {j["metadata"]["name"]: j["status"] for j in response.json()["items"]}
            assert "artifact store" not in items["fine"].get("message", "")
            assert items["fine"]["stages"]["data"]["phase"] in ("Pending", "Running", "Succeeded")
            for name in stores:
                assert "cannot read the artifact store" in items[name]["message"], items[name]
            assert "no answer within 1 s" in items["hung"]["message"]
        assert api.client.get("/v1/jobs/hung", headers=api.team).status_code == 200


def test_the_servers_own_s3_credentials_go_only_to_listed_endpoints(api, monkeypatch):
    """A local run sends this machine's AWS credentials to the job's storage endpoint: one not on the list
    (LLMP_ALLOW_STORAGE_ENDPOINTS, the operator's; empty here) is refused at submit, with the field and the fix, and
    nothing is queued, started or read; so is a store under another namespace's prefix (LLMP_ALLOW_STORAGE_PREFIXES).
    A listening socket on loopback stands in for the attacker's server."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "server-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "server-secret")
    with socket.socket() as attacker:
        attacker.bind(("127.0.0.1", 0))
        attacker.listen(8)
        storage = {"uri": "s3://bucket/team/x", "endpoint_url": f"http://127.0.0.1:{attacker.getsockname()[1]}"}
        response = api.client.post("/v1/jobs", json=job_body("exfil", storage=storage), headers=api.team)
        assert response.status_code == 422, response.text
        (problem,) = response.json()["problems"]
        assert problem["path"] == "spec.storage.endpoint_url" and "(allowed: none)" in problem["message"]
        assert "LLMP_ALLOW_STORAGE_ENDPOINTS" in problem["hint"]
        theirs = {"uri": "s3://bucket/other/x"}  # the site's own endpoint, another namespace's prefix
        response = api.client.post("/v1/jobs", json=job_body("theirs", storage=theirs), headers=api.team)
        (problem,) = response.json()["problems"]
        assert response.status_code == 422 and problem["path"] == "spec.storage.uri", response.text
        assert "(allowed: s3://*/team)" in problem["message"] and "LLMP_ALLOW_STORAGE_PREFIXES" in problem["hint"]
        assert api.client.get("/v1/jobs", headers=api.team).json() == {"items": []}
        attacker.settimeout(0.2)
        with pytest.raises(TimeoutError):
            attacker.accept()  # nobody connected


@pytest.mark.parametrize("api", [{"jobs": {"max_running": 1}}], indirect=True)
def test_a_queued_job_whose_endpoint_is_no_longer_listed_fails_without_starting(api, tmp_path, s3_env):
    """The list may narrow while a job waits (a server restarted with another LLMP_ALLOW_STORAGE_ENDPOINTS keeps its
    queue): the job is checked again before it starts and before its store is read."""
    first = api.client.post("/v1/jobs", json=blocked_job("first", tmp_path / "pipe"), headers=api.team)
    assert first.status_code == 201, first.text
    api.jobs.allow = AllowList(storage_endpoints=(s3_env,))
    storage = {"uri": "s3://bucket/team/later", "endpoint_url": s3_env}
    queued = api.client.post("/v1/jobs", json=job_body("later", storage=storage), headers=api.team)
    assert queued.status_code == 201, queued.text
    api.jobs.allow = AllowList()
    assert api.client.delete("/v1/jobs/first", headers=api.team).status_code == 204  # frees the slot
    wait_for(lambda: phase(api.client, api.team, "later") == "Failed", "the queued job to fail")
    message = api.client.get("/v1/jobs/later", headers=api.team).json()["status"]["message"]
    store_read, run_log = message.split("\n", 1)
    refusal = f"PermissionError: spec.storage.endpoint_url: storage endpoint '{s3_env}' is not one this site allows"
    assert store_read.startswith(f"cannot read the artifact store: {refusal}")
    assert run_log.startswith(refusal) and "LLMP_ALLOW_STORAGE_ENDPOINTS" in run_log
    assert not (api.jobs.folder("team", "later") / "job.yaml").exists()  # `llmp run` never started


def test_job_status_from_state_exit_code_and_committed_stages():
    from llm_platform.services.local_jobs import job_status

    stages = [("data", []), ("tok", ["data"]), ("train", ["tok"]), ("eval", ["train"])]
    done = {"data": {"version": "v1"}}
    status = job_status("ended", 1, stages, done, set())
    assert status.phase == "Failed"
    assert [status.stages[s].phase for s, _ in stages] == ["Succeeded", "Failed", "Skipped", "Skipped"]
    assert status.stages["data"].version == "v1"
    running = job_status("running", None, stages, done, {"tok"}).stages
    assert [running[s].phase for s, _ in stages] == ["Succeeded", "Running", "Pending", "Pending"]
    assert job_status("queued", None, stages, {}, set(), queued_ahead=3).message == "queued: 3 job(s) ahead"
    everything = {s: {"version": "v"} for s, _ in stages}
    assert job_status("ended", None, stages, everything, set()).phase == "Succeeded"  # ended while we were down
    assert job_status("ended", None, stages, done, set()).phase == "Failed"


def test_a_diverged_run_is_listed_with_its_nan_metrics_as_strings(api, tmp_path):
    from llm_platform.storage import ArtifactStore

    assert api.client.post("/v1/jobs", json=job_body("nan"), headers=api.team).status_code == 201
    wait_for(lambda: phase(api.client, api.team, "nan") == "Succeeded", "the job to succeed", timeout=120)
    store = ArtifactStore.open(str(api.jobs.root / "team" / "nan" / "artifacts"))
    manifest = store.manifest("data")
    manifest.meta["metrics"] |= {"loss_end": float("nan"), "grad_norm": [1.0, float("inf")]}
    store.backend.put_bytes("data/manifest.json", manifest.to_json())  # as a trainer writing a NaN loss would
    response = api.client.get("/v1/jobs", headers=api.team)
    assert response.status_code == 200
    metrics = response.json()["items"][0]["status"]["stages"]["data"]["metrics"]
    assert metrics["loss_end"] == "nan" and metrics["grad_norm"] == [1.0, "inf"]


def test_a_job_whose_stored_spec_no_longer_loads_is_listed_with_the_reason(api, tmp_path):
    for name in ("old", "new"):
        response = api.client.post("/v1/jobs", json=blocked_job(name, tmp_path / "pipe"), headers=api.team)
        assert response.status_code == 201
    api.jobs.table._db.execute("UPDATE jobs SET spec = 'kind: [' WHERE name = 'old'")  # as an older version wrote it
    api.jobs._specs.clear()
    response = api.client.get("/v1/jobs", headers=api.team)
    assert response.status_code == 200
    items = {j["metadata"]["name"]: j["status"] for j in response.json()["items"]}
    assert items["old"]["phase"] == "Running" and "cannot report this job's status" in items["old"]["message"]
    assert items["new"]["phase"] == "Running" and "message" not in items["new"]
    assert api.client.get("/v1/jobs/old/logs?stage=data", headers=api.team).status_code == 200  # its log is still there
    assert api.client.delete("/v1/jobs/old", headers=api.team).status_code == 204
