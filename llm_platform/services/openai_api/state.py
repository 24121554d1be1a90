"""What the routes share: the engine once loaded, the served names, the limits and the filter."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from llm_platform.observability.serving import ServingMetrics

from .async_engine import AsyncEngine
from .content_filter import ContentFilter
from .errors import APIError


@dataclass
class Limits:
    """Bounds on one request: body bytes (413 past it), `max_tokens` (400 past it), requests in flight (429)."""

    max_body_bytes: int = 1 << 20
    max_tokens: int = 4096
    max_pending: int = 256


@dataclass
class ServerState:
    model_name: str
    metrics: ServingMetrics
    content_filter: ContentFilter
    limits: Limits = field(default_factory=Limits)
    api_keys: frozenset[str] = frozenset()
    adapters: tuple[str, ...] = ()
    engine: AsyncEngine | None = None
    load_error: BaseException | None = None
    created: int = 0

    @property
    def ready(self) -> bool:
        return self.engine is not None and self.engine.error is None

    def require_engine(self) -> AsyncEngine:
        if self.engine is None:
            why = f"the model failed to load: {self.load_error}" if self.load_error else "the model is still loading"
            raise APIError(503, why, code="model_not_ready")
        return self.engine

    @property
    def tokenizer(self) -> Any:
        return self.require_engine().engine.tokenizer

    def adapter_for(self, model: str) -> str | None:
        """The adapter a request's `model` names (None: the base model); an unknown name is a 404 as in OpenAI."""
        if model == self.model_name:
            return None
        if model in self.adapters:
            return model
        served = ", ".join((self.model_name, *self.adapters))
        raise APIError(
            404,
            f"The model '{model}' does not exist; this server serves: {served}",
            param="model",
            code="model_not_found",
        )
