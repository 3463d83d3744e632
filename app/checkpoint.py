"""Checkpoints: the one layout (model arguments, weights, config, history; training adds optimizer, scheduler and
RNG state), saved atomically, loaded with ``weights_only=True`` and checked, and the model and framing they
rebuild. Inference and evaluation import this, never the training loop."""
from __future__ import annotations

import pickle
from pathlib import Path

import torch
from masnn.datasets.io.writers import atomic_path
from masnn.datasets.transforms.pipeline import FramingConfig
from masnn.models import create_model
from torch import nn

CHECKPOINT_VERSION = 1


def framing_config(framing: dict, steps: int) -> FramingConfig:
    """The frames a model is fed, from a config's ``framing`` table (dt_ms, size, mode, denoise_ms) and T."""
    denoise_ms = framing.get("denoise_ms")
    return FramingConfig(dt_us=int(round(framing.get("dt_ms", 15.0) * 1000)), n_frames=steps, size=framing.get("size", 32),
                         mode=framing.get("mode", "crop"), denoise_us=int(round(denoise_ms * 1000)) if denoise_ms else None)


def save_checkpoint(obj: dict, path: Path) -> None:
    """Atomic: write a temp file in the same folder, then os.replace (a crash never leaves a torn checkpoint)."""
    with atomic_path(path) as temporary:
        torch.save(obj, temporary)


def load_checkpoint(path: str | Path, expect: dict | None = None, map_location="cpu") -> dict:
    """Load with weights_only=True; ``expect`` (e.g. {"name": "ma-snn-3layer", "num_classes": 11, "framing":
    {"dt_ms": 15.0, "size": 32}}) must match the stored model arguments and framing, else ValueError listing
    the differences."""
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as e:  # weights_only: plain data only
        raise ValueError(f"{path}: not a readable masnn checkpoint ({str(e).strip().splitlines()[0][:200]})") from None
    if not isinstance(ckpt, dict) or ckpt.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"{path} is not a masnn training checkpoint (version {CHECKPOINT_VERSION})")
    stored = {**ckpt["model_args"], "framing": ckpt.get("config", {}).get("framing", {})}
    diffs = [f"{k}: checkpoint has {stored.get(k)!r}, expected {v!r}" for k, v in (expect or {}).items()
             if stored.get(k) != v]
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
