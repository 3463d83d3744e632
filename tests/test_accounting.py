"""Spike, operation and energy accounting against hand computations."""
import json
from dataclasses import replace

import pytest
import torch
from torch import nn

from masnn.models import create_model
from masnn.models.accounting import ENERGY_PRESETS, account, measure
from masnn.models.attention import ChannelAttention, SpatialAttention, TemporalAttention, plan_attention
from masnn.models.inference import prepare_for_inference
from masnn.models.lif import LIFParams
from masnn.models.networks import LayerTrace, NetTrace, SpikingLayer, SpikingNet

T, B = 2, 2
CONV_FLOPS = 3 * 3 * 4 * 4 * 1 * 2  # conv 1 -> 2, 3x3, padding 1, on 4 x 4: 288
FC_FLOPS = 32 * 3  # 96


def _spikes(shape, per_sample):
    """Binary tensor (T, B, *shape) with per_sample[b] spikes in sample b."""
    s = torch.zeros(T, B, *shape)
    for b, n in enumerate(per_sample):
        flat = torch.zeros(s[:, b].numel())
        flat[:n] = 1
        s[:, b] = flat.view(T, *shape)
    return s


def _trace(conv_spikes, fc_attention_macs):
    counts = torch.zeros(T, B, 1, 4, 4)
    counts[0, :, 0, 0, :2] = 2.0  # event counts: real-valued input, the first layer multiply-accumulates
    conv = _spikes((2, 4, 4), conv_spikes)
    fc = _spikes((3,), (1, 2))
    return NetTrace([
        LayerTrace("conv", counts, conv, CONV_FLOPS, 32, float(T), 0.0),
        LayerTrace("fc", conv.flatten(2), fc, FC_FLOPS, 3, float(T), fc_attention_macs),
    ], steps=T)


def test_energy_of_a_tiny_network_by_hand():
    model = account(_trace((6, 10), fc_attention_macs=50.0), "fp32-45nm")
    conv, fc = model.layers
    # conv: input not binary -> MACs = frames * FLOPs = 2 * 288; spikes 8 per sample of 32 neurons x 2 steps
    assert not conv.input_binary and conv.macs == 576 and conv.sops == 0
    assert conv.spikes == 8 and conv.firing_rate == pytest.approx(8 / 64)
    # fc: binary input, rate 16 / (2 samples * 2 steps * 32) = 0.125 -> SOPs = 0.125 * 2 * 96 = 24
    assert fc.input_binary and fc.input_rate == pytest.approx(0.125) and fc.sops == pytest.approx(24)
    assert fc.spikes == 1.5 and fc.firing_rate == pytest.approx(0.25)
    assert model.spikes == 9.5 and model.neurons == 35 and model.nasar == pytest.approx(9.5 / 70)
    assert model.sops == pytest.approx(24) and model.macs == 576 and model.attention_macs == 50
    assert model.energy_pj == pytest.approx(4.6 * (576 + 50) + 0.9 * 24)  # 2901.2
    assert model.ann_frame_by_frame_energy_pj == pytest.approx(4.6 * (288 + 96) * 2)  # 3532.8
    assert model.ann_single_frame_energy_pj == pytest.approx(4.6 * (288 + 96))
    # vanilla: more spikes reach the FC layer (32 -> rate 0.25, 48 SOPs), no attention
    base = account(_trace((16, 16), fc_attention_macs=0.0), "fp32-45nm")
    assert base.energy_pj == pytest.approx(4.6 * 576 + 0.9 * 48)  # 2692.8
    compared = account(_trace((6, 10), fc_attention_macs=50.0), "fp32-45nm", baseline=base)
    assert compared.ree == pytest.approx(2692.8 / 2901.2)
    # other presets
    int8 = account(_trace((6, 10), fc_attention_macs=50.0), "int8-45nm")
    assert int8.energy_pj == pytest.approx(0.23 * 626 + 0.03 * 24)
    assert ENERGY_PRESETS["fp16-45nm"].e_mac_pj == 1.5 and ENERGY_PRESETS["fp16-45nm"].e_ac_pj == 0.4
    with pytest.raises(ValueError, match="fp32-45nm"):
        account(_trace((6, 10), 0.0), "fp64")
    assert json.loads(json.dumps(compared.to_dict()))["layers"][1]["sops"] == pytest.approx(24)


