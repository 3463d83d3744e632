"""MA-SNN networks: the 3-layer DVS net of the paper and the 5-layer net after Fang et al. (PLIF).

A network is a list of ``SpikingLayer``s: synapses (conv or FC, BN, optional AvgPool) that run once on all T*B
frames, attention gates where the plan puts them, a neuron that loops over T, and an optional MaxPool after the
neuron. Input [T, B, C, H, W] -> output [B, classes], the last layer's firing rates over T.

``forward(x, record=True)`` also returns a ``NetTrace``: per layer, the tensor its synapses received, its spikes
and the numbers accounting needs (FLOPs of one frame, neurons, frames computed, attention MACs, and the spike
and input counts, taken where the spikes are made rather than by scanning the tensors again).

Input attention pruning (TA-SNN): with ``input_attention=True`` a TA scores the raw frames; in training it
rescales them (TA(x) * x). In eval mode with ``prune_threshold`` set, frames scoring above the threshold are kept
with weight 1 and the others are dropped: each sample runs on its own kept frames only, so dropped frames cost
nothing in any layer. Downstream TAs see the kept frames at their original time positions (see TemporalAttention).
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from math import prod

import torch
from torch import nn

from .attention import ActivatePreLIF, AttentionPlan, TemporalAttention, build_stack, plan_attention, select_frames
from .lif import LIF, LIFParams
from .registry import register_model


@dataclass
class LayerTrace:
    name: str
    input: torch.Tensor  # (T, B, *in_shape): what the synapses received, after any conv-pre gate
    spikes: torch.Tensor  # (T, B, *neuron_shape), before any MaxPool
    flops: int  # synaptic operations of one dense frame: k*k*h_out*w_out*c_in*c_out or in*out
    neurons: int  # neurons of the layer (one step)
    frames: float  # frames the synapses computed, per sample (T unless frames were pruned)
    attention_macs: float  # MACs of this layer's gates, per sample
    # Counts over T and B taken where the tensors were made, so accounting need not scan them again;
    # None: accounting counts on the tensors above.
    spike_count: int | None = None  # spikes, from the neuron (a compiled neuron counts inside its loop)
    input_nonzero: int | None = None  # nonzero inputs: known when the input is the previous layer's spikes
    input_binary: bool | None = None  # whether every input is 0 or 1


@dataclass
class NetTrace:
    layers: list[LayerTrace]
    steps: int  # T of the input
    kept: torch.Tensor | None = None  # (T, B) frames kept by input attention pruning; None when nothing was dropped
    input_attention_macs: float = 0.0  # per sample: scoring (and, in training mode, rescaling) the raw frames
    passes: int = 1  # runs per answer, laid out as one batch of passes x B (BothWays: 2); accounting counts them all

    @property
    def frames_kept(self) -> float:
        """Mean frames per sample that the network computed."""
        return float(self.steps) if self.kept is None else self.kept.sum(0).float().mean().item()


def _conv_out(conv: nn.Conv2d, size: int) -> int:
    k, s, p, d = conv.kernel_size[0], conv.stride[0], conv.padding[0], conv.dilation[0]
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


class SpikingLayer(nn.Module):
    """One layer: [pre gate] -> synapses (op, BN, pool) on T*B frames -> [post gate] -> neuron -> [MaxPool]."""

    def __init__(self, name: str, in_shape: tuple[int, ...], op: nn.Module, norm: nn.Module | None,
                 plan: AttentionPlan, steps: int, lif: LIFParams, backend: str = "auto", r_t: int = 5,
                 r_c: int = 8, sa_kernel: int = 7, pool: nn.Module | None = None, pool_after: nn.Module | None = None):
        super().__init__()
        self.name = name
        self.in_shape = tuple(in_shape)
        if isinstance(op, nn.Linear):
            self.flops = op.in_features * op.out_features
            current_shape = (op.out_features,)
        else:
            h, w = _conv_out(op, in_shape[1]), _conv_out(op, in_shape[2])
            self.flops = op.kernel_size[0] * op.kernel_size[1] * h * w * op.in_channels * op.out_channels
            k = pool.kernel_size if pool is not None else 1
            current_shape = (op.out_channels, h // k, w // k)
        self.neuron_shape = current_shape
        self.neurons = prod(current_shape)
        k = pool_after.kernel_size if pool_after is not None else 1
        self.out_shape = current_shape if pool_after is None else (current_shape[0], current_shape[1] // k, current_shape[2] // k)

        parts = [("flatten", nn.Flatten())] if isinstance(op, nn.Linear) and len(in_shape) > 1 else []
        parts += [("op", op)] + ([("bn", norm)] if norm is not None else []) + ([("pool", pool)] if pool is not None else [])
        self.synapse = nn.Sequential(OrderedDict(parts))

        gates = {"steps": steps, "r_t": r_t, "r_c": r_c, "sa_kernel": sa_kernel, "reference": plan.reference}
        self.pre = build_stack(plan.pre, self.in_shape, **gates)
        self.post = build_stack(plan.post, self.neuron_shape, **gates)
        if plan.activate:
            inner = build_stack(plan.activate, self.neuron_shape, **gates)
            self.neuron = ActivatePreLIF(lif, inner.ca, inner.sa)
        else:
            self.neuron = LIF(lif, backend)
        self.pool_after = pool_after

    @property
    def op(self) -> nn.Module:
        """The conv or linear synapse (FLOPs are counted on it)."""
        return self.synapse.op

    def forward(self, x: torch.Tensor, steps: torch.Tensor | None = None,
                record: bool = False) -> tuple[torch.Tensor, LayerTrace | None]:
        t, b = x.shape[:2]
        if self.pre is not None:
            x = self.pre(x, steps)
        current = self.synapse(x.flatten(0, 1)).unflatten(0, (t, b))  # stateless: once for all T*B frames
        if self.post is not None:
            current = self.post(current, steps)
        counted = getattr(self.neuron, "forward_counted", None) if record else None
        if counted is not None:  # the compiled neuron counts its spikes as it fires them
            spikes, fired = counted(current)
        else:
            spikes = self.neuron(current)  # (T, B, *neuron_shape)
            fired = int(torch.count_nonzero(spikes)) if record else None  # spikes are 0 or 1: the nonzeros
        out = spikes if self.pool_after is None else self.pool_after(spikes.flatten(0, 1)).unflatten(0, (t, b))
        if not record:
            return out, None
        macs = sum(m.macs((t, *shape)) for m, shape in ((self.pre, self.in_shape), (self.post, self.neuron_shape),
                                                        (self.neuron, self.neuron_shape)) if hasattr(m, "macs"))
        return out, LayerTrace(self.name, x, spikes, self.flops, self.neurons, float(t), float(macs), fired)


class SpikingNet(nn.Module):
    """Layers in sequence; output = firing rate of the last layer over the (kept) steps, [B, classes]."""

    def __init__(self, layers: list[SpikingLayer], steps: int, input_attention: bool = False, r_t: int = 5,
                 prune_threshold: float | None = None):
        super().__init__()
        self.steps = steps
        self.layers = nn.ModuleList(layers)
        self.input_attention = TemporalAttention(steps, r_t) if input_attention else None
        if prune_threshold is not None and not input_attention:
            raise ValueError("prune_threshold needs input_attention=True (the TA that scores the raw frames)")
        self.prune_threshold = prune_threshold
        self.num_classes = layers[-1].neurons

    @property
    def pruning(self) -> bool:
        return self.input_attention is not None and self.prune_threshold is not None and not self.training

    def neuron_counts(self) -> dict[str, int]:
        return {layer.name: layer.neurons for layer in self.layers}

    def select_frames(self, x: torch.Tensor) -> torch.Tensor:
        """(T, B) bool: the frames input attention pruning keeps."""
        if self.input_attention is None or self.prune_threshold is None:
            raise ValueError("frame selection needs input_attention=True and a prune_threshold")
        return select_frames(self.input_attention.scores(x), self.prune_threshold)

    def forward(self, x: torch.Tensor, record: bool = False):
        if x.dim() != 5:
            raise ValueError(f"expected frames [T, B, C, H, W], got shape {tuple(x.shape)}")
        if self.pruning:
            return self._forward_pruned(x, record)
        t = x.shape[0]
        gate_macs = 0.0
        if self.input_attention is not None:
            x = self.input_attention(x)
            gate_macs = float(self.input_attention.macs(tuple(x.shape[:1] + x.shape[2:])))
        spikes, traces = self._run(x, None, record)
        rates = spikes.mean(0)  # (B, classes)
        return (rates, NetTrace(traces, t, None, gate_macs)) if record else rates

    def _run(self, x: torch.Tensor, steps: torch.Tensor | None, record: bool):
        traces = []
        for i, layer in enumerate(self.layers):
            x, trace = layer(x, steps, record)
            if record and i > 0 and layer.pre is None and self.layers[i - 1].pool_after is None:
                # the synapses received the previous layer's spikes as they were: binary, as many nonzeros as spikes
                trace.input_nonzero, trace.input_binary = traces[-1].spike_count, True
            traces.append(trace)
        return x, traces

    def _forward_pruned(self, x: torch.Tensor, record: bool):
        t, b = x.shape[:2]
        keep = self.select_frames(x)  # (T, B)
        rates, runs = [], []
        for i in range(b):  # samples keep different frames: each runs on its own kept frames only
            idx = keep[:, i].nonzero().squeeze(1)
            if idx.numel() == 0:
                rates.append(x.new_zeros(self.num_classes))
                runs.append((idx, None))
                continue
            spikes, traces = self._run(x[idx, i:i + 1], idx, record)
            rates.append(spikes.mean(0)[0])
            runs.append((idx, traces))
        rates = torch.stack(rates)
        if not record:
            return rates
        gate_macs = float(self.input_attention.macs(tuple(x.shape[:1] + x.shape[2:]), rescale=False))
        return rates, NetTrace(self._merge(runs, x), t, keep, gate_macs)

    def _merge(self, runs, x: torch.Tensor) -> list[LayerTrace]:
        """Per-sample traces back to (T, B, ...), zeros at dropped frames; per-sample numbers averaged."""
        t, b = x.shape[:2]
        merged = []
        for j, layer in enumerate(self.layers):
            inputs = x.new_zeros(t, b, *layer.in_shape)
            spikes = x.new_zeros(t, b, *layer.neuron_shape)
            macs = 0.0
            ran = [traces[j] for _, traces in runs if traces is not None]
            for i, (idx, traces) in enumerate(runs):
                if traces is not None:
                    inputs[idx, i] = traces[j].input[:, 0]
                    spikes[idx, i] = traces[j].spikes[:, 0]
                    macs += traces[j].attention_macs
            frames = sum(idx.numel() for idx, _ in runs) / b
            # dropped frames hold zeros: the counts are the runs' sums (None if any run left one to the tensors)
            fired = _total(tr.spike_count for tr in ran)
            nonzero = _total(tr.input_nonzero for tr in ran)
            binary = None if nonzero is None else all(tr.input_binary for tr in ran)
            merged.append(LayerTrace(layer.name, inputs, spikes, layer.flops, layer.neurons, frames, macs / b,
                                     fired, nonzero, binary))
        return merged


def _total(counts) -> int | None:
    counts = list(counts)
    return None if any(c is None for c in counts) else sum(counts)


# ---------------------------------------------------------------------------------------------------------------
# architectures

def _lif_params(lif: LIFParams | dict | None) -> LIFParams:
    if lif is None:
        return LIFParams()
    return lif if isinstance(lif, LIFParams) else LIFParams(**lif)


def _common(attention, placement, T, r_t, r_c, sa_kernel, lif, backend) -> dict:
    plan = plan_attention(attention, placement)
    if sa_kernel is None:
        sa_kernel = 3 if plan.reference else 7
    return {"plan": plan, "steps": T, "r_t": r_t, "r_c": r_c, "sa_kernel": sa_kernel, "lif": _lif_params(lif),
            "backend": backend}


def ma_snn_3layer_net(num_classes: int = 11, in_channels: int = 2, input_size: int = 32, T: int = 60,
                      attention: str = "TCS", placement: str = "paper", r_t: int = 5, r_c: int = 8,
                      sa_kernel: int | None = None, lif: LIFParams | dict | None = None, backend: str = "auto",
                      input_attention: bool = False, prune_threshold: float | None = None) -> SpikingNet:
    """Conv 2->64 | Conv 64->128 AvgPool2 | Conv 128->128 AvgPool2 | FC ->256 | FC ->classes; 3x3 convs, padding 1,
    every layer BN then LIF. On 2 x 32 x 32 input: 106,763 neurons with 11 classes."""
    c = _common(attention, placement, T, r_t, r_c, sa_kernel, lif, backend)
    fc_plan = c["plan"].for_fc()
    s = input_size
    layers = [
        SpikingLayer("conv1", (in_channels, s, s), nn.Conv2d(in_channels, 64, 3, padding=1), nn.BatchNorm2d(64), **c),
        SpikingLayer("conv2", (64, s, s), nn.Conv2d(64, 128, 3, padding=1), nn.BatchNorm2d(128),
                     pool=nn.AvgPool2d(2), **c),
        SpikingLayer("conv3", (128, s // 2, s // 2), nn.Conv2d(128, 128, 3, padding=1), nn.BatchNorm2d(128),
                     pool=nn.AvgPool2d(2), **c),
    ]
    flat = 128 * (s // 4) ** 2
    layers += [
        SpikingLayer("fc1", layers[-1].out_shape, nn.Linear(flat, 256), nn.BatchNorm1d(256), **{**c, "plan": fc_plan}),
        SpikingLayer("fc2", (256,), nn.Linear(256, num_classes), nn.BatchNorm1d(num_classes), **{**c, "plan": fc_plan}),
    ]
    return SpikingNet(layers, T, input_attention, r_t, prune_threshold)


def ma_snn_5layer_net(num_classes: int = 11, in_channels: int = 2, input_size: int = 128, T: int = 20,
                      channels: int = 128, fc_hidden: int = 512, attention: str = "TCS", placement: str = "paper",
                      r_t: int = 5, r_c: int = 8, sa_kernel: int | None = None, lif: LIFParams | dict | None = None,
                      backend: str = "auto", input_attention: bool = False,
                      prune_threshold: float | None = None) -> SpikingNet:
    """{Conv 3x3 (padding 1, no bias), BN, LIF, MaxPool2} x 5, then FC -> fc_hidden and FC -> classes (BN1d, LIF).
    Fang et al.'s DVS Gesture net without dropout and voting. On 2 x 128 x 128: 2,793,472 conv neurons."""
    c = _common(attention, placement, T, r_t, r_c, sa_kernel, lif, backend)
    layers, shape = [], (in_channels, input_size, input_size)
    for i in range(5):
        conv = nn.Conv2d(shape[0], channels, 3, padding=1, bias=False)
        layers.append(SpikingLayer(f"conv{i + 1}", shape, conv, nn.BatchNorm2d(channels),
                                   pool_after=nn.MaxPool2d(2), **c))
        shape = layers[-1].out_shape
    fc = {**c, "plan": c["plan"].for_fc()}
    layers += [
        SpikingLayer("fc1", shape, nn.Linear(prod(shape), fc_hidden), nn.BatchNorm1d(fc_hidden), **fc),
        SpikingLayer("fc2", (fc_hidden,), nn.Linear(fc_hidden, num_classes), nn.BatchNorm1d(num_classes), **fc),
    ]
    return SpikingNet(layers, T, input_attention, r_t, prune_threshold)


# ---------------------------------------------------------------------------------------------------------------
# registered variants (names: the function name with "-" for "_")

@register_model
def ma_snn_3layer(**kwargs) -> SpikingNet:
    """MA-SNN 3-layer DVS net (Gesture / Gait, 2 x 32 x 32, T = 60); default TCSA at the paper's placement."""
    return ma_snn_3layer_net(**kwargs)


@register_model
def ma_snn_5layer(**kwargs) -> SpikingNet:
    """5-layer net after Fang et al. (2 x 128 x 128, T = 20); default TCSA at the paper's placement."""
    return ma_snn_5layer_net(**kwargs)
