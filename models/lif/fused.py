"""Fused CPU backend for the multi-step LIF: a forward without an autograd graph, a hand-written BPTT backward.

The reference (``lif.lif_multistep``) records about ten autograd nodes per step and keeps several [N] tensors
per step alive for the backward. Here the forward runs under no_grad into preallocated buffers and keeps one
[T, N] tensor, the membrane potentials U; spikes and surrogate derivatives are recomputed from U backward,
and the gradient overwrites U in place when the graph is not retained.

Backward (BPTT). With S_t = Θ(U_t - θ), H_t = reset(U_t, S_t), U_{t+1} = H_t + X_{t+1}, σ' the surrogate and
g_t = dL/dH_t (zero at the last step: H_{T-1} is not an output):

    dL/dU_t = dL/dS_t σ'(U_t - θ) + g_t (∂H/∂U + ∂H/∂S σ'(U_t - θ))    [the ∂H/∂S term dropped by detach_reset]
    dL/dX_t = dL/dU_t,     g_{t-1} = dL/dU_t,     dL/dh = dL/dU_0

    reset       ∂H/∂U        ∂H/∂S
    hard        d (1 - S)    v_reset - d U
    soft        d            -d θ
    threshold   d (1 - S)    d (θ - U) = -d (U - θ)

Speed: the neurons are cut into blocks of about half a MiB per row and each block runs all T steps before
the next (like a GPU kernel's program), so the dozen temporaries of a step stay in the L2 cache; on 1M
neurons that makes each torch op about four times cheaper than on the whole slab.

Exactness: each op rounds as the reference's does (same Python scalars, same dtype), so in float32 and
float64 the spikes are equal bit for bit and the gradients agree to rounding.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # typing only: the layer module imports this one
    from masnn.models.lif.neuron import LIFParams

BLOCK_BYTES = 512 * 1024  # one row of a block of neurons; ~10 such buffers fit the L2 cache


def _block(dtype: torch.dtype) -> int:
    return max(4096, BLOCK_BYTES // torch.finfo(dtype).bits * 8)


def _keep_graph() -> bool:
    """Whether the running backward keeps the graph (retain_graph / create_graph); True when unknown."""
    probe = getattr(torch._C._autograd, "_get_current_graph_task_keep_graph", None)
    return True if probe is None else bool(probe())


class _Step:
    """The forward step's constants and in-place ops, with the reference's roundings."""

    def __init__(self, p: "LIFParams", dtype: torch.dtype):
        self.p = p
        # `U >= θ_dtype` is exactly the reference's `U - θ >= 0` in IEEE float32/64 (a difference of two
        # floats is zero only when they are equal); half types compute the difference as the reference does.
        self.exact = dtype in (torch.float32, torch.float64)
        self.th = torch.tensor(p.threshold, dtype=dtype).item()
        self.decay_th = (torch.tensor(p.threshold, dtype=dtype) * p.decay).item()  # the reference's d θ

    def fire(self, u: torch.Tensor, s: torch.Tensor) -> None:
        """s <- Θ(U - θ) as 0/1 of U's dtype."""
        if self.exact:
            torch.ge(u, self.th, out=s)
        else:
            torch.sub(u, self.p.threshold, out=s)
            torch.ge(s, 0, out=s)

    def reset(self, u: torch.Tensor, s: torch.Tensor, h: torch.Tensor) -> None:
        """h <- reset(U, S). Multiplying by S or 1 - S in {0, 1} is exact, so `du - du * S` is d U (1 - S)."""
        p = self.p
        if p.reset == "soft":  # d (U - θ S)
            if self.exact:
                torch.sub(u, s, alpha=p.threshold, out=h)
            else:
                torch.mul(s, p.threshold, out=h)
                torch.sub(u, h, out=h)
            h.mul_(p.decay)
            return
        torch.mul(u, p.decay, out=h)
        h.addcmul_(h, s, value=-1)  # d U (1 - S)
        if p.reset == "threshold":
            h.add_(s, alpha=self.decay_th)  # + d θ S
        elif p.v_reset != 0:
            h.add_(s, alpha=p.v_reset)  # + v_reset S


def _rectangular_into(v: torch.Tensor, p: "LIFParams", out: torch.Tensor) -> None:
    """1/width inside |v| < width/2."""
    torch.abs(v, out=out)
    torch.lt(out, p.width / 2, out=out)
    out.div_(p.width)


def _sigmoid_into(v: torch.Tensor, p: "LIFParams", out: torch.Tensor) -> None:
    """k sig (1 - sig)."""
    torch.mul(v, p.slope, out=out).sigmoid_()
    out.addcmul_(out, out, value=-1).mul_(p.slope)


def _atan_into(v: torch.Tensor, p: "LIFParams", out: torch.Tensor) -> None:
    """(k/2) / (1 + (π/2 k v)^2)."""
    torch.mul(v, torch.pi / 2 * p.slope, out=out).square_().add_(1).reciprocal_().mul_(p.slope / 2)