def test_attention_mac_counts_by_hand():
    # TA on (T=4, F=2), hidden 2: pooling 2*4*2 + MLP 2 paths * (4*2 + 2*4) + rescale 4*2
    assert TemporalAttention(4, 2).macs((4, 2)) == 16 + 32 + 8
    assert TemporalAttention(4, 2).macs((4, 2), rescale=False) == 16 + 32
    # CA per step on (1, C=2, 2, 2), hidden 1: pooling 2*8 + MLP 2 * (2 + 2) + rescale 8
    assert ChannelAttention(2, 2).macs((1, 2, 2, 2)) == 16 + 8 + 8
    # SA 7x7 per step on (1, 2, 2, 2): pooling 16 + conv 2*49*4 + rescale 8
    assert SpatialAttention(7).macs((1, 2, 2, 2)) == 16 + 392 + 8
    # reference CA over (T=3, C=4, 5, 5), hidden 2: pooling and rescale over the block, one MLP per sample
    assert ChannelAttention(4, 2, per_step=False).macs((3, 4, 5, 5)) == 3 * 300 + 2 * 2 * 4 * 2
    assert SpatialAttention(3, per_step=False).macs((3, 4, 5, 5)) == 3 * 300 + 2 * 9 * 25


def _tiny_net(attention="", placement="paper"):
    plan = plan_attention(attention, placement)
    common = {"plan": plan, "steps": T, "lif": LIFParams(threshold=0.5), "r_t": 1, "r_c": 1}
    conv = SpikingLayer("conv", (1, 4, 4), nn.Conv2d(1, 2, 3, padding=1), nn.BatchNorm2d(2), **common)
    fc = SpikingLayer("fc", (2, 4, 4), nn.Linear(32, 3), nn.BatchNorm1d(3), **{**common, "plan": plan.for_fc()})
    return SpikingNet([conv, fc], T)


def test_measure_on_real_layers_matches_the_formulas():
    torch.manual_seed(0)
    net = _tiny_net("TCS", "paper").eval()
    x = torch.randint(0, 3, (T, B, 1, 4, 4)).float()
    report = measure(net, x)
    _, trace = net(x, record=True)
    conv, fc = report.layers
    assert (conv.flops, fc.flops, conv.neurons, fc.neurons) == (CONV_FLOPS, FC_FLOPS, 32, 3)
    assert conv.macs == T * CONV_FLOPS and conv.sops == 0
    fc_rate = trace.layers[0].spikes.sum().item() / (B * T * 32)
    assert fc.input_rate == pytest.approx(fc_rate) and fc.sops == pytest.approx(fc_rate * T * FC_FLOPS)
    # the conv layer's gates on its 2 x 4 x 4 output (32 values a frame), T = 2, r_t = r_c = 1:
    # - TA at conv-post, MLP 2 -> 2 -> 2: pooling 2 * 2 * 32 = 128, MLP 2 descriptors * (2*2 + 2*2) = 16,
    #   rescale 2 * 32 = 64 -> 208
    # - CA on U at every step, MLP 2 -> 2 -> 2: per step pooling 2 * 32 = 64, MLP 2 * (2*2 + 2*2) = 16,
    #   rescale 32 -> 2 * 112 = 224
    # - SA 7 x 7 on U at every step: per step pooling 64, conv 2 maps * 49 * 16 pixels = 1568, rescale 32
    #   -> 2 * 1664 = 3328
    assert conv.attention_macs == 208 + 224 + 3328
    # the FC layer's TA on 3 neurons: pooling 2 * 2 * 3 = 12, MLP 16, rescale 2 * 3 = 6
    assert fc.attention_macs == 12 + 16 + 6
    assert report.attention_macs == 3760 + 34
    e = ENERGY_PRESETS["fp32-45nm"]
    assert report.energy_pj == pytest.approx(e.e_mac_pj * (report.macs + report.attention_macs) + e.e_ac_pj * report.sops)


