"""Leaky integrate-and-fire neurons (MA-SNN, Eq. 4), multi-step over time-major tensors [T, ...].

For layer n at step t:
    U[t] = H[t-1] + X[t]                      charge (X: input current)
    S[t] = Heaviside(U[t] - threshold)        fire
    H[t] = reset(U[t], S[t])                  reset and leak, with decay = exp(-dt / tau)

Resets: "hard" H = v_reset * S + decay * U * (1 - S) (the paper); "soft" H = decay * (U - threshold * S);
"threshold" H = decay * (U * (1 - S) + threshold * S): the authors' released code, where a neuron that
fired carries decay * threshold. The Heaviside's gradient is a surrogate: "rectangular" (1 / width inside
|U - threshold| < width / 2; the authors' a = 0.25 is width 0.5), "sigmoid" or "atan" with a slope.
``detach_reset`` stops the gradient through S inside the reset.

The math is the pure function ``lif_step``; ``lif_multistep`` is the reference loop over T with autograd
(the ground truth every faster backend is tested against). The modules that hold parameters and pick a
backend are in ``layer``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

# H[t] from U[t] and S[t] (S already detached when detach_reset)
_RESET_RULES = {
    "hard": lambda u, s, p: p.v_reset * s + p.decay * u * (1 - s),
    "soft": lambda u, s, p: p.decay * (u - p.threshold * s),
    "threshold": lambda u, s, p: p.decay * (u * (1 - s) + p.threshold * s),
}
RESETS = tuple(_RESET_RULES)  # this order numbers the resets in the compiled and Triton kernels


def _rectangular(v: torch.Tensor, p: LIFParams) -> torch.Tensor:
    return (v.abs() < p.width / 2).to(v.dtype) / p.width


def _sigmoid(v: torch.Tensor, p: LIFParams) -> torch.Tensor:
    sig = torch.sigmoid(p.slope * v)
    return p.slope * sig * (1 - sig)


def _atan(v: torch.Tensor, p: LIFParams) -> torch.Tensor:
    return (p.slope / 2) / (1 + (math.pi / 2 * p.slope * v) ** 2)


_SURROGATE_GRADIENTS = {"rectangular": _rectangular, "sigmoid": _sigmoid, "atan": _atan}
SURROGATES = tuple(_SURROGATE_GRADIENTS)


@dataclass(frozen=True)
class LIFParams:
    """Defaults: the authors' DVS settings (decay 0.3, threshold 0.3, rectangular surrogate a = 0.25)."""

    decay: float = 0.3
    threshold: float = 0.3
    v_reset: float = 0.0
    reset: str = "hard"
    surrogate: str = "rectangular"
    width: float = 0.5  # rectangular: window width around the threshold
    slope: float = 4.0  # sigmoid / atan: steepness
    detach_reset: bool = False

    def __post_init__(self):
        if self.reset not in RESETS:
            raise ValueError(f"reset must be one of {RESETS}, got {self.reset!r}")
        if self.surrogate not in SURROGATES:
            raise ValueError(f"surrogate must be one of {SURROGATES}, got {self.surrogate!r}")
        if not 0.0 <= self.decay <= 1.0:
            raise ValueError(f"decay must lie in [0, 1], got {self.decay}")


def surrogate_gradient(v: torch.Tensor, p: LIFParams) -> torch.Tensor:
    """dS/dU at distance v = U - threshold from the threshold."""
    return _SURROGATE_GRADIENTS[p.surrogate](v, p)


class _Heaviside(torch.autograd.Function):
    @staticmethod
    def forward(ctx, v, p: LIFParams):
        ctx.save_for_backward(v)
        ctx.p = p
        return (v >= 0).to(v.dtype)

    @staticmethod
    def backward(ctx, grad):
        (v,) = ctx.saved_tensors
        return grad * surrogate_gradient(v, ctx.p), None


def fire(v: torch.Tensor, p: LIFParams) -> torch.Tensor:
    """Heaviside(v) forward, the surrogate's derivative backward."""
    if not (torch.is_grad_enabled() and v.requires_grad):
        return (v >= 0).to(v.dtype)  # inference: the same spikes without an autograd node per step
    return _Heaviside.apply(v, p)


def reset(u: torch.Tensor, s: torch.Tensor, p: LIFParams) -> torch.Tensor:
    """The state carried to the next step, H[t], from U[t] and S[t]."""
    return _RESET_RULES[p.reset](u, s.detach() if p.detach_reset else s, p)


def lif_step(x: torch.Tensor, h: torch.Tensor | None, p: LIFParams) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One step: (spikes S[t], carried state H[t], membrane potential U[t]) from X[t] and H[t-1].

    ``h`` None is the resting state (zeros). Recurrences that act on U inside the time loop (MA-SNN's
    channel and spatial attention) call ``charge``, modify U, then ``fire_and_reset`` instead.
    """
    u = charge(x, h)
    s, h_next = fire_and_reset(u, p)
    return s, h_next, u


def charge(x: torch.Tensor, h: torch.Tensor | None) -> torch.Tensor:
    return x if h is None else h + x


def fire_and_reset(u: torch.Tensor, p: LIFParams) -> tuple[torch.Tensor, torch.Tensor]:
    s = fire(u - p.threshold, p)
    return s, reset(u, s, p)


def lif_multistep(x: torch.Tensor, p: LIFParams, h: torch.Tensor | None = None) -> torch.Tensor:
    """Reference: spikes [T, ...] of input currents [T, ...], a plain loop over T with autograd."""
    spikes = []
    for x_t in x:
        s, h, _ = lif_step(x_t, h, p)
        spikes.append(s)
    return torch.stack(spikes)

