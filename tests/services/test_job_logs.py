"""`GET .../jobs/{name}/logs` over HTTP (real uvicorn on 127.0.0.1) on both backends: the local one reads the job's
real `llmp run` log; the cluster one reads the job's pods' logs through the Kubernetes API (kmock's emulator, playing
the kubelet). `follow=true` streams while the job runs and ends with it; `stage` and `tail` select lines."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import anyio
import httpx
import pytest

from llm_platform.operator.kube import Kube
from llm_platform.operator.options import options_from_env
from llm_platform.services.backend import LogQuery
from llm_platform.services.cluster_jobs import USER_AGENT, ClusterJobs
from llm_platform.services.jobs_api import create_app
from llm_platform.services.local_logs import log_lines
from llm_platform.services.tokens import TokenFile
from llm_platform.storage import ArtifactStore
from llm_platform.trainer.stages.console_log import ConsoleLog
from llm_platform.trainer.stages.progress import StageReporter
from tests.operator.cluster import LLMJOB, Cluster
from tests.operator.helpers import DATA, TOKENIZER, job_dict

from .server import add_token, auth, blocked_job, job_body, serving, wait_for

TOKENIZE_DATA = {"name": "data", "kind": "data", "data": {"sources": [{"type": "stdlib", "include": "token*.py"}]}}
TOKENIZE = {"name": "tok", "kind": "tokenizer", "needs": ["data"], "tokenizer": {"vocab_size": 300}}


def test_following_a_local_job_streams_its_log_until_it_ends(api):
    response = api.client.post("/v1/jobs", json=job_body("follow", TOKENIZE_DATA, TOKENIZE), headers=api.team)
    assert response.status_code == 201
    arrivals: list[tuple[str, str]] = []  # (line, the job's state in the table when it arrived)
    with api.client.stream("GET", "/v1/jobs/follow/logs?follow=true", headers=api.read_only, timeout=120) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
        for line in response.iter_lines():
            arrivals.append((line, api.jobs.table.get("team", "follow").state))
    lines = [line for line, _ in arrivals]
    assert lines[1] == "▶  data (data)" and any(line.startswith("✓  tok in") for line in lines)
    assert "Summary" in "\n".join(lines)  # the run's last words came too
    first_state = dict(arrivals)["▶  data (data)"]
    assert first_state == "running", "the first stage's line came only after the run had ended: not streamed"
    assert api.jobs.table.get("team", "follow").state == "ended"

    stages = api.client.get("/v1/jobs/follow", headers=api.team).json()["status"]["stages"]
    assert stages["tok"]["phase"] == "Succeeded" and stages["tok"]["finished"]  # from the stage's progress file
    assert all(path.startswith(str(api.jobs.root)) for path in stages["tok"]["artifacts"].values()), stages["tok"]
    tok = api.client.get("/v1/jobs/follow/logs", params={"stage": "tok"}, headers=api.team).text.splitlines()
    assert tok[0] == "▶  tok (tokenizer)" and tok[-1].startswith("✓  tok in") and "data:" not in "\n".join(tok)
    whole = api.client.get("/v1/namespaces/team/jobs/follow/logs", headers=api.team).text.splitlines()
    assert whole == lines
    assert api.client.get("/v1/jobs/follow/logs?tail=2", headers=api.team).text.splitlines() == lines[-2:]
    followed_stage = api.client.get("/v1/jobs/follow/logs?stage=data&follow=true", headers=api.team, timeout=10)
    assert followed_stage.text.splitlines()[-1].startswith("✓  data in"), "an ended stage's follow must end at once"


@pytest.mark.parametrize("api", [{"settings": {"max_follows": 1}}], indirect=True)
def test_followers_past_the_limit_get_429_and_a_place_frees_when_one_leaves(api, tmp_path):
    assert api.client.post("/v1/jobs", json=blocked_job("busy", tmp_path / "pipe"), headers=api.team).status_code == 201
    url = "/v1/jobs/busy/logs?follow=true"

    def status_of_a_follow() -> int:
        response = api.client.send(api.client.build_request("GET", url, headers=api.read_only), stream=True)
        response.close()  # a follower that leaves at once
        return response.status_code

    with api.client.stream("GET", url, headers=api.read_only) as first:
        assert first.status_code == 200
        wait_for(lambda: status_of_a_follow() == 429, "a second follower's 429 (the first counts once it streams)")
        second = api.client.get(url, headers=api.read_only)
        assert second.status_code == 429 and second.headers["retry-after"] == "30", second.text
        assert "follow=true" in second.json()["error"]
        assert api.client.get("/v1/jobs/busy/logs", headers=api.read_only).status_code == 200  # no follow: no limit
    wait_for(lambda: status_of_a_follow() == 200, "the first follower's place to free once it left", timeout=30)


def test_a_failed_local_stage_is_failed_with_its_error_and_its_log(api, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "hello"}\nnot json at all\n')
    data = {"name": "data", "kind": "data", "data": {"sources": [{"type": "jsonl", "path": str(bad)}]}}
    assert api.client.post("/v1/jobs", json=job_body("broken", data, TOKENIZE), headers=api.team).status_code == 201
    status = wait_for(
        lambda: (s := api.client.get("/v1/jobs/broken", headers=api.team).json()["status"])["phase"] == "Failed" and s,
        "the job to fail",
        timeout=120,
    )
    assert status["stages"]["data"]["phase"] == "Failed"
    assert status["stages"]["data"]["message"] == f"{bad}:2: not valid JSON (Expecting value)"
    assert status["stages"]["tok"]["phase"] == "Skipped"
    log = api.client.get("/v1/jobs/broken/logs?stage=data", headers=api.team).text
    assert "not valid JSON" in log and log.splitlines()[-1].startswith("✗  data failed")


def test_bad_log_queries_are_refused_with_what_to_do(api, tmp_path):
    assert api.client.post("/v1/jobs", json=job_body("q"), headers=api.team).status_code == 201
    response = api.client.get("/v1/jobs/q/logs?stage=eval", headers=api.team)
    assert response.status_code == 404 and response.json() == {
        "error": "job 'q' has no stage 'eval'; its stages are: data"
    }
    for query in ("tail=-1", "tail=many", "stage=Bad_Name", "tails=3", "follow=perhaps"):
        response = api.client.get(f"/v1/jobs/q/logs?{query}", headers=api.team)
        assert response.status_code == 422 and response.json()["problems"], query
    assert api.client.get("/v1/jobs/nope/logs", headers=api.team).status_code == 404


# -- the cluster backend: pods' logs through the Kubernetes API ------------------------------------------------------
def pod(name: str, stage: str, created: str) -> dict:
    """A pod as a stage's workload controller creates it (training operator, Job controller, KubeRay)."""
    labels = {"llmplatform.dev/job": "demo", "llmplatform.dev/stage": stage}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "team", "labels": labels,
            "creationTimestamp": created}, "status": {"phase": "Running"}}  # fmt: skip


