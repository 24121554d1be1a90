"""Weight-only quantization of a ``Transformer``'s linear layers: INT8 per output channel, INT4 group-wise.

    quantize_model(model, "int8")                       # every nn.Linear in the blocks -> Int8Linear
    quantize_model(model, "int4", group_size=128)        # -> Int4Linear (asymmetric unless symmetric=True)
    save_quantized(model, "model-int4.safetensors"); load_quantized(fresh_model, "model-int4.safetensors")

Why weight-only: decoding at small batch reads every weight once per token, so its speed is bytes of weights over
memory bandwidth; INT8 halves and INT4 quarters those bytes while activations stay in the model's float dtype.
Embeddings stay in float (a lookup reads one row per token); the LM head is quantized only when asked
(``lm_head=True``), since it is the layer most sensitive to rounding.

Formats (what is stored, identical on every device)
  * INT8: ``weight`` int8 [N, K] and ``scales`` [N]: w ~ q * scale, scale = max|w_row| / 127 (symmetric).
  * INT4: ``packed`` uint8 [N, K/2] (two 4-bit codes a byte, the even column in the high nibble), ``scales`` and
    ``offsets`` [N, K/group]: w ~ q * scale + offset with q in 0..15. Asymmetric: scale = (max - min) / 15 and
    offset = min; symmetric: scale = max|w| / 7 (8 when the group's extreme is negative), offset = -8 * scale.

Error bounds (what the tests check): rounding to the nearest code leaves every weight within scale / 2 of its float
value, i.e. |w - deq(w)| <= max|w_row| / 254 for INT8 and <= (max - min) / 30 of its group for asymmetric INT4.
A matmul with dequantized weights matches ``x @ deq(W).T`` to float32 rounding (rtol 1e-5 on CPU in fp32); the
kernels below are checked against that reference.

Kernels, chosen per call: on CPU ``_weight_int8pack_mm`` and ``_weight_int4pack_mm_for_cpu`` where this PyTorch has
them; on CUDA, INT4 uses ``_weight_int4pack_mm`` (tinygemm: bf16 activations, K a multiple of 128, N of 8) and INT8
is written as ``linear(x, q.to(x.dtype)) * scale``: eager that materialises the float weight, but compiled with
coordinate-descent tuning (``FastDecoder``'s default, gpt-fast's setting) a one-row matmul becomes a Triton reduction
that reads the int8 weight itself. Shapes or dtypes a kernel cannot take fall back to dequantize-then-matmul, which
is always correct. On an H200 (bench/decode.py) both CUDA kernels match x @ deq(W).T to 2.2e-3 relative error (bf16).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

SCHEMES = ("int8", "int4")
INT4_GROUP_SIZES = (32, 64, 128, 256)
_TINYGEMM_INNER_K_TILES = 8  # K must be a multiple of 16 * inner tiles (128) for the packed CUDA layout


# --------------------------------------------------------------------------- pure quantizers
def quantize_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-output-channel INT8: (int8 codes [N, K], float32 scales [N])."""
    w = weight.detach().float()
    scales = w.abs().amax(dim=1).clamp(min=1e-12) / 127.0
    codes = torch.round(w / scales[:, None]).clamp(-127, 127).to(torch.int8)
    return codes, scales


