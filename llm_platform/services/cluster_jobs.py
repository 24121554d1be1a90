"""The cluster backend of the jobs API: a submitted LLMJob becomes an LLMJob object in one namespace, and the operator
runs it; reads return the object as stored, with the status the operator writes.

The API refuses what the admission webhook would refuse (the same `render_problems`), so a client gets a 422 naming
the problem whether or not the webhook is installed. It serves the one namespace its Role is bound in: a caller's
token must be for that namespace (the API answers 403 otherwise, before anything reaches the cluster).
"""

from __future__ import annotations

import dataclasses
import json
import queue
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
from botocore.config import Config
from kubernetes import client as k8s_client
from kubernetes.client.exceptions import ApiException

from llm_platform.api import KIND, LLMJob, Problem, parse_job
from llm_platform.api.status import TERMINAL
from llm_platform.operator.artifacts import job_store
from llm_platform.operator.kube import KindNotServed, Kube
from llm_platform.operator.naming import JOB_LABEL, LLMJOB_API_VERSION, STAGE_LABEL
from llm_platform.operator.options import AllowList, RenderOptions
from llm_platform.operator.render import render_problems
from llm_platform.storage import ArtifactStore
from llm_platform.trainer.stages.console_log import CONSOLE_FILE
from llm_platform.trainer.stages.inputs import S3_PATIENCE
from llm_platform.trainer.stages.preflight import PreflightError
from llm_platform.trainer.stages.progress import live_key

from .backend import JobExists, JobNotFound, LogQuery, LogsUnavailable, StageNotFound
from .stored_console import console_lines, stored_console

USER_AGENT = "llm-platform-api"
POLL_S = 2.0  # following a job: how often to look for its next stage's pods
JOB_ENDED = ("Succeeded", "Failed")
LOG_READ_TIMEOUT_S = 30
RAN = ("Running", "Succeeded", "Failed")  # a stage in these phases has started: its console may be in the store
RAN_AND_ENDED = ("Succeeded", "Failed")
NOTE_WIDTH = 1000  # of an error told in a line of the logs (a refusal's says what to do)
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def pod_namespace() -> str:
    """The namespace this pod runs in (what its service account token is for), else `default`."""
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
    except OSError:
        return "default"


