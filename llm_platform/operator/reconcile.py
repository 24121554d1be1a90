"""One reconcile of one LLMJob: read it and its children, plan, apply the plan, write status and events.

Every trigger (the job created, changed or resumed after an operator restart, a child's status changing, the
periodic resync) calls the same `Reconciler.reconcile`, which reads everything fresh; so it does not matter which
trigger fired, how often, or whether the operator restarted in between.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from datetime import UTC, datetime
from typing import Any

from kubernetes.client.exceptions import ApiException

from llm_platform.api import KIND, JobStatus, LLMJob, SpecError, parse_job
from llm_platform.api.conditions import job_conditions
from llm_platform.api.errors import Problem
from llm_platform.observability.operator import OperatorMetrics

from .artifacts import ArtifactProbe
from .children import ChildState, child_state, suspend_patch
from .kube import KindNotServed, Kube
from .naming import (
    JOB_LABEL,
    LLMJOB_API_VERSION,
    MANAGED_BY,
    RERUN_ANNOTATION,
    STAGE_LABEL,
    child_name,
    rerun_requests,
)
from .options import RenderOptions, job_options, namespace_of
from .plan import TERMINAL, Event, Observed, Plan, plan
from .policy import storage_problems
from .render import (
    COMPANION_KINDS,
    WORKLOAD_KINDS,
    render_configmap,
    render_problems,
    render_service_account,
    render_stage,
    workload_kind,
)
from .render_serve import desired_replicas

log = logging.getLogger(__name__)
EVENT_MESSAGE_LIMIT = 1024


class ReconcileError(RuntimeError):
    """Some step failed (the API refused a child, a CRD is missing); status says which. Retried later."""


class StillDeleting(RuntimeError):
    """Children of a deleted job are still terminating; the finalizer waits for them."""


class CleanupFailed(RuntimeError):
    """The store refused to delete a deleted job's artifacts; tried again a few times, then given up on."""


ARTIFACT_CLEANUP_TRIES = 5  # a store we cannot delete from must not keep a deleted job around forever


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _spec_view(body: dict[str, Any]) -> dict[str, Any]:
    """The fields of an LLMJob object that the models validate (not status or what the API server adds)."""
    return {k: body[k] for k in ("apiVersion", "kind", "metadata", "spec") if k in body}


