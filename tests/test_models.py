"""MA-SNN models: published counts, attention against hand computations, placements, pruning, a registry smoke test."""
import copy
import math

import pytest
import torch
import torch.nn.functional as F

from masnn.models import create_model, list_models
from masnn.models.attention import (
    ATTENTIONS,
    PLACEMENTS,
    ActivatePreLIF,
    AttentionStack,
    ChannelAttention,
    SpatialAttention,
    TemporalAttention,
    parse_attention,
    plan_attention,
)
from masnn.models.lif import LIF, LIFParams


def sigmoid(v: float) -> float:
    return 1 / (1 + math.exp(-v))


def n_params(module) -> int:
    return sum(p.numel() for p in module.parameters())


# --- published counts ------------------------------------------------------------------------------------------

def test_reference_code_tcsa_has_the_published_parameter_count():
    model = create_model("ma-snn-3layer", attention="TCSA", placement="reference-code", T=60, r_c=8, r_t=5,
                         num_classes=11)
    assert n_params(model) == 2_340_535
    by_kind = {kind: sum(n_params(m) for m in model.modules() if isinstance(m, kind))
               for kind in (TemporalAttention, ChannelAttention, SpatialAttention)}
    assert by_kind == {TemporalAttention: 7_200, ChannelAttention: 9_216, SpatialAttention: 54}


def test_vanilla_3layer_has_the_published_parameter_count():
    assert n_params(create_model("ma-snn-3layer", attention="none", num_classes=11)) == 2_324_065


@pytest.mark.parametrize("classes, neurons", [(11, 106_763), (20, 106_772)])
def test_3layer_neuron_counts(classes, neurons):
    model = create_model("ma-snn-3layer", attention="none", num_classes=classes, T=1).eval()
    assert sum(model.neuron_counts().values()) == neurons
    with torch.no_grad():  # the static counts are the shapes a forward pass really produces
        rates, trace = model(torch.rand(1, 1, 2, 32, 32), record=True)
    assert rates.shape == (1, classes)
    assert sum(tr.spikes[0, 0].numel() for tr in trace.layers) == neurons


def test_5layer_conv_neuron_count():
    model = create_model("ma-snn-5layer", attention="none", T=1).eval()
    with torch.no_grad():
        _, trace = model(torch.rand(1, 1, 2, 128, 128), record=True)
    conv = [tr for tr in trace.layers if tr.name.startswith("conv")]
    assert len(conv) == 5
    assert sum(tr.spikes[0, 0].numel() for tr in conv) == 2_793_472
    assert sum(n for name, n in model.neuron_counts().items() if name.startswith("conv")) == 2_793_472


# --- registry and configuration --------------------------------------------------------------------------------

def test_registry_lists_and_creates_models():
    assert {"ma-snn-3layer", "ma-snn-5layer"} <= set(list_models())
    model = create_model("ma-snn-3layer", T=None, attention=None, num_classes=20)  # None keeps the defaults
    assert model.steps == 60 and model.num_classes == 20
    assert model.model_args == {"name": "ma-snn-3layer", "num_classes": 20}
    rebuilt = create_model(**model.model_args)
    loaded = rebuilt.load_state_dict(model.state_dict())
    assert loaded.missing_keys == [] and loaded.unexpected_keys == []
    with pytest.raises(ValueError, match="ma-snn-3layer"):
        create_model("no-such-net")


def test_state_dict_of_another_attention_variant_differs_by_the_gate_weights():
    vanilla = create_model("ma-snn-3layer", attention="none", T=4, input_size=16)
    tcsa = create_model("ma-snn-3layer", attention="TCS", placement="paper", T=4, input_size=16)
    # the paper's placement: a TA (two bias-free linear maps) at conv-post of all five layers; a CA (two linear
    # maps) and an SA (one conv) inside the neurons of the three conv layers. Neurons keep the same buffers.
    gates = [f"layers.{i}.post.ta.mlp.{j}.weight" for i in range(5) for j in (0, 2)]
    gates += [f"layers.{i}.neuron.{w}" for i in range(3) for w in ("ca.mlp.0.weight", "ca.mlp.2.weight", "sa.conv.weight")]
    loaded = vanilla.load_state_dict(tcsa.state_dict(), strict=False)
    assert loaded.missing_keys == [] and sorted(loaded.unexpected_keys) == sorted(gates)
    assert torch.equal(vanilla.layers[0].op.weight, tcsa.layers[0].op.weight)  # the shared weights did load
    loaded = tcsa.load_state_dict(vanilla.state_dict(), strict=False)
    assert sorted(loaded.missing_keys) == sorted(gates) and loaded.unexpected_keys == []
    with pytest.raises(RuntimeError, match="Missing key"):
        tcsa.load_state_dict(vanilla.state_dict())