@pytest.fixture
def on_cluster(tmp_path):
    cluster = Cluster()
    tokens = tmp_path / "tokens.json"
    headers = auth(add_token(tokens, "team"))
    jobs = ClusterJobs(Kube(cluster.configuration, user_agent=USER_AGENT), "team")
    try:
        with serving(create_app(jobs, TokenFile(tokens))) as url, httpx.Client(base_url=url, headers=headers) as c:
            yield cluster, c
    finally:
        cluster.close()


def test_cluster_logs_come_from_the_jobs_pods_stage_by_stage(on_cluster):
    cluster, client = on_cluster
    body = job_dict(DATA, TOKENIZER)
    del body["metadata"]["namespace"]
    assert client.post("/v1/jobs", json=body).status_code == 201
    assert client.get("/v1/jobs/demo/logs").text == ""  # nothing started yet
    for name, stage in (("demo-tok-0", "tok"), ("demo-data-0", "data"), ("demo-data-1", "data")):
        cluster.kube.create(pod(name, stage, "2026-01-01T00:00:00Z"))
    cluster.kube.create({**pod("other-data-0", "data", "2026-01-01T00:00:00Z"), "metadata": {
        "name": "other-data-0", "namespace": "team", "labels": {"llmplatform.dev/job": "other"}}})  # fmt: skip
    cluster.server.write_log("team", "demo-data-0", "reading sources\n1000 documents\n")
    cluster.server.write_log("team", "demo-data-1", "shard 1\n")
    cluster.server.write_log("team", "demo-tok-0", "training BPE\n")
    cluster.server.write_log("team", "other-data-0", "not this job's\n")

    assert client.get("/v1/jobs/demo/logs").text.splitlines() == [
        "[demo-data-0] reading sources", "[demo-data-0] 1000 documents", "[demo-data-1] shard 1",
        "[demo-tok-0] training BPE"]  # fmt: skip
    assert client.get("/v1/jobs/demo/logs?stage=tok").text == "training BPE\n"
    assert client.get("/v1/jobs/demo/logs?stage=data&tail=1").text.splitlines() == [
        "[demo-data-0] 1000 documents", "[demo-data-1] shard 1"]  # fmt: skip
    response = client.get("/v1/jobs/demo/logs?stage=serve")
    assert response.status_code == 404 and "its stages are: data, tok" in response.json()["error"]


