"""Compute resources a stage asks for; the operator turns them into pod requests and limits."""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from .base import SpecModel
from .fields import LabelKey, LabelValue

_QUANTITY = re.compile(r"^[0-9]{1,15}(\.[0-9]{1,9})?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")


class Resources(SpecModel):
    """Per-worker resources. Locally only `gpus` matters (how many local GPUs a training stage may use)."""

    workers: int = Field(1, ge=1, le=4096, description="Number of worker pods (Ray workers or training nodes).")
    cpu: str | None = Field(None, description="CPU per worker as a Kubernetes quantity, e.g. '8' or '500m'.")
    memory: str | None = Field(None, description="Memory per worker as a Kubernetes quantity, e.g. '32Gi'.")
    gpus: int = Field(0, ge=0, le=16, description="GPUs per worker (nvidia.com/gpu).")
    node_selector: dict[LabelKey, LabelValue] = Field(
        default_factory=dict, description="Kubernetes nodeSelector for the pods."
    )

    @field_validator("cpu", "memory")
    @classmethod
    def _quantity(cls, value: str | None) -> str | None:
        if value is not None and not _QUANTITY.match(str(value)):
            raise ValueError("not a Kubernetes quantity; write e.g. '8', '500m', '32Gi'")
        return value
