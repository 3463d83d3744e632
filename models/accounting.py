"""Spikes, operations and energy of one forward pass (MA-SNN, Sec. 4; reference/ma-snn.md section 6).

All figures are per sample (averaged over the batch):

- spikes, firing rate = spikes / (neurons * T), NASAR = all spikes / (all neurons * T);
- synaptic operations of a conv/FC layer: when its input is binary (spikes), accumulates
  SOPs = input firing rate * T * FLOPs, with FLOPs(conv) = k*k*h_out*w_out*c_in*c_out and FLOPs(fc) = in*out;
  when it is real-valued (the event-count frames of the first layer, or spikes rescaled by a conv-pre gate),
  multiply-accumulates MACs = frames computed * FLOPs (dense: every frame the layer ran on, so T * FLOPs(first
  conv) without pruning). The test is on the values: binary event frames (clipped counts) count as spikes;
- attention MACs: pooling (a sum and a max per element), the MLP or conv computing the gate, and one multiply per
  rescaled element; every add, compare and multiply counted at E_MAC (an upper bound). Not counted: sigmoids,
  ReLUs, BN (it folds into the weights at inference) and the adds/compares of AvgPool and MaxPool;
- E = E_MAC * (MACs + attention MACs) + E_AC * SOPs;
- the ANN of the same shape (same conv/FC layers, no attention) costs E_MAC * FLOPs per frame, reported both
  frame by frame (x T, the fair comparison on the same input frames) and single-frame (x 1);
- rEE = E_base / E_model against a baseline report (the vanilla SNN).

Spikes and nonzero inputs are counted where they are made (``LayerTrace``'s counts: a compiled neuron counts
inside its loop, a layer fed by the previous layer's spikes inherits their count), so accounting scans no whole
tensor but the first layer's frames; a trace without counts is counted on its tensors, with the same figures.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

import torch

from .networks import NetTrace


@dataclass(frozen=True)
class EnergyPreset:
    name: str
    e_mac_pj: float
    e_ac_pj: float


ENERGY_PRESETS = {
    "fp32-45nm": EnergyPreset("fp32-45nm", 4.6, 0.9),  # Horowitz, ISSCC 2014
    "fp16-45nm": EnergyPreset("fp16-45nm", 1.5, 0.4),
    "int8-45nm": EnergyPreset("int8-45nm", 0.23, 0.03),
}


def get_preset(preset: str | EnergyPreset) -> EnergyPreset:
    if isinstance(preset, EnergyPreset):
        return preset
    if preset not in ENERGY_PRESETS:
        raise ValueError(f"energy preset must be one of {sorted(ENERGY_PRESETS)}, got {preset!r}")
    return ENERGY_PRESETS[preset]


@dataclass
class LayerReport:
    name: str
    neurons: int
    spikes: float  # per sample, over all steps
    firing_rate: float  # spikes / (neurons * T)
    input_rate: float  # nonzero fraction of the synaptic input, over T
    input_binary: bool  # True: the synapses accumulate (AC); False: they multiply-accumulate (MAC)
    flops: int  # one dense frame
    frames: float  # frames computed
    sops: float
    macs: float  # synaptic MACs
    attention_macs: float
    energy_pj: float


@dataclass
class Report:
    preset: EnergyPreset
    steps: int
    frames_kept: float  # per sample; == steps unless input attention pruning dropped frames
    batch: int
    layers: list[LayerReport] = field(default_factory=list)
    spikes: float = 0.0
    neurons: int = 0
    nasar: float = 0.0
    sops: float = 0.0
    macs: float = 0.0  # synaptic MACs
    attention_macs: float = 0.0  # the layers' gates plus input attention
    energy_pj: float = 0.0
    ann_frame_by_frame_energy_pj: float = 0.0  # E_MAC * FLOPs * T
    ann_single_frame_energy_pj: float = 0.0  # E_MAC * FLOPs
    ree: float | None = None  # E_baseline / E_model, when a baseline was given

    def ree_against(self, baseline: Report) -> float:
        return baseline.energy_pj / self.energy_pj

    def to_dict(self) -> dict:
        return asdict(self)


def _input_counts(tr) -> tuple[int, bool]:
    """Nonzero inputs over T and B and whether all are 0 or 1: from the trace when the network counted them, else
    from the input tensor (the first layer's frames, a gated input)."""
    if tr.input_nonzero is not None and tr.input_binary is not None:
        return tr.input_nonzero, tr.input_binary
    x = tr.input.detach()
    return (x != 0).sum().item(), bool(((x == 0) | (x == 1)).all())


def _spike_count(tr) -> float:
    return tr.spike_count if tr.spike_count is not None else tr.spikes.detach().sum().item()


def _layer_report(tr, steps: int, preset: EnergyPreset) -> LayerReport:
    b = tr.input.shape[1]
    in_size = tr.input[0, 0].numel()
    nonzero, binary = _input_counts(tr)
    input_rate = nonzero / (b * steps * in_size)
    sops = input_rate * steps * tr.flops if binary else 0.0
    macs = 0.0 if binary else tr.frames * tr.flops
    spikes = _spike_count(tr) / b
    energy = preset.e_mac_pj * (macs + tr.attention_macs) + preset.e_ac_pj * sops
    return LayerReport(tr.name, tr.neurons, spikes, spikes / (tr.neurons * steps), input_rate, binary, tr.flops,
                       tr.frames, sops, macs, tr.attention_macs, energy)


def _times(layer: LayerReport, passes: int) -> LayerReport:
    """One pass's layer figures as those of ``passes`` alike passes."""
    if passes == 1:
        return layer
    return replace(layer, spikes=layer.spikes * passes, frames=layer.frames * passes, sops=layer.sops * passes,
                   macs=layer.macs * passes, attention_macs=layer.attention_macs * passes,
                   energy_pj=layer.energy_pj * passes)


def account(trace: NetTrace, preset: str | EnergyPreset = "fp32-45nm", baseline: Report | None = None) -> Report:
    """The report of one recorded forward pass (``model(x, record=True)[1]``). A trace of several passes per answer
    (``trace.passes``, ``BothWays``): spikes, operations and energy count all of them, rates (firing rates, NASAR)
    stay those of one pass."""
    preset = get_preset(preset)
    t, passes = trace.steps, trace.passes
    layers = [_times(_layer_report(tr, t, preset), passes) for tr in trace.layers]
    r = Report(preset, t, trace.frames_kept, trace.layers[0].input.shape[1] // passes, layers)
    r.spikes = sum(lr.spikes for lr in layers)
    r.neurons = sum(lr.neurons for lr in layers)
    r.nasar = r.spikes / (r.neurons * t * passes)
    r.sops = sum(lr.sops for lr in layers)
    r.macs = sum(lr.macs for lr in layers)
    r.attention_macs = sum(lr.attention_macs for lr in layers) + trace.input_attention_macs * passes
    r.energy_pj = sum(lr.energy_pj for lr in layers) + preset.e_mac_pj * trace.input_attention_macs * passes
    flops = sum(lr.flops for lr in layers)
    r.ann_frame_by_frame_energy_pj = preset.e_mac_pj * flops * t * passes
    r.ann_single_frame_energy_pj = preset.e_mac_pj * flops * passes
    if baseline is not None:
        r.ree = r.ree_against(baseline)
    return r


@torch.no_grad()
def measure(model, x: torch.Tensor, preset: str | EnergyPreset = "fp32-45nm",
            baseline: Report | None = None) -> Report:
    """Run ``model(x, record=True)`` without gradients and account for it (the caller picks train/eval mode)."""
    _, trace = model(x, record=True)
    return account(trace, preset, baseline)
