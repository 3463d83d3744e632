"""Model registry, timm-style: ``@register_model`` on small variant functions, ``create_model(name, **kwargs)``.

Variant names are the function names with "-" for "_" (``ma_snn_3layer`` -> "ma-snn-3layer"). The modules that
define models are imported on the first lookup, not at package import. ``create_model`` drops None kwargs, so
unset CLI options never override a model's defaults, and stores the name and arguments on the model
(``model.model_args``) so a checkpoint can rebuild the exact model.
"""
from __future__ import annotations

import fnmatch
import importlib
import inspect
from collections.abc import Callable

_MODEL_MODULES = ("masnn.models.networks",)  # modules whose import registers variants
_registry: dict[str, Callable] = {}


def register_model(fn: Callable) -> Callable:
    name = fn.__name__.replace("_", "-")
    old = _registry.get(name)
    if old is not None and old.__module__ != fn.__module__:  # a reload of the same module may re-register
        raise ValueError(f"model {name!r} is already registered by {old.__module__}")
    _registry[name] = fn
    return fn


def _load() -> None:
    for module in _MODEL_MODULES:
        importlib.import_module(module)


def list_models(pattern: str = "*") -> list[str]:
    _load()
    return sorted(n for n in _registry if fnmatch.fnmatch(n, pattern))


def create_model(name: str, **kwargs):
    _load()
    if name not in _registry:
        raise ValueError(f"unknown model {name!r}; registered: {', '.join(sorted(_registry))}")
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    model = _registry[name](**kwargs)
    model.model_args = {"name": name, **kwargs}
    return model


def model_parameters(name: str) -> dict[str, inspect.Parameter] | None:
    """The keyword arguments a registered model accepts (name -> parameter, with its default), for checking a
    checkpoint's model arguments before building anything. A variant that only forwards ``**kwargs``
    (``def ma_snn_3layer(**kwargs): return ma_snn_3layer_net(**kwargs)``) accepts what the one module-level
    function it calls accepts. None when that cannot be told (a builder calling several functions)."""
    _load()
    if name not in _registry:
        raise ValueError(f"unknown model {name!r}; registered: {', '.join(sorted(_registry))}")
    fn, seen = _registry[name], set()
    while fn not in seen:
        seen.add(fn)
        parameters = inspect.signature(fn).parameters
        if not any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
            return {k: p for k, p in parameters.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        called = [fn.__globals__[n] for n in fn.__code__.co_names if inspect.isfunction(fn.__globals__.get(n))]
        if len(called) != 1:
            return None
        fn = called[0]
    return None