class Reconciler:
    def __init__(
        self,
        kube: Kube,
        options: RenderOptions | None = None,
        probe: ArtifactProbe | None = None,
        metrics: OperatorMetrics | None = None,
        clock=utc_now,
    ):
        self.kube = kube
        self.options = options or RenderOptions()
        self.probe = probe or ArtifactProbe(enabled=False)
        self.metrics = metrics or OperatorMetrics()
        self.clock = clock
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._cleanup_failures: dict[tuple[str, str], int] = {}
        self.instance = os.environ.get("HOSTNAME", "llm-platform-operator")

    # ---------------------------------------------------------------------------------------------- reconcile
    def reconcile(self, namespace: str, name: str) -> str | None:
        """Bring one job one step closer to done; returns its phase (None if the job is gone or being deleted)."""
        started = time.perf_counter()
        with self._lock_for(namespace, name):
            try:
                phase, result = self._reconcile(namespace, name)
            except Exception:
                self.metrics.reconciles.labels("error").inc()
                raise
            finally:
                self.metrics.duration.observe(time.perf_counter() - started)
        self.metrics.reconciles.labels(result).inc()
        return phase

    def _reconcile(self, namespace: str, name: str) -> tuple[str | None, str]:
        """(phase, result for the reconciles metric)."""
        body = self.kube.get(LLMJOB_API_VERSION, KIND, namespace, name)
        if body is None:
            self.metrics.job_phase(namespace, name, None)
            return None, "gone"
        if body["metadata"].get("deletionTimestamp"):
            return None, "deleting"
        try:
            job = parse_job(_spec_view(body))
            problems = render_problems(job, self.options)
        except SpecError as e:
            problems = e.problems
        if problems:
            self._write_invalid(body, problems)
            return "Failed", "invalid"

        namespace = namespace_of(job, self.options)
        previous = JobStatus.model_validate(body.get("status") or {})
        children = self.observe_children(job, body["metadata"].get("uid"))
        observed = Observed(
            children=children,
            artifacts=self.probe.probe(job, *self._probe_targets(job, previous, children)),
            now=self.clock(),
            rerun=tuple(rerun_requests(job.metadata.annotations)),
            queued=job_options(job).kueue_queue is not None,
            generation=body["metadata"].get("generation"),
            workload_refs={
                s.name: f"{workload_kind(s)}/{child_name(namespace, job.metadata.name, s.name)}"
                for s in job.spec.stages
            },
        )
        decided = plan(job, previous, observed)
        errors = self._apply(job, body, decided, children)
        self._write_status(body, decided.status)
        self._post(body, decided.events)
        self.metrics.job_phase(namespace, name, decided.status.phase)
        self.metrics.stage_retries.inc(sum(e.reason == "StageRetrying" for e in decided.events))
        if errors:
            raise ReconcileError("; ".join(errors))
        return decided.status.phase, "ok"

    def observe_children(self, job: LLMJob, uid: str | None) -> dict[str, ChildState]:
        """Each stage's live workload (the newest attempt if, after a spec change, there are several)."""
        namespace = namespace_of(job, self.options)
        found: dict[str, ChildState] = {}
        for kind, (api_version, _) in WORKLOAD_KINDS.items():
            try:
                objects = self.kube.list(api_version, kind, namespace, {JOB_LABEL: job.metadata.name})
            except KindNotServed:
                continue
            for obj in objects:
                if not _owned_by(obj, job.metadata.name, uid):
                    continue  # e.g. a Job KubeRay made for a RayJob carrying copied labels, or an earlier job's
                stage = obj["metadata"]["labels"].get(STAGE_LABEL)
                state = child_state(obj)
                if stage and (stage not in found or state.attempt > found[stage].attempt):
                    found[stage] = state
        return found

    @staticmethod
    def _probe_targets(
        job: LLMJob, previous: JobStatus, children: dict[str, ChildState]
    ) -> tuple[list[str], list[str]]:
        """Training stages in flight (for their checkpoint) and stages just finished (for their version)."""
        checkpoints = [
            s.name
            for s in job.spec.stages
            if s.trains
            and s.name in previous.stages
            and previous.stages[s.name].phase not in TERMINAL
            and previous.stages[s.name].attempts > 0
        ]
        versions = [
            name
            for name, child in children.items()
            if child.phase == "Succeeded" and not (previous.stages.get(name) and previous.stages[name].version)
        ]
        return checkpoints, versions

    # ---------------------------------------------------------------------------------------------- apply
    def _apply(self, job: LLMJob, body: dict[str, Any], decided: Plan, children: dict[str, ChildState]) -> list[str]:
        errors: list[str] = []
        uid = body["metadata"].get("uid")
        namespace = namespace_of(job, self.options)

        def attempt(what: str, stage: str | None, operation: str, fn) -> None:
            try:
                fn()
            except (ApiException, KindNotServed) as e:
                reason = getattr(e, "reason", None) or str(e)
                message = f"cannot {what}: {getattr(e, 'status', '')} {reason}".replace(":  ", ": ").strip()
                errors.append(message)
                self.metrics.errors.labels(operation).inc()
                log.warning("%s/%s: %s", namespace, job.metadata.name, message)
                if stage is not None and stage in decided.status.stages:
                    decided.status.stages[stage].message = message
                decided.events.append(Event("Warning", "ApiError", message))

        if decided.create:
            attempt("write the spec ConfigMap", None, "create", lambda: self._ensure_configmap(job, uid))
            attempt(
                "create the pods' ServiceAccount",
                None,
                "create",
                lambda: self._create(render_service_account(job, self.options, owner_uid=uid)),
            )
        for stage in decided.create:
            attempts = decided.status.stages[stage].attempts
            manifests = render_stage(job, stage, self.options, attempt=attempts, owner_uid=uid)
            for obj in manifests.all:
                attempt(
                    f"create {obj['kind']}/{obj['metadata']['name']}",
                    stage,
                    "create",
                    lambda obj=obj: self._create(obj),
                )
        for stage in decided.delete:
            child = children[stage]
            api_version = WORKLOAD_KINDS[child.kind][0]
            attempt(
                f"delete {child.ref}",
                stage,
                "delete",
                lambda c=child, v=api_version: self.kube.delete(v, c.kind, namespace, c.name),
            )
        for stage, suspend in decided.suspend.items():
            child = children[stage]
            replicas = desired_replicas(job.spec.stage(stage)) if child.kind == "Deployment" else 1
            patch = suspend_patch(child.kind, suspend, replicas)
            api_version = WORKLOAD_KINDS[child.kind][0]
            attempt(
                f"{'suspend' if suspend else 'resume'} {child.ref}",
                stage,
                "patch",
                lambda c=child, v=api_version, p=patch: self.kube.patch(v, c.kind, namespace, c.name, p),
            )
        if decided.clear_rerun:
            patch = {"metadata": {"annotations": {RERUN_ANNOTATION: None}}}
            attempt(
                "clear the rerun annotation",
                None,
                "patch",
                lambda: self.kube.patch(LLMJOB_API_VERSION, KIND, namespace, job.metadata.name, patch),
            )
        return errors

    def _create(self, obj: dict[str, Any]) -> None:
        if self.kube.create(obj):
            self.metrics.children_created.labels(obj["kind"]).inc()

    def _ensure_configmap(self, job: LLMJob, uid: str | None) -> None:
        """The spec file pods run from: created with the first child, updated when the spec changes (so retries and
        later stages run the current spec; running pods keep the file they started with)."""
        wanted = render_configmap(job, self.options, owner_uid=uid)
        meta = wanted["metadata"]
        current = self.kube.get("v1", "ConfigMap", meta["namespace"], meta["name"])
        if current is None:
            self._create(wanted)
        elif current.get("data") != wanted["data"]:
            self.kube.patch("v1", "ConfigMap", meta["namespace"], meta["name"], {"data": wanted["data"]})

    # ---------------------------------------------------------------------------------------------- status, events
    def _write_status(self, body: dict[str, Any], status: JobStatus) -> None:
        """Merge-patch `/status` with the new status in camelCase; keys the new one lacks (stages removed from the
        spec, snake_case keys an older operator wrote) are deleted, so nothing stale stays for tools to read."""
        new = status.model_dump(mode="json", by_alias=True)
        old = body.get("status") or {}
        if _without_none(new) == _without_none({k: old.get(k) for k in new}) and old.keys() <= new.keys():
            return
        removed = {name: None for name in (old.get("stages") or {}) if name not in new["stages"]}
        stale = {key: None for key in old if key not in new}
        patch = {"status": {**stale, **new, "stages": {**new["stages"], **removed}}}
        meta = body["metadata"]
        try:
            self.kube.patch(LLMJOB_API_VERSION, KIND, meta.get("namespace"), meta["name"], patch, "status")
        except ApiException:
            self.metrics.errors.labels("status").inc()
            raise

    def _write_invalid(self, body: dict[str, Any], problems: list[Problem]) -> None:
        """A spec that passed no admission webhook (or a cluster it cannot run on): say why in status, once."""
        message = "\n".join(map(str, problems))
        old = JobStatus.model_validate(body.get("status") or {})
        generation = body["metadata"].get("generation")
        ready = old.condition("Ready")
        if old.phase == "Failed" and old.message == message and ready and ready.reason == "InvalidSpec":
            return
        conditions = job_conditions(old.conditions, "Failed", message, self.clock(), generation, "InvalidSpec")
        status = old.model_copy(
            update={"phase": "Failed", "message": message, "conditions": conditions, "observed_generation": generation}
        )
        self._write_status(body, status)
        self._post(body, [Event("Warning", "InvalidSpec", message)])
        meta = body["metadata"]
        self.metrics.job_phase(meta.get("namespace"), meta["name"], "Failed")

    def _post(self, body: dict[str, Any], events: list[Event]) -> None:
        """Post core/v1 Events on the LLMJob (what `kubectl describe llmjob` shows). Best effort."""
        meta = body["metadata"]
        now = self.clock()
        for event in events:
            obj = {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": f"{meta['name']}.{secrets.token_hex(8)}", "namespace": meta.get("namespace")},
                "involvedObject": {
                    "apiVersion": LLMJOB_API_VERSION,
                    "kind": KIND,
                    "name": meta["name"],
                    "namespace": meta.get("namespace"),
                    "uid": meta.get("uid"),
                },
                "type": event.type,
                "reason": event.reason,
                "message": event.message[:EVENT_MESSAGE_LIMIT],
                "source": {"component": MANAGED_BY},
                "reportingComponent": MANAGED_BY,
                "reportingInstance": self.instance,
                "firstTimestamp": now,
                "lastTimestamp": now,
                "count": 1,
            }
            try:
                self.kube.create(obj)
            except (ApiException, KindNotServed) as e:
                self.metrics.errors.labels("event").inc()
                log.info("cannot post event %s on %s: %s", event.reason, meta["name"], e)

    # ---------------------------------------------------------------------------------------------- deletion
    def finalize(self, body: dict[str, Any]) -> None:
        """Delete every child of a deleted job; raise StillDeleting until they are all gone. Then, only if
        spec.cleanup is 'delete', the job's stored artifacts (raising CleanupFailed while the store refuses, up to
        ARTIFACT_CLEANUP_TRIES times; then the artifacts are kept and a warning event says so)."""
        meta = body["metadata"]
        namespace, name = meta.get("namespace"), meta["name"]
        with self._lock_for(namespace, name):
            remaining = 0
            kinds = {**WORKLOAD_KINDS, **COMPANION_KINDS}
            for kind, (api_version, _) in kinds.items():
                try:
                    objects = self.kube.list(api_version, kind, namespace, {JOB_LABEL: name})
                except KindNotServed:
                    continue
                for obj in (o for o in objects if _owned_by(o, name, meta.get("uid"))):
                    if not obj["metadata"].get("deletionTimestamp"):
                        self.kube.delete(api_version, kind, namespace, obj["metadata"]["name"])
                    if self.kube.get(api_version, kind, namespace, obj["metadata"]["name"]) is not None:
                        remaining += 1
            if remaining:
                raise StillDeleting(f"{remaining} child object(s) of {name} still terminating")
            if (body.get("spec") or {}).get("cleanup") == "delete":
                self._delete_artifacts(body)
            self.metrics.job_phase(namespace, name, None)
        with self._locks_guard:
            self._locks.pop((namespace, name), None)
            self._cleanup_failures.pop((namespace, name), None)

    def _delete_artifacts(self, body: dict[str, Any]) -> None:
        key = (body["metadata"].get("namespace"), body["metadata"]["name"])
        try:
            job = parse_job(_spec_view(body))
            # the operator's own credentials go to the job's endpoint and prefix: never to ones its configuration does
            # not allow (a job refused at admission or reconcile can still be deleted, spec.cleanup and all)
            if refused := storage_problems(job, self.options.allow, namespace_of(job, self.options)):
                self._post(body, [Event("Warning", "CleanupRefused", f"the artifacts are kept: {refused[0]}")])
                return
            self.probe.delete_stage_artifacts(job)
        except Exception as e:  # SpecError, storage errors: all mean "could not delete"
            self.metrics.errors.labels("cleanup").inc()
            with self._locks_guard:
                failures = self._cleanup_failures[key] = self._cleanup_failures.get(key, 0) + 1
            if failures < ARTIFACT_CLEANUP_TRIES:
                raise CleanupFailed(f"cannot delete the artifacts of {key[1]} (try {failures}): {e}") from e
            message = f"gave up deleting the artifacts after {failures} tries; they are kept: {e}"
            self._post(body, [Event("Warning", "CleanupFailed", message)])

    def _lock_for(self, namespace: str, name: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault((namespace, name), threading.Lock())


def _owned_by(obj: dict[str, Any], job_name: str, uid: str | None) -> bool:
    """Controlled by this very LLMJob (not merely labelled with its name, nor left by a deleted namesake)."""
    owners = obj["metadata"].get("ownerReferences") or []
    return any(
        o.get("kind") == KIND and o.get("name") == job_name and (uid is None or o.get("uid") == uid) for o in owners
    )


def _without_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_none(v) for v in value]
    return value
