"""MA-SNN attention: temporal (TA), channel (CA) and spatial (SA) gates, and where they sit in a layer.

Every module computes a gate g(x) that ends in a sigmoid and returns g(x) * x. Tensors are time-major,
[T, B, C, H, W] for conv layers and [T, B, F] for fully connected ones.

- TA ("when"): squeeze C,H,W (or F) by avg and max -> two T-vectors per sample; a shared MLP
  T -> T/r_t -> T (ReLU between); add; sigmoid -> one weight per step. One TA per layer.
- CA ("what", CBAM): avg and max over H,W -> shared MLP C -> C/r_c -> C; sigmoid. Per step, shared over time.
- SA ("where", CBAM): avg and max over channels -> 2 x H x W; conv k x k (2 -> 1); sigmoid. Per step.

Placements (Table 4 of the paper): "conv-pre" gates the layer's input, "conv-post" the conv+BN(+pool) output X
before the neuron, "activate-pre" gates the membrane potential U inside the time recurrence (CA and SA only:
by the time U exists the past is already integrated, so TA has nothing to weight). "paper" is Eq. 14: TA at
conv-post, CA and SA at activate-pre. "reference-code" reproduces the authors' released modules: all gates on X
before the time loop, CA pooled over T,H,W and SA over T*C (one gate per sample, not per step), SA 3 x 3, a
ReLU after every attention wrapper, and TA only on FC layers.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from math import prod
from typing import Any

import numpy as np
import torch
from torch import nn

from .lif import LIFParams, NeuronParameters, charge, fire_and_reset

ATTENTIONS = ("", "T", "C", "S", "TC", "TS", "CS", "TCS")
_VANILLA = ("", "none", "no", "vanilla")
_DEFAULT_LIF = LIFParams()


def parse_attention(name: str | None) -> str:
    """Canonical letters in Eq. 14's order: "TCSA" -> "TCS", "csa" -> "CS", "TA" -> "T", "none" -> ""."""
    if name is None or name.strip().lower() in _VANILLA:
        return ""
    letters = name.strip().upper()
    if len(letters) > 1 and letters.endswith("A"):  # paper spelling: TA, CA, TCA, TCSA, ...
        letters = letters[:-1]
    if not letters or set(letters) - set("TCS") or len(set(letters)) != len(letters):
        raise ValueError(f"attention must be 'none' or a combination of T, C, S (one of {ATTENTIONS[1:]}), got {name!r}")
    return "".join(m for m in "TCS" if m in letters)


@dataclass(frozen=True)
class AttentionPlan:
    """Which gates sit where in one layer (letters in T, C, S order)."""

    pre: str = ""  # on the layer's input ("conv-pre")
    post: str = ""  # on the current X before the neuron ("conv-post")
    activate: str = ""  # on the membrane potential U inside the recurrence ("activate-pre")
    reference: bool = False  # the authors' variant: sequence-pooled CA/SA, 3x3 SA, ReLU after the wrapper

    def for_fc(self) -> AttentionPlan:
        """FC layers have no feature maps, so only TA applies; it keeps its place."""
        return replace(self, pre=self.pre.replace("C", "").replace("S", ""),
                       post=self.post.replace("C", "").replace("S", ""), activate="")


# placement name -> the plan of canonical letters (Table 4 of the paper; see the module docstring)
_PLANS = {
    "paper": lambda letters: AttentionPlan(post=letters.replace("C", "").replace("S", ""),
                                           activate=letters.replace("T", "")),
    "conv-pre": lambda letters: AttentionPlan(pre=letters),
    "conv-post": lambda letters: AttentionPlan(post=letters),
    "activate-pre": lambda letters: AttentionPlan(activate=letters),
    "reference-code": lambda letters: AttentionPlan(post=letters, reference=True),
}
PLACEMENTS = tuple(_PLANS)


def plan_attention(attention: str | None, placement: str = "paper") -> AttentionPlan:
    letters = parse_attention(attention)
    if placement not in _PLANS:
        raise ValueError(f"placement must be one of {PLACEMENTS}, got {placement!r}")
    if placement == "activate-pre" and "T" in letters:
        raise ValueError(
            "TA cannot be placed at 'activate-pre': it weights whole steps, and inside the recurrence U[t] already "
            "integrates the past. Use placement 'paper' (TA at conv-post, CA and SA at activate-pre) or drop T.")
    return _PLANS[placement](letters)


