"""End-to-end harness: an API emulator, the real operator (kopf, our handlers, our client) in a thread, and helpers
that play the engines' controllers (flip a child's status the way the training operator or KubeRay would)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from llm_platform.operator.artifacts import ArtifactProbe
from llm_platform.operator.handlers import HandlerSettings
from llm_platform.operator.kube import Kube
from llm_platform.operator.options import AllowList, RenderOptions
from llm_platform.operator.reconcile import Reconciler
from llm_platform.operator.runner import OperatorConfig, run

from .emulator import EmulatorThread

LLMJOB = ("llmplatform.dev/v1alpha1", "LLMJob")
API_VERSIONS = {"PyTorchJob": "kubeflow.org/v1", "RayJob": "ray.io/v1", "Job": "batch/v1", "Deployment": "apps/v1"}
# the operator's configuration in these tests: its defaults, plus the claim the file:// storage tests mount
OPTIONS = RenderOptions(allow=AllowList(claims=("shared",)))


def fast_config(**overrides: Any) -> OperatorConfig:
    """Fast intervals, no peering, no servers, no kopf-posted events (kopf names them with generateName, which the
    emulator does not implement)."""
    values = dict(
        handlers=HandlerSettings(render=OPTIONS, resync_seconds=1.0, retry_delay_seconds=0.3),
        peering=None,
        metrics_port=None,
        liveness_port=None,
        scanning=False,
        kopf_events=False,
        read_artifacts=False,
    )
    values.update(overrides)
    return OperatorConfig(**values)


class OperatorThread:
    """The operator in its own thread and event loop. `stop()` cancels it, as a killed pod would be: kopf's graceful
    exit waits a fixed 5 s for stragglers, which would dominate these tests' run time."""

    def __init__(self, config: OperatorConfig, configuration: client.Configuration, reconciler: Reconciler | None):
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None
        self.errors: list[BaseException] = []

        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._task = asyncio.current_task()
            await run(config, configuration=configuration, reconciler=reconciler, ready_flag=self._ready)

        def thread() -> None:
            try:
                asyncio.run(main())
            except asyncio.CancelledError:
                pass
            except BaseException as e:
                self.errors.append(e)

        self._thread = threading.Thread(target=thread, daemon=True)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def start(self) -> OperatorThread:
        self._thread.start()
        if not self._ready.wait(15):
            raise RuntimeError(f"the operator did not start: {self.errors}")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._task is not None:
            self._loop.call_soon_threadsafe(self._task.cancel)
        self._thread.join(15)
        assert not self._thread.is_alive(), "the operator did not stop"
        assert not self.errors, self.errors