@pytest.mark.parametrize("name", list_models())
def test_registered_model_smoke(name):
    """Every registered variant, built through the constructor arguments all share, with small T and input:
    [B, classes] finite rates, and a backward pass that gives every parameter a finite gradient."""
    torch.manual_seed(0)
    t, b, classes, size = 2, 2, 5, 32
    model = create_model(name, T=t, input_size=size, num_classes=classes)
    x = (torch.rand(t, b, 2, size, size) < 0.3).float() * torch.randint(1, 4, (t, b, 2, size, size))
    rates = model(x)
    assert rates.shape == (b, classes) and torch.isfinite(rates).all()
    rates.sum().backward()
    for param_name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), param_name
    first = next(model.parameters())  # the input side: the surrogate gradient came back through every layer
    assert first.grad.abs().sum() > 0


def test_attention_names_and_invalid_placements():
    assert [parse_attention(n) for n in ("TCSA", "csa", "TA", "none", "", "ST")] == ["TCS", "CS", "T", "", "", "TS"]
    with pytest.raises(ValueError):
        parse_attention("TX")
    with pytest.raises(ValueError, match="TA cannot be placed at 'activate-pre'"):
        create_model("ma-snn-3layer", attention="TC", placement="activate-pre")
    with pytest.raises(ValueError, match="placement"):
        plan_attention("T", "everywhere")
    paper = plan_attention("TCS", "paper")
    assert (paper.pre, paper.post, paper.activate) == ("", "T", "CS")


def _valid_cases():
    for name in ("ma-snn-3layer", "ma-snn-5layer"):
        yield name, "none", "paper"
        for attention in ATTENTIONS[1:]:
            for placement in PLACEMENTS:
                if not (placement == "activate-pre" and "T" in attention):
                    yield name, attention, placement


# small inputs keep the test fast; the 5-layer net needs 64 x 64 so that MaxPool leaves its FC layers some variety
SMALL = {"ma-snn-3layer": {"input_size": 16}, "ma-snn-5layer": {"input_size": 64, "channels": 8, "fc_hidden": 32}}


