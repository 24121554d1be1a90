"""The cluster backend of the jobs API: a submitted LLMJob becomes an LLMJob object in one namespace, and the operator
runs it; reads return the object as stored, with the status the operator writes.

The API refuses what the admission webhook would refuse (the same `render_problems`), so a client gets a 422 naming
the problem whether or not the webhook is installed. It serves the one namespace its Role is bound in: a caller's
token must be for that namespace (the API answers 403 otherwise, before anything reaches the cluster).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kubernetes.client.exceptions import ApiException

from llm_platform.api import KIND, LLMJob, Problem
from llm_platform.operator.kube import Kube
from llm_platform.operator.naming import LLMJOB_API_VERSION
from llm_platform.operator.options import RenderOptions
from llm_platform.operator.render import render_problems
from llm_platform.trainer.stages.preflight import PreflightError

from .backend import JobExists, JobNotFound

USER_AGENT = "llm-platform-api"
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
        self.options = options or RenderOptions()

    def serves(self, namespace: str) -> str | None:
        if namespace != self.namespace:
            return f"this API serves namespace '{self.namespace}'; a token for '{namespace}' has no access here"
        return None

    def submit(self, namespace: str, job: LLMJob) -> dict[str, Any]:
        """Create the LLMJob object; PreflightError if the cluster could not run it, JobExists if the name is taken."""
        self._check(namespace)
        problems = render_problems(job, self.options)
        if problems:
            raise PreflightError([Problem.from_text(p) for p in problems])
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

    def _check(self, namespace: str) -> None:
        """The API checks `serves` first; this keeps a wrong call from reaching another namespace even so."""
        if namespace != self.namespace:
            raise JobNotFound(namespace)


def _reason(error: ApiException) -> str:
    """The API server's message (a Status object in the body), else its reason phrase."""
    try:
        return json.loads(error.body)["message"]
    except (TypeError, ValueError, KeyError):
        return f"{error.status} {error.reason}"
