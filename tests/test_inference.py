"""The inference copy computes what the network computes: fused synapses, compiled activate-pre neurons."""
from collections import OrderedDict

import pytest
import torch
from torch import nn

from masnn.models import create_model
from masnn.models.attention import ActivatePreLIF, ChannelAttention, SpatialAttention
from masnn.models.inference import CompiledActivatePreLIF, agreement, fused_synapse, prepare_for_inference
from masnn.models.lif import LIFParams


def trained_bn(bn: nn.Module) -> nn.Module:
    """BatchNorm with non-trivial running statistics and affine parameters."""
    with torch.no_grad():
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.2, 0.2)
    return bn.eval()


@pytest.mark.parametrize("pool", [False, True])
def test_conv_bn_pool_folds_into_one_conv(pool):
    torch.manual_seed(0)
    parts = [("op", nn.Conv2d(5, 7, 3, padding=1)), ("bn", trained_bn(nn.BatchNorm2d(7)))]
    if pool:
        parts.append(("pool", nn.AvgPool2d(2)))
    synapse = nn.Sequential(OrderedDict(parts)).eval()
    x = torch.randn(4, 5, 12, 12)
    fused = fused_synapse(synapse)
    assert isinstance(fused, nn.Conv2d) and fused.kernel_size == ((4, 4) if pool else (3, 3))
    torch.testing.assert_close(fused(x), synapse(x), rtol=1e-5, atol=1e-5)


def test_linear_bn_folds_into_one_linear():
    torch.manual_seed(1)
    synapse = nn.Sequential(OrderedDict(flatten=nn.Flatten(), op=nn.Linear(2 * 3 * 3, 6), bn=trained_bn(nn.BatchNorm1d(6)))).eval()
    x = torch.randn(5, 2, 3, 3)
    torch.testing.assert_close(fused_synapse(synapse)(x), synapse(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("reset", ["hard", "soft", "threshold"])
@pytest.mark.parametrize("gates", ["CS", "C", "S"])
def test_compiled_activate_pre_fires_the_same_spikes(reset, gates):
    torch.manual_seed(2)
    params = LIFParams(decay=0.4, threshold=0.3, reset=reset, v_reset=-0.1 if reset == "hard" else 0.0)
    ca = ChannelAttention(6, 2) if "C" in gates else None
    sa = SpatialAttention(7) if "S" in gates else None
    neuron = ActivatePreLIF(params, ca, sa).eval()
    x = torch.randn(9, 3, 6, 8, 10) * 0.5  # non-square frames catch swapped axes
    with torch.inference_mode():
        expected = neuron(x)
        got = CompiledActivatePreLIF(neuron)(x)
    assert expected.sum() > 0
    assert torch.equal(got, expected)
    counted, fired = CompiledActivatePreLIF(neuron).forward_counted(x)  # spikes counted inside the compiled loop
    assert torch.equal(counted, expected) and fired == int((expected != 0).sum())


@pytest.mark.parametrize("bf16", [False, True])
def test_prepared_network_agrees_with_the_original(bf16):
    torch.manual_seed(3)
    model = create_model("ma-snn-3layer", attention="TCS", placement="paper", num_classes=11, T=8)
    model.train()
    with torch.no_grad():  # running statistics that differ from the initial ones
        model((torch.rand(8, 4, 2, 32, 32) < 0.1).float() * 2)
    model.eval()
    x = (torch.rand(8, 4, 2, 32, 32) < 0.1).float() * 2
    result = agreement(model, prepare_for_inference(model, bf16=bf16), x)
    assert result["same_prediction"] == 1.0
    assert result["max_rate_difference"] <= (0.25 if bf16 else 1e-6)  # bf16 may flip a spike or two


def test_the_window_benchmark_times_classify_with_and_without_its_accounting():
    from masnn.bench.model import run_window_benchmark, window_benchmark_line

    result = run_window_benchmark(windows=1, repeats=1)  # the shipped model on the shipped sample
    assert set(result["best_ms"]) == {"forward", "with accounting", "with accounting by scanning"}
    assert all(ms > 0 for ms in result["best_ms"].values()) and result["steps"] == 20
    assert "with spike and energy accounting" in window_benchmark_line(result)
