"""The kopf handlers: thin triggers around `Reconciler`, the finalizer, and the admission webhook.

Handlers are registered in a registry built per operator (`build_registry`), not in kopf's global one, so the
intervals can come from flags and tests can run several operators in one process.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import kopf

from llm_platform.api.crd import GROUP, PLURAL, VERSION

from .admission import admission_problems
from .naming import JOB_LABEL
from .options import RenderOptions
from .reconcile import CleanupFailed, ReconcileError, StillDeleting
from .render import WORKLOAD_KINDS

log = logging.getLogger(__name__)
LLMJOBS = (GROUP, VERSION, PLURAL)


@dataclass(frozen=True)
class HandlerSettings:
    render: RenderOptions = field(default_factory=RenderOptions)
    resync_seconds: float = 60.0
    retry_delay_seconds: float = 10.0
    webhook: bool = False


def build_registry(config: HandlerSettings) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def login(memo: kopf.Memo, **_) -> kopf.ConnectionInfo:
        """kopf talks to the same API server, with the same credentials, as our own client."""
        return connection_info(memo.reconciler.kube.configuration)

    @kopf.on.resume(*LLMJOBS, registry=registry)
    @kopf.on.create(*LLMJOBS, registry=registry)
    @kopf.on.update(*LLMJOBS, registry=registry)
    def job_changed(namespace: str, name: str, memo: kopf.Memo, **_) -> None:
        """Created, changed, or found at operator start-up: reconcile."""
        try:
            memo.reconciler.reconcile(namespace, name)
        except ReconcileError as e:
            raise kopf.TemporaryError(str(e), delay=config.retry_delay_seconds) from e

    @kopf.timer(*LLMJOBS, interval=config.resync_seconds, initial_delay=config.resync_seconds, registry=registry)
    def resync(namespace: str, name: str, memo: kopf.Memo, **_) -> None:
        """A safety net for anything a missed watch event would leave waiting."""
        memo.reconciler.reconcile(namespace, name)

    for kind, (api_version, plural) in WORKLOAD_KINDS.items():
        group, _, version = api_version.rpartition("/")

        @kopf.on.event(group, version, plural, labels={JOB_LABEL: kopf.PRESENT}, id=f"child-{kind}", registry=registry)
        def child_changed(body: kopf.Body, namespace: str, memo: kopf.Memo, **_) -> None:
            """A child's state changed (or it was deleted): its job may move on."""
            job = body.metadata.labels[JOB_LABEL]
            try:
                memo.reconciler.reconcile(namespace, job)
            except Exception as e:  # event handlers are not retried; the resync timer picks it up
                log.warning("reconcile of %s/%s after a %s event failed: %s", namespace, job, body.get("kind"), e)

    @kopf.on.delete(*LLMJOBS, registry=registry)
    def job_deleted(body: kopf.Body, memo: kopf.Memo, **_) -> None:
        """The finalizer: children first (waiting until they are gone), then artifacts if spec.cleanup says so."""
        try:
            memo.reconciler.finalize(dict(body))
        except (StillDeleting, CleanupFailed) as e:
            raise kopf.TemporaryError(str(e), delay=config.retry_delay_seconds) from e

    if config.webhook:

        @kopf.on.validate(*LLMJOBS, id="validate", operations=["CREATE", "UPDATE"], registry=registry)
        def validate(body: kopf.Body, old: kopf.Body | None, **_) -> None:
            problems = admission_problems(dict(body), dict(old) if old is not None else None, config.render)
            if problems:
                raise kopf.AdmissionError(problems, code=422)

    return registry


def connection_info(configuration) -> kopf.ConnectionInfo:
    """kopf's credentials from a `kubernetes.client.Configuration` (loaded in-cluster or from a kubeconfig)."""
    header = configuration.get_api_key_with_prefix("BearerToken") or configuration.get_api_key_with_prefix(
        "authorization"
    )
    scheme, _, token = (header or "").rpartition(" ")
    return kopf.ConnectionInfo(
        server=configuration.host,
        ca_path=configuration.ssl_ca_cert,
        insecure=not configuration.verify_ssl,
        username=configuration.username or None,
        password=configuration.password or None,
        scheme=scheme or None,
        token=token or None,
        certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file,
    )
