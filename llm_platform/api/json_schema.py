"""The JSON Schema of an LLMJob file, for editors: `llmp schema > llmjob.schema.json`, then point the YAML language
server (VS Code, Neovim, JetBrains) at it to get completion, field docs and errors while typing a job.

It is generated from the same pydantic models as the CRD (crd.py) and the field reference, so it can never disagree
with them. It checks shape and types; graph rules (a stage's `needs`, what each kind reads) are checked by
`llmp validate`, which runs the models themselves.
"""

from __future__ import annotations

from typing import Any

from .job import LLMJob

SCHEMA_ID = "https://llmplatform.dev/schemas/llmjob-v1alpha1.json"


def job_json_schema() -> dict[str, Any]:
    """Draft 2020-12 JSON Schema of an LLMJob document as a user writes it (aliases such as `from`; no `status`)."""
    schema = LLMJob.model_json_schema(by_alias=True, mode="validation")
    schema["properties"].pop("status", None)
    schema["$defs"] = {name: d for name, d in schema["$defs"].items() if name not in ("JobStatus", "StageStatus")}
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}
