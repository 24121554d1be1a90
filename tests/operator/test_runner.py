"""Operator wiring: kopf settings, credentials handed to kopf, and the webhook's certificate."""

from __future__ import annotations

import asyncio
import base64
import socket
import ssl

import kopf
from cryptography import x509
from kubernetes import client

from llm_platform.operator.handlers import connection_info
from llm_platform.operator.runner import OperatorConfig, operator_settings
from llm_platform.operator.webhook import ServiceWebhookServer, self_signed_certificate


def test_kopf_keeps_its_state_in_annotations_because_status_is_pruned():
    settings = operator_settings(OperatorConfig())
    assert settings.persistence.finalizer == "llmplatform.dev/finalizer"
    assert isinstance(settings.persistence.progress_storage, kopf.AnnotationsProgressStorage)
    assert isinstance(settings.persistence.diffbase_storage, kopf.AnnotationsDiffBaseStorage)
    assert settings.admission.server is None
    # a deleted job waits for its resync timer to stop: that must take seconds, not kopf's default minute
    assert settings.background.cancellation_polling <= 5


def test_a_webhook_port_makes_kopf_serve_and_manage_the_webhook():
    settings = operator_settings(OperatorConfig(webhook_port=9443, webhook_service="op.llm-platform"))
    assert isinstance(settings.admission.server, ServiceWebhookServer)
    assert settings.admission.server.host == "op.llm-platform.svc"
    assert settings.admission.managed == "llmjobs.llmplatform.dev"


def test_kopf_gets_the_same_server_and_token_as_our_client():
    configuration = client.Configuration()
    configuration.host = "https://10.0.0.1:6443"
    configuration.api_key = {"BearerToken": "Bearer s3cr3t"}
    configuration.ssl_ca_cert = "/var/run/ca.crt"
    info = connection_info(configuration)
    assert (info.server, info.scheme, info.token, info.ca_path) == (
        "https://10.0.0.1:6443",
        "Bearer",
        "s3cr3t",
        "/var/run/ca.crt",
    )
    assert info.insecure is False


def test_the_self_signed_certificate_covers_the_service_names_and_loads_into_tls(tmp_path):
    names = ["op.ns.svc", "0.0.0.0", "op", "op.ns.svc.cluster.local", "127.0.0.1"]
    cert_pem, key_pem = self_signed_certificate(names)
    cert = x509.load_pem_x509_certificate(cert_pem)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["op.ns.svc", "op", "op.ns.svc.cluster.local"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    (tmp_path / "c.pem").write_bytes(cert_pem)
    (tmp_path / "k.pem").write_bytes(key_pem)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "c.pem", tmp_path / "k.pem")  # raises if they do not match


def test_the_webhook_server_hands_the_api_server_a_service_and_its_own_ca():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    async def first_client_config():
        server = ServiceWebhookServer(
            addr="127.0.0.1", port=port, host="op.ns.svc", service_name="op", service_namespace="ns"
        )
        configs = server(fn=None)
        config = await configs.__anext__()
        await configs.aclose()
        return config

    config = asyncio.run(first_client_config())
    assert config["service"] == {"name": "op", "namespace": "ns", "port": port, "path": ""}
    cert = x509.load_pem_x509_certificate(base64.b64decode(config["caBundle"]))
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "op.ns.svc" in san.get_values_for_type(x509.DNSName)