class Cluster:
    """The emulated API server, a client acting as the user and the engines, and the operator(s) under test."""

    def __init__(self) -> None:
        self.server = EmulatorThread().start()
        self.configuration = client.Configuration()
        self.configuration.host = self.server.url
        self.kube = Kube(self.configuration, user_agent="tests")
        self.operators: list[OperatorThread] = []

    def reconciler(self, read_artifacts: bool = False) -> Reconciler:
        """A reconciler to hand to `start_operator`, for tests that inspect its metrics or let it read storage."""
        return Reconciler(Kube(self.configuration), OPTIONS, ArtifactProbe(enabled=read_artifacts))

    def start_operator(self, reconciler: Reconciler | None = None, **overrides: Any) -> OperatorThread:
        operator = OperatorThread(fast_config(**overrides), self.configuration, reconciler).start()
        self.operators.append(operator)
        return operator

    def start_webhook(self, **overrides: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
        """Start an operator serving its admission webhook (plain HTTP on loopback) and return a function that posts
        an LLMJob to it in an AdmissionReview, as the API server would, and returns the review's response."""
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.webhook_port = s.getsockname()[1]
        self.start_operator(webhook_port=self.webhook_port, webhook_insecure=True, **overrides)

        def post(body: dict[str, Any]) -> dict[str, Any]:
            review = {
                "apiVersion": "admission.k8s.io/v1",
                "kind": "AdmissionReview",
                "request": {
                    "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
                    "kind": {"group": "llmplatform.dev", "version": "v1alpha1", "kind": "LLMJob"},
                    "resource": {"group": "llmplatform.dev", "version": "v1alpha1", "resource": "llmjobs"},
                    "operation": "CREATE",
                    "userInfo": {"username": "alice"},
                    "object": body,
                    "dryRun": False,
                },
            }
            url = f"http://127.0.0.1:{self.webhook_port}/validate"
            request = urllib.request.Request(url, json.dumps(review).encode(), {"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=10) as response:
                return json.load(response)["response"]

        def answers() -> bool:
            try:
                return post({}) is not None
            except OSError:
                return False

        wait_for(answers, what="the webhook to answer")
        return post

    def close(self) -> None:
        for operator in self.operators:
            if operator.alive:
                operator.stop()
        self.server.stop()

    def write_kubeconfig(self, path: Path, namespace: str | None = None) -> Path:
        """A kubeconfig pointing at the emulator, for real clients run as processes (kubectl, `llmp operator`)."""
        context = {"cluster": "emu", "user": "me", **({"namespace": namespace} if namespace else {})}
        path.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "emu", "cluster": {"server": self.server.url}}],
                    "users": [{"name": "me", "user": {}}],
                    "contexts": [{"name": "emu", "context": context}],
                    "current-context": "emu",
                }
            )
        )
        return path

    # -- the user ---------------------------------------------------------------------------------------------
    def apply(self, body: dict[str, Any]) -> None:
        assert self.kube.create(body)

    def job(self, name: str, namespace: str = "team") -> dict[str, Any] | None:
        return self.kube.get(*LLMJOB, namespace, name)

    def patch_job(self, name: str, patch: dict[str, Any], namespace: str = "team") -> None:
        self.kube.patch(*LLMJOB, namespace, name, patch)

    def delete_job(self, name: str, namespace: str = "team") -> None:
        self.kube.delete(*LLMJOB, namespace, name)

    def stage(self, job: str, stage: str) -> dict[str, Any]:
        return ((self.job(job) or {}).get("status") or {}).get("stages", {}).get(stage, {})

    def phase(self, job: str) -> str | None:
        return ((self.job(job) or {}).get("status") or {}).get("phase")

    def child(self, kind: str, name: str, namespace: str = "team") -> dict[str, Any] | None:
        return self.kube.get(API_VERSIONS[kind], kind, namespace, name)

    def events(self, namespace: str = "team") -> list[str]:
        return [e["reason"] for e in self.kube.list("v1", "Event", namespace)]

    def event_messages(self, reason: str, namespace: str = "team") -> list[str]:
        return [e["message"] for e in self.kube.list("v1", "Event", namespace) if e["reason"] == reason]

    # -- the engines ------------------------------------------------------------------------------------------
    def finish(self, kind: str, name: str, outcome: str, message: str = "", namespace: str = "team") -> None:
        """Set a child's status the way its controller reports success or failure."""
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if kind == "PyTorchJob":
            status = {"conditions": [{"type": outcome, "status": "True", "message": message}], "completionTime": now}
        elif kind == "Job":
            condition = "Complete" if outcome == "Succeeded" else "Failed"
            status = {"conditions": [{"type": condition, "status": "True", "message": message}]}
        elif kind == "RayJob":
            status = {"jobDeploymentStatus": "Complete", "jobStatus": outcome.upper(), "message": message}
        elif kind == "Deployment":
            replicas = self.child(kind, name, namespace)["spec"]["replicas"]
            status = {"conditions": [{"type": "Available", "status": "True"}], "updatedReplicas": replicas,
                      "availableReplicas": replicas}  # fmt: skip
        else:
            raise ValueError(kind)
        assert self.kube.patch(API_VERSIONS[kind], kind, namespace, name, {"status": status}, "status") is not None

    def run_child(self, kind: str, name: str, namespace: str = "team") -> None:
        status = {
            "PyTorchJob": {"conditions": [{"type": "Running", "status": "True"}]},
            "Job": {"active": 1},
            "RayJob": {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"},
        }[kind]
        self.kube.patch(API_VERSIONS[kind], kind, namespace, name, {"status": status}, "status")

    # -- what the operator did --------------------------------------------------------------------------------
    def operator_requests(self) -> list:
        return [r for r in self.server.requests() if r.headers.get("User-Agent", "") != "tests"]

    def creations_of(self, name: str) -> int:
        return sum(
            1
            for r in self.operator_requests()
            if r.method == "POST" and (r.data or {}).get("metadata", {}).get("name") == name
        )


def wait_for(condition: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll until `condition` holds. The timeout is generous because CI shares 2 cores; a pass returns at once."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def stays(condition: Callable[[], Any], seconds: float = 1.5) -> bool:
    """True if `condition` holds for `seconds` (for "nothing happens" checks, longer than a resync)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not condition():
            return False
        time.sleep(0.05)
    return True
