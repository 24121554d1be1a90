"""The `serve` stage: an OpenAI-compatible endpoint in front of the model."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from .base import SpecModel


class AutoscaleSpec(SpecModel):
    min_replicas: int = Field(1, ge=1)
    max_replicas: int = Field(4, ge=1, le=1000)
    target_cpu_percent: int = Field(70, ge=1, le=100)

    @model_validator(mode="after")
    def _order(self) -> AutoscaleSpec:
        if self.max_replicas < self.min_replicas:
            raise ValueError("`max_replicas` must be at least `min_replicas`")
        return self


class ServeSpec(SpecModel):
    engine: Literal["builtin", "vllm"] = "builtin"
    replicas: int = Field(1, ge=0, le=1000)
    quantization: Literal["none", "int8", "int4"] = "none"
    port: int = Field(8000, ge=1, le=65535)
    max_batch: int = Field(32, ge=1, le=65536)
    autoscale: AutoscaleSpec | None = None