_SURROGATES_INTO = {"rectangular": _rectangular_into, "sigmoid": _sigmoid_into, "atan": _atan_into}


def _surrogate_into(v: torch.Tensor, p: "LIFParams", out: torch.Tensor) -> None:
    """out <- σ'(v) with v = U - θ (v is left as it is): the reference's surrogate, computed in place."""
    _SURROGATES_INTO[p.surrogate](v, p, out)


class LIFFusedFunction(torch.autograd.Function):
    """spikes [T, N] of currents x [T, N] (contiguous) and an optional initial state h [N]."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, h: torch.Tensor | None, p: "LIFParams") -> torch.Tensor:
        steps, n = x.shape
        step = _Step(p, x.dtype)
        keep_u = any(ctx.needs_input_grad[:2])  # inference keeps one step of U, not T
        u_all = torch.empty_like(x) if keep_u else x.new_empty(1, n)  # (T, N) or (1, N)
        spikes = torch.empty_like(x)  # (T, N)
        block = _block(x.dtype)
        state_buf = x.new_empty(min(n, block))  # H_t of one block
        for lo in range(0, n, block):
            hi = min(lo + block, n)
            state = state_buf[: hi - lo]
            for t in range(steps):
                u = u_all[t if keep_u else 0, lo:hi]
                if t > 0:
                    torch.add(state, x[t, lo:hi], out=u)
                elif h is not None:
                    torch.add(h[lo:hi], x[0, lo:hi], out=u)
                else:
                    u.copy_(x[0, lo:hi])
                s = spikes[t, lo:hi]
                step.fire(u, s)
                if t + 1 < steps:
                    step.reset(u, s, state)
        ctx.save_for_backward(u_all)
        ctx.p = p
        ctx.has_h = h is not None
        return spikes

    @staticmethod
    def backward(ctx, grad_spikes: torch.Tensor):
        (u_all,) = ctx.saved_tensors
        p = ctx.p
        steps, n = u_all.shape
        # dL/dX overwrites U (U_t is dead once step t is done) unless the graph is kept for another
        # backward; if that check were ever wrong, the saved tensor's version counter would refuse a second pass.
        grad_x = torch.empty_like(u_all) if _keep_graph() else u_all
        block = _block(u_all.dtype)
        buffers = [u_all.new_empty(min(n, block)) for _ in range(3)]
        for lo in range(0, n, block):
            hi = min(lo + block, n)
            v, sg, coef = (buf[: hi - lo] for buf in buffers)
            grad_h = None  # dL/dH_t of this block; None while it is zero (the last step)
            for t in reversed(range(steps)):
                u, gs = u_all[t, lo:hi], grad_spikes[t, lo:hi]
                out = grad_x[t, lo:hi]  # may alias u: written only once u is no longer read
                torch.sub(u, p.threshold, out=v)  # U - θ
                _surrogate_into(v, p, sg)  # σ'
                if grad_h is None:
                    torch.mul(gs, sg, out=out)
                else:
                    _grad_u_into(u, v, sg, gs, grad_h, coef, p, out)
                grad_h = out
        grad_h0 = grad_x[0].clone() if ctx.has_h and ctx.needs_input_grad[1] else None
        return grad_x, grad_h0, None


def _grad_u_into(u, v, sg, gs, grad_h, coef, p: "LIFParams", out) -> None:
    """out <- dL/dU = gs σ' + grad_h d c, with c = (∂H/∂U + ∂H/∂S σ') / d (d factored out; see the table above).

    hard: c = (1 - S) - U σ' (+ v_reset σ' / d, added as v_reset grad_h σ'), threshold: c = (1 - S) - (U - θ) σ',
    soft: c = 1 - θ σ'; detach_reset keeps the ∂H/∂U part only.
    """
    if p.reset == "soft":
        if p.detach_reset:
            torch.mul(gs, sg, out=out)
            out.add_(grad_h, alpha=p.decay)
            return
        torch.mul(sg, -p.threshold, out=coef).add_(1)
    else:
        torch.lt(v, 0, out=coef)  # 1 - S
        if not p.detach_reset:
            coef.addcmul_(u if p.reset == "hard" else v, sg, value=-1)
    if p.reset == "hard" and p.v_reset != 0 and not p.detach_reset:
        torch.add(gs, grad_h, alpha=p.v_reset, out=out)
        out.mul_(sg)
    else:
        torch.mul(gs, sg, out=out)
    out.addcmul_(coef, grad_h, value=p.decay)


def lif_fused(x: torch.Tensor, p: "LIFParams", h: torch.Tensor | None = None) -> torch.Tensor:
    """Spikes [T, ...] of input currents [T, ...]; the same contract as ``lif_multistep``."""
    steps = x.shape[0]
    if steps == 0:
        return torch.empty_like(x)
    flat = x.reshape(steps, -1).contiguous()  # (T, N)
    if h is not None:
        h = h.to(x.dtype).expand(x.shape[1:]).reshape(-1)  # (N,); autograd sums a broadcast h back
    return LIFFusedFunction.apply(flat, h, p).view(x.shape)
