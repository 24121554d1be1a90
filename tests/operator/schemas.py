"""Validators for rendered manifests: the upstream CRD schemas (../shared/schemas/crds) for Kubeflow and KubeRay
kinds, kubernetes-validate for built-in kinds."""

from __future__ import annotations

import functools
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

from tests.conftest import shared_path

KUBERNETES_VERSION = "1.30.0"  # the oldest release the manifests target; its schemas are a subset of newer ones
CRD_FILES = {
    ("kubeflow.org/v1", "PyTorchJob"): "kubeflow.org_pytorchjobs.yaml",
    ("ray.io/v1", "RayJob"): "ray.io_rayjobs.yaml",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "monitoring.coreos.com_servicemonitors.yaml",
}


@functools.cache
def _crd_validator(api_version: str, kind: str) -> jsonschema.Draft4Validator:
    text = shared_path("schemas", "crds", CRD_FILES[(api_version, kind)]).read_text()
    crd = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # libyaml: the CRDs are ~1 MB
    version = api_version.rsplit("/", 1)[1]
    served = next(v for v in crd["spec"]["versions"] if v["name"] == version and v["served"])
    # OpenAPI v3.0 schemas are JSON Schema draft 4 with extensions (x-kubernetes-*, nullable) a validator ignores
    return jsonschema.Draft4Validator(served["schema"]["openAPIV3Schema"])


def schema_errors(doc: dict[str, Any], extra_crds: dict | None = None) -> list[str]:
    """Every schema violation of one manifest ([] when valid)."""
    key = (doc["apiVersion"], doc["kind"])
    if extra_crds and key in extra_crds:
        validator = jsonschema.Draft4Validator(extra_crds[key])
    elif key in CRD_FILES:
        validator = _crd_validator(*key)
    else:
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            return [f"{doc['kind']}/{doc['metadata']['name']}: {e.message} at {list(e.path)}"]
        return []
    return [
        f"{doc['kind']}/{doc['metadata']['name']}: {e.message} at {list(e.path)}" for e in validator.iter_errors(doc)
    ]