class ClusterJobs:
    def __init__(self, kube: Kube, namespace: str, options: RenderOptions | None = None):
        self.kube = kube
        self.namespace = namespace
        # jobs are checked where they will run: a namespace-qualified allow-list pattern ('team/s3-*') is matched
        # against this namespace, whatever (or nothing) the submitted metadata.namespace says
        self.options = dataclasses.replace(options or RenderOptions(), namespace=namespace)
        api = k8s_client.ApiClient(kube.configuration)
        api.user_agent = USER_AGENT
        self.core = k8s_client.CoreV1Api(api)

    def serves(self, namespace: str) -> str | None:
        if namespace != self.namespace:
            return f"this API serves namespace '{self.namespace}'; a token for '{namespace}' has no access here"
        return None

    def submit(self, namespace: str, job: LLMJob) -> dict[str, Any]:
        """Create the LLMJob object; PreflightError if the cluster could not run it, JobExists if the name is taken."""
        self._check(namespace)
        problems = render_problems(job, self.options)
        if problems:
            raise PreflightError(problems)
        body = job.to_dict()
        body["metadata"]["namespace"] = self.namespace
        try:
            created = self.kube.create(body)
        except ApiException as e:
            if e.status in (400, 403, 422):  # refused by admission (a webhook) or the CRD's schema
                raise PreflightError([Problem((), _reason(e))]) from None
            raise
        if not created:
            raise JobExists(f"job '{job.metadata.name}' exists; delete it first or choose another name")
        return self.get(namespace, job.metadata.name)

    def list(self, namespace: str) -> list[dict[str, Any]]:
        self._check(namespace)
        found = self.kube.list(LLMJOB_API_VERSION, KIND, self.namespace)
        return sorted(found, key=lambda o: o["metadata"]["name"])

    def get(self, namespace: str, name: str) -> dict[str, Any]:
        self._check(namespace)
        found = self.kube.get(LLMJOB_API_VERSION, KIND, self.namespace, name)
        if found is None:
            raise JobNotFound(name)
        return found

    def delete(self, namespace: str, name: str) -> None:
        """Delete the object; the operator's finalizer removes its workloads first."""
        self._check(namespace)
        if not self.kube.delete(LLMJOB_API_VERSION, KIND, self.namespace, name):
            raise JobNotFound(name)

    def logs(self, namespace: str, name: str, query: LogQuery) -> AsyncIterator[str]:
        """The logs of the job's pods (those its stages' workloads started), stage by stage in the spec's order, each
        line after `[pod] ` when there are several pods; with `query.follow`, each pod's stream until it ends, then the
        pods of the stages that start later, until the job has ended.

        A stage that ran but has no pod left (deleted after it ended, evicted, its node lost), or none whose log can
        be read, is shown from its console in the job's store instead: a line in parentheses saying so and where,
        then the console's lines (the last `query.tail`), each after `[store:STAGE] `. While following, only the
        stages that have ended so: a running stage's pods are followed as before."""
        job = self.get(namespace, name)
        stages = [s.get("name") for s in (job.get("spec") or {}).get("stages") or []]
        if query.stage is not None and query.stage not in stages:
            raise StageNotFound(f"job '{name}' has no stage '{query.stage}'; its stages are: {', '.join(stages)}")
        pods = self._pods(name, query.stage, stages)  # LogsUnavailable now, not after the response has begun
        return _in_threads(self._lines(job, query, stages, pods))

    def _pods(self, name: str, stage: str | None, stages: list[str]) -> list[dict[str, Any]]:
        """The job's pods (of one stage), in stage order then creation order."""
        labels = {JOB_LABEL: name} | ({STAGE_LABEL: stage} if stage else {})
        try:
            pods = self.kube.list("v1", "Pod", self.namespace, labels)
        except (KindNotServed, ApiException) as e:
            why = _reason(e) if isinstance(e, ApiException) else str(e)
            raise LogsUnavailable(f"cannot list the job's pods: {why}") from None
        order = {s: i for i, s in enumerate(stages)}

        def key(pod: dict[str, Any]) -> tuple:
            meta = pod["metadata"]
            return (
                order.get(meta["labels"].get(STAGE_LABEL), len(order)),
                meta.get("creationTimestamp") or "",
                meta["name"],
            )

        return sorted(pods, key=key)

    def _lines(
        self, job: dict[str, Any], query: LogQuery, stages: list[str], pods: list[dict[str, Any]]
    ) -> Iterator[str]:
        name, consoles = job["metadata"]["name"], StoredConsoles(job, self.options.allow)
        by_stage: dict[str, list[dict[str, Any]]] = {}
        for pod in pods:
            by_stage.setdefault(pod["metadata"]["labels"].get(STAGE_LABEL), []).append(pod)
        selected = [query.stage] if query.stage is not None else stages
        if query.follow:
            for stage in selected:
                if stage not in by_stage and _stage_phase(job, stage) in RAN_AND_ENDED:
                    yield from consoles.lines(stage, query.tail, f"stage {stage}: no pod left")
            yield from self._follow(name, query, stages, pods)
            return
        for stage in dict.fromkeys([*selected, *by_stage]):
            of_stage, unread = by_stage.get(stage, []), []
            for pod in of_stage:
                prefix = f"[{pod['metadata']['name']}] " if len(pods) > 1 else ""
                for line in self._pod_log(pod["metadata"]["name"], query, [], unread):
                    yield prefix + line
            if stage not in stages:  # pods labelled with a stage the spec lacks: their logs are all there is
                continue
            if not of_stage and _stage_phase(job, stage) in RAN:
                yield from consoles.lines(stage, query.tail, f"stage {stage}: no pod left")
            elif of_stage and len(unread) == len(of_stage):
                yield from consoles.lines(stage, query.tail, f"stage {stage}: no pod log can be read")

    def _follow(self, name: str, query: LogQuery, stages: list[str], pods: list[dict[str, Any]]) -> Iterator[str]:
        """Every pod's stream at once (a training job's ranks log side by side), each line after `[pod] ` as it comes;
        the pods of stages that start later join as they appear. Ends once the job (or the stage) has ended and its
        pods' streams with it, or one poll after the job ended if a pod keeps running (a serving stage's). A poll
        without a line yields "" (`_in_threads` drops it): the worker thread returns to the event loop at least once
        a poll, so a client that left is noticed and this generator closed, even while every pod is silent."""
        lines: queue.Queue[str | None] = queue.Queue()
        streams: list[Any] = []  # the open responses: closed when the client goes away, which ends their threads
        started: set[str] = set()
        running, ended = 0, False

        def pump(pod: str) -> None:
            try:
                for line in self._pod_log(pod, query, streams):
                    lines.put(f"[{pod}] {line}")
            except Exception as e:  # a stream cut (the client left and it was closed, or the connection broke)
                lines.put(f"[{pod}] (log stream ended: {type(e).__name__})\n")
            finally:
                lines.put(None)

        try:
            while True:
                for pod in (p["metadata"]["name"] for p in pods):
                    if pod not in started:
                        started.add(pod)
                        running += 1
                        threading.Thread(target=pump, args=(pod,), name=f"llmp-log-{pod}", daemon=True).start()
                deadline = time.monotonic() + POLL_S
                while running and (left := deadline - time.monotonic()) > 0:
                    try:
                        item = lines.get(timeout=left)
                    except queue.Empty:
                        break
                    if item is None:
                        running -= 1
                    else:
                        yield item
                yield ""  # a tick: see the docstring
                if ended:
                    return
                ended = self._ended(name, query.stage)  # one GET per poll
                if ended and running == 0:
                    return
                pods = self._pods(name, query.stage, stages)
        finally:
            for response in list(streams):
                # shutdown() first: a pump thread blocked reading a silent pod's stream holds the response, and
                # close() alone would wait for that read (urllib3 2.x), so the request would never end
                response.shutdown()
                response.close()

    def _pod_log(self, pod: str, query: LogQuery, streams: list[Any], unread: list[str] | None = None) -> Iterator[str]:
        """One pod's log lines (as the API server relays them from the kubelet); a pod whose log cannot be read
        (it has not started, it is gone) says so in one line instead, and is added to `unread`. The open response
        is kept in `streams`."""
        try:
            response = self.core.read_namespaced_pod_log(
                pod, self.namespace, tail_lines=query.tail, follow=query.follow, _preload_content=False,
                _request_timeout=None if query.follow else LOG_READ_TIMEOUT_S,
            )  # fmt: skip
        except ApiException as e:
            if unread is not None:
                unread.append(pod)
            yield f"(no log from pod {pod}: {_reason(e)})\n"
            return
        streams.append(response)
        try:
            pending = b""
            for chunk in response.stream(64 << 10):
                *lines, pending = (pending + chunk).split(b"\n")
                for line in lines:
                    yield line.decode(errors="replace") + "\n"
            if pending:
                yield pending.decode(errors="replace") + "\n"
        finally:
            streams.remove(response)
            response.release_conn()

    def _ended(self, name: str, stage: str | None) -> bool:
        """The job (or the stage) has ended, or the job is gone."""
        found = self.kube.get(LLMJOB_API_VERSION, KIND, self.namespace, name)
        status = (found or {}).get("status") or {}
        if stage is not None:
            return found is None or ((status.get("stages") or {}).get(stage) or {}).get("phase") in TERMINAL
        return found is None or status.get("phase") in JOB_ENDED

    def _check(self, namespace: str) -> None:
        """The API checks `serves` first; this keeps a wrong call from reaching another namespace even so."""
        if namespace != self.namespace:
            raise JobNotFound(namespace)


