"""A Kubernetes API emulator for operator tests: kmock's KubernetesEmulator, run on a loopback port in its own thread,
with the gaps that matter to an operator filled in so that tests catch what a real API server would refuse.

Filled in here: `resourceVersion`, `uid`, `generation` and `creationTimestamp` on writes (kopf's JSON patches test
the resourceVersion) and 422 for a failed JSON-patch test; `apiVersion` and `kind` on created objects; the status
subresource (a write to the object ignores `status`, a write to `/status` changes only `status`); `kind` on list
responses; pod logs (`pods/NAME/log` with `tailLines`, and `follow=true` streamed until the pod's phase is Succeeded or
Failed) from what a test writes as the kubelet would (`EmulatorThread.write_log`). Not emulated (left to
`make e2e-kind`): admission, schema validation, garbage collection, optimistic concurrency, label selectors (the
operator filters labels itself as well).
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import uuid
from datetime import UTC, datetime
from typing import Any

import aiohttp.web
import jsonpatch
import kmock

# (group/version/plural, kind, namespaced, has a status subresource)
RESOURCES = [
    ("v1/namespaces", "Namespace", False, False),
    ("v1/events", "Event", True, False),
    ("v1/configmaps", "ConfigMap", True, False),
    ("v1/services", "Service", True, False),
    ("v1/serviceaccounts", "ServiceAccount", True, False),
    ("v1/pods", "Pod", True, True),
    ("apiextensions.k8s.io/v1/customresourcedefinitions", "CustomResourceDefinition", False, False),
    ("admissionregistration.k8s.io/v1/validatingwebhookconfigurations", "ValidatingWebhookConfiguration", False, False),
    ("llmplatform.dev/v1alpha1/llmjobs", "LLMJob", True, True),
    ("kubeflow.org/v1/pytorchjobs", "PyTorchJob", True, True),
    ("ray.io/v1/rayjobs", "RayJob", True, True),
    ("batch/v1/jobs", "Job", True, True),
    ("apps/v1/deployments", "Deployment", True, True),
    ("autoscaling/v2/horizontalpodautoscalers", "HorizontalPodAutoscaler", True, True),
]
VERBS = {"get", "list", "watch", "create", "patch", "delete"}


POD_DONE = ("Succeeded", "Failed")


class StrictEmulator(kmock.KubernetesEmulator):
    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.pod_logs: dict[tuple[str, str], str] = {}  # what each pod's container wrote, as the kubelet keeps it
        self.lost_nodes: set[tuple[str, str]] = set()  # pods whose node is gone: their log cannot be read
        self._versions = itertools.count(1)
        self._kinds: dict[Any, str] = {}
        self._with_status: set[Any] = set()
        for path, kind, namespaced, status in RESOURCES:
            subresources = ({"status"} if status else set()) | ({"log"} if kind == "Pod" else set())
            self.resources[path] = kmock.ResourceInfo(
                kind=kind, namespaced=namespaced, verbs=VERBS, subresources=subresources
            )
            resource = kmock.resource(path)
            self._kinds[resource] = kind
            if status:
                self._with_status.add(resource)

    async def _handle(self, request):
        if request.subresource == "log" and self._kinds.get(request.resource) == "Pod":
            return await self._serve_pod_log(request)
        if request.resource is not None and request.action is not None:
            self._stamp(request)
        try:
            return await super()._handle(request)
        except (jsonpatch.JsonPatchTestFailed, jsonpatch.JsonPatchConflict) as e:
            # the API server answers a failed JSON-patch `test` (an outdated resourceVersion) with 422
            raise kmock.KubernetesError(status=422, reason="Invalid", message=str(e)) from None

    def _stamp(self, request) -> None:
        action = request.action.name if hasattr(request.action, "name") else str(request.action)
        data = request.data
        version = str(next(self._versions))
        status_sub = request.subresource == "status"
        has_status = request.resource in self._with_status
        if action == "CREATE" and isinstance(data, dict):
            group, api = request.resource.group, request.resource.version
            data.setdefault("apiVersion", f"{group}/{api}" if group else api)
            data.setdefault("kind", self._kinds.get(request.resource))
            meta = data.setdefault("metadata", {})
            meta.update(
                resourceVersion=version,
                uid=str(uuid.uuid4()),
                generation=1,
                creationTimestamp=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            )
            if has_status:
                data.pop("status", None)
        elif action == "UPDATE" and isinstance(data, dict):
            if status_sub:
                for key in [k for k in data if k != "status"]:
                    del data[key]
            elif has_status:
                data.pop("status", None)
            if "spec" in data and not status_sub:
                current = self._current(request)
                data.setdefault("metadata", {})["generation"] = (current or {}).get("metadata", {}).get(
                    "generation", 1
                ) + 1
            data.setdefault("metadata", {})["resourceVersion"] = version
        elif action == "UPDATE" and isinstance(data, list):
            keep = [
                op
                for op in data
                if (op.get("path", "").startswith("/status") == status_sub) or not has_status or op["op"] == "test"
            ]
            data[:] = keep + [{"op": "add", "path": "/metadata/resourceVersion", "value": version}]

    async def _serve_pod_log(self, request) -> aiohttp.web.StreamResponse:
        """`GET .../pods/NAME/log` as the API server relays it from the kubelet: the container's output as text
        (`tailLines`), and with `follow=true` a chunked stream of what it writes next, until the pod has ended."""
        key = (request.namespace, request.name)
        if self._current(request) is None:
            raise kmock.KubernetesError(status=404, reason="NotFound", message=f'pods "{request.name}" not found')
        if key in self.lost_nodes:  # what the API server answers when it cannot reach the pod's kubelet
            message = f'Get "https://10.0.0.7:10250/containerLogs/{request.namespace}/{request.name}": dial tcp ' + (
                "10.0.0.7:10250: connect: no route to host"
            )
            raise kmock.KubernetesError(status=500, reason="InternalError", message=message)
        params = request.params
        response = aiohttp.web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(request._raw_request)
        text = self.pod_logs.get(key, "")
        if "tailLines" in params:
            text = "".join(
                text.splitlines(keepends=True)[-int(params["tailLines"]) :] if int(params["tailLines"]) else []
            )
        await response.write(text.encode())
        sent = len(self.pod_logs.get(key, ""))
        while params.get("follow") == "true":
            pod = self._current(request)
            done = pod is None or (pod.get("status") or {}).get("phase") in POD_DONE
            now = self.pod_logs.get(key, "")
            if len(now) > sent:
                await response.write(now[sent:].encode())
                sent = len(now)
            if done:
                break
            await asyncio.sleep(0.05)
        await response.write_eof()
        return response

    def _current(self, request) -> dict | None:
        key = (request.resource, request.namespace, request.name)
        if key in self.objects and not self.objects[key].deleted:
            return self.objects[key].raw
        return None

    async def _serve_list(self, request):
        payload = await super()._serve_list(request)
        kind = self._kinds.get(request.resource)
        if kind is not None:
            group, version = request.resource.group, request.resource.version
            payload = {"apiVersion": f"{group}/{version}" if group else version, "kind": f"{kind}List", **payload}
        return payload


class EmulatorThread:
    """The emulator served on 127.0.0.1 from a background thread, so tests stay synchronous."""

    def __init__(self) -> None:
        self._ready = threading.Event()
        self._stopped: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.url = ""
        self.emulator: StrictEmulator | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True)

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        async with StrictEmulator() as emulator, kmock.Server(emulator) as server:
            self.emulator = emulator
            self.url = str(server.url).rstrip("/")
            self._ready.set()
            await self._stopped.wait()

    def start(self) -> EmulatorThread:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the Kubernetes API emulator did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stopped is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
        self._thread.join(10)

    def write_log(self, namespace: str, pod: str, text: str) -> None:
        """What a pod's container writes (the kubelet's part)."""
        assert self._loop is not None and self.emulator is not None
        emulator = self.emulator

        async def append() -> None:
            emulator.pod_logs[(namespace, pod)] = emulator.pod_logs.get((namespace, pod), "") + text

        asyncio.run_coroutine_threadsafe(append(), self._loop).result(5)

    def lose_node_of(self, namespace: str, pod: str) -> None:
        """The pod's node is gone: the pod object stays (until the node controller evicts it), its log is unreadable."""
        assert self._loop is not None and self.emulator is not None
        emulator = self.emulator

        async def lose() -> None:
            emulator.lost_nodes.add((namespace, pod))

        asyncio.run_coroutine_threadsafe(lose(), self._loop).result(5)

    def requests(self) -> list:
        return list(self.emulator)  # kmock handlers iterate over the requests they received
