"""Mixed precision: which autocast to run the forward under, and the loss scaler fp16 needs.

Master weights and optimizer state stay fp32 in every mode. bf16 has fp32's exponent range and needs no loss
scaling; fp16 does, or small gradients flush to zero. On CPU the engine trains in fp32: CPU autocast is slow and
the CPU runs are for tests, where exact numbers matter more than speed.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class Precision:
    name: str
    device_type: str

    @classmethod
    def resolve(cls, name: str, device: torch.device) -> Precision:
        """The precision that actually runs: requested bf16/fp16 on CUDA, fp32 on CPU."""
        if device.type != "cuda":
            return cls("fp32", device.type)
        if name == "bf16" and not torch.cuda.is_bf16_supported():
            raise RuntimeError("train.precision: bf16 is not supported on this GPU; use fp16 (or fp32)")
        return cls(name, device.type)

    @property
    def dtype(self) -> torch.dtype:
        return DTYPES[self.name]

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.name == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """A dynamic loss scaler for fp16; a disabled (pass-through) one otherwise."""
        return torch.amp.GradScaler(self.device_type, enabled=self.name == "fp16")