def dequantize_int8(codes: torch.Tensor, scales: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return codes.to(dtype) * scales.to(dtype)[:, None]


def quantize_int4(
    weight: torch.Tensor, group_size: int = 128, *, symmetric: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Group-wise INT4 along the input dimension: (codes uint8 [N, K] in 0..15, scales and offsets float32
    [N, K / group_size]) with w ~ codes * scale + offset."""
    n, k = weight.shape
    if group_size not in INT4_GROUP_SIZES:
        raise ValueError(f"group_size must be one of {INT4_GROUP_SIZES}, got {group_size}")
    if k % group_size:
        raise ValueError(f"input width {k} is not a multiple of group_size {group_size}; pick a smaller group_size")
    w = weight.detach().float().reshape(n, k // group_size, group_size)
    if symmetric:
        # codes -8..7 around zero; the scale maps the group's largest magnitude onto the code that can hold it
        low, high = w.amin(dim=-1), w.amax(dim=-1)
        scales = torch.maximum(high / 7.0, -low / 8.0).clamp(min=1e-12)
        offsets = -8.0 * scales
    else:
        low, high = w.amin(dim=-1), w.amax(dim=-1)
        scales = ((high - low) / 15.0).clamp(min=1e-12)
        offsets = low
    codes = torch.round((w - offsets[..., None]) / scales[..., None]).clamp(0, 15).to(torch.uint8)
    return codes.reshape(n, k), scales, offsets


def dequantize_int4(
    codes: torch.Tensor, scales: torch.Tensor, offsets: torch.Tensor, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    n, k = codes.shape
    groups = scales.shape[1]
    w = codes.to(dtype).reshape(n, groups, k // groups) * scales.to(dtype)[..., None] + offsets.to(dtype)[..., None]
    return w.reshape(n, k)


def pack_int4(codes: torch.Tensor) -> torch.Tensor:
    """[N, K] codes 0..15 -> [N, K/2] uint8, the even column in the high nibble (tinygemm's input layout)."""
    return (codes[:, ::2] << 4 | codes[:, 1::2]).to(torch.uint8)


def unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    return torch.stack((packed >> 4, packed & 0xF), dim=-1).reshape(packed.shape[0], -1)


# --------------------------------------------------------------------------- modules
class Int8Linear(nn.Module):
    """A drop-in ``nn.Linear`` with INT8 weights and per-output-channel scales (in the activation dtype)."""

    def __init__(self, in_features: int, out_features: int, bias: bool, dtype: torch.dtype, device=None) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer("weight", torch.zeros(out_features, in_features, dtype=torch.int8, device=device))
        self.register_buffer("scales", torch.ones(out_features, dtype=dtype, device=device))
        self.register_buffer("bias", torch.zeros(out_features, dtype=dtype, device=device) if bias else None)

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> Int8Linear:
        w = linear.weight
        module = cls(linear.in_features, linear.out_features, linear.bias is not None, w.dtype, w.device)
        codes, scales = quantize_int8(w)
        module.weight.copy_(codes)
        module.scales.copy_(scales)
        if linear.bias is not None:
            module.bias.copy_(linear.bias.detach())
        return module

    def dequantized(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        return dequantize_int8(self.weight, self.scales, dtype or self.scales.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "cpu" and x.dtype == self.scales.dtype and x.dtype in (torch.float32, torch.bfloat16):
            out = torch.ops.aten._weight_int8pack_mm(x.reshape(-1, self.in_features), self.weight, self.scales)
            out = out.reshape(*x.shape[:-1], self.out_features)
        else:
            # (x @ q.T) * s == x @ (q * s).T; compiled, the cast fuses into the weight read of the matmul
            out = F.linear(x, self.weight.to(x.dtype)) * self.scales.to(x.dtype)
        return out if self.bias is None else out + self.bias

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 per channel"


class Int4Linear(nn.Module):
    """A drop-in ``nn.Linear`` with group-wise INT4 weights, two codes a byte.

    The stored buffers (``packed``, ``scales``, ``offsets``) are device-independent; the kernel's own layout is
    derived from them on every move (``_apply``) and kept as non-persistent buffers, so ``.to("cuda")`` after
    quantizing on the CPU (or loading a saved model) gives the fast path.
    """

    def __init__(
        self, in_features: int, out_features: int, bias: bool, group_size: int, dtype: torch.dtype, device=None
    ) -> None:
        super().__init__()
        if in_features % group_size:
            raise ValueError(f"in_features {in_features} is not a multiple of group_size {group_size}")
        self.in_features, self.out_features, self.group_size = in_features, out_features, group_size
        groups = in_features // group_size
        self.register_buffer("packed", torch.zeros(out_features, in_features // 2, dtype=torch.uint8, device=device))
        self.register_buffer("scales", torch.ones(out_features, groups, dtype=dtype, device=device))
        self.register_buffer("offsets", torch.zeros(out_features, groups, dtype=dtype, device=device))
        self.register_buffer("bias", torch.zeros(out_features, dtype=dtype, device=device) if bias else None)
        self.register_buffer("kernel_weight", None, persistent=False)
        self.register_buffer("kernel_scales", None, persistent=False)

    @classmethod
    def from_linear(cls, linear: nn.Linear, group_size: int = 128, *, symmetric: bool = False) -> Int4Linear:
        w = linear.weight
        module = cls(linear.in_features, linear.out_features, linear.bias is not None, group_size, w.dtype, w.device)
        codes, scales, offsets = quantize_int4(w, group_size, symmetric=symmetric)
        module.packed.copy_(pack_int4(codes))
        module.scales.copy_(scales)
        module.offsets.copy_(offsets)
        if linear.bias is not None:
            module.bias.copy_(linear.bias.detach())
        module.prepare_kernel()
        return module

    def dequantized(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        return dequantize_int4(unpack_int4(self.packed), self.scales, self.offsets, dtype or self.scales.dtype)

    @torch.no_grad()
    def prepare_kernel(self) -> None:
        """Builds the packed layout and the [K/group, N, 2] (scale, zero) table of the device's int4 kernel, or
        leaves them None where no kernel takes this shape and dtype (then forward dequantizes)."""
        self.kernel_weight = self.kernel_scales = None
        device, dtype = self.packed.device, self.scales.dtype
        if device.type == "cpu":
            if not hasattr(torch.ops.aten, "_convert_weight_to_int4pack_for_cpu") or dtype != torch.float32:
                return
            self.kernel_weight = torch.ops.aten._convert_weight_to_int4pack_for_cpu(
                unpack_int4(self.packed).to(torch.int32), 2
            )
        elif device.type == "cuda":
            tiles = _TINYGEMM_INNER_K_TILES
            if dtype != torch.bfloat16 or self.in_features % (16 * tiles) or self.out_features % 8:
                return
            self.kernel_weight = torch.ops.aten._convert_weight_to_int4pack(self.packed.contiguous(), tiles)
        else:
            return
        # the kernels compute (q - 8) * scale + zero, so zero = offset + 8 * scale
        zeros = self.offsets.float() + 8.0 * self.scales.float()
        table = torch.stack((self.scales.float(), zeros), dim=-1).transpose(0, 1).contiguous()
        self.kernel_scales = table.to(dtype)

    def _apply(self, fn, recurse: bool = True):
        super()._apply(fn, recurse)
        if self.packed.device.type != "meta":
            self.prepare_kernel()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features)
        if self.kernel_weight is not None and x.dtype == self.scales.dtype:
            mm = torch.ops.aten._weight_int4pack_mm if x.is_cuda else torch.ops.aten._weight_int4pack_mm_for_cpu
            out = mm(flat.contiguous(), self.kernel_weight, self.group_size, self.kernel_scales)
        else:
            out = F.linear(flat, self.dequantized(x.dtype))
        out = out.reshape(*x.shape[:-1], self.out_features)
        return out if self.bias is None else out + self.bias

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int4 group {self.group_size}"


# --------------------------------------------------------------------------- whole models
def quantizable_layers(model: nn.Module, *, lm_head: bool = False) -> list[str]:
    """Names of the nn.Linear layers ``quantize_model`` replaces: every one inside the blocks, plus the LM head
    when asked. Embeddings, norms and MoE routers (not nn.Linear) stay in float."""
    names = [f"layers.{name}" for name, m in model.layers.named_modules() if isinstance(m, nn.Linear)]
    return names + (["lm_head"] if lm_head else [])


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, module)


def _check_scheme(scheme: str, group_size: int) -> None:
    if scheme not in SCHEMES:
        raise ValueError(f"quantization must be one of {SCHEMES}, got {scheme!r}")
    if scheme == "int4" and group_size not in INT4_GROUP_SIZES:
        raise ValueError(f"group_size must be one of {INT4_GROUP_SIZES}, got {group_size}")


@torch.no_grad()
def quantize_model(
    model: nn.Module, scheme: str, *, group_size: int = 128, symmetric: bool = False, lm_head: bool = False
) -> nn.Module:
    """Replaces the model's linear layers in place (see ``quantizable_layers``) and returns the model.

    INT4 layers whose input width is not a multiple of ``group_size`` stay in float and are listed in
    ``model.quantization["skipped"]``; ``model.quantization`` records the scheme so that ``save_quantized`` can write
    it and ``load_quantized`` rebuild the same modules."""
    _check_scheme(scheme, group_size)
    skipped = []
    for name in quantizable_layers(model, lm_head=lm_head):
        linear = model.get_submodule(name)
        if scheme == "int8":
            _set_module(model, name, Int8Linear.from_linear(linear))
        elif linear.in_features % group_size:
            skipped.append(name)
        else:
            _set_module(model, name, Int4Linear.from_linear(linear, group_size, symmetric=symmetric))
    model.quantization = {
        "scheme": scheme,
        "group_size": group_size if scheme == "int4" else None,
        "symmetric": scheme == "int8" or symmetric,
        "lm_head": lm_head,
        "skipped": skipped,
    }
    return model


def _lm_head_tied(model: nn.Module) -> bool:
    return getattr(model.lm_head, "weight", None) is model.embed_tokens.weight


def save_quantized(model: nn.Module, path: str | Path) -> None:
    """Writes the whole state dict (quantized buffers included) to a safetensors file with the scheme in its
    metadata; written to a temporary name and renamed, so a crash never leaves half a file."""
    from safetensors.torch import save_file

    if not hasattr(model, "quantization"):
        raise ValueError("the model is not quantized; call quantize_model(model, ...) first")
    path = Path(path)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if _lm_head_tied(model):
        del state["lm_head.weight"]  # the embedding itself, which safetensors refuses to save twice
    tmp = path.with_name(path.name + ".tmp")
    save_file(state, str(tmp), metadata={"quantization": json.dumps(model.quantization)})
    tmp.replace(path)


@torch.no_grad()
def load_quantized(model: nn.Module, path: str | Path) -> nn.Module:
    """Loads a ``save_quantized`` file into a float model of the same config: builds the quantized modules the
    file's metadata names, then loads every tensor strictly (a missing or unexpected key is an error)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as f:
        meta = (f.metadata() or {}).get("quantization")
    if meta is None:
        raise ValueError(f"{path}: no 'quantization' metadata; was it written by save_quantized?")
    info = json.loads(meta)
    scheme, group_size = info["scheme"], info["group_size"] or 128
    _check_scheme(scheme, group_size)
    for name in quantizable_layers(model, lm_head=info["lm_head"]):
        if name in info["skipped"]:
            continue
        linear = model.get_submodule(name)
        dtype, device = linear.weight.dtype, linear.weight.device
        bias = linear.bias is not None
        if scheme == "int8":
            module = Int8Linear(linear.in_features, linear.out_features, bias, dtype, device)
        else:
            module = Int4Linear(linear.in_features, linear.out_features, bias, group_size, dtype, device)
        _set_module(model, name, module)
    state = load_file(str(path), device=str(next(model.parameters()).device))
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not (k == "lm_head.weight" and _lm_head_tied(model))]
    if missing or unexpected:
        raise ValueError(f"{path}: does not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}")
    for module in model.modules():
        if isinstance(module, Int4Linear):
            module.prepare_kernel()
    model.quantization = info
    return model