def follow_in_background(client: httpx.Client, url: str) -> tuple[threading.Thread, list[str]]:
    """A thread following `url`, and the list its lines land in as they come."""
    lines: list[str] = []

    def follow() -> None:
        with client.stream("GET", url, timeout=60) as response:
            lines.extend(response.iter_lines())

    reader = threading.Thread(target=follow)
    reader.start()
    return reader, lines


def test_following_a_cluster_job_streams_every_pod_at_once_until_the_job_ends(on_cluster):
    cluster, client = on_cluster
    body = job_dict(DATA)
    del body["metadata"]["namespace"]
    assert client.post("/v1/jobs", json=body).status_code == 201
    for rank in (0, 1):  # two ranks of one stage, logging side by side
        cluster.kube.create(pod(f"demo-data-{rank}", "data", "2026-01-01T00:00:00Z"))
    cluster.server.write_log("team", "demo-data-0", "rank 0 step 1\n")
    reader, lines = follow_in_background(client, "/v1/jobs/demo/logs?follow=true")
    wait_for(lambda: lines, "the first line", timeout=30)
    cluster.server.write_log("team", "demo-data-1", "rank 1 step 1\n")
    wait_for(lambda: "[demo-data-1] rank 1 step 1" in lines, "rank 1's line while rank 0 still runs", timeout=30)
    cluster.server.write_log("team", "demo-data-0", "rank 0 step 2\n")
    wait_for(lambda: len(lines) == 3, "the line written while following", timeout=30)
    assert reader.is_alive(), "the stream ended while the pods were still running"
    for rank in (0, 1):
        cluster.kube.patch("v1", "Pod", "team", f"demo-data-{rank}", {"status": {"phase": "Succeeded"}}, "status")
    cluster.kube.patch(*LLMJOB, "team", "demo", {"status": {"phase": "Succeeded"}}, "status")  # as the operator would
    reader.join(30)
    assert not reader.is_alive(), "the stream did not end with the job"
    assert lines == ["[demo-data-0] rank 0 step 1", "[demo-data-1] rank 1 step 1", "[demo-data-0] rank 0 step 2"]


def submit_with_one_pod(cluster, client) -> None:
    """The job `demo` submitted through the API, its data stage in one pod that has printed `step 1`."""
    body = job_dict(DATA)
    del body["metadata"]["namespace"]
    assert client.post("/v1/jobs", json=body).status_code == 201
    cluster.kube.create(pod("demo-data-0", "data", "2026-01-01T00:00:00Z"))
    cluster.server.write_log("team", "demo-data-0", "step 1\n")


def test_following_an_ended_job_ends_although_a_silent_pod_still_runs(on_cluster):
    """A pod that outlives its job (a serving stage's) and prints nothing: the stream ends a poll after the job."""
    cluster, client = on_cluster
    submit_with_one_pod(cluster, client)
    reader, lines = follow_in_background(client, "/v1/jobs/demo/logs?follow=true")
    wait_for(lambda: lines, "the first line", timeout=30)
    cluster.kube.patch(*LLMJOB, "team", "demo", {"status": {"phase": "Succeeded"}}, "status")  # the pod runs on
    reader.join(30)
    assert not reader.is_alive(), "the stream did not end with the job while a silent pod still runs"
    assert lines == ["[demo-data-0] step 1"]


def test_a_client_that_stops_following_a_silent_pod_frees_the_servers_threads(on_cluster):
    """A serving pod runs on and prints nothing: once the client leaves, the pod's log stream and the thread that
    waits on it end within a poll or two (else each abandoned follow would hold a worker thread for good)."""
    cluster, client = on_cluster
    submit_with_one_pod(cluster, client)
    with client.stream("GET", "/v1/jobs/demo/logs?follow=true", timeout=30) as response:
        assert next(response.iter_lines()) == "[demo-data-0] step 1"
    pumps = lambda: [t for t in threading.enumerate() if t.name == "llmp-log-demo-data-0"]  # noqa: E731
    wait_for(lambda: not pumps(), "the pod's log stream to close after the client left", timeout=15)


