"""The LIF layer: a backend table (reference loop, fused CPU path, Triton on CUDA) and thin nn.Modules that keep
the neuron parameters as buffers (moved by ``.to()``, saved in checkpoints) and pick a backend per call."""
from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from masnn.models.lif.fused import lif_fused
from masnn.models.lif.neuron import LIFParams, lif_multistep
from masnn.models.lif.triton_kernel import HAS_TRITON, lif_triton

# Every faster backend is held to the reference by a parity test (spikes and gradients).
BACKENDS = {"reference": lif_multistep, "fused": lif_fused, **({"triton": lif_triton} if HAS_TRITON else {})}
LOW_PRECISION = (torch.bfloat16, torch.float16)  # currents the CPU backends take in float32


def select_backend(x: torch.Tensor, requested: str) -> str:
    """"auto": Triton on CUDA tensors when it is installed, else the fused CPU path, else the reference."""
    if requested != "auto":
        if requested not in BACKENDS:
            raise ValueError(f"backend must be 'auto' or one of {sorted(BACKENDS)}, got {requested!r}")
        return requested
    if x.is_cuda and "triton" in BACKENDS:
        return "triton"
    return "fused" if "fused" in BACKENDS else "reference"


class NeuronParameters(nn.Module):
    """Keeps decay and threshold as buffers (moved by .to(), saved in state_dict); ``current_params`` is
    LIFParams with the buffers' values, since a loaded state_dict may have changed them."""

    def __init__(self, params: LIFParams):
        super().__init__()
        self.params = params
        self.register_buffer("decay", torch.tensor(params.decay), persistent=True)
        self.register_buffer("threshold", torch.tensor(params.threshold), persistent=True)

    @property
    def current_params(self) -> LIFParams:
        return replace(self.params, decay=float(self.decay), threshold=float(self.threshold))


class LIF(NeuronParameters):
    """Multi-step LIF layer: input currents [T, ...] -> spikes [T, ...]. No state survives a call."""

    def __init__(self, params: LIFParams = LIFParams(), backend: str = "auto"):
        super().__init__(params)
        self.backend = backend

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        backend = select_backend(x, self.backend)
        if backend != "triton" and x.dtype in LOW_PRECISION:
            # The membrane in float32, as the Triton kernel keeps it: under bf16 autocast the synapses hand over
            # bf16 currents, and a bf16 membrane (8-bit mantissa) moves threshold crossings.
            x = x.float()
        return BACKENDS[backend](x, self.current_params)

    def extra_repr(self) -> str:
        p = self.params
        return f"decay={p.decay}, threshold={p.threshold}, reset={p.reset}, surrogate={p.surrogate}, backend={self.backend}"
