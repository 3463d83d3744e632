"""The shipped models: weights/NAME.pt with its card weights/NAME.md (package data). Every command that takes
weights takes a shipped model's name or a checkpoint path, resolved here."""
from __future__ import annotations

from importlib import resources
from pathlib import Path

from masnn.checkpoint import checkpoint_framing, load_checkpoint

DEFAULT_WEIGHTS = "gesture-tcsa"  # the shipped model classify, live and frames use when given none

def shipped_file(name: str) -> Path:
    """A file shipped in ``masnn.weights`` (a model, its card, the sample recording)."""
    return Path(str(resources.files("masnn.weights").joinpath(name)))


def shipped_weights() -> dict[str, Path]:
    """Shipped model name -> checkpoint path."""
    folder = shipped_file("")
    return {p.stem: p for p in sorted(folder.glob("*.pt"))}


def resolve_weights(spec: str | Path | None) -> Path:
    """A checkpoint path from a shipped model's name or a file path (None: the default shipped model). Neither:
    ValueError, one line naming the shipped models."""
    spec = DEFAULT_WEIGHTS if spec is None else spec
    path = Path(spec)
    if path.is_file():
        return path
    shipped = shipped_weights()
    if str(spec) in shipped:
        return shipped[str(spec)]
    names = ", ".join(shipped) or "none installed"
    raise ValueError(f"{spec}: neither a checkpoint file nor a shipped model (shipped models: {names}; "
                     f"see masnn models --shipped)")


def _task(class_names: list[str]) -> str:
    from masnn.datasets.loaders.table import GESTURE_CLASSES

    if list(class_names) == list(GESTURE_CLASSES):
        return "gesture"
    if class_names and all(name.startswith("subject") for name in class_names):
        return "gait"
    return "other"


def model_summary(path: str | Path, name: str | None = None) -> dict:
    """What a checkpoint is for: task (gesture, gait or other), classes, framing (T x dt = window, size, mode,
    background-activity filter: None is off), attention, file size and card (the .md beside it, None if there is none)."""
    path = Path(path)
    ckpt = load_checkpoint(path)
    args, config = ckpt["model_args"], ckpt.get("config") or {}
    framing = checkpoint_framing(ckpt)
    names = list(config.get("class_names") or [])
    card = path.with_suffix(".md")
    return {"name": name or path.stem, "task": _task(names), "model": args["name"],
            "attention": args.get("attention") or "none", "classes": args["num_classes"], "class_names": names,
            "framing": {"T": framing.n_frames, "dt_us": framing.dt_us, "window_us": framing.window_us,
                        "size": framing.size, "mode": framing.mode, "denoise_us": framing.denoise_us},
            "file": str(path), "bytes": path.stat().st_size, "card": str(card) if card.is_file() else None}


def shipped_models() -> list[dict]:
    """``model_summary`` of every shipped model, by name."""
    return [model_summary(path, name) for name, path in shipped_weights().items()]
