"""MA-SNN models: LIF neurons (``lif``), attention, networks and a registry (``create_model``, ``list_models``),
the compiled inference copy and spike/energy accounting. Imports torch, numpy and numba; never masnn.datasets or the app."""
from .registry import create_model, list_models, register_model

__all__ = ["create_model", "list_models", "register_model"]
