"""Checkpoints: the one layout (model arguments, weights, config, history; training adds optimizer, scheduler and
RNG state), saved atomically, loaded with ``weights_only=True`` and checked, and the model and framing they
rebuild. Inference and evaluation import this, never the training loop.

A loaded checkpoint is checked against its schema before any model is built (``check_checkpoint``): the layout
and version; ``model_args`` (a registered model, only arguments its builder takes, sane values); ``model`` (the
keys and shapes of the weights those arguments build, finite values); ``config`` (framing, class names, loss).
Each fault is one ``CheckpointError`` line: ``FILE: checkpoint field model_args.T: must be ... (got 0)``.

Frame durations are integer microseconds everywhere (``dt_us``, ``denoise_us``), like event timestamps.
Checkpoints written before that (the shipped ones among them) and older TOML files spell the framing table in
milliseconds (``dt_ms``, ``denoise_ms``); ``framing_table`` is the one place that reads that older spelling."""
from __future__ import annotations

import hashlib
import math
import warnings
from pathlib import Path

import torch
from torch import nn

from masnn.datasets.io.writers import atomic_path
from masnn.datasets.loaders.table import time_reversed_labels
from masnn.datasets.transforms.pipeline import FramingConfig
from masnn.datasets.transforms.spatial import SPATIAL_MODES
from masnn.models import create_model
from masnn.models.both_ways import BothWays

CHECKPOINT_VERSION = 1
FRAMING_KEYS = ("dt_us", "size", "mode", "denoise_us")
_OLDER_SPELLING = {"dt_ms": "dt_us", "denoise_ms": "denoise_us"}  # milliseconds -> microseconds
MAX_DT_US = 10_000_000  # 10 s frames: no event-camera protocol comes near; more is a typo or a damaged file
MAX_FRAME_SIDE = 4096  # pixels: larger than any event sensor


class FieldError(ValueError):
    """One bad field of a table (``framing.dt_us``, ``model_args.T``): ``str()`` is ``FIELD: problem``."""

    def __init__(self, field: str, problem: str):
        self.field, self.problem = field, problem
        super().__init__(f"{field}: {problem}")


class CheckpointError(ValueError):
    """One fault of one checkpoint file, one line: ``FILE: checkpoint field FIELD: problem``."""

    def __init__(self, path: str | Path, field: str, problem: str):
        self.path, self.field, self.problem = str(path), field, problem
        super().__init__(f"{path}: checkpoint field {field}: {problem}")


def is_whole(value) -> bool:
    """An int, not a bool (True is an int to Python, never a count here)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value) -> bool:
    """A finite int or float, not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _whole_in(field: str, value, low: int, high: int) -> None:
    if not is_whole(value) or not low <= value <= high:
        raise FieldError(field, f"must be a whole number from {low:,} to {high:,} (got {value!r})")


def framing_table(framing: dict) -> dict:
    """A config's ``framing`` table with durations in microseconds, its values checked: the older spelling
    ``dt_ms`` / ``denoise_ms`` (milliseconds, as older checkpoints and TOML files have it) becomes ``dt_us`` /
    ``denoise_us``. A bad value, an unknown key or both spellings of one key raise ``FieldError`` naming the key
    as the table spells it (``framing.dt_ms: ...``)."""
    if not isinstance(framing, dict):
        raise FieldError("framing", f"must be a table (got {type(framing).__name__})")
    out = {}
    for key, value in framing.items():
        field = f"framing.{key}"
        if key in _OLDER_SPELLING:
            if _OLDER_SPELLING[key] in framing:
                raise FieldError(field, f"both {_OLDER_SPELLING[key]} and its older spelling in milliseconds are "
                                 f"given; keep {_OLDER_SPELLING[key]}")
            key, value = _OLDER_SPELLING[key], _microseconds(field, value)
        elif key not in FRAMING_KEYS:
            raise FieldError(field, f"unknown key; valid keys: {', '.join(FRAMING_KEYS)}")
        _check_framing_value(field, key, value)
        out[key] = value
    return out