# -- the cluster backend: a stage whose pods are gone, from its console in the store ---------------------------------
WRITTEN = [f"step {i:02d} loss {3.0 - i / 10:.2f}" for i in range(30)]  # 18 bytes a line: rotated at 100 bytes


def mirror_a_console(store: ArtifactStore, stage: str, folder: Path) -> list[str]:
    """What a stage's pod does: its output through the real ConsoleLog (rotating at 200 bytes, so into console.1.log
    and console.log) and mirrored into the store by the real StageReporter. Returns what the two files hold, in
    order, as lines."""
    reporter = StageReporter(store, stage, every_s=3600)
    with ConsoleLog(folder, max_bytes=200, fds=(1,)) as log:
        reporter.watch(log.path)
        reporter.watch(log.previous, listed=False)
        reporter.start()
        for line in WRITTEN:
            os.write(1, f"{line}\n".encode())  # through the real descriptor, as the stage prints
        log.stop()
    reporter.finish("Succeeded")
    assert log.previous.exists(), "the console did not rotate: the test would not read console.1.log"
    return (log.previous.read_text() + log.path.read_text()).splitlines()


@pytest.fixture
def store_on_cluster(tmp_path, s3_bucket, s3_server):
    """The cluster backend (serving `team`) whose operator lists moto's endpoint as a storage endpoint; yields the
    cluster, an HTTP client and a job body whose store is a bucket there."""
    cluster = Cluster()
    tokens = tmp_path / "tokens.json"
    options = options_from_env({"LLMP_ALLOW_STORAGE_ENDPOINTS": s3_server})
    jobs = ClusterJobs(Kube(cluster.configuration, user_agent=USER_AGENT), "team", options)
    body = job_dict(DATA, TOKENIZER, storage={"uri": f"s3://{s3_bucket}/team/demo", "endpoint_url": s3_server})
    del body["metadata"]["namespace"]
    try:
        with (
            serving(create_app(jobs, TokenFile(tokens))) as url,
            httpx.Client(base_url=url, headers=auth(add_token(tokens, "team"))) as c,
        ):
            yield cluster, c, body
    finally:
        cluster.close()


def test_a_stage_whose_pods_are_gone_is_shown_from_its_console_in_the_store(store_on_cluster, tmp_path):
    cluster, client, body = store_on_cluster
    assert client.post("/v1/jobs", json=body).status_code == 201
    store = ArtifactStore.open(body["spec"]["storage"]["uri"], body["spec"]["storage"]["endpoint_url"])
    printed = mirror_a_console(store, "data", tmp_path / "console")
    # the data stage ended and its pods were deleted; the tokenizer runs in one pod
    cluster.kube.patch(*LLMJOB, "team", "demo", {"status": {"stages": {"data": {"phase": "Succeeded"}, "tok": {
        "phase": "Running"}}}}, "status")  # fmt: skip
    cluster.kube.create(pod("demo-tok-0", "tok", "2026-01-01T00:00:00Z"))
    cluster.server.write_log("team", "demo-tok-0", "training BPE\n")
    where = f"{store.uri}/data/live/console.log"

    lines = client.get("/v1/jobs/demo/logs").text.splitlines()
    assert lines[0] == f"(stage data: no pod left; its console as mirrored to the store, {where}:)"
    assert lines[1:-1] == [f"[store:data] {line}" for line in printed]
    assert lines[-1] == "training BPE"  # the pod's log, as before
    assert printed[-5:] == WRITTEN[-5:] and len(printed) > 5
    tail = client.get("/v1/jobs/demo/logs", params={"stage": "data", "tail": 3}).text.splitlines()
    assert tail == [lines[0], *(f"[store:data] {line}" for line in WRITTEN[-3:])]
    assert client.get("/v1/jobs/demo/logs?stage=data&tail=0").text.splitlines() == [lines[0]]

    followed = client.get("/v1/jobs/demo/logs?stage=data&follow=true&tail=2", timeout=30).text.splitlines()
    assert followed == [lines[0], *(f"[store:data] {line}" for line in WRITTEN[-2:])]  # and ends: the stage has


