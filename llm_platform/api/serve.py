"""The `serve` stage: an OpenAI-compatible endpoint in front of the model."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from .base import SpecModel
from .fields import ReadPath


class AutoscaleSpec(SpecModel):
    """A HorizontalPodAutoscaler on queue length: replicas are added when more than `target_waiting_requests`
    requests wait per pod on average (`vllm:num_requests_waiting`, which both engines export). CPU use says little
    about an inference server, whose batch fills the accelerator long before the CPU."""

    min_replicas: int = Field(1, ge=1)
    max_replicas: int = Field(4, ge=1, le=1000)
    target_waiting_requests: int = Field(4, ge=1, le=10_000)

    @model_validator(mode="after")
    def _order(self) -> AutoscaleSpec:
        if self.max_replicas < self.min_replicas:
            raise ValueError("`max_replicas` must be at least `min_replicas`")
        return self


class ContentFilterSpec(SpecModel):
    """Checks on what goes into and comes out of the model. `mode`: off, log (count and log what is flagged), or
    block (refuse it with `refusal`). Every check has its own counter, `llmp_serve_content_filter_total{filter=...}`."""

    mode: Literal["off", "log", "block"] = "off"
    input: bool = True
    output: bool = True
    toxicity: bool = True
    pii: bool = True
    blocklist: list[str] = Field(default_factory=list, max_length=10_000)
    classifier: ReadPath | None = Field(
        None, description="A classifier file (.npz) the data stage's `classifier` trains."
    )
    classifier_label: str = "toxic"
    classifier_max_score: float = Field(0.5, ge=0.0, le=1.0)
    refusal: str = Field("I can't help with that request.", min_length=1, max_length=2000)


class SampleChat(SpecModel):
    """A chat request the stage sends to its own server once it is up; the answer goes into the stage's metrics."""

    prompt: str = Field(min_length=1, max_length=10_000)
    max_tokens: int = Field(32, ge=1, le=4096)
    temperature: float = Field(0.0, ge=0.0, le=2.0)


class ServeSpec(SpecModel):
    engine: Literal["builtin", "vllm"] = "builtin"
    replicas: int = Field(1, ge=0, le=1000)
    quantization: Literal["none", "int8", "int4"] = "none"
    port: int = Field(8000, ge=1, le=65535)
    max_batch: int = Field(32, ge=1, le=65536)
    max_pending: int = Field(256, ge=1, le=100_000, description="Requests in flight past which the server answers 429.")
    max_tokens: int = Field(4096, ge=1, le=1_048_576, description="The largest `max_tokens` a request may ask for.")
    duration: float | None = Field(
        None,
        gt=0,
        description="Seconds to serve when run locally (`llmp run`), then shut down; unset: until stopped (Ctrl-C). "
        "Ignored on a cluster, where the Deployment serves until deleted.",
    )
    sample: SampleChat | None = None
    api_key_secret: str | None = Field(
        None,
        pattern=r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$",
        description="Name of a Secret whose `api-key` entry clients must send as `Authorization: Bearer ...`.",
    )
    content_filter: ContentFilterSpec = Field(default_factory=ContentFilterSpec)
    autoscale: AutoscaleSpec | None = None