def _microseconds(field: str, milliseconds):
    if milliseconds is None:
        return None
    if not is_number(milliseconds) or abs(milliseconds) > MAX_DT_US:
        raise FieldError(field, f"must be a number of milliseconds up to {MAX_DT_US // 1000:,} (got {milliseconds!r})")
    return int(round(milliseconds * 1000))


def _check_framing_value(field: str, key: str, value) -> None:
    """dt positive and at most 10 s (a zero or negative dt would never step past the first frame), size
    positive or None (the sensor's own), a known spatial mode, a denoise time of 0 or None (off) or positive."""
    unit = " ms" if field.endswith("_ms") else ""
    shown = value / 1000 if unit and is_whole(value) else value
    if key == "dt_us" and not (is_whole(value) and 1 <= value <= MAX_DT_US):
        raise FieldError(field, f"must be a frame duration from 1 us to {MAX_DT_US // 1_000_000} s (got {shown!r}{unit})")
    if key == "denoise_us" and value is not None and not (is_whole(value) and 0 <= value <= MAX_DT_US):
        raise FieldError(field, f"must be off (0 or none) or a filter time up to {MAX_DT_US // 1_000_000} s "
                         f"(got {shown!r}{unit})")
    if key == "size" and value is not None and not (is_whole(value) and 1 <= value <= MAX_FRAME_SIDE):
        raise FieldError(field, f"must be none (the sensor's own) or a side from 1 to {MAX_FRAME_SIDE} pixels "
                         f"(got {value!r})")
    if key == "mode" and value not in SPATIAL_MODES:
        raise FieldError(field, f"must be one of {', '.join(SPATIAL_MODES)} (got {value!r})")


def framing_config(framing: dict, steps: int) -> FramingConfig:
    """The frames a model is fed, from a config's ``framing`` table (dt_us, size, mode, denoise_us) and T."""
    framing = framing_table(framing)
    return FramingConfig(dt_us=int(framing.get("dt_us", 15_000)), n_frames=steps, size=framing.get("size", 32),
                         mode=framing.get("mode", "crop"), denoise_us=framing.get("denoise_us") or None)


def checkpoint_framing(checkpoint: dict) -> FramingConfig:
    """The frames a loaded checkpoint's model is fed (a checkpoint may have no config: the defaults)."""
    return framing_config((checkpoint.get("config") or {}).get("framing", {}), checkpoint["model_args"]["T"])


def file_sha256(path: str | Path) -> str:
    """The hex sha256 of a weights file: what cards state and classify reports carry, so they name the same bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def save_checkpoint(obj: dict, path: Path) -> None:
    """Atomic: write a temp file in the same folder, then os.replace (a crash never leaves a torn checkpoint)."""
    with atomic_path(path) as temporary:
        torch.save(obj, temporary)


def load_checkpoint(path: str | Path, expect: dict | None = None, map_location="cpu") -> dict:
    """Load with weights_only=True (plain tensors and containers: a pickle that would run code is refused, never
    run), then ``check_checkpoint``; the framing table comes back in microseconds. ``expect`` (e.g.
    {"name": "ma-snn-3layer", "num_classes": 11, "framing": {"dt_us": 15000, "size": 32}}) must match the stored
    model arguments and framing, else ValueError listing the differences."""
    ckpt = _read(path, map_location)
    check_checkpoint(ckpt, path)
    config = ckpt.get("config") or {}
    stored = {**ckpt["model_args"], "framing": config.get("framing", {})}
    expect = dict(expect or {})
    if "framing" in expect:
        expect["framing"] = framing_table(expect["framing"])
    diffs = [f"{k}: checkpoint has {stored.get(k)!r}, expected {v!r}" for k, v in expect.items() if stored.get(k) != v]
    if diffs:
        raise ValueError(f"checkpoint {path} is for another model: " + "; ".join(diffs))
    return ckpt


def _read(path: str | Path, map_location) -> dict:
    try:
        with warnings.catch_warnings():  # torch's notes on pickle protocols are not the user's business
            warnings.simplefilter("ignore")
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # any file can be handed in: whatever the unpickler raises, it is the file's fault
        raise ValueError(f"{path}: not a readable masnn checkpoint ({_load_failure(path, e)})") from None


_REFUSED = "Weights only load failed"
_TORCH_ADVICE = ("weights_only", _REFUSED, "Please file an issue", "Check the documentation")


def _load_failure(path: str | Path, error: Exception) -> str:
    """What went wrong, in one line, without torch's advice to load with weights_only=False (that runs code)."""
    if isinstance(error, EOFError) and Path(path).is_file() and Path(path).stat().st_size == 0:
        return "the file is empty"
    text = str(error)
    if not text.startswith(_REFUSED):
        return next((line.strip() for line in text.splitlines() if line.strip()), type(error).__name__)[:200]
    lines = [line.strip() for line in text.split("WeightsUnpickler error:", 1)[-1].splitlines()]
    reason = next((line for line in lines if line and not any(a in line for a in _TORCH_ADVICE)),
                  "it holds more than tensors and plain containers")
    return "the weights-only unpickler refused it: " + reason.split(". ")[0].rstrip(".")[:200]


