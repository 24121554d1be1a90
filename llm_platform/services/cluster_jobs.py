"""The cluster backend of the jobs API: a submitted LLMJob becomes an LLMJob object in one namespace, and the operator
runs it; reads return the object as stored, with the status the operator writes.

The API refuses what the admission webhook would refuse (the same `render_problems`), so a client gets a 422 naming
the problem whether or not the webhook is installed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kubernetes.client.exceptions import ApiException

from llm_platform.api import LLMJob
from llm_platform.operator.kube import Kube
from llm_platform.operator.naming import LLMJOB_API_VERSION
from llm_platform.operator.options import RenderOptions
from llm_platform.operator.render import render_problems
from llm_platform.trainer.stages.preflight import PreflightError

from .local_jobs import JobExists, JobNotFound

USER_AGENT = "llm-platform-api"
KIND = "LLMJob"
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

    def submit(self, job: LLMJob) -> dict[str, Any]:
        """Create the LLMJob object; PreflightError if the cluster could not run it, JobExists if the name is taken."""
        problems = render_problems(job, self.options)
        named = "namespace" in job.metadata.model_fields_set  # else the model's default, not the client's choice
        if named and job.metadata.namespace != self.namespace:
            problems.insert(0, f"metadata.namespace: this API creates jobs in '{self.namespace}'; leave it out")
        if problems:
            raise PreflightError(problems)
        body = job.to_dict()
        body["metadata"]["namespace"] = self.namespace
        try:
            created = self.kube.create(body)
        except ApiException as e:
            if e.status in (400, 403, 422):  # refused by admission (a webhook) or the CRD's schema
                raise PreflightError([_reason(e)]) from None
            raise
        if not created:
            raise JobExists(f"job '{job.metadata.name}' exists; delete it first or choose another name")
        return self.get(job.metadata.name)

    def names(self) -> list[str]:
        return sorted(o["metadata"]["name"] for o in self.kube.list(LLMJOB_API_VERSION, KIND, self.namespace))

    def get(self, name: str) -> dict[str, Any]:
        found = self.kube.get(LLMJOB_API_VERSION, KIND, self.namespace, name)
        if found is None:
            raise JobNotFound(name)
        return found

    def delete(self, name: str) -> None:
        """Delete the object; the operator's finalizer removes its workloads first."""
        if not self.kube.delete(LLMJOB_API_VERSION, KIND, self.namespace, name):
            raise JobNotFound(name)


def _reason(error: ApiException) -> str:
    """The API server's message (a Status object in the body), else its reason phrase."""
    try:
        return json.loads(error.body)["message"]
    except (TypeError, ValueError, KeyError):
        return f"{error.status} {error.reason}"
