"""What the jobs API asks of a backend, and the errors a backend answers with (each becomes one HTTP status)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

from llm_platform.api import LLMJob


class JobExists(RuntimeError):
    """409: the name is taken in that namespace."""


class JobNotFound(KeyError):
    """404: no job of that name in that namespace."""


class StageNotFound(KeyError):
    """404: the job has no stage of that name (the message lists those it has)."""


class LogsUnavailable(RuntimeError):
    """503: the backend cannot read the logs now (the message says why and what to do)."""


@dataclass(frozen=True)
class LogQuery:
    stage: str | None = None  # only this stage's lines
    tail: int | None = None  # only the last N lines (of each pod, on a cluster)
    follow: bool = False  # keep streaming new lines until the job (or the stage) ends


class QueueFull(RuntimeError):
    """429: the backend runs and queues as many jobs as it may; the client should retry later."""


class Jobs(Protocol):
    """`LocalJobs` (runs `llmp run` here) or `ClusterJobs` (creates LLMJob objects for the operator). Every call names
    the caller's namespace, which the API has already checked against the caller's token."""

    def serves(self, namespace: str) -> str | None:
        """None if this backend keeps jobs of `namespace`, else why not (a 403 for the caller)."""

    def submit(self, namespace: str, job: LLMJob) -> dict[str, Any]: ...
    def list(self, namespace: str) -> list[dict[str, Any]]: ...
    def get(self, namespace: str, name: str) -> dict[str, Any]: ...
    def delete(self, namespace: str, name: str) -> None: ...
    def logs(self, namespace: str, name: str, query: LogQuery) -> AsyncIterator[str]:
        """The job's log lines (each ending in a newline); JobNotFound or StageNotFound before the first line."""