def _mlp(features: int, hidden: int) -> nn.Sequential:
    # bias-free, as in CBAM and the authors' code (the published parameter count depends on it)
    return nn.Sequential(nn.Linear(features, hidden, bias=False), nn.ReLU(), nn.Linear(hidden, features, bias=False))


class TemporalAttention(nn.Module):
    """TA: one weight per step from a [T, B, ...] block.

    ``steps`` (an index tensor [T']) says which of the T steps a shorter input holds: the squeezed descriptors of
    the missing steps are zero, so a TA trained on T steps still sees each kept frame at its own time position.
    Used when input attention pruning dropped frames.
    """

    def __init__(self, steps: int, ratio: int = 5):
        super().__init__()
        self.steps = steps
        self.hidden = max(1, steps // ratio)
        self.mlp = _mlp(steps, self.hidden)

    def scores(self, x: torch.Tensor, steps: torch.Tensor | None = None) -> torch.Tensor:
        """Sigmoid scores [T', B] of x [T', B, ...]."""
        flat = x.flatten(2)
        # max().values, not amax(): its backward is one scatter to the maximum's index, where amax's compares and
        # divides over ties; with every pool of the attention modules so, a CPU training step of the 3-layer TCSA
        # net takes 5 % less
        avg, mx = flat.mean(2), flat.max(2).values  # (T', B) each
        if steps is None:
            if x.shape[0] != self.steps:
                raise ValueError(f"TA was built for T={self.steps} steps, got an input with {x.shape[0]}")
        else:
            avg = avg.new_zeros(self.steps, avg.shape[1]).index_copy(0, steps, avg)
            mx = mx.new_zeros(self.steps, mx.shape[1]).index_copy(0, steps, mx)
        w = torch.sigmoid(self.mlp(avg.T) + self.mlp(mx.T)).T  # (T, B)
        return w if steps is None else w[steps]

    def forward(self, x: torch.Tensor, steps: torch.Tensor | None = None) -> torch.Tensor:
        w = self.scores(x, steps)
        return x * w.reshape(*w.shape, *[1] * (x.dim() - 2))

    def macs(self, shape: tuple[int, ...], rescale: bool = True) -> int:
        """Per sample, for an input of shape (T', *features): pooling (a sum and a max per element), the MLP on
        both descriptors, and one multiply per element to rescale."""
        t, n = shape[0], prod(shape[1:])
        return 2 * t * n + 2 * 2 * self.steps * self.hidden + (t * n if rescale else 0)


class ChannelAttention(nn.Module):
    """CA (CBAM). ``per_step``: one gate per step from [..., C, H, W] (MA-SNN); else one gate per sample from
    [T, B, C, H, W] pooled over T,H,W jointly (the authors' released code)."""

    def __init__(self, channels: int, ratio: int = 8, per_step: bool = True):
        super().__init__()
        self.channels = channels
        self.hidden = max(1, channels // ratio)
        self.per_step = per_step
        self.mlp = _mlp(channels, self.hidden)

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        if self.per_step:
            descriptors = torch.stack([x.mean((-2, -1)), x.flatten(-2).max(-1).values])  # (2, ..., C): one MLP call for both
            return torch.sigmoid(self.mlp(descriptors).sum(0))[..., None, None]  # (..., C, 1, 1)
        avg, mx = x.mean((0, 3, 4)), x.amax((0, 3, 4))  # (B, C)
        return torch.sigmoid(self.mlp(avg) + self.mlp(mx))[None, :, :, None, None]  # (1, B, C, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scores(x) * x

    def macs(self, shape: tuple[int, ...]) -> int:
        """Per sample, input (T', C, H, W): pooling 2 per element, MLP on both descriptors, rescale 1 per element."""
        t, c, hw = shape[0], shape[1], prod(shape[2:])
        mlp = 2 * 2 * c * self.hidden
        return t * (3 * c * hw + mlp) if self.per_step else 3 * t * c * hw + mlp


class SpatialAttention(nn.Module):
    """SA (CBAM). ``per_step``: one map per step from [..., C, H, W] (MA-SNN, 7 x 7); else one map per sample from
    [T, B, C, H, W] pooled over T*C (the authors' code, 3 x 3)."""

    def __init__(self, kernel_size: int = 7, per_step: bool = True):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"SA kernel size must be odd, got {kernel_size}")
        self.kernel_size = kernel_size
        self.per_step = per_step
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        if self.per_step:
            pooled = torch.stack([x.mean(-3), x.max(-3).values], -3)  # (..., 2, H, W)
            lead = pooled.shape[:-3]
            return torch.sigmoid(self.conv(pooled.reshape(-1, *pooled.shape[-3:]))).reshape(*lead, 1, *x.shape[-2:])
        pooled = torch.stack([x.mean((0, 2)), x.amax((0, 2))], 1)  # (B, 2, H, W)
        return torch.sigmoid(self.conv(pooled))[None]  # (1, B, 1, H, W)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scores(x) * x

    def macs(self, shape: tuple[int, ...]) -> int:
        """Per sample, input (T', C, H, W): pooling 2 per element, the k x k conv on 2 maps, rescale 1 per element."""
        t, c, hw = shape[0], shape[1], prod(shape[2:])
        conv = 2 * self.kernel_size ** 2 * hw
        return t * (3 * c * hw + conv) if self.per_step else 3 * t * c * hw + conv


class AttentionStack(nn.Module):
    """TA, then CA, then SA (Eq. 14's order) on a [T, B, ...] block; the authors' wrapper adds a ReLU."""

    def __init__(self, ta: TemporalAttention | None = None, ca: ChannelAttention | None = None,
                 sa: SpatialAttention | None = None, relu: bool = False):
        super().__init__()
        self.ta, self.ca, self.sa, self.relu = ta, ca, sa, relu

    def forward(self, x: torch.Tensor, steps: torch.Tensor | None = None) -> torch.Tensor:
        if self.ta is not None:
            x = self.ta(x, steps)
        if self.ca is not None:
            x = self.ca(x)
        if self.sa is not None:
            x = self.sa(x)
        return torch.relu(x) if self.relu else x

    def macs(self, shape: tuple[int, ...]) -> int:
        """Per sample for an input (T', *features); the ReLU is not counted."""
        return sum(m.macs(shape) for m in (self.ta, self.ca, self.sa) if m is not None)


def build_stack(letters: str, shape: tuple[int, ...], steps: int, r_t: int = 5, r_c: int = 8,
                sa_kernel: int = 7, reference: bool = False) -> AttentionStack | None:
    """The gates named by ``letters`` for per-frame features ``shape`` ((C, H, W) or (F,)); None if no letters."""
    if not letters:
        return None
    if ("C" in letters or "S" in letters) and len(shape) != 3:
        raise ValueError(f"CA and SA need feature maps (C, H, W), got features of shape {shape}")
    return AttentionStack(
        ta=TemporalAttention(steps, r_t) if "T" in letters else None,
        ca=ChannelAttention(shape[0], r_c, per_step=not reference) if "C" in letters else None,
        sa=SpatialAttention(sa_kernel, per_step=not reference) if "S" in letters else None,
        relu=reference,
    )


class ActivatePreLIF(NeuronParameters):
    """LIF whose membrane potential is gated inside the recurrence (Eq. 14, "activate-pre"):

        U_c[t] = CA(H[t-1] + X[t]) * (H[t-1] + X[t]);  U[t] = SA(U_c[t]) * U_c[t];  then fire and reset on U[t].

    Input currents [T, B, C, H, W] -> spikes [T, B, C, H, W]. A per-step loop over lif's pure step functions.
    """

    def __init__(self, params: LIFParams = _DEFAULT_LIF, ca: ChannelAttention | None = None,
                 sa: SpatialAttention | None = None):
        if (ca is not None and not ca.per_step) or (sa is not None and not sa.per_step):
            raise ValueError("activate-pre gates act on U[t] one step at a time: build CA/SA with per_step=True")
        super().__init__(params)  # the same buffers as lif.LIF, so checkpoints of either neuron look alike
        self.ca, self.sa = ca, sa

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        params = self.current_params
        h, spikes = None, []
        for x_t in x:
            u = charge(x_t, h)  # (B, C, H, W)
            if self.ca is not None:
                u = self.ca(u)
            if self.sa is not None:
                u = self.sa(u)
            s, h = fire_and_reset(u, params)
            spikes.append(s)
        return torch.stack(spikes)

    def macs(self, shape: tuple[int, ...]) -> int:
        return sum(m.macs(shape) for m in (self.ca, self.sa) if m is not None)

    def extra_repr(self) -> str:
        p = self.params
        return f"decay={p.decay}, threshold={p.threshold}, reset={p.reset}, surrogate={p.surrogate}"


def select_frames(scores: torch.Tensor, threshold: float) -> torch.Tensor:
    """Input attention pruning (TA-SNN): binarise TA scores [T, B]; True keeps the frame with weight 1."""
    return scores > threshold


# ---------------------------------------------------------------------------------------------------------------
# reading the gates of a trained network (for visualisation)

@dataclass
class AttentionCapture:
    """What ``capture_attention`` read from one run."""

    output: Any  # what model(x, **kwargs) returned, unchanged by the capture
    layers: dict[str, dict[str, np.ndarray]]  # layer name ("input": input attention) -> {"ta": (T,), "sa": (T, H, W)}


def capture_attention(model: nn.Module, x: torch.Tensor, **kwargs) -> AttentionCapture:
    """Runs ``model`` once on sample 0 of x [T, B, ...] and reads the gates it computed: per layer the TA weight
    of each step (T,) and the SA map of each step (T, H, W). A layer without TA or SA has no such key.

    Only sample 0 runs (eval-mode samples are independent), so ``output`` is that of x[:, :1]. Steps that input
    attention pruning dropped read 0 (they were never computed); a per-sample SA map (the authors' variant) is
    repeated over T.
    """
    x = x[:, :1]
    steps = x.shape[0]
    calls: dict[tuple[str, str], list[torch.Tensor]] = {}
    with torch.inference_mode():
        kept = model.select_frames(x)[:, 0].nonzero().squeeze(1).cpu() if getattr(model, "pruning", False) else None
        with contextlib.ExitStack() as stack:
            for name, kind, module in _gates(model):
                stack.enter_context(_recording_scores(module, calls.setdefault((name, kind), [])))
            output = model(x, **kwargs)
    layers: dict[str, dict[str, np.ndarray]] = {}
    for (name, kind), recorded in calls.items():
        if recorded:  # a pruned sample with no kept frame computes nothing
            layers.setdefault(name, {})[kind] = _over_all_steps(recorded, kind, steps, kept)
    return AttentionCapture(output, layers)


def _gates(model: nn.Module):
    """(layer name, "ta" | "sa", module) for every TA and SA of a SpikingNet-like model (``layers`` with names).
    A plan puts each letter in one place per layer, so a layer holds at most one TA and one SA."""
    if getattr(model, "input_attention", None) is not None:
        yield "input", "ta", model.input_attention
    for layer in getattr(model, "layers", []):
        for module in layer.modules():
            if isinstance(module, TemporalAttention):
                yield layer.name, "ta", module
            elif isinstance(module, SpatialAttention):
                yield layer.name, "sa", module


@contextlib.contextmanager
def _recording_scores(module: nn.Module, record: list):
    """Within the block, every ``module.scores(...)`` result is also appended to ``record``. An instance attribute
    shadows the class method, so deleting it afterwards restores the module exactly."""
    original = module.__dict__.get("scores")
    compute = module.scores

    def scores(*args, **kwargs):
        result = compute(*args, **kwargs)
        record.append(result.detach().float().cpu())
        return result

    module.scores = scores
    try:
        yield
    finally:
        if original is None:
            del module.scores
        else:
            module.scores = original


def _over_all_steps(recorded: list[torch.Tensor], kind: str, steps: int, kept: torch.Tensor | None) -> np.ndarray:
    """The calls of one gate on a batch of one as (T,) or (T, H, W). A gate in a stack is called once on all
    steps, one inside an activate-pre neuron once per step; both concatenate along time."""
    values = torch.cat([r.reshape(-1) if kind == "ta" else r.reshape(-1, *r.shape[-2:]) for r in recorded])
    if kept is not None and len(values) == len(kept) < steps:
        values = values.new_zeros(steps, *values.shape[1:]).index_copy(0, kept, values)
    elif len(values) == 1 and kind == "sa":  # one map per sample (sequence-pooled SA)
        values = values.expand(steps, *values.shape[1:])
    return values.numpy().copy()