@pytest.mark.parametrize("name, attention, placement", list(_valid_cases()))
def test_every_attention_and_placement_trains(name, attention, placement):
    torch.manual_seed(0)
    t, b, classes = 4, 2, 5
    model = create_model(name, attention=attention, placement=placement, T=t, r_t=2, num_classes=classes,
                         **SMALL[name])
    size = SMALL[name]["input_size"]
    x = (torch.rand(t, b, 2, size, size) < 0.3).float() * torch.randint(1, 4, (t, b, 2, size, size))
    target = F.one_hot(torch.arange(b) % classes, classes).float()
    rates = model(x)
    assert rates.shape == (b, classes) and torch.isfinite(rates).all()
    assert ((rates >= 0) & (rates <= 1)).all()
    opt = torch.optim.Adam(model.parameters(), lr=5e-2)
    losses = []
    for _ in range(4):  # the paper's objective: MSE between firing rates and the one-hot label
        loss = F.mse_loss(model(x), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert len(set(losses)) > 1  # rates are multiples of 1/T: the loss moves once a spike flips


# --- attention against hand computations -----------------------------------------------------------------------

def test_temporal_attention_by_hand():
    ta = TemporalAttention(steps=4, ratio=2)  # MLP 4 -> 2 -> 4
    with torch.no_grad():
        ta.mlp[0].weight.copy_(torch.tensor([[1.0, 0, 0, 0], [0, 0, 0, 1]]))
        ta.mlp[2].weight.copy_(torch.tensor([[1.0, 0], [0, 1], [-1, 0], [0, 0.5]]))
    x = torch.tensor([[1.0, 3], [0, 0], [-1, 1], [2, 2]])[:, None, :]  # (T=4, B=1, F=2)
    # avg = (2, 0, 0, 2), max = (3, 0, 1, 2); hidden relu((2, 2)) and relu((3, 2))
    # MLP(avg) = (2, 2, -2, 1), MLP(max) = (3, 2, -3, 1); sum = (5, 4, -5, 2)
    w = [sigmoid(v) for v in (5, 4, -5, 2)]
    assert torch.allclose(ta.scores(x)[:, 0], torch.tensor(w))
    assert torch.allclose(ta(x), x * torch.tensor(w)[:, None, None])
    with pytest.raises(ValueError, match="T=4"):
        ta(x[:3])


def test_temporal_attention_on_a_subset_of_steps_sees_zeros_at_the_missing_ones():
    torch.manual_seed(0)
    ta = TemporalAttention(steps=6, ratio=2)
    x = torch.randn(6, 2, 3, 4, 4)
    idx = torch.tensor([0, 2, 5])
    zeroed = torch.zeros_like(x)
    zeroed[idx] = x[idx]
    assert torch.allclose(ta(x[idx], idx), ta(zeroed)[idx])


def _maps():
    # (B=1, C=2, H=2, W=2): channel 0 = [[1, 2], [3, 4]], channel 1 = [[0, 0], [0, -2]]
    return torch.tensor([[[[1.0, 2], [3, 4]], [[0, 0], [0, -2]]]])


def test_channel_attention_by_hand():
    ca = ChannelAttention(channels=2, ratio=2)  # MLP 2 -> 1 -> 2
    with torch.no_grad():
        ca.mlp[0].weight.copy_(torch.tensor([[1.0, -1]]))
        ca.mlp[2].weight.copy_(torch.tensor([[2.0], [-1]]))
    x = _maps()
    # avg (2.5, -0.5) -> relu(3) -> (6, -3); max (4, 0) -> relu(4) -> (8, -4); sum (14, -7)
    g = torch.tensor([sigmoid(14), sigmoid(-7)])
    assert torch.allclose(ca.scores(x).flatten(), g)
    assert torch.allclose(ca(x), x * g[None, :, None, None])
    # per step, shared over time: a [T, B, C, H, W] block gets one gate per step
    block = torch.stack([x, 2 * x])
    assert torch.allclose(ca(block)[0], ca(x)) and torch.allclose(ca(block)[1], ca(2 * x))


def test_spatial_attention_by_hand():
    sa = SpatialAttention(kernel_size=7)
    with torch.no_grad():
        sa.conv.weight.zero_()
        sa.conv.weight[0, 0, 3, 3] = 1.0  # avg map
        sa.conv.weight[0, 1, 3, 3] = 0.25  # max map
    x = _maps()
    # per pixel: avg over channels (0.5, 1, 1.5, 1), max (1, 2, 3, 4) -> 1*avg + 0.25*max
    g = torch.tensor([sigmoid(v) for v in (0.75, 1.5, 2.25, 2.0)]).reshape(1, 1, 2, 2)
    assert torch.allclose(sa.scores(x), g)
    assert torch.allclose(sa(x), x * g)


def test_reference_code_gates_pool_over_time_and_end_in_relu():
    torch.manual_seed(0)
    x = torch.randn(3, 2, 4, 5, 5)  # (T, B, C, H, W)
    ca = ChannelAttention(4, 2, per_step=False)
    g = ca.scores(x)
    assert g.shape == (1, 2, 4, 1, 1)  # one channel vector per sample
    avg, mx = x.permute(1, 2, 0, 3, 4).flatten(2).mean(2), x.permute(1, 2, 0, 3, 4).flatten(2).amax(2)
    assert torch.allclose(g[0, :, :, 0, 0], torch.sigmoid(ca.mlp(avg) + ca.mlp(mx)))
    sa = SpatialAttention(3, per_step=False)
    assert sa.scores(x).shape == (1, 2, 1, 5, 5)  # one map per sample
    stack = AttentionStack(ca=ca, sa=sa, relu=True)
    out = stack(x)
    assert (out >= 0).all() and torch.allclose(out, torch.relu(sa(ca(x))))


def test_activate_pre_gates_act_inside_the_recurrence():
    """Eq. 14 on one neuron: U_c = CA(H + X) * (H + X), U = SA(U_c) * U_c, fire at 0.2, no leak."""
    p = LIFParams(decay=1.0, threshold=0.2)
    ca, sa = ChannelAttention(1, 1), SpatialAttention(7)
    with torch.no_grad():
        ca.mlp[0].weight.fill_(1.0)
        ca.mlp[2].weight.fill_(-1.0)  # CA(v) = sigmoid(-2 relu(v)): the larger U, the harder it is damped
        sa.conv.weight.zero_()
        sa.conv.weight[0, :, 3, 3] = 0.5  # SA(u) = sigmoid(0.5 u + 0.5 u)
    x = torch.ones(5, 1, 1, 1, 1)
    h, expected = 0.0, []
    for _ in range(5):
        v = h + 1.0
        uc = sigmoid(-2 * max(v, 0)) * v
        u = sigmoid(uc) * uc
        s = float(u >= 0.2)
        h = 0.0 if s else u
        expected.append(s)
    inside = ActivatePreLIF(p, ca, sa)(x).flatten()
    assert inside.tolist() == expected
    assert inside.tolist() == [0.0] * 5  # the damping grows with U: it settles near 0.06 and never fires
    # the same gates on X before the neuron (conv-post): X' = 0.119 * 0.530 = 0.063 each step, charging undamped
    outside = LIF(p)(AttentionStack(ca=ca, sa=sa)(x)).flatten()
    g = sigmoid(-2) * sigmoid(sigmoid(-2))
    assert 3 * g < 0.2 <= 4 * g
    assert outside.tolist() == [0.0, 0.0, 0.0, 1.0, 0.0]


def test_paper_placement_puts_ca_and_sa_in_the_neuron():
    model = create_model("ma-snn-3layer", attention="TCS", placement="paper", T=4, input_size=16)
    conv1 = model.layers[0]
    assert isinstance(conv1.neuron, ActivatePreLIF) and conv1.neuron.ca is not None and conv1.neuron.sa is not None
    assert conv1.post.ta is not None and conv1.post.ca is None and conv1.pre is None
    fc1 = model.layers[3]
    assert isinstance(fc1.neuron, LIF) and fc1.post.ta is not None and fc1.post.ca is None


# --- input attention pruning -----------------------------------------------------------------------------------

@pytest.mark.parametrize("attention", ["none", "CS"])
def test_input_attention_pruning_runs_only_the_kept_frames(attention):
    torch.manual_seed(1)
    t, b = 6, 3
    model = create_model("ma-snn-3layer", attention=attention, T=t, r_t=2, input_size=16, input_attention=True,
                         prune_threshold=0.5).eval()
    x = torch.rand(t, b, 2, 16, 16) * 2
    model.prune_threshold = model.input_attention.scores(x).median().item()
    seen = {0: 0, 2: 0}
    hooks = [model.layers[i].op.register_forward_hook(lambda m, inp, out, i=i: seen.__setitem__(i, seen[i] + inp[0].shape[0]))
             for i in seen]
    with torch.no_grad():
        rates, trace = model(x, record=True)
    for hook in hooks:
        hook.remove()
    keep = trace.kept
    assert keep.shape == (t, b) and 0 < keep.sum() < keep.numel()
    assert seen == {0: keep.sum().item(), 2: keep.sum().item()}  # dropped frames never reach a conv
    assert trace.frames_kept == pytest.approx(keep.sum().item() / b)
    plain = copy.deepcopy(model)
    plain.input_attention, plain.prune_threshold = None, None
    with torch.no_grad():
        for i in range(b):
            kept = x[keep[:, i], i:i + 1]  # the kept frames, weight 1, in order
            expected = plain(kept)[0] if len(kept) else torch.zeros(model.num_classes)
            assert torch.allclose(rates[i], expected, atol=1e-6)
    # dropped frames carry no spikes in the trace, kept frames the run's own
    assert all(tr.spikes[~keep].sum() == 0 for tr in trace.layers)


def test_pruning_is_off_in_training_and_handles_empty_samples():
    torch.manual_seed(0)
    model = create_model("ma-snn-3layer", attention="T", T=4, r_t=2, input_size=16, input_attention=True,
                         prune_threshold=1.0)  # sigmoid scores never exceed 1: every frame dropped
    x = torch.rand(4, 2, 2, 16, 16)
    rates = model(x)  # training mode: soft TA on the frames, no pruning
    assert rates.shape == (2, 11)
    model.eval()
    with torch.no_grad():
        rates, trace = model(x, record=True)
    assert trace.kept.sum() == 0 and (rates == 0).all() and trace.frames_kept == 0
    with pytest.raises(ValueError, match="input_attention"):
        create_model("ma-snn-3layer", prune_threshold=0.5)
