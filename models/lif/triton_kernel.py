"""Triton backend for the multi-step LIF on CUDA tensors: one forward and one backward kernel.

Each program owns BLOCK neurons of x viewed as [T, N] and loops over T with the state in registers: the
forward reads X once and writes S and U once; the backward reads U and dL/dS once and writes dL/dX once
(BPTT as derived in ``lif_fused``; spikes and surrogates are recomputed from U). Reset, surrogate,
detach_reset and the presence of an initial state are compile-time constants; the numeric parameters come
in a small tensor of the compute dtype, so float64 runs in float64 and float32 rounds as PyTorch does.

Without a GPU the kernels run in Triton's interpreter: set TRITON_INTERPRET=1 before triton is first
imported (Triton reads it when the kernels are decorated, i.e. when this module is imported); CPU tensors
are then accepted. Without triton this module still imports, HAS_TRITON is False and lif_triton raises.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING

import torch

from masnn.models.lif.fused import _keep_graph

if TYPE_CHECKING:
    from masnn.models.lif.neuron import LIFParams

try:
    import triton
    import triton.language as tl
except ImportError:  # optional dependency (the "gpu" extra)
    triton = tl = None
HAS_TRITON = triton is not None

RESET_CODES = {"hard": 0, "soft": 1, "threshold": 2}
SURROGATE_CODES = {"rectangular": 0, "sigmoid": 1, "atan": 2}
BLOCK = 1024  # neurons per program

if HAS_TRITON:

    @triton.jit
    def _lif_forward_kernel(x_ptr, h_ptr, s_ptr, u_ptr, par_ptr, n, steps,
                            RESET: tl.constexpr, HAS_H: tl.constexpr, STORE_U: tl.constexpr, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        decay = tl.load(par_ptr + 0)
        threshold = tl.load(par_ptr + 1)
        v_reset = tl.load(par_ptr + 2)
        decay_th = tl.load(par_ptr + 3)
        if HAS_H:
            h = tl.load(h_ptr + offs, mask=mask, other=0.0).to(decay.dtype)
        else:
            h = tl.zeros([BLOCK], dtype=decay.dtype)
        for _ in range(steps):
            u = h + tl.load(x_ptr + offs, mask=mask, other=0.0).to(decay.dtype)  # charge
            v = u - threshold
            fired = v >= 0
            # via where, not fired.to(): Triton's interpreter cannot cast int1 to 16-bit floats
            tl.store(s_ptr + offs, tl.where(fired, 1.0, 0.0).to(s_ptr.dtype.element_ty), mask=mask)
            if STORE_U:
                tl.store(u_ptr + offs, u.to(u_ptr.dtype.element_ty), mask=mask)
                u_ptr += n
            # reset, with the reference's roundings (a product by S or 1 - S in {0, 1} is exact)
            if RESET == 0:  # hard: v_reset S + d U (1 - S)
                h = tl.where(fired, v_reset, decay * u)
            elif RESET == 1:  # soft: d (U - θ S)
                h = decay * tl.where(fired, v, u)
            else:  # threshold: d (U (1 - S) + θ S)
                h = tl.where(fired, decay_th, decay * u)
            x_ptr += n
            s_ptr += n

    @triton.jit
    def _lif_backward_kernel(gs_ptr, u_ptr, gx_ptr, gh_ptr, par_ptr, n, steps, last,
                             RESET: tl.constexpr, SURROGATE: tl.constexpr, DETACH: tl.constexpr,
                             HAS_H: tl.constexpr, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        decay = tl.load(par_ptr + 0)
        threshold = tl.load(par_ptr + 1)
        v_reset = tl.load(par_ptr + 2)
        width = tl.load(par_ptr + 4)
        slope = tl.load(par_ptr + 5)
        gs_ptr += last  # (steps - 1) * n, from the host (64-bit when large): start at the last step, walk back
        u_ptr += last
        gx_ptr += last
        grad_h = tl.zeros([BLOCK], dtype=decay.dtype)  # dL/dH_t: zero after the last step
        for _ in range(steps):
            u = tl.load(u_ptr + offs, mask=mask, other=0.0).to(decay.dtype)
            gs = tl.load(gs_ptr + offs, mask=mask, other=0.0).to(decay.dtype)
            v = u - threshold
            if SURROGATE == 0:  # rectangular
                sg = tl.where(tl.abs(v) < width / 2, 1.0 / width, 0.0).to(decay.dtype)
            elif SURROGATE == 1:  # sigmoid
                sig = 1.0 / (1.0 + tl.exp(-slope * v))
                sg = slope * sig * (1.0 - sig)
            else:  # atan
                z = 1.5707963267948966 * slope * v
                sg = (slope / 2) / (1.0 + z * z)
            not_fired = tl.where(v < 0, 1.0, 0.0).to(decay.dtype)
            if RESET == 1:
                dh_du = decay + tl.zeros([BLOCK], dtype=decay.dtype)
                dh_ds = -decay * threshold + tl.zeros([BLOCK], dtype=decay.dtype)
            elif RESET == 0:
                dh_du = decay * not_fired
                dh_ds = v_reset - decay * u
            else:
                dh_du = decay * not_fired
                dh_ds = -decay * v
            if DETACH:
                coef = dh_du
            else:
                coef = dh_du + dh_ds * sg
            grad_u = gs * sg + grad_h * coef
            tl.store(gx_ptr + offs, grad_u.to(gx_ptr.dtype.element_ty), mask=mask)
            grad_h = grad_u
            gs_ptr -= n
            u_ptr -= n
            gx_ptr -= n
        if HAS_H:
            tl.store(gh_ptr + offs, grad_h.to(gh_ptr.dtype.element_ty), mask=mask)


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return dtype if dtype in (torch.float32, torch.float64) else torch.float32


def _params(p: "LIFParams", x: torch.Tensor) -> torch.Tensor:
    """[decay, threshold, v_reset, d θ (as the reference rounds it), width, slope] in the compute dtype."""
    dtype = _compute_dtype(x.dtype)
    decay_th = torch.tensor(p.threshold, dtype=dtype) * p.decay
    return torch.tensor([p.decay, p.threshold, p.v_reset, decay_th.item(), p.width, p.slope], dtype=dtype, device=x.device)


class LIFTritonFunction(torch.autograd.Function):
    """spikes [T, N] of currents x [T, N] (contiguous) and an optional initial state h [N]."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, h: torch.Tensor | None, p: "LIFParams", block: int) -> torch.Tensor:
        steps, n = x.shape
        params = _params(p, x)
        store_u = any(ctx.needs_input_grad[:2])
        spikes = torch.empty_like(x)
        # U in the compute dtype: rounded to bf16/fp16, the backward would recompute other spikes than the forward fired
        u_all = torch.empty(x.shape, dtype=params.dtype, device=x.device) if store_u else spikes  # no U when not asked
        grid = (triton.cdiv(n, block),)
        _lif_forward_kernel[grid](x, h if h is not None else x, spikes, u_all, params, n, steps,
                                  RESET=RESET_CODES[p.reset], HAS_H=h is not None, STORE_U=store_u, BLOCK=block,
                                  enable_fp_fusion=False)  # no FMA: round as PyTorch does, spike for spike
        ctx.save_for_backward(u_all if store_u else None, params)
        ctx.p, ctx.block, ctx.has_h, ctx.dtype = p, block, h is not None, x.dtype
        return spikes

    @staticmethod
    def backward(ctx, grad_spikes: torch.Tensor):
        u_all, params = ctx.saved_tensors
        p = ctx.p
        steps, n = u_all.shape
        in_place = u_all.dtype == ctx.dtype and not _keep_graph()  # each program reads U_t before writing dL/dX_t there
        grad_x = u_all if in_place else torch.empty(u_all.shape, dtype=ctx.dtype, device=u_all.device)
        grad_h = torch.empty(n, dtype=ctx.dtype, device=u_all.device) if ctx.has_h else grad_x
        grid = (triton.cdiv(n, ctx.block),)
        _lif_backward_kernel[grid](grad_spikes.contiguous(), u_all, grad_x, grad_h, params, n, steps, (steps - 1) * n,
                                   RESET=RESET_CODES[p.reset], SURROGATE=SURROGATE_CODES[p.surrogate],
                                   DETACH=p.detach_reset, HAS_H=ctx.has_h, BLOCK=ctx.block)
        return grad_x, (grad_h if ctx.has_h else None), None, None


def lif_triton(x: torch.Tensor, p: "LIFParams", h: torch.Tensor | None = None, block: int = BLOCK) -> torch.Tensor:
    """Spikes [T, ...] of input currents [T, ...]; the same contract as ``lif_multistep``, for CUDA tensors."""
    if not HAS_TRITON:
        raise RuntimeError("the triton backend needs the triton package (pip install 'masnn[gpu]')")
    if not (x.is_cuda or interpreting()):
        raise ValueError("the triton backend runs on CUDA tensors (or on CPU tensors under TRITON_INTERPRET=1)")
    steps = x.shape[0]
    if steps == 0 or x.numel() == 0:
        return torch.empty_like(x)
    flat = x.reshape(steps, -1).contiguous()  # (T, N)
    if h is not None:
        h = h.to(x.dtype).expand(x.shape[1:]).reshape(-1).contiguous()  # (N,)
    return LIFTritonFunction.apply(flat, h, p, block).view(x.shape)
