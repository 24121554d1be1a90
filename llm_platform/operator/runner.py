"""Running the operator: kopf settings, the API client, metrics, the webhook server, peering; `llmp operator`.

One replica runs at a time: kopf's peering makes a second (e.g. during a rolling update) pause until the first is
gone, and every reconcile is idempotent, so a restart anywhere is harmless.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

import kopf

from llm_platform.api.crd import GROUP, PLURAL
from llm_platform.observability.operator import OperatorMetrics

from .artifacts import ArtifactProbe
from .handlers import HandlerSettings, build_registry
from .kube import Kube, load_configuration
from .reconcile import Reconciler
from .webhook import ServiceWebhookServer

FINALIZER = f"{GROUP}/finalizer"
KOPF_STATE_PREFIX = f"kopf.{GROUP}"
WEBHOOK_CONFIGURATION = f"{PLURAL}.{GROUP}"


@dataclass(frozen=True)
class OperatorConfig:
    handlers: HandlerSettings = field(default_factory=HandlerSettings)
    namespaces: tuple[str, ...] = ()  # empty: every namespace
    peering: str | None = "llm-platform"  # None: standalone (no peering objects needed; one operator only!)
    metrics_port: int | None = 9090
    liveness_port: int | None = 8080
    webhook_port: int | None = None  # None: no admission webhook
    webhook_service: str | None = None  # "name.namespace" of the Service in front of the operator
    webhook_cert: str | None = None  # with webhook_key: a mounted certificate (e.g. cert-manager); else self-signed
    webhook_key: str | None = None
    webhook_insecure: bool = False  # plain HTTP: only for tests and local tunnels, the API server refuses it
    read_artifacts: bool = True
    kubeconfig: str | None = None
    context: str | None = None
    scanning: bool = True  # watch for CRDs appearing later (e.g. KubeRay installed after the operator)
    kopf_events: bool = True  # let kopf post handler errors as events (it names them with generateName)


def operator_settings(config: OperatorConfig) -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    # Our CRD's status schema is structural: the API server prunes kopf's `status.kopf`, so kopf keeps its own
    # bookkeeping in annotations; the finalizer carries our group's name.
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=KOPF_STATE_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=KOPF_STATE_PREFIX)
    settings.posting.enabled = config.kopf_events
    settings.posting.level = logging.WARNING
    settings.scanning.disabled = not config.scanning
    # On deletion kopf stops the job's resync timer before releasing the finalizer. A timer in the middle of a
    # (synchronous, uncancellable) reconcile gets a moment to finish, then is polled often: the default poll of 60 s
    # would hold a deleted job that long.
    settings.background.instant_exit_timeout = 2.0
    settings.background.cancellation_polling = 2.0
    if config.webhook_port is not None:
        settings.admission.server = _webhook_server(config)
        settings.admission.managed = WEBHOOK_CONFIGURATION
    return settings


def _webhook_server(config: OperatorConfig) -> ServiceWebhookServer:
    name, _, namespace = (config.webhook_service or "").partition(".")
    host = f"{name}.{namespace}.svc" if name and namespace else None
    sans = [name, f"{name}.{namespace}", f"{name}.{namespace}.svc.cluster.local"] if host else []
    return ServiceWebhookServer(
        addr="0.0.0.0" if not config.webhook_insecure else "127.0.0.1",
        port=config.webhook_port or None,
        host=host,
        extra_sans=sans,
        certfile=config.webhook_cert,
        pkeyfile=config.webhook_key,
        insecure=config.webhook_insecure,
        service_name=name or None,
        service_namespace=namespace or None,
    )


def build_reconciler(config: OperatorConfig, configuration=None) -> Reconciler:
    kube = Kube(configuration or load_configuration(config.kubeconfig, config.context))
    return Reconciler(kube, config.handlers.render, ArtifactProbe(enabled=config.read_artifacts), OperatorMetrics())


async def run(
    config: OperatorConfig,
    *,
    configuration=None,
    reconciler: Reconciler | None = None,
    stop_flag: asyncio.Event | None = None,
    ready_flag: asyncio.Event | None = None,
) -> None:
    """The operator as a coroutine (for `llmp operator`, and for tests that run it next to an API emulator, with
    their own client `configuration` or `reconciler`). The flags may be asyncio or threading events."""
    handlers = HandlerSettings(
        render=config.handlers.render,
        resync_seconds=config.handlers.resync_seconds,
        retry_delay_seconds=config.handlers.retry_delay_seconds,
        webhook=config.webhook_port is not None,
    )
    reconciler = reconciler or build_reconciler(config, configuration)
    if config.metrics_port is not None:
        reconciler.metrics.serve(config.metrics_port)
    await kopf.operator(
        registry=build_registry(handlers),
        settings=operator_settings(config),
        memo=kopf.Memo(reconciler=reconciler),
        standalone=config.peering is None,
        peering_name=config.peering,
        clusterwide=not config.namespaces,
        namespaces=list(config.namespaces),
        liveness_endpoint=f"http://0.0.0.0:{config.liveness_port}/healthz" if config.liveness_port else None,
        stop_flag=stop_flag,
        ready_flag=ready_flag,
    )


def run_operator(config: OperatorConfig) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(run(config))
