"""The element-wise work of a block, one call each: RMSNorm (optionally with the residual add before it), SwiGLU and
rotary embedding, in the implementation ``ModelConfig.kernels`` names.

``torch`` is the reference: plain PyTorch, what the model always ran, and what ``torch.compile`` fuses on its own. It
also runs whenever the tensors are not on a GPU, whatever ``kernels`` says, so CPU tests compare the other paths'
contract against it. ``triton`` runs our kernels (``triton_ops``); ``liger`` runs liger-kernel's (the ``gpu`` extra,
with a message naming the package when missing). Both are imported by ``load`` when a layer is built on a machine
with a GPU, never on a CPU-only one.
Why fuse at all: after the GEMMs and attention, these memory-bound kernels were 13-24% of a training step on an H200
(bench/RESULTS.md, issue 16), and each moves the whole activation through memory once more in each direction.
Measured since: our Triton kernels beat inductor's fused kernels on their own (1.07-1.29x for the norm and SwiGLU) but
give nothing inside the compiled model (-2.5% at 125M, -0.8% at 1.1B; bench/RESULTS.md, round 3), where inductor
already fuses these chains into their neighbours; hence ``torch`` stays the default.
"""

from __future__ import annotations

import importlib
from types import ModuleType

import torch
from torch.nn import functional as F

from .rope import apply_rotary


def output_dtype(x: torch.Tensor) -> torch.dtype:
    """What a norm returns: the autocast dtype under autocast (what the next matmul reads anyway), else x's dtype.

    With float32 master weights the residual stream and the gains are float32, so the norm's product would be
    float32 and every following projection would cast it again; returning bf16 directly halves the bytes the norm
    writes and its consumers read, and the projections see the same values."""
    if torch.is_autocast_enabled(x.device.type):
        return torch.get_autocast_dtype(x.device.type)
    return x.dtype


_LOADED: dict[str, ModuleType] = {}  # "triton" / "liger" -> the module holding that implementation's ops


def load(kernels: str) -> None:
    """Imports the implementation ``kernels`` names, when a GPU is there to run it; layers call this when they are
    built, so that the forward only looks the module up (an import inside a torch.compile trace breaks the graph)."""
    if kernels == "torch" or kernels in _LOADED or not torch.cuda.is_available():
        return
    if kernels == "triton":
        _LOADED[kernels] = importlib.import_module("llm_platform.trainer.model.triton_ops")
        return
    try:
        importlib.import_module("liger_kernel")
    except ImportError as e:
        raise ImportError(
            "ModelConfig.kernels='liger' needs liger-kernel: pip install 'llm-platform[gpu]' (or liger-kernel), "
            "or set kernels to 'triton' or 'torch'"
        ) from e
    _LOADED[kernels] = importlib.import_module("liger_kernel.ops")


def liger_ops() -> ModuleType:
    load("liger")
    return _LOADED["liger"]


def _gpu(kernels: str, x: torch.Tensor) -> str:
    """The implementation that runs: ``kernels`` on a CUDA tensor, the PyTorch reference elsewhere."""
    if not x.is_cuda or kernels == "torch":
        return "torch"
    if kernels not in _LOADED:  # a layer built before CUDA was visible, or a direct call: load now (eager)
        load(kernels)
    return kernels


# ---------------------------------------------------------------------------------------------------- RMSNorm
def rms_norm_reference(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """Llama's RMSNorm: statistics in float32, cast back to x's dtype before the gain, returned in `output_dtype`."""
    x32 = x.float()
    normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)
    return (weight * normed.to(x.dtype)).to(output_dtype(x))


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float, kernels: str = "torch") -> torch.Tensor:
    impl = _gpu(kernels, x)
    if impl == "triton":
        return _LOADED["triton"].rms_norm(x, None, weight, eps, output_dtype(x))[1]
    if impl == "liger":
        rms = _LOADED["liger"].rms_norm.LigerRMSNormFunction
        return rms.apply(x, weight, eps, 0.0, "llama", False).to(output_dtype(x))
    return rms_norm_reference(x, weight, eps)


def add_rms_norm(
    x: torch.Tensor, delta: torch.Tensor, weight: torch.Tensor, eps: float, kernels: str = "torch"
) -> tuple[torch.Tensor, torch.Tensor]:
    """(x + delta, rms_norm(x + delta)): the residual add and the next norm in one pass over the activations.
    The sum keeps the residual stream's dtype (x's, as ``x + delta`` would promote it)."""
    impl = _gpu(kernels, x)
    if impl == "triton":
        return _LOADED["triton"].rms_norm(x, delta, weight, eps, output_dtype(x))
    if impl == "liger":
        fused = _LOADED["liger"].fused_add_rms_norm.LigerFusedAddRMSNormFunction
        normed, summed = fused.apply(delta.to(x.dtype), x, weight, eps, 0.0, "llama", False)
        return summed, normed.to(output_dtype(x))
    summed = x + delta
    return summed, rms_norm_reference(summed, weight, eps)


# ---------------------------------------------------------------------------------------------------- SwiGLU
def swiglu(gate: torch.Tensor, up: torch.Tensor, kernels: str = "torch") -> torch.Tensor:
    """silu(gate) * up."""
    impl = _gpu(kernels, gate)
    if impl == "triton":
        return _LOADED["triton"].swiglu(gate, up)
    if impl == "liger":
        return _LOADED["liger"].swiglu.LigerSiLUMulFunction.apply(gate, up)
    return F.silu(gate) * up


def swiglu_packed(gate_up: torch.Tensor, kernels: str = "torch") -> torch.Tensor:
    """silu(gate) * up for gate and up side by side in the last dimension (the fused gate/up projection's output);
    the GPU kernels read both halves in place and write the gradient as one tensor, with no split or concatenation."""
    impl = _gpu(kernels, gate_up)
    if impl == "triton":
        return _LOADED["triton"].swiglu_packed(gate_up)
    if impl == "liger":
        rows = gate_up.reshape(-1, gate_up.shape[-1])
        out = _LOADED["liger"].swiglu.LigerFusedGateUpSiLUMulFunction.apply(rows)
        return out.view(*gate_up.shape[:-1], -1)
    gate, up = gate_up.chunk(2, dim=-1)
    return F.silu(gate) * up


# ---------------------------------------------------------------------------------------------------- rotary
def rotary(
    q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, kernels: str = "torch"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Queries [B, H, T, D] and keys [B, H_kv, T, D] rotated by the same cos/sin [T, D] (or [B, T, D])."""
    impl = _gpu(kernels, q)
    if impl == "triton" and cos.dim() == 2:
        rotate = _LOADED["triton"].rotary
        return rotate(q, cos, sin), rotate(k, cos, sin)
    if impl == "liger" and cos.dim() == 2 and q.dtype == k.dtype:
        # the table as [1, T, D] (or one per row), which every liger version in the `gpu` extra's range reads
        # alike: 0.8.5 (what bench/RESULTS.md measured) adds the leading 1 to a [T, D] table itself, while 0.8.2
        # read cos.shape[0] as the table's batch size and sent every row after the first past the table's end
        cos, sin = cos.to(q.dtype)[None], sin.to(q.dtype)[None]
        return _LOADED["liger"].rope.LigerRopeFunction.apply(q, k, cos, sin)
    return apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