def test_a_stage_whose_pods_logs_cannot_be_read_is_shown_from_the_store(store_on_cluster, tmp_path):
    cluster, client, body = store_on_cluster
    assert client.post("/v1/jobs", json=body).status_code == 201
    store = ArtifactStore.open(body["spec"]["storage"]["uri"], body["spec"]["storage"]["endpoint_url"])
    mirror_a_console(store, "data", tmp_path / "console")
    cluster.kube.create(pod("demo-data-0", "data", "2026-01-01T00:00:00Z"))
    cluster.server.lose_node_of("team", "demo-data-0")

    lines = client.get("/v1/jobs/demo/logs?stage=data&tail=1").text.splitlines()
    assert lines[0].startswith("(no log from pod demo-data-0: Get ") and "no route to host" in lines[0]
    where = f"{store.uri}/data/live/console.log"
    assert lines[1:] == [
        f"(stage data: no pod log can be read; its console as mirrored to the store, {where}:)",
        f"[store:data] {WRITTEN[-1]}",
    ]


def test_a_store_the_allow_list_refuses_is_not_opened_and_a_broken_one_is_an_answer_not_an_error(store_on_cluster):
    """A job admitted before its endpoint left the operator's list (created directly, as the webhook then let it):
    the API sends its own credentials nowhere the list does not name, and says so. A listed store that cannot be
    read is one line, with a 200."""
    cluster, client, body = store_on_cluster
    listed = body["spec"]["storage"]["endpoint_url"]

    def admitted(storage: dict, phases: dict) -> None:
        """The job as it was admitted, its stages ended in `phases`, their pods gone."""
        cluster.kube.delete(*LLMJOB, "team", "demo")
        job = {**body, "metadata": {"name": "demo", "namespace": "team"}, "spec": {**body["spec"], "storage": storage}}
        cluster.kube.create(job)
        stages = {stage: {"phase": phase} for stage, phase in phases.items()}
        cluster.kube.patch(*LLMJOB, "team", "demo", {"status": {"stages": stages}}, "status")

    with socket.socket() as listener:  # an endpoint that records whether anything connects
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        refused = f"http://127.0.0.1:{listener.getsockname()[1]}"
        admitted({**body["spec"]["storage"], "endpoint_url": refused}, {"data": "Failed", "tok": "Skipped"})
        response = client.get("/v1/jobs/demo/logs")
        assert response.status_code == 200
        (line,) = response.text.splitlines()
        assert line.startswith(
            "(stage data: no pod left; its console in the store is not read: spec.storage.endpoint_url: storage "
            f"endpoint '{refused}' is not one this site allows (allowed: {listed}); "
        )
        assert "--allow-storage-endpoint" in line and line.endswith(")")
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody connected

    # another namespace's store, which holds a console: the API's own credentials do not open it for 'team'
    theirs = body["spec"]["storage"]["uri"].replace("/team/", "/other/")
    ArtifactStore.open(theirs, listed).backend.put_bytes("data/live/console.log", b"their secret run\n")
    admitted({"uri": theirs, "endpoint_url": listed}, {"data": "Succeeded", "tok": "Skipped"})
    (line,) = client.get("/v1/jobs/demo/logs").text.splitlines()
    assert line.startswith(
        f"(stage data: no pod left; its console in the store is not read: spec.storage.uri: store '{theirs}' is not "
        "under a prefix this site allows (allowed: s3://*/team); "
    )

    missing = f"s3://{body['spec']['storage']['uri'][5:].split('/')[0]}-gone/team/demo"  # a bucket that is not there
    admitted({"uri": missing, "endpoint_url": listed}, {"data": "Succeeded", "tok": "Failed"})
    response = client.get("/v1/jobs/demo/logs")
    assert response.status_code == 200
    data, tok = response.text.splitlines()
    assert data.startswith(f"(stage data: no pod left; its console {missing}/data/live/console.log cannot be read: ")
    assert tok.startswith(f"(stage tok: no pod left; its console {missing}/tok/live/console.log cannot be read: ")
    assert "NoSuchBucket" in data and "NoSuchBucket" in tok


def test_tail_counts_a_running_logs_unfinished_last_line(tmp_path):
    log = tmp_path / "run.log"
    log.write_text("a\nb\nc")  # the run is writing `c`

    async def read(query: LogQuery) -> list[str]:
        return [line async for line in log_lines(log, query, lambda: True, 0.01)]

    assert anyio.run(read, LogQuery(tail=1)) == ["c\n"]
    assert anyio.run(read, LogQuery(tail=2)) == ["b\n", "c\n"]
    assert anyio.run(read, LogQuery()) == ["a\n", "b\n", "c\n"]
    assert anyio.run(read, LogQuery(tail=0)) == []