class StoredConsoles:
    """The consoles of one job's stages in its store, for the logs route: the store is opened at most once per
    request, as the operator opens it and only at an endpoint and under a prefix the operator's allow-lists name for
    the job's namespace; what keeps a console from being read is said in one line instead of raised, since the
    response has begun by then."""

    def __init__(self, job: dict[str, Any], allow: AllowList):
        self.job, self.allow = job, allow
        self._store: ArtifactStore | None = None
        self._problem: str | None = None  # why the store is not opened
        self._failed: Exception | None = None  # what a read from it raised

    def lines(self, stage: str, tail: int | None, why: str) -> Iterator[str]:
        """A line saying `why` and where the console is, then its lines (the last `tail`) after `[store:STAGE] `;
        or one line saying why they cannot be shown."""
        store = self._open()
        if store is None:
            yield f"({why}; its console in the store is not read: {self._problem})\n"
            return
        where = f"{store.uri.rstrip('/')}/{live_key(stage)}/{CONSOLE_FILE}"
        try:
            if self._failed is not None:  # one unreachable store costs a request its timeout once, not per stage
                raise self._failed
            found = stored_console(store, stage)
        except Exception as e:  # noqa: BLE001  # any store failure: the answer says so rather than fail mid-response
            self._failed = e
            yield f"({why}; its console {where} cannot be read: {_short(e)})\n"
            return
        if found is None:
            yield f"({why}; the store holds no console of it at {where})\n"
            return
        yield f"({why}; its console as mirrored to the store, {where}:)\n"
        for line in console_lines(*found, tail):
            yield f"[store:{stage}] {line}"

    def _open(self) -> ArtifactStore | None:
        if self._store is None and self._problem is None:
            try:
                job = parse_job({k: self.job[k] for k in ("apiVersion", "kind", "metadata", "spec") if k in self.job})
                if job.spec.storage.uri is None:
                    raise ValueError("the job names no store (spec.storage.uri)")
                self._store = job_store(job, self.allow, Config(**S3_PATIENCE))
            except Exception as e:  # noqa: BLE001  # a refused endpoint, a spec that no longer parses, a bad URI
                self._problem = _short(e)
        return self._store


async def _in_threads(lines: Iterator[str]) -> AsyncIterator[str]:
    """`lines` read on worker threads, without the empty ticks `ClusterJobs._follow` yields; closed as soon as this
    stops (the client left), so the pods' log streams it holds are shut then, not at some later garbage collection."""
    try:
        while (line := await anyio.to_thread.run_sync(next, lines, None)) is not None:
            if line:
                yield line
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(lines.close)


def _stage_phase(job: dict[str, Any], stage: str) -> str | None:
    return (((job.get("status") or {}).get("stages") or {}).get(stage) or {}).get("phase")


def _short(error: Exception) -> str:
    """An error in one line of the logs: its message (a refusal's and a spec's are written for the reader), other
    errors after their type's name; cut to NOTE_WIDTH."""
    text = " ".join(str(error).split())
    text = text if isinstance(error, PermissionError | ValueError) else f"{type(error).__name__}: {text}"
    return text if len(text) <= NOTE_WIDTH else text[: NOTE_WIDTH - 1] + "…"


def _reason(error: ApiException) -> str:
    """The API server's message (a Status object in the body), else its reason phrase."""
    try:
        return json.loads(error.body)["message"]
    except (TypeError, ValueError, KeyError):
        return f"{error.status} {error.reason}"
