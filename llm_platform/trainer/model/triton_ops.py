"""Our Triton kernels for the block's element-wise work (GPU only; ``fused_ops`` imports this on first GPU use).

Each kernel reads its inputs once and writes its outputs once, computing in float32 whatever the storage dtype:
RMSNorm with the residual add before it (the sum and the normed output in one pass; the backward gives the input
gradient and per-program partial sums of the gain's gradient), SwiGLU (gate and up read in place from one packed
tensor or two), and rotary embedding (queries or keys read through their strides, so the views of a fused QKV
projection are rotated without a copy). ``fused_ops`` holds the PyTorch reference each one must equal.
"""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl


@functools.cache
def _sm_count(device: torch.device) -> int:
    return torch.cuda.get_device_properties(device).multi_processor_count


def _warps(block: int) -> int:
    return 16 if block >= 8192 else 8 if block >= 2048 else 4


def _rows(x: torch.Tensor) -> torch.Tensor:
    """x as [rows, last dim] with a unit last stride (a copy only if that stride is not 1)."""
    x = x if x.stride(-1) == 1 else x.contiguous()
    return x.reshape(-1, x.shape[-1])


# ---------------------------------------------------------------------------------------------------- RMSNorm
@triton.jit
def _rms_norm_fwd(  # noqa: PLR0913 (a kernel takes its pointers and strides)
    X, D, S, Y, W, RSTD, stride_x, stride_d, stride_s, stride_y, n_cols, eps,
    HAS_DELTA: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK)
    mask = cols < n_cols
    s = tl.load(X + row * stride_x + cols, mask=mask, other=0.0).to(tl.float32)
    if HAS_DELTA:
        s += tl.load(D + row * stride_d + cols, mask=mask, other=0.0).to(tl.float32)
        rounded = s.to(S.dtype.element_ty)
        tl.store(S + row * stride_s + cols, rounded, mask=mask)
        s = rounded.to(tl.float32)
    rstd = tl.rsqrt(tl.sum(s * s, axis=0) / n_cols + eps)
    tl.store(RSTD + row, rstd)
    normed = (s * rstd).to(S.dtype.element_ty).to(tl.float32)  # Llama casts back before the gain
    w = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
    tl.store(Y + row * stride_y + cols, (normed * w).to(Y.dtype.element_ty), mask=mask)


@triton.jit
def _rms_norm_bwd(  # noqa: PLR0913
    DY, DS, S, W, RSTD, DX, DW_PART, stride_dy, stride_ds, stride_s, stride_dx, n_rows, n_cols, rows_per_program,
    HAS_DS: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    program = tl.program_id(0)
    cols = tl.arange(0, BLOCK)
    mask = cols < n_cols
    w = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
    dw = tl.zeros((BLOCK,), dtype=tl.float32)
    for i in range(0, rows_per_program):
        row = (program * rows_per_program + i).to(tl.int64)
        ok = mask & (cols * 0 + row < n_rows)  # a vector mask: this program's last rows may run past the end
        s = tl.load(S + row * stride_s + cols, mask=ok, other=0.0).to(tl.float32)
        dy = tl.load(DY + row * stride_dy + cols, mask=ok, other=0.0).to(tl.float32)
        rstd = tl.load(RSTD + row, mask=row < n_rows, other=0.0)
        normed = s * rstd
        dw += dy * normed
        dn = dy * w
        ds = rstd * (dn - normed * (tl.sum(dn * normed, axis=0) / n_cols))
        if HAS_DS:
            ds += tl.load(DS + row * stride_ds + cols, mask=ok, other=0.0).to(tl.float32)
        tl.store(DX + row * stride_dx + cols, ds.to(DX.dtype.element_ty), mask=ok)
    tl.store(DW_PART + program * n_cols + cols, dw, mask=mask)


def _rms_forward(x, delta, weight, eps, out_dtype):
    x2 = _rows(x)
    n_rows, n_cols = x2.shape
    block = triton.next_power_of_2(n_cols)
    if delta is None:
        summed, d2 = x2, x2
    else:
        d2 = _rows(delta)
        summed = torch.empty(x2.shape, dtype=torch.promote_types(x.dtype, delta.dtype), device=x.device)
    y = torch.empty(x2.shape, dtype=out_dtype, device=x.device)
    rstd = torch.empty(n_rows, dtype=torch.float32, device=x.device)
    _rms_norm_fwd[(n_rows,)](
        x2, d2, summed, y, weight, rstd, x2.stride(0), d2.stride(0), summed.stride(0), y.stride(0), n_cols, eps,
        HAS_DELTA=delta is not None, BLOCK=block, num_warps=_warps(block),
    )  # fmt: skip
    return summed, y, rstd


def _rms_backward(dy, ds, summed, weight, rstd):
    dy2 = _rows(dy)
    n_rows, n_cols = dy2.shape
    ds2 = _rows(ds) if ds is not None else dy2
    block = triton.next_power_of_2(n_cols)
    programs = min(n_rows, 4 * _sm_count(dy.device))
    rows_per_program = triton.cdiv(n_rows, programs)
    dx = torch.empty(summed.shape, dtype=summed.dtype, device=dy.device)
    dw_part = torch.empty((programs, n_cols), dtype=torch.float32, device=dy.device)
    _rms_norm_bwd[(programs,)](
        dy2, ds2, summed, weight, rstd, dx, dw_part, dy2.stride(0), ds2.stride(0), summed.stride(0), dx.stride(0),
        n_rows, n_cols, rows_per_program, HAS_DS=ds is not None, BLOCK=block, num_warps=_warps(block),
    )  # fmt: skip
    return dx, dw_part.sum(0).to(weight.dtype)


class _RMSNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, eps, out_dtype):
        _, y, rstd = _rms_forward(x, None, weight, eps, out_dtype)
        ctx.save_for_backward(_rows(x), weight, rstd)
        ctx.shape = x.shape
        return y.view(x.shape)

    @staticmethod
    def backward(ctx, dy):
        summed, weight, rstd = ctx.saved_tensors
        dx, dw = _rms_backward(dy, None, summed, weight, rstd)
        return dx.view(ctx.shape), dw, None, None


