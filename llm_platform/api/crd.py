"""The LLMJob CustomResourceDefinition, generated from the pydantic models so the two can never disagree.

Kubernetes wants a *structural* OpenAPI v3 schema: every node typed, no `$ref`, no type unions, OpenAPI 3.0 spellings
(`nullable`, boolean `exclusiveMinimum`). `structural()` rewrites pydantic's JSON Schema into that dialect; what it
cannot express (a field that is a list *or* a string) is left open to the admission webhook, which runs the models.
"""

from __future__ import annotations

from typing import Any

import yaml

from .job import KIND, JobSpec
from .status import JobStatus

GROUP = "llmplatform.dev"
VERSION = "v1alpha1"
PLURAL = "llmjobs"
DESCRIPTION = "An LLM pipeline: data, tokenizer, pretraining, fine-tuning, evaluation, serving."
READY_CONDITION = '.status.conditions[?(@.type=="Ready")]'
_DROP = {"title", "default", "examples"}


def crd() -> dict[str, Any]:
    spec_schema = structural(JobSpec.model_json_schema(by_alias=True))
    status_schema = structural(JobStatus.model_json_schema(by_alias=True))
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": "LLMJobList",
                "plural": PLURAL,
                "singular": "llmjob",
                "shortNames": ["llmj"],
                "categories": ["all"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                        {"name": "Ready", "type": "string", "jsonPath": f"{READY_CONDITION}.status"},
                        {"name": "Stage", "type": "string", "jsonPath": ".status.currentStage"},
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                        {
                            "name": "Message",
                            "type": "string",
                            "priority": 1,  # `kubectl get -o wide`
                            "jsonPath": f"{READY_CONDITION}.message",
                        },
                    ],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": DESCRIPTION,
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec_schema,
                                "status": status_schema,
                            },
                        }
                    },
                }
            ],
        },
    }


def crd_yaml() -> str:
    return yaml.safe_dump(crd(), sort_keys=False, width=120)


def structural(schema: dict[str, Any]) -> dict[str, Any]:
    """Inline `$defs` and rewrite pydantic JSON Schema into a Kubernetes structural schema."""
    defs = schema.get("$defs", {})
    return _convert({k: v for k, v in schema.items() if k != "$defs"}, defs)


def _convert(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in node:
        resolved = defs[node["$ref"].rsplit("/", 1)[1]]
        merged = {**resolved, **{k: v for k, v in node.items() if k != "$ref"}}
        return _convert(merged, defs)
    variants = node.get("anyOf") or node.get("oneOf")
    if variants is not None:
        non_null = [v for v in variants if v.get("type") != "null"]
        rest = {k: v for k, v in node.items() if k not in ("anyOf", "oneOf")}
        if len(non_null) == 1:
            out = {**_convert({**non_null[0], **{k: v for k, v in rest.items() if k == "description"}}, defs)}
            if len(non_null) < len(variants):
                out["nullable"] = True
            return out
        # a union of different types cannot be structural: keep it open, the admission webhook validates it
        return {k: v for k, v in rest.items() if k == "description"} | {"x-kubernetes-preserve-unknown-fields": True}
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP:
            continue
        if key == "const":
            out["enum"] = [value]
            out.setdefault("type", _type_of(value))
        elif key == "properties":
            out["properties"] = {name: _convert(sub, defs) for name, sub in value.items()}
        elif key == "items":
            out["items"] = _convert(value, defs)
        elif key == "prefixItems":  # tuples: all items the same type in our models
            out["items"] = _convert(value[0], defs)
            out["minItems"] = out["maxItems"] = len(value)
        elif key == "additionalProperties":
            if value is True or value == {}:
                out["x-kubernetes-preserve-unknown-fields"] = True
            elif value is not False:
                out["additionalProperties"] = _convert(value, defs)
        elif key in ("exclusiveMinimum", "exclusiveMaximum"):
            out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
            out[key] = True
        else:
            out[key] = value
    if out.get("type") == "object" and "properties" not in out and "additionalProperties" not in out:
        out["x-kubernetes-preserve-unknown-fields"] = True
    if "type" not in out and "x-kubernetes-preserve-unknown-fields" not in out:
        out["x-kubernetes-preserve-unknown-fields"] = True
    if "enum" in out and "type" not in out:
        out["type"] = _type_of(out["enum"][0])
    return out


def _type_of(value: Any) -> str:
    return {bool: "boolean", int: "integer", float: "number", str: "string"}.get(type(value), "string")
