"""MA-SNN models: LIF neurons, attention, networks and a registry (``create_model``, ``list_models``)."""
from .registry import create_model, list_models, register_model

__all__ = ["create_model", "list_models", "register_model"]
