"""LIF neurons: the pure math (``neuron``), its fused CPU (``fused``) and Triton (``triton_kernel``) backends, and
the modules that pick one (``layer``). Imports torch (and triton when installed), nothing else of masnn."""
from masnn.models.lif.layer import BACKENDS, LIF, NeuronParameters, select_backend
from masnn.models.lif.neuron import (
    RESETS,
    SURROGATES,
    LIFParams,
    charge,
    fire,
    fire_and_reset,
    lif_multistep,
    lif_step,
    reset,
    surrogate_gradient,
)

__all__ = ["BACKENDS", "LIF", "NeuronParameters", "select_backend", "RESETS", "SURROGATES", "LIFParams", "charge",
           "fire", "fire_and_reset", "lif_multistep", "lif_step", "reset", "surrogate_gradient"]
