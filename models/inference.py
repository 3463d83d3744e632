"""A faster copy of a trained network for CPU inference: the same function, less work.

``prepare_for_inference(model)`` returns an eval-mode copy where
- every synapse is one operator: BatchNorm (eval: a per-channel affine map) is folded into the conv or
  linear weights, and a following 2x2 AvgPool into the conv itself: conv3x3 (padding 1) then AvgPool2
  equals one 4x4 convolution with stride 2 and padding 1 whose kernel is the 3x3 one spread over the
  2x2 window, which costs 16 / (9 * 4) = 0.44 of the conv plus the pooling;
- activate-pre neurons (CA and SA on the membrane potential inside the time loop) run as one compiled
  loop per sample: charge, channel attention, spatial attention, fire and reset for all T steps, instead of
  some twenty small tensor operations per step;
- optionally (``bf16=True``) the synapses run in bfloat16 (spikes are exact in it; weights are rounded).
Results equal the original up to float rounding, which can flip a spike that sits on the threshold:
``agreement`` measures how often predictions and spikes match.
"""
from __future__ import annotations

import copy

import numba
import numpy as np
import torch
from torch import nn
from torch.nn.utils import skip_init

from .attention import ActivatePreLIF
from .lif import RESETS


def _bn_affine(bn: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps) if bn.affine else 1 / torch.sqrt(bn.running_var + bn.eps)
    shift = (bn.bias if bn.affine else 0) - bn.running_mean * scale
    return scale, shift


def fused_synapse(synapse: nn.Sequential) -> nn.Module:
    """(flatten) op (BN) (AvgPool2) as one conv or linear with the same eval-mode output.

    The new layers are built with ``skip_init``: their weights are overwritten, so a random init would only
    cost time and a draw from the caller's RNG."""
    parts = dict(synapse.named_children())
    op, bn, pool = parts["op"], parts.get("bn"), parts.get("pool")
    weight = op.weight.detach().clone()
    bias = op.bias.detach().clone() if op.bias is not None else torch.zeros(weight.shape[0])
    if bn is not None:
        if not bn.track_running_stats or bn.running_mean is None:
            return synapse  # batch statistics at inference: nothing to fold
        scale, shift = _bn_affine(bn)
        weight = weight * scale.detach().reshape(-1, *([1] * (weight.dim() - 1)))
        bias = bias * scale.detach() + shift.detach()
    if isinstance(op, nn.Linear):
        linear = skip_init(nn.Linear, op.in_features, op.out_features)
        linear.weight.data, linear.bias.data = weight, bias
        return nn.Sequential(nn.Flatten(), linear) if "flatten" in parts else linear
    if pool is None:
        conv = skip_init(nn.Conv2d, op.in_channels, op.out_channels, op.kernel_size, op.stride, op.padding)
        conv.weight.data, conv.bias.data = weight, bias
        return conv
    if not (isinstance(pool, nn.AvgPool2d) and pool.kernel_size in (2, (2, 2)) and op.kernel_size == (3, 3) and op.padding == (1, 1) and op.stride == (1, 1)):
        return synapse
    spread = torch.zeros(*weight.shape[:2], 4, 4)
    for a in (0, 1):
        for b in (0, 1):
            spread[:, :, a : a + 3, b : b + 3] += weight / 4
    conv = skip_init(nn.Conv2d, op.in_channels, op.out_channels, 4, stride=2, padding=1)
    conv.weight.data, conv.bias.data = spread, bias
    return conv