def test_3layer_report_and_rEE_against_vanilla():
    torch.manual_seed(0)
    x = (torch.rand(2, 1, 2, 32, 32) < 0.1).float() * 2
    vanilla = create_model("ma-snn-3layer", attention="none", T=2).eval()
    base = measure(vanilla, x)
    assert [lr.flops for lr in base.layers] == [9 * 32 * 32 * 2 * 64, 9 * 32 * 32 * 64 * 128, 9 * 16 * 16 * 128 * 128,
                                                 8192 * 256, 256 * 11]
    assert base.neurons == 106_763 and base.steps == 2
    # the input frames hold 0 or 2 (not spikes): conv1 multiply-accumulates on both frames, the others accumulate
    assert base.layers[0].macs == 2 * 9 * 32 * 32 * 2 * 64 == 2_359_296
    assert base.macs == 2_359_296 and base.attention_macs == 0
    assert base.ann_frame_by_frame_energy_pj == pytest.approx(4.6 * sum(lr.flops for lr in base.layers) * 2)
    tcsa = measure(create_model("ma-snn-3layer", attention="TCS", T=2, r_t=1).eval(), x, baseline=base)
    assert tcsa.ree == pytest.approx(base.energy_pj / tcsa.energy_pj)
    # the gates' MACs with T = 2, r_t = 1 (TA MLP 2 -> 2 -> 2: 2 descriptors * 8 = 16), r_c = 8, SA 7 x 7, on each
    # layer's neuron map of n = C x H x W values (after AvgPool in conv2 and conv3):
    # TA (conv-post): pooling 2 * 2n + MLP 16 + rescale 2n = 6n + 16
    # CA and SA (on U, per step): pooling 2 C*HW and rescale C*HW each, plus the CA's MLP 2 descriptors * 2 * C * C/8
    #   or the SA's conv 2 maps * 49 * HW
    # conv1 64 x 32 x 32 (n = 65,536):  TA 393,232  CA 2 * (196,608 + 2,048) = 397,312  SA 2 * (196,608 + 100,352) = 593,920
    # conv2 128 x 16 x 16 (n = 32,768): TA 196,624  CA 2 * (98,304 + 8,192) = 212,992   SA 2 * (98,304 + 25,088) = 246,784
    # conv3 128 x 8 x 8 (n = 8,192):    TA 49,168   CA 2 * (24,576 + 8,192) = 65,536    SA 2 * (24,576 + 6,272) = 61,696
    # fc1 (256): TA 6 * 256 + 16 = 1,552;  fc2 (11): TA 6 * 11 + 16 = 82
    assert [lr.attention_macs for lr in tcsa.layers] == [393_232 + 397_312 + 593_920, 196_624 + 212_992 + 246_784,
                                                         49_168 + 65_536 + 61_696, 1_552, 82]
    assert tcsa.attention_macs == 2_218_898
    assert tcsa.macs == 2_359_296  # the gates do not change the synapses' work


def test_pruned_frames_cost_nothing_in_the_report():
    torch.manual_seed(0)
    model = create_model("ma-snn-3layer", attention="none", T=6, r_t=2, input_size=16, input_attention=True,
                         prune_threshold=0.5).eval()
    x = torch.rand(6, 2, 2, 16, 16) * 2
    model.prune_threshold = model.input_attention.scores(x).median().item()
    report = measure(model, x)
    kept = model.select_frames(x).sum(0).float().mean().item()
    assert 0 < kept < 6 and report.frames_kept == pytest.approx(kept)
    first = report.layers[0]
    assert first.flops == 9 * 16 * 16 * 2 * 64
    assert first.frames == pytest.approx(kept) and first.macs == pytest.approx(kept * first.flops)
    # scoring the 6 raw frames of 2 x 16 x 16 = 512 values (MLP 6 -> 3 -> 6) costs pooling 2 * 6 * 512 = 6144 and
    # the MLP 2 descriptors * (6*3 + 3*6) = 72, no rescale (kept frames have weight 1)
    assert report.attention_macs == 6144 + 72