def check_checkpoint(ckpt, path: str | Path) -> None:
    """Raise ``CheckpointError`` at the first field that is missing, of the wrong kind or out of range (see
    the module docstring); on success the config's framing table is in microseconds. Builds nothing but an
    empty copy of the model on the meta device (shapes, no memory) to compare the weights with."""
    if not isinstance(ckpt, dict):
        raise ValueError(f"{path}: not a masnn checkpoint (it holds a {type(ckpt).__name__}, not a table)")
    try:
        _check_layout(ckpt)
        defaults = _check_model_args(ckpt["model_args"])
        _check_weights(ckpt["model"], ckpt["model_args"])
        _check_config(ckpt, {**defaults, **ckpt["model_args"]})
    except FieldError as e:
        raise CheckpointError(path, e.field, e.problem) from None


def _check_layout(ckpt: dict) -> None:
    if ckpt.get("version") != CHECKPOINT_VERSION:
        got = "missing" if "version" not in ckpt else f"is {ckpt['version']!r}"
        raise FieldError("version", f"{got}; this masnn reads version {CHECKPOINT_VERSION} (not a masnn checkpoint?)")
    for key in ("model_args", "model"):
        if key not in ckpt:
            raise FieldError(key, "missing")
    if ckpt.get("config") is not None and not isinstance(ckpt["config"], dict):
        raise FieldError("config", f"must be a table (got {type(ckpt['config']).__name__})")
    if "history" in ckpt and not isinstance(ckpt["history"], list):
        raise FieldError("history", f"must be a list (got {type(ckpt['history']).__name__})")


# model arguments: argument -> check(field, value); arguments not listed are checked by building the model
def _whole(low: int, high: int):
    return lambda field, value: _whole_in(field, value, low, high)


def _optional(check):
    return lambda field, value: None if value is None else check(field, value)


def _one_of(*choices):
    def check(field, value):
        if value not in choices:
            raise FieldError(field, f"must be one of {', '.join(map(str, choices))} (got {value!r})")
    return check


def _flag(field, value):
    if not isinstance(value, bool):
        raise FieldError(field, f"must be true or false (got {value!r})")


def _fraction(field, value):
    if not is_number(value) or not 0 <= value <= 1:
        raise FieldError(field, f"must be a number from 0 to 1 (got {value!r})")


def _attention(field, value):
    from masnn.models.attention import parse_attention

    if value is not None and not isinstance(value, str):
        raise FieldError(field, f"must be a string such as TCS or none (got {value!r})")
    try:
        parse_attention(value)
    except ValueError as e:
        raise FieldError(field, str(e)) from None