class Bf16(nn.Module):
    """Runs a module in bfloat16 and hands float32 back."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module.to(torch.bfloat16)

    def forward(self, x):
        return self.module(x.to(torch.bfloat16)).float()


@numba.njit(cache=True, nogil=True, fastmath=False)
def _charge(h, x_t, u, descriptor):
    """u = h + x_t; descriptor[0] / [1]: each channel's mean and max of u (the CA's pooled inputs)."""
    channels, height, width = u.shape
    n = height * width
    for c in range(channels):
        total = np.float32(0.0)
        peak = np.float32(-np.inf)
        for i in range(height):
            for j in range(width):
                v = h[c, i, j] + x_t[c, i, j]
                u[c, i, j] = v
                total += v
                if v > peak:
                    peak = v
        descriptor[0, c] = total / n
        descriptor[1, c] = peak


@numba.njit(cache=True, nogil=True, fastmath=False)
def _channel_gate(u, descriptor, ca_in, ca_out, hidden_sum, gate_c):
    """u *= sigmoid(MLP(mean) + MLP(max)) per channel; the MLP is ca_out @ relu(ca_in @ d)."""
    channels, height, width = u.shape
    hidden = ca_in.shape[0]
    for c in range(channels):
        gate_c[c] = 0.0
    for d in range(2):
        for q in range(hidden):
            acc = np.float32(0.0)
            for c in range(channels):
                acc += ca_in[q, c] * descriptor[d, c]
            hidden_sum[q] = acc if acc > 0 else np.float32(0.0)
        for c in range(channels):
            acc = np.float32(0.0)
            for q in range(hidden):
                acc += ca_out[c, q] * hidden_sum[q]
            gate_c[c] += acc
    for c in range(channels):
        g = np.float32(1.0) / (np.float32(1.0) + np.exp(-gate_c[c]))
        for i in range(height):
            for j in range(width):
                u[c, i, j] *= g


@numba.njit(cache=True, nogil=True, fastmath=False)
def _spatial_gate(u, sa_weight, pooled, gate_s):
    """u *= sigmoid(conv_k([mean over channels, max over channels])) per pixel; ``pooled`` is zero-padded."""
    channels, height, width = u.shape
    k = sa_weight.shape[-1]
    half = k // 2
    # loops ordered so that the innermost one walks contiguous memory (and vectorises)
    for i in range(height):
        for j in range(width):
            pooled[0, i + half, j + half] = 0.0
            pooled[1, i + half, j + half] = -np.inf
    for c in range(channels):
        for i in range(height):
            for j in range(width):
                v = u[c, i, j]
                pooled[0, i + half, j + half] += v
                if v > pooled[1, i + half, j + half]:
                    pooled[1, i + half, j + half] = v
    for i in range(height):
        for j in range(width):
            pooled[0, i + half, j + half] /= channels
            gate_s[i, j] = 0.0
    for d in range(2):
        for a in range(k):
            for b in range(k):
                w = sa_weight[d, a, b]
                for i in range(height):
                    for j in range(width):
                        gate_s[i, j] += w * pooled[d, i + a, j + b]
    for i in range(height):
        for j in range(width):
            gate_s[i, j] = np.float32(1.0) / (np.float32(1.0) + np.exp(-gate_s[i, j]))
    for c in range(channels):
        for i in range(height):
            for j in range(width):
                u[c, i, j] *= gate_s[i, j]


@numba.njit(cache=True, nogil=True, fastmath=False)
def _fire_and_reset(u, h, spikes_t, decay, threshold, v_reset, reset_kind):
    """spikes_t = u >= threshold; h = the reset (0 hard, 1 soft, 2 threshold: the authors' code) times decay.
    Returns the number of spikes (counted here, so accounting need not scan the spikes again)."""
    channels, height, width = u.shape
    count = 0
    for c in range(channels):
        for i in range(height):
            for j in range(width):
                v = u[c, i, j]
                fired = v - threshold >= 0
                spikes_t[c, i, j] = 1.0 if fired else 0.0
                count += 1 if fired else 0
                if reset_kind == 0:  # hard
                    h[c, i, j] = v_reset if fired else decay * v
                elif reset_kind == 1:  # soft
                    h[c, i, j] = decay * (v - threshold) if fired else decay * v
                else:  # threshold
                    h[c, i, j] = decay * threshold if fired else decay * v
    return count


@numba.njit(cache=True, nogil=True, fastmath=False)
def _activate_pre_loop(x, ca_in, ca_out, sa_weight, has_ca, has_sa, decay, threshold, v_reset, reset_kind, spikes):
    """x: currents [T, C, H, W] of one sample (float32); writes spikes [T, C, H, W] and returns their number.
    See ActivatePreLIF."""
    steps, channels, height, width = x.shape
    half = sa_weight.shape[-1] // 2
    h = np.zeros((channels, height, width), np.float32)
    u = np.empty((channels, height, width), np.float32)
    descriptor = np.empty((2, channels), np.float32)
    gate_c = np.empty(channels, np.float32)
    hidden_sum = np.empty(ca_in.shape[0], np.float32)
    pooled = np.zeros((2, height + 2 * half, width + 2 * half), np.float32)
    gate_s = np.empty((height, width), np.float32)
    fired = 0
    for t in range(steps):
        _charge(h, x[t], u, descriptor)
        if has_ca:
            _channel_gate(u, descriptor, ca_in, ca_out, hidden_sum, gate_c)
        if has_sa:
            _spatial_gate(u, sa_weight, pooled, gate_s)
        fired += _fire_and_reset(u, h, spikes[t], decay, threshold, v_reset, reset_kind)
    return fired


class CompiledActivatePreLIF(nn.Module):
    """ActivatePreLIF's inference, one compiled loop per sample (no autograd)."""

    def __init__(self, neuron: ActivatePreLIF):
        super().__init__()
        p = neuron.current_params
        self.params = p
        ca, sa = neuron.ca, neuron.sa
        self.has_ca, self.has_sa = ca is not None, sa is not None
        self.ca_in = ca.mlp[0].weight.detach().float().numpy().copy() if ca else np.zeros((1, 1), np.float32)
        self.ca_out = ca.mlp[2].weight.detach().float().numpy().copy() if ca else np.zeros((1, 1), np.float32)
        self.sa_weight = sa.conv.weight.detach().float()[0].numpy().copy() if sa else np.zeros((2, 1, 1), np.float32)
        self.reset_kind = RESETS.index(p.reset)
        self.macs = neuron.macs  # accounting counts the gates' work as the original neuron does

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_counted(x)[0]

    def forward_counted(self, x: torch.Tensor) -> tuple[torch.Tensor, int]:
        """(spikes, their number over T and B), counted inside the compiled loop where they are made."""
        currents = x.detach().float().contiguous().numpy()
        spikes = torch.empty(x.shape, dtype=torch.float32)
        out, p = spikes.numpy(), self.params
        fired = 0
        for b in range(x.shape[1]):  # written in place: no copies for a batch of one
            fired += _activate_pre_loop(currents[:, b], self.ca_in, self.ca_out, self.sa_weight, self.has_ca,
                                        self.has_sa, np.float32(p.decay), np.float32(p.threshold),
                                        np.float32(p.v_reset), self.reset_kind, out[:, b])
        return spikes, int(fired)


def prepare_for_inference(model: nn.Module, bf16: bool = False) -> nn.Module:
    """An eval-mode copy of ``model`` with fused synapses and compiled activate-pre neurons."""
    fast = copy.deepcopy(model).eval()
    for layer in fast.layers:
        synapse = fused_synapse(layer.synapse)
        layer.synapse = Bf16(synapse) if bf16 else synapse
        if isinstance(layer.neuron, ActivatePreLIF):
            layer.neuron = CompiledActivatePreLIF(layer.neuron)
    return fast


@torch.inference_mode()
def agreement(model: nn.Module, fast: nn.Module, x: torch.Tensor) -> dict:
    """How often the fast copy's predictions and output firing rates match the original's."""
    reference, ours = model.eval()(x), fast(x)
    return {
        "same_prediction": float((reference.argmax(-1) == ours.argmax(-1)).float().mean()),
        "max_rate_difference": float((reference - ours).abs().max()),
        "samples": int(x.shape[1]),
    }


__all__ = ["prepare_for_inference", "fused_synapse", "CompiledActivatePreLIF", "agreement"]