def _scanned(trace: NetTrace) -> NetTrace:
    """The trace without the network's counts: accounting then counts on the recorded tensors (plain torch)."""
    return replace(trace, layers=[replace(tr, spike_count=None, input_nonzero=None, input_binary=None)
                                  for tr in trace.layers])


def _counted_model(name, placement, prepared, pruned=False, **kwargs):
    torch.manual_seed(4)
    model = create_model(name, attention="TCS" if placement != "none" else "none",
                         placement=placement if placement != "none" else "paper", T=4, r_t=2,
                         lif={"threshold": 0.05}, **kwargs)
    model.train()
    shape = (4, 3, *model.layers[0].in_shape)
    with torch.no_grad():  # running statistics that make the layers fire
        for _ in range(20):
            model((torch.rand(shape) < 0.1).float() * 2)
    model.eval()
    if pruned:
        model.prune_threshold = 0.5
    return prepare_for_inference(model) if prepared else model


@pytest.mark.parametrize("name, placement, prepared, kwargs", [
    ("ma-snn-3layer", "paper", True, {}),  # what classify runs: compiled activate-pre neurons
    ("ma-snn-3layer", "paper", False, {}),
    ("ma-snn-3layer", "none", True, {}),  # vanilla: LIF neurons throughout
    ("ma-snn-3layer", "conv-pre", True, {}),  # gated inputs are real-valued: counted on the tensor
    ("ma-snn-5layer", "paper", True, {"input_size": 32, "channels": 8, "fc_hidden": 16}),  # MaxPool between layers
    ("ma-snn-3layer", "none", True, {"input_size": 16, "input_attention": True, "pruned": True}),
])
def test_counts_where_spikes_are_made_equal_a_scan_of_the_tensors(name, placement, prepared, kwargs):
    kwargs = dict(kwargs)
    model = _counted_model(name, placement, prepared, kwargs.pop("pruned", False), **kwargs)
    size = model.layers[0].in_shape[1]
    torch.manual_seed(5)
    x = (torch.rand(4, 3, 2, size, size) < 0.1).float() * torch.randint(1, 3, (4, 3, 2, size, size)).float()
    with torch.inference_mode():
        _, trace = model(x, record=True)
    for tr in trace.layers:  # each count the network took against plain torch on the recorded tensors
        assert tr.spike_count == int((tr.spikes != 0).sum())
        assert bool(((tr.spikes == 0) | (tr.spikes == 1)).all())
        if tr.input_nonzero is not None:
            assert tr.input_nonzero == int((tr.input != 0).sum())
            assert tr.input_binary == bool(((tr.input == 0) | (tr.input == 1)).all())
    assert all(tr.spike_count > 0 for tr in trace.layers)  # every layer fires: the counts are tested on spikes
    counted, scanned = account(trace), account(_scanned(trace))
    assert counted.to_dict() == scanned.to_dict()  # every figure equal, not approximately
    if placement == "paper" and name == "ma-snn-3layer":  # what classify runs needs no scan beyond the frames
        assert all(tr.input_nonzero is not None for tr in trace.layers[1:])


def test_accounting_scans_only_the_first_layers_frames(monkeypatch):
    """Counted traces are not re-scanned: only conv1's input (the event frames) is counted on its tensor."""
    model = _counted_model("ma-snn-3layer", "paper", True)
    x = (torch.rand(4, 1, 2, 32, 32) < 0.1).float()
    with torch.inference_mode():
        _, trace = model(x, record=True)
    scanned = []
    original = torch.Tensor.__ne__
    monkeypatch.setattr(torch.Tensor, "__ne__", lambda self, other: scanned.append(self.shape) or original(self, other))
    account(trace)
    assert scanned == [trace.layers[0].input.shape]