def _lif(field, value):
    from masnn.models.lif import LIFParams

    if value is None:
        return
    if not isinstance(value, dict) or any(isinstance(v, float) and not math.isfinite(v) for v in value.values()):
        raise FieldError(field, f"must be a table of finite LIF parameters (got {value!r})")
    try:
        LIFParams(**value)
    except (TypeError, ValueError) as e:
        raise FieldError(field, str(e)) from None


def _placement(field, value):
    from masnn.models.attention import PLACEMENTS

    _one_of(*PLACEMENTS)(field, value)


MODEL_ARGUMENT_CHECKS = {
    "T": _whole(1, 10_000), "num_classes": _whole(1, 100_000), "input_size": _whole(1, MAX_FRAME_SIDE),
    "in_channels": _whole(1, 64), "channels": _whole(1, 65_536), "fc_hidden": _whole(1, 1 << 20),
    "r_t": _whole(1, 10_000), "r_c": _whole(1, 65_536), "sa_kernel": _optional(_whole(1, 99)),
    "attention": _attention, "placement": _placement, "backend": _one_of("auto", "reference", "fused", "triton"),
    "input_attention": _flag, "prune_threshold": _optional(_fraction), "lif": _lif,
}
REQUIRED_MODEL_ARGUMENTS = ("name", "T", "num_classes")  # what classify and evaluate read from model_args


def _check_model_args(args) -> dict:
    """The registered builder's defaults for the arguments ``args`` leaves out (input_size, ...)."""
    from masnn.models.registry import list_models, model_parameters

    if not isinstance(args, dict):
        raise FieldError("model_args", f"must be a table of arguments (got {type(args).__name__})")
    for key in REQUIRED_MODEL_ARGUMENTS:
        if key not in args:
            raise FieldError(f"model_args.{key}", "missing")
    if args["name"] not in list_models():
        raise FieldError("model_args.name", f"{args['name']!r} is not a registered model ({', '.join(list_models())})")
    accepted = model_parameters(args["name"])
    for key, value in args.items():
        if key == "name":
            continue
        if accepted is not None and key not in accepted:
            raise FieldError(f"model_args.{key}", f"{args['name']} takes no such argument ({', '.join(accepted)})")
        if key in MODEL_ARGUMENT_CHECKS:
            MODEL_ARGUMENT_CHECKS[key](f"model_args.{key}", value)
    return {k: p.default for k, p in (accepted or {}).items() if p.default is not p.empty}


def _expected_weights(args: dict) -> dict[str, torch.Size]:
    """Names and shapes of the weights ``args`` build: the model is built on the meta device (no memory)."""
    kwargs = {k: v for k, v in args.items() if k != "name"}
    try:
        with torch.device("meta"):
            model = create_model(args["name"], **kwargs)
    except (TypeError, ValueError) as e:  # arguments that pass one by one but not together
        raise FieldError("model_args", str(e).splitlines()[0]) from None
    return {k: v.shape for k, v in model.state_dict().items()}


def _check_weights(state, args: dict) -> None:
    """Same keys and shapes as the model ``args`` build (another num_classes shows in the head's shape); finite."""
    if not isinstance(state, dict):
        raise FieldError("model", f"must be a table of tensors (got {type(state).__name__})")
    expected = _expected_weights(args)
    built = ", ".join(f"{k}={v}" for k, v in args.items() if is_whole(v) or isinstance(v, str))
    for key in expected:
        if key not in state:
            raise FieldError(f"model.{key}", f"missing; model_args ({built}) build a model that has it")
    for key, tensor in state.items():
        if key not in expected:
            raise FieldError(f"model.{key}", f"unexpected; model_args ({built}) build no such weight")
        if not isinstance(tensor, torch.Tensor):
            raise FieldError(f"model.{key}", f"must be a tensor (got {type(tensor).__name__})")
        if tensor.shape != expected[key]:
            raise FieldError(f"model.{key}", f"shape {list(tensor.shape)}, but model_args ({built}) build "
                             f"{list(expected[key])}")
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise FieldError(f"model.{key}", "holds NaN or infinite values")