class _AddRMSNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, delta, weight, eps, out_dtype):
        summed, y, rstd = _rms_forward(x, delta, weight, eps, out_dtype)
        ctx.save_for_backward(summed, weight, rstd)
        ctx.shape, ctx.dtypes = x.shape, (x.dtype, delta.dtype)
        return summed.view(x.shape), y.view(x.shape)

    @staticmethod
    def backward(ctx, d_summed, dy):
        summed, weight, rstd = ctx.saved_tensors
        dx, dw = _rms_backward(dy, d_summed, summed, weight, rstd)
        dx = dx.view(ctx.shape)
        return dx.to(ctx.dtypes[0]), dx.to(ctx.dtypes[1]), dw, None, None


def rms_norm(x, delta, weight, eps: float, out_dtype: torch.dtype):
    """(x + delta, rms_norm(x + delta)) with delta, else (x, rms_norm(x)); see ``fused_ops.add_rms_norm``."""
    if delta is None:
        return x, _RMSNorm.apply(x, weight, eps, out_dtype)
    return _AddRMSNorm.apply(x, delta, weight, eps, out_dtype)


# ---------------------------------------------------------------------------------------------------- SwiGLU
_SWIGLU_BLOCK = 1024


@triton.jit
def _swiglu_fwd(G, U, OUT, stride_g, stride_u, stride_o, n_cols, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < n_cols
    g = tl.load(G + row * stride_g + cols, mask=mask, other=0.0).to(tl.float32)
    u = tl.load(U + row * stride_u + cols, mask=mask, other=0.0).to(tl.float32)
    tl.store(OUT + row * stride_o + cols, (g * tl.sigmoid(g) * u).to(OUT.dtype.element_ty), mask=mask)


@triton.jit
def _swiglu_bwd(
    DO, G, U, DG, DU, stride_do, stride_g, stride_u, stride_dg, stride_du, n_cols, BLOCK: tl.constexpr,
):  # fmt: skip
    row = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < n_cols
    do = tl.load(DO + row * stride_do + cols, mask=mask, other=0.0).to(tl.float32)
    g = tl.load(G + row * stride_g + cols, mask=mask, other=0.0).to(tl.float32)
    u = tl.load(U + row * stride_u + cols, mask=mask, other=0.0).to(tl.float32)
    sig = tl.sigmoid(g)
    tl.store(DG + row * stride_dg + cols, (do * u * sig * (1 + g * (1 - sig))).to(DG.dtype.element_ty), mask=mask)
    tl.store(DU + row * stride_du + cols, (do * g * sig).to(DU.dtype.element_ty), mask=mask)


def _swiglu_launch_fwd(g, u):
    out = torch.empty(g.shape, dtype=torch.promote_types(g.dtype, u.dtype), device=g.device)
    n_rows, n_cols = g.shape
    grid = (n_rows, triton.cdiv(n_cols, _SWIGLU_BLOCK))
    _swiglu_fwd[grid](g, u, out, g.stride(0), u.stride(0), out.stride(0), n_cols, BLOCK=_SWIGLU_BLOCK)
    return out


def _swiglu_launch_bwd(do, g, u, dg, du):
    n_rows, n_cols = g.shape
    grid = (n_rows, triton.cdiv(n_cols, _SWIGLU_BLOCK))
    _swiglu_bwd[grid](
        do, g, u, dg, du, do.stride(0), g.stride(0), u.stride(0), dg.stride(0), du.stride(0), n_cols,
        BLOCK=_SWIGLU_BLOCK,
    )  # fmt: skip


class _SwiGLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, gate, up):
        g, u = _rows(gate), _rows(up)
        ctx.save_for_backward(g, u)
        ctx.shape = gate.shape
        return _swiglu_launch_fwd(g, u).view(gate.shape)

    @staticmethod
    def backward(ctx, dout):
        g, u = ctx.saved_tensors
        dg, du = torch.empty_like(g), torch.empty_like(u)
        _swiglu_launch_bwd(_rows(dout), g, u, dg, du)
        return dg.view(ctx.shape), du.view(ctx.shape)


