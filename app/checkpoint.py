"""Checkpoints: the one layout (model arguments, weights, config, history; training adds optimizer, scheduler and
RNG state), saved atomically, loaded with ``weights_only=True`` and checked, and the model and framing they
rebuild. Inference and evaluation import this, never the training loop.

Frame durations are integer microseconds everywhere (``dt_us``, ``denoise_us``), like event timestamps.
Checkpoints written before that (the shipped ones among them) and older TOML files spell the framing table in
milliseconds (``dt_ms``, ``denoise_ms``); ``framing_table`` is the one place that reads that older spelling."""
from __future__ import annotations

import pickle
from pathlib import Path

import torch
from torch import nn

from masnn.datasets.io.writers import atomic_path
from masnn.datasets.transforms.pipeline import FramingConfig
from masnn.models import create_model

CHECKPOINT_VERSION = 1
FRAMING_KEYS = ("dt_us", "size", "mode", "denoise_us")
_OLDER_SPELLING = {"dt_ms": "dt_us", "denoise_ms": "denoise_us"}  # milliseconds -> microseconds


def framing_table(framing: dict) -> dict:
    """A config's ``framing`` table with durations in microseconds: the older spelling ``dt_ms`` / ``denoise_ms``
    (milliseconds, as older checkpoints and TOML files have it) becomes ``dt_us`` / ``denoise_us``. Unknown keys
    and both spellings of one key raise ValueError."""
    out = {}
    for key, value in framing.items():
        if key in _OLDER_SPELLING:
            key = _OLDER_SPELLING[key]
            if key in framing:
                raise ValueError(f"framing: both {key} and its older spelling in milliseconds are given; keep {key}")
            value = None if value is None else int(round(value * 1000))
        elif key not in FRAMING_KEYS:
            raise ValueError(f"framing: unknown key {key!r}; valid keys: {', '.join(FRAMING_KEYS)}")
        out[key] = value
    return out


def framing_config(framing: dict, steps: int) -> FramingConfig:
    """The frames a model is fed, from a config's ``framing`` table (dt_us, size, mode, denoise_us) and T."""
    framing = framing_table(framing)
    return FramingConfig(dt_us=int(framing.get("dt_us", 15_000)), n_frames=steps, size=framing.get("size", 32),
                         mode=framing.get("mode", "crop"), denoise_us=framing.get("denoise_us") or None)


def save_checkpoint(obj: dict, path: Path) -> None:
    """Atomic: write a temp file in the same folder, then os.replace (a crash never leaves a torn checkpoint)."""
    with atomic_path(path) as temporary:
        torch.save(obj, temporary)


def load_checkpoint(path: str | Path, expect: dict | None = None, map_location="cpu") -> dict:
    """Load with weights_only=True; the framing table comes back in microseconds (``framing_table``). ``expect``
    (e.g. {"name": "ma-snn-3layer", "num_classes": 11, "framing": {"dt_us": 15000, "size": 32}}) must match the
    stored model arguments and framing, else ValueError listing the differences."""
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as e:  # weights_only: plain data only
        raise ValueError(f"{path}: not a readable masnn checkpoint ({str(e).strip().splitlines()[0][:200]})") from None
    if not isinstance(ckpt, dict) or ckpt.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"{path} is not a masnn training checkpoint (version {CHECKPOINT_VERSION})")
    config = ckpt.get("config") or {}
    if "framing" in config:
        try:
            config["framing"] = framing_table(config["framing"])
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None
    stored = {**ckpt["model_args"], "framing": config.get("framing", {})}
    expect = dict(expect or {})
    if "framing" in expect:
        expect["framing"] = framing_table(expect["framing"])
    diffs = [f"{k}: checkpoint has {stored.get(k)!r}, expected {v!r}" for k, v in expect.items() if stored.get(k) != v]
    if diffs:
        raise ValueError(f"checkpoint {path} is for another model: " + "; ".join(diffs))
    return ckpt


def slim_checkpoint(ckpt: dict, half: bool = True) -> dict:
    """What inference needs (model, arguments, config, history), without optimizer, scheduler and RNG state;
    ``half`` stores floating tensors as float16 (they load back into float32 parameters). For shipping."""
    state = {k: v.half() if half and v.is_floating_point() else v for k, v in ckpt["model"].items()}
    return checkpoint_dict(ckpt["model_args"], state, ckpt.get("config", {}), ckpt.get("history", []), ckpt.get("best"),
                       ckpt.get("data", {}))


def model_checkpoint(model: nn.Module, config: dict) -> dict:
    """A loadable checkpoint of ``model`` as trained with ``config`` (no training state)."""
    return checkpoint_dict(model.model_args, model.state_dict(), config)


def checkpoint_dict(model_args: dict, state: dict, config: dict, history: list | None = None, best=None,
                data: dict | None = None, **training_state) -> dict:
    """The one checkpoint layout; training adds optimizer, scheduler and rng."""
    return {"version": CHECKPOINT_VERSION, "model_args": model_args, "model": state, "config": config,
            "history": history or [], "best": best, "data": data or {}, **training_state}


def build_model(ckpt: dict) -> nn.Module:
    """The exact model a checkpoint was trained as, with its weights."""
    args = dict(ckpt["model_args"])
    model = create_model(args.pop("name"), **args)
    model.load_state_dict(ckpt["model"])
    return model
