"""The Kubernetes API edge: get, list, create, patch and delete objects as plain dicts.

Built on the official client's DynamicClient (discovery finds each kind's path, and tells us clearly when a CRD
such as KubeRay's RayJob is not installed). Everything else in the operator works on dicts and never sees a client.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Any

from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import ConflictError, NotFoundError, ResourceNotFoundError

MERGE_PATCH = "application/merge-patch+json"
REQUEST_TIMEOUT_S = 30
MISSING_KIND_RECHECK_S = 60.0
USER_AGENT = "llm-platform-operator"


class KindNotServed(RuntimeError):
    """The cluster does not serve a kind the job needs (its CRD is not installed)."""


def load_configuration(kubeconfig: str | None = None, context: str | None = None) -> k8s_client.Configuration:
    """In a pod: the service account. Elsewhere: the kubeconfig file (or $KUBECONFIG, ~/.kube/config)."""
    configuration = k8s_client.Configuration()
    if kubeconfig is None and context is None:
        try:
            k8s_config.load_incluster_config(client_configuration=configuration)
            return configuration
        except k8s_config.ConfigException:
            pass
    k8s_config.load_kube_config(config_file=kubeconfig, context=context, client_configuration=configuration)
    return configuration


@dataclass(frozen=True)
class ObjectRef:
    api_version: str
    kind: str
    namespace: str | None
    name: str

    @classmethod
    def of(cls, obj: dict[str, Any]) -> ObjectRef:
        meta = obj["metadata"]
        return cls(obj["apiVersion"], obj["kind"], meta.get("namespace"), meta["name"])


class Kube:
    """A thread-safe, synchronous API client (kopf runs our sync handlers in its thread pool)."""

    def __init__(self, configuration: k8s_client.Configuration, user_agent: str = USER_AGENT):
        self.configuration = configuration
        self._api = k8s_client.ApiClient(configuration)
        self._api.user_agent = user_agent
        self._dynamic: DynamicClient | None = None
        self._lock = threading.Lock()
        self._missing: dict[tuple[str, str], float] = {}
        self._discovery_dir = tempfile.TemporaryDirectory(prefix="llmp-discovery-")  # this process's own cache

    def _resource(self, api_version: str, kind: str):
        """The kind's API resource. A kind the cluster does not serve is remembered as missing for a while: every
        miss makes the client rediscover the whole API, which must not happen on every reconcile."""
        key = (api_version, kind)
        with self._lock:
            missing_since = self._missing.get(key)
            if missing_since is None or time.monotonic() - missing_since > MISSING_KIND_RECHECK_S:
                if self._dynamic is None:
                    cache = os.path.join(self._discovery_dir.name, "discovery.json")
                    self._dynamic = DynamicClient(self._api, cache_file=cache)
                try:
                    resource = self._dynamic.resources.get(api_version=api_version, kind=kind)
                except ResourceNotFoundError:
                    self._missing[key] = time.monotonic()
                else:
                    self._missing.pop(key, None)
                    return resource
        raise KindNotServed(
            f"the cluster does not serve {api_version} {kind}; install its CRD "
            f"({_INSTALL_HINTS.get(kind, 'see docs/operator.md')})"
        )

    def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        try:
            found = self._resource(api_version, kind).get(
                name=name, namespace=namespace, _request_timeout=REQUEST_TIMEOUT_S
            )
        except NotFoundError:
            return None
        return found.to_dict()

    def list(
        self, api_version: str, kind: str, namespace: str | None, labels: dict[str, str] | None = None
    ) -> list[dict[str, Any]]:
        """Objects of a kind, filtered by labels on the server and again here (some API emulators ignore
        selectors)."""
        selector = ",".join(f"{k}={v}" for k, v in (labels or {}).items()) or None
        found = self._resource(api_version, kind).get(
            namespace=namespace, label_selector=selector, _request_timeout=REQUEST_TIMEOUT_S
        )
        items = [item.to_dict() for item in (found.items or [])]
        for item in items:  # list responses carry the kind on the list, not on each item
            item.setdefault("apiVersion", api_version)
            item.setdefault("kind", kind)
        wanted = (labels or {}).items()
        return [i for i in items if wanted <= ((i.get("metadata") or {}).get("labels") or {}).items()]

    def create(self, obj: dict[str, Any]) -> bool:
        """Create `obj`; False (and no error) if an object of that name already exists: creating is idempotent."""
        ref = ObjectRef.of(obj)
        try:
            self._resource(ref.api_version, ref.kind).create(
                body=obj, namespace=ref.namespace, _request_timeout=REQUEST_TIMEOUT_S
            )
        except ConflictError:
            return False
        return True

    def patch(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        name: str,
        patch: dict[str, Any],
        subresource: str | None = None,
    ) -> dict[str, Any] | None:
        """A JSON merge patch (of the status subresource with `subresource='status'`); None if the object is gone."""
        resource = self._resource(api_version, kind)
        target = getattr(resource, subresource) if subresource else resource
        try:
            result = target.patch(
                body=patch,
                name=name,
                namespace=namespace,
                content_type=MERGE_PATCH,
                _request_timeout=REQUEST_TIMEOUT_S,
            )
        except NotFoundError:
            return None
        return result.to_dict()

    def delete(self, api_version: str, kind: str, namespace: str | None, name: str) -> bool:
        """Delete in the foreground: the object stays (terminating) until its dependents, e.g. its pods, are gone, so
        a retry's pods never overlap the failed attempt's, and a deleted job's finalizer waits for every pod.
        False if it was already gone."""
        try:
            self._resource(api_version, kind).delete(
                name=name,
                namespace=namespace,
                propagation_policy="Foreground",
                _request_timeout=REQUEST_TIMEOUT_S,
            )
        except NotFoundError:
            return False
        return True


_INSTALL_HINTS = {
    "PyTorchJob": "Kubeflow training-operator v1: kubectl apply --server-side -k "
    "'github.com/kubeflow/training-operator.git/manifests/overlays/standalone?ref=v1.9.0'",
    "RayJob": "KubeRay: helm install kuberay-operator kuberay/kuberay-operator",
}
