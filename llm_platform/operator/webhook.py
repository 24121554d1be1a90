"""The admission webhook's HTTPS server, reached by the API server through the operator's Service.

kopf serves the webhook and keeps the ValidatingWebhookConfiguration up to date; this server differs from kopf's
stock one in two ways: it hands the API server a Service reference (the API server usually cannot resolve cluster
DNS names in a URL), and it makes its self-signed certificate with `cryptography` instead of kopf's optional
`certbuilder`. With `certfile`/`pkeyfile` (e.g. from cert-manager) no certificate is generated.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import AsyncIterator, Collection

import kopf


class ServiceWebhookServer(kopf.WebhookServer):
    def __init__(self, *, service_name: str | None = None, service_namespace: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.service_name = service_name
        self.service_namespace = service_namespace

    async def __call__(self, fn) -> AsyncIterator[dict]:
        async for config in super().__call__(fn):
            if self.service_name and self.service_namespace:
                service = {
                    "name": self.service_name,
                    "namespace": self.service_namespace,
                    "port": self.port,
                    "path": (self.path or "").rstrip("/"),
                }
                config = {"service": service, **({"caBundle": config["caBundle"]} if "caBundle" in config else {})}
            yield config

    @staticmethod
    def build_certificate(hostnames: Collection[str], password: str | None = None) -> tuple[bytes, bytes]:
        return self_signed_certificate(list(hostnames), password)


def self_signed_certificate(hostnames: list[str], password: str | None = None) -> tuple[bytes, bytes]:
    """(certificate PEM, private key PEM): a self-signed CA certificate valid for the given names and IPs, which is
    also the CA bundle the API server verifies the webhook with."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ips, names = [], []
    for host in dict.fromkeys(hostnames):
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            names.append(host)
            continue
        if not ip.is_unspecified:
            ips.append(ip)
    common_name = names[0] if names else str(ips[0])
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    san = [x509.DNSName(n) for n in names] + [x509.IPAddress(ip) for ip in ips]
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    encryption = serialization.BestAvailableEncryption(password.encode()) if password else serialization.NoEncryption()
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    return cert.public_bytes(serialization.Encoding.PEM), key_pem
