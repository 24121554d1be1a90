"""The inference engine: requests in, tokens out, over a paged KV cache (see ``engine.py``).

from llm_platform.trainer.inference import LLMEngine, SamplingParams
engine = LLMEngine.from_pretrained("out/model")
[out] = engine.generate(["Hello"], SamplingParams(max_tokens=32, temperature=0))
"""

from .engine import EngineConfig, LLMEngine
from .outputs import CompletionOutput, EngineStats, RequestOutput, TokenLogprob
from .params import BeamSearchParams, InvalidRequest, SamplingParams

__all__ = [
    "BeamSearchParams",
    "CompletionOutput",
    "EngineConfig",
    "EngineStats",
    "InvalidRequest",
    "LLMEngine",
    "RequestOutput",
    "SamplingParams",
    "TokenLogprob",
]
