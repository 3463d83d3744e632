"""LIF neuron: hand-computed values, every backend against the reference, the module wrapper.

Triton runs here only when its kernels can: on CUDA tensors, or under Triton's interpreter. Triton reads
TRITON_INTERPRET when the kernels are decorated (when masnn.models.lif is first imported), so setting the
variable inside this process would be too late and order-dependent. Instead `test_triton_under_the_interpreter`
reruns this file's triton tests in a child pytest with TRITON_INTERPRET=1, where they run on CPU tensors.
"""
import importlib.util
import itertools
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from masnn.models.lif import BACKENDS, LIF, RESETS, SURROGATES, LIFParams, lif_multistep, lif_step, select_backend
from masnn.models.lif import fused as fused_module
from masnn.models.lif.fused import LIFFusedFunction, _surrogate_into, lif_fused
from masnn.models.lif.triton_kernel import interpreting

HAS_TRITON = importlib.util.find_spec("triton") is not None
TRITON_DEVICE = "cuda" if torch.cuda.is_available() and not interpreting() else ("cpu" if interpreting() else None)
CPU_BACKENDS = sorted(name for name in BACKENDS if name not in ("reference", "triton"))
needs_triton_kernels = pytest.mark.skipif(
    "triton" not in BACKENDS or TRITON_DEVICE is None,
    reason="triton kernels need CUDA or TRITON_INTERPRET=1 (test_triton_under_the_interpreter runs them so)")

# ---------------------------------------------------------------------------------------------- by hand
# decay 0.5, threshold 1, one neuron, dyadic inputs so every value is exact in binary
X = [0.75, 0.75, 0.5, 1.5, 0.25]
HAND = {
    # name: (params, membrane U[t], spikes S[t])
    "hard": (dict(reset="hard"), [0.75, 1.125, 0.5, 1.75, 0.25], [0, 1, 0, 1, 0]),  # H = 0 after a spike
    "hard, v_reset 0.25": (dict(reset="hard", v_reset=0.25), [0.75, 1.125, 0.75, 1.875, 0.5], [0, 1, 0, 1, 0]),
    # H = d (U - θ S): 1.125 -> 0.0625, 0.5625 -> 0.28125, 1.78125 -> 0.390625
    "soft": (dict(reset="soft"), [0.75, 1.125, 0.5625, 1.78125, 0.640625], [0, 1, 0, 1, 0]),
    # H = d θ = 0.5 after a spike; U = 1.0 sits exactly on the threshold and fires (Heaviside(0) = 1)
    "threshold": (dict(reset="threshold"), [0.75, 1.125, 1.0, 2.0, 0.75], [0, 1, 1, 1, 0]),
}


@pytest.mark.parametrize("case", HAND)
def test_membrane_and_spikes_by_hand(case):
    kwargs, membrane, spikes = HAND[case]
    p = LIFParams(decay=0.5, threshold=1.0, **kwargs)
    h, us, ss = None, [], []
    for x_t in torch.tensor(X, dtype=torch.float64):
        s, h, u = lif_step(x_t.reshape(1), h, p)
        us.append(u.item())
        ss.append(s.item())
    assert us == membrane
    assert ss == spikes


@pytest.mark.parametrize("backend", ["reference", *CPU_BACKENDS])
@pytest.mark.parametrize("case", HAND)
def test_every_backend_fires_the_hand_computed_spikes(case, backend):
    kwargs, _, spikes = HAND[case]
    p = LIFParams(decay=0.5, threshold=1.0, **kwargs)
    x = torch.tensor(X, dtype=torch.float32).reshape(5, 1)
    assert BACKENDS[backend](x, p).flatten().tolist() == spikes


# ---------------------------------------------------------------------------------------------- parity
SHAPE = (7, 3, 4, 5, 5)  # T, B, C, H, W
COMBOS = list(itertools.product(RESETS, SURROGATES, (False, True)))


def combo_params(reset, surrogate, detach, v_reset=-0.2):
    return LIFParams(decay=0.6, threshold=0.5, v_reset=v_reset, reset=reset, surrogate=surrogate, detach_reset=detach)


def random_case(dtype, device="cpu", seed=0, shape=SHAPE):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=dtype) * 0.5 + 0.25  # many values near the threshold
    h = torch.randn(shape[1:], generator=g, dtype=dtype) * 0.3
    w = torch.randn(shape, generator=g, dtype=dtype)  # a random projection of the spikes: the loss
    return x.to(device), h.to(device), w.to(device)