def _check_config(ckpt: dict, args: dict) -> None:
    """The framing (converted to microseconds in place), its frame size against the model's input, the class
    names against num_classes, the loss the probabilities follow."""
    config = ckpt.get("config") or {}
    if "framing" in config:
        try:
            config["framing"] = framing_table(config["framing"])
        except FieldError as e:
            raise FieldError(f"config.{e.field}", e.problem) from None
    size = framing_config(config.get("framing", {}), args["T"]).size
    if size is not None and "input_size" in args and size != args["input_size"]:
        raise FieldError("config.framing.size", f"frames of {size}x{size}, but the model takes "
                         f"{args['input_size']}x{args['input_size']} (model_args.input_size)")
    names = config.get("class_names")
    if names and (not isinstance(names, list) or not all(isinstance(n, str) for n in names)):
        raise FieldError("config.class_names", "must be a list of strings")
    if names and len(names) != args["num_classes"]:
        raise FieldError("config.class_names", f"{len(names)} names for model_args.num_classes = {args['num_classes']}")
    if "loss" in config:
        _one_of("mse", "ce")("config.loss", config["loss"])
    if "ce_scale" in config and not (is_number(config["ce_scale"]) and config["ce_scale"] > 0):
        raise FieldError("config.ce_scale", f"must be a positive number (got {config['ce_scale']!r})")


def slim_checkpoint(ckpt: dict, half: bool = True) -> dict:
    """What inference needs (model, arguments, config, history), without optimizer, scheduler and RNG state;
    ``half`` stores floating tensors as float16 (they load back into float32 parameters). For shipping."""
    state = {k: v.half() if half and v.is_floating_point() else v for k, v in ckpt["model"].items()}
    return checkpoint_dict(ckpt["model_args"], state, ckpt.get("config", {}), ckpt.get("history", []), ckpt.get("best"),
                       ckpt.get("data", {}))


def with_denoise(ckpt: dict, denoise_us: int | None) -> dict:
    """``ckpt`` with a background-activity filter of ``denoise_us`` (None: off) in its framing: every command that
    frames input for it (classify, live, calibrate, evaluate) filters first. The weights are untouched: whether a
    model trained without the filter gains from it is for its calibration and evaluation to show."""
    config = dict(ckpt.get("config") or {})
    framing = framing_table(config.get("framing") or {})  # its older spelling (denoise_ms) read first
    config["framing"] = framing_table({**framing, "denoise_us": denoise_us})
    return {**ckpt, "config": config}


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


def reversed_classes(ckpt: dict) -> list[int]:
    """Per class, the class of its motion played backwards (itself where the motion has no sense)."""
    names = list((ckpt.get("config") or {}).get("class_names") or [])
    reversed_label = time_reversed_labels(names)
    return [reversed_label.get(label, label) for label in range(ckpt["model_args"]["num_classes"])]


def scores_both_ways(ckpt: dict) -> bool:
    """Whether a checkpoint answers from both ways by default: it was trained on crops played backwards too (and so
    knows them), and some class changes when played backwards (the arm circles; not gait's walkers)."""
    config = ckpt.get("config") or {}
    return bool(config.get("time_reversal")) and bool(time_reversed_labels(list(config.get("class_names") or [])))


def both_ways_runner(ckpt: dict, runner: nn.Module, both_ways: bool | None = None) -> nn.Module:
    """``runner`` (the network that scores windows), run both ways (``BothWays``) when ``both_ways`` says so (None:
    as ``scores_both_ways`` says for the checkpoint)."""
    both = scores_both_ways(ckpt) if both_ways is None else both_ways
    return BothWays(runner, reversed_classes(ckpt)) if both else runner