class _SwiGLUPacked(torch.autograd.Function):
    @staticmethod
    def forward(ctx, gate_up):
        packed = _rows(gate_up)
        half = packed.shape[1] // 2
        ctx.save_for_backward(packed)
        out = _swiglu_launch_fwd(packed[:, :half], packed[:, half:])
        return out.view(*gate_up.shape[:-1], half)

    @staticmethod
    def backward(ctx, dout):
        (packed,) = ctx.saved_tensors
        half = packed.shape[1] // 2
        grad = torch.empty_like(packed)  # [rows, 2 * hidden]: the packed projection's output gradient, as one tensor
        _swiglu_launch_bwd(_rows(dout), packed[:, :half], packed[:, half:], grad[:, :half], grad[:, half:])
        return grad.view(*dout.shape[:-1], 2 * half)


def swiglu(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    return _SwiGLU.apply(gate, up)


def swiglu_packed(gate_up: torch.Tensor) -> torch.Tensor:
    return _SwiGLUPacked.apply(gate_up)


# ---------------------------------------------------------------------------------------------------- rotary
@triton.jit
def _rotary_kernel(  # noqa: PLR0913
    X, OUT, COS, SIN, sx_b, sx_h, sx_t, so_b, so_h, so_t, stride_cos, seq, n_heads, half,
    BACKWARD: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_D: tl.constexpr,
):  # fmt: skip
    program = tl.program_id(0).to(tl.int64)
    b, t = program // seq, program % seq
    heads = tl.arange(0, BLOCK_H)[:, None]
    dims = tl.arange(0, BLOCK_D)[None, :]
    mask = (heads < n_heads) & (dims < half)
    # The table's two halves are equal (rotate-half layout), so the first half serves both.
    cos = tl.load(COS + t * stride_cos + dims, mask=dims < half, other=0.0).to(tl.float32)
    sin = tl.load(SIN + t * stride_cos + dims, mask=dims < half, other=0.0).to(tl.float32)
    if BACKWARD:  # the transpose of a rotation is the rotation by the opposite angle
        sin = -sin
    src = X + b * sx_b + t * sx_t + heads * sx_h + dims
    x1 = tl.load(src, mask=mask, other=0.0).to(tl.float32)
    x2 = tl.load(src + half, mask=mask, other=0.0).to(tl.float32)
    dst = OUT + b * so_b + t * so_t + heads * so_h + dims
    tl.store(dst, (x1 * cos - x2 * sin).to(OUT.dtype.element_ty), mask=mask)
    tl.store(dst + half, (x2 * cos + x1 * sin).to(OUT.dtype.element_ty), mask=mask)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, backward: bool) -> torch.Tensor:
    """x [B, H, T, D] (any strides, unit last stride) rotated; returned as a [B, T, H, D]-contiguous tensor seen as
    [B, H, T, D], the layout of a projection's output after its head transpose."""
    if x.stride(-1) != 1:
        x = x.contiguous()
    batch, heads, seq, dim = x.shape
    out = torch.empty((batch, seq, heads, dim), dtype=x.dtype, device=x.device).transpose(1, 2)
    cos, sin = cos.contiguous(), sin.contiguous()
    _rotary_kernel[(batch * seq,)](
        x, out, cos, sin, x.stride(0), x.stride(1), x.stride(2), out.stride(0), out.stride(1), out.stride(2),
        cos.stride(0), seq, heads, dim // 2, BACKWARD=backward, BLOCK_H=triton.next_power_of_2(heads),
        BLOCK_D=triton.next_power_of_2(dim // 2),
    )  # fmt: skip
    return out


class _Rotary(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, cos, sin):
        ctx.save_for_backward(cos, sin)
        return _rotate(x, cos, sin, backward=False)

    @staticmethod
    def backward(ctx, dout):
        cos, sin = ctx.saved_tensors
        return _rotate(dout, cos, sin, backward=True), None, None


def rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [B, H, T, D] rotated by cos/sin [T, D], in x's dtype (the reference promotes to cos's dtype)."""
    return _Rotary.apply(x, cos, sin)