def spikes_and_grads(fn, p, x, h, w):
    x = x.clone().requires_grad_()
    h = None if h is None else h.clone().requires_grad_()
    spikes = fn(x, p, h)
    (spikes * w).sum().backward()
    return spikes.detach(), x.grad, None if h is None else h.grad


def assert_matches_reference(fn, p, device="cpu", with_h=True):
    # spikes: bit for bit in float32, where roundings could flip a neuron sitting on the threshold
    x, h, w = random_case(torch.float32, device)
    assert torch.equal(fn(x, p, h if with_h else None), lif_multistep(x, p, h if with_h else None))
    # gradients: float64, w.r.t. the currents and the initial state
    x, h, w = random_case(torch.float64, device, seed=1)
    ours = spikes_and_grads(fn, p, x, None if not with_h else h, w)
    ref = spikes_and_grads(lif_multistep, p, x, None if not with_h else h, w)
    assert torch.equal(ours[0], ref[0])
    assert ref[1].abs().sum() > 0  # the comparison means something
    torch.testing.assert_close(ours[1], ref[1], rtol=1e-5, atol=1e-9)
    if with_h:
        torch.testing.assert_close(ours[2], ref[2], rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("v_reset", [0.0, -0.2])
@pytest.mark.parametrize("reset,surrogate,detach", COMBOS)
@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_cpu_backend_matches_reference(backend, reset, surrogate, detach, v_reset):
    assert_matches_reference(BACKENDS[backend], combo_params(reset, surrogate, detach, v_reset))


@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_cpu_backend_without_initial_state(backend, reset):
    assert_matches_reference(BACKENDS[backend], combo_params(reset, "atan", False), with_h=False)


def test_fused_blocks_of_neurons_match_one_block(monkeypatch):
    """The fused path walks the neurons in cache-sized blocks; force many small ones, with a ragged last."""
    monkeypatch.setattr(fused_module, "_block", lambda dtype: 7)
    for reset in RESETS:
        assert_matches_reference(lif_fused, combo_params(reset, "rectangular", False))


def test_fused_broadcast_state_retained_graph_and_no_grad():
    p = combo_params("threshold", "sigmoid", False)
    x, _, w = random_case(torch.float64)
    h = torch.full((4, 1, 1), 0.3, dtype=torch.float64)  # broadcast over B, H, W
    ours = spikes_and_grads(lif_fused, p, x, h, w)
    ref = spikes_and_grads(lif_multistep, p, x, h, w)
    torch.testing.assert_close(ours[2], ref[2], rtol=1e-5, atol=1e-9)
    # a retained graph: the backward must not consume the saved potentials in place
    xg = x.clone().requires_grad_()
    loss = (lif_fused(xg, p) * w).sum()
    first, = torch.autograd.grad(loss, xg, retain_graph=True)
    second, = torch.autograd.grad(loss, xg)
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    with torch.no_grad():
        assert torch.equal(lif_fused(xg, p), lif_multistep(x, p))


# ---------------------------------------------------------------------------------------------- gradcheck
# gradcheck compares the analytic Jacobian with finite differences of the forward. The forward emits
# Heaviside spikes: piecewise constant, so its finite differences are 0 (or huge at a flip) while the
# backward, by design, returns the surrogate. gradcheck on LIFFusedFunction is therefore ill-posed. Two
# well-posed checks replace it:
# 1. torch.autograd.gradcheck on the smooth part: the surrogate derivative the fused backward uses
#    (_surrogate_into) against finite differences of its primitive (sigmoid(k v); atan(π/2 k v) / π);
# 2. the fused backward's full Jacobian (every output's vector-Jacobian product, as gradcheck builds the
#    analytic one) against the reference's autograd Jacobian, float64, to 1e-10.
class _SurrogatePrimitive(torch.autograd.Function):
    @staticmethod
    def forward(ctx, v, p):
        ctx.save_for_backward(v)
        ctx.p = p
        if p.surrogate == "sigmoid":
            return torch.sigmoid(p.slope * v)
        return torch.atan(torch.pi / 2 * p.slope * v) / torch.pi + 0.5

    @staticmethod
    def backward(ctx, grad):
        (v,) = ctx.saved_tensors
        sg = torch.empty_like(v)
        _surrogate_into(v.clone(), ctx.p, sg)
        return grad * sg, None


@pytest.mark.parametrize("surrogate", ["sigmoid", "atan"])
def test_gradcheck_surrogate_derivative(surrogate):
    p = LIFParams(surrogate=surrogate, slope=3.0)
    v = torch.linspace(-1.5, 1.5, 13, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: _SurrogatePrimitive.apply(t, p), (v,))


@pytest.mark.parametrize("detach", [False, True])
@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("surrogate", ["sigmoid", "atan"])
def test_fused_jacobian_equals_reference_jacobian(surrogate, reset, detach):
    p = combo_params(reset, surrogate, detach)
    x, h, _ = random_case(torch.float64, shape=(4, 3))

    def jacobian(fn):
        return torch.autograd.functional.jacobian(lambda x_, h_: fn(x_, p, h_), (x, h))

    (jx, jh), (rx, rh) = jacobian(lambda x_, p_, h_: LIFFusedFunction.apply(x_, h_, p_)), jacobian(lif_multistep)
    assert rx.abs().sum() > 0 and rh.abs().sum() > 0
    torch.testing.assert_close(jx, rx, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(jh, rh, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------------------------------------- triton
@needs_triton_kernels
@pytest.mark.parametrize("reset,surrogate,detach", COMBOS)
def test_triton_matches_reference(reset, surrogate, detach):
    from masnn.models.lif.triton_kernel import lif_triton

    p = combo_params(reset, surrogate, detach)
    # block 128 on 300 neurons: three programs, the last one masked
    assert_matches_reference(lambda x, p_, h: lif_triton(x, p_, h, block=128), p, TRITON_DEVICE)


@needs_triton_kernels
def test_triton_without_initial_state_and_through_the_module():
    assert_matches_reference(BACKENDS["triton"], combo_params("hard", "rectangular", False, 0.0), TRITON_DEVICE,
                             with_h=False)
    x, _, _ = random_case(torch.float32, TRITON_DEVICE)
    p = combo_params("soft", "atan", True)
    assert torch.equal(LIF(p, backend="triton")(x), lif_multistep(x, p))


@pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed (pip install 'masnn[gpu]')")
@pytest.mark.skipif(interpreting(), reason="already under the interpreter: the triton tests run in this process")
def test_triton_under_the_interpreter():
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(Path(__file__)), "-k", "triton"],
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    passed = re.search(r"(\d+) passed", result.stdout)
    assert passed and int(passed.group(1)) >= len(COMBOS) + 1, result.stdout[-2000:]  # they ran, not skipped


@pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed")
def test_triton_refuses_cpu_tensors_outside_the_interpreter(monkeypatch):
    from masnn.models.lif.triton_kernel import lif_triton

    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(ValueError, match="CUDA"):
        lif_triton(torch.zeros(2, 3), LIFParams())


# ---------------------------------------------------------------------------------------------- module
def test_module_buffers_follow_to_and_state_dict():
    layer = LIF(LIFParams(decay=0.25, threshold=0.5))
    assert set(layer.state_dict()) == {"decay", "threshold"}
    assert layer.state_dict()["decay"].item() == 0.25
    layer.to(torch.float64)
    assert layer.decay.dtype == torch.float64 and layer.threshold.dtype == torch.float64
    assert layer.state_dict()["threshold"].dtype == torch.float64


@pytest.mark.parametrize("backend", ["reference", *CPU_BACKENDS])
def test_bf16_currents_charge_a_float32_membrane(backend):
    # under CPU autocast a synapse hands over bf16 currents; the neurons integrate them in float32 (a bf16 membrane,
    # 8 bits of mantissa, would move threshold crossings), as the Triton kernel does
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(2, 4, 3, padding=1)
    x = torch.rand(6, 3, 2, 8, 8)
    with torch.autocast("cpu", torch.bfloat16):
        current = conv(x.flatten(0, 1)).unflatten(0, (6, 3))
        spikes = LIF(backend=backend)(current)
    assert current.dtype == torch.bfloat16 and spikes.dtype == torch.float32
    assert torch.equal(spikes, lif_multistep(current.float(), LIFParams()))
    assert 0 < spikes.mean() < 1


def test_auto_picks_fused_on_cpu_and_unknown_backends_fail_clearly():
    x = torch.rand(3, 2, 4)
    assert select_backend(x, "auto") == "fused"
    assert torch.equal(LIF(backend="auto")(x), lif_multistep(x, LIFParams()))
    with pytest.raises(ValueError, match="backend must be 'auto' or one of .*fused.*reference"):
        LIF(backend="cuda-magic")(x)
