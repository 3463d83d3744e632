"""`masnn classify`: the action(s) in a recording, with what the network spent on each prediction.

A recording is framed once into dt bins (the model's framing, streamed); windows of T bins slide over it by
``stride`` (rounded to whole bins). Each window gives firing rates -> class probabilities, and its spikes,
NASAR, SOPs, energy (and that of an ANN of the same shape) from ``models.accounting``, and the latency.

Probabilities: a model trained with the paper's MSE loss learns firing rates near one-hot, so its rates are
normalised to sum 1; a cross-entropy model's are softmax(rates * ce_scale), as it was trained.

A recording no longer than ``CLIP_SECONDS`` (one DVS Gesture sample is 6-7 s) is a clip: one prediction, the mean of its windows'
probabilities. A longer one is a timeline: probabilities smoothed over ``smooth`` windows, runs of one class
merged into segments, runs shorter than ``min_windows`` absorbed by their neighbour; windows with fewer
than ``min_events`` events are "idle" (no prediction is made from nothing).
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from masnn.checkpoint import MAX_DT_US, build_model, framing_config, is_number, load_checkpoint
from masnn.datasets.io.readers import open_recording
from masnn.datasets.io.recording import first_event_time
from masnn.datasets.transforms.pipeline import FramingConfig, iter_recording_frames
from masnn.models.accounting import account
from masnn.models.inference import prepare_for_inference

SCHEMA = "masnn.classify/1"
DEFAULT_WEIGHTS = "gesture-tcsa"
SAMPLE_RECORDING = "sample-gesture.aedat4"
IDLE = "idle"
CLIP_SECONDS = 8.0
MODES = ("auto", "clip", "timeline")
MAX_WINDOWS = 10_000_000  # a week of 60 ms strides; more is a mistake (a stride of microseconds), not a run
MAX_BINS = 10 * MAX_WINDOWS  # frames streamed to make the windows, however far apart the windows are
DEVICES = re.compile(r"auto|cpu|cuda(:\d+)?")


def shipped_file(name: str) -> Path:
    return Path(str(resources.files("masnn.weights").joinpath(name)))


def shipped_weights() -> dict[str, Path]:
    """Shipped model name -> checkpoint path."""
    folder = shipped_file("")
    return {p.stem: p for p in sorted(folder.glob("*.pt"))}


def resolve_weights(spec: str | Path | None) -> Path:
    """A checkpoint path from a shipped model's name or a file path (None: the default shipped model)."""
    spec = DEFAULT_WEIGHTS if spec is None else spec
    path = Path(spec)
    if path.is_file():
        return path
    shipped = shipped_weights()
    if str(spec) in shipped:
        return shipped[str(spec)]
    names = ", ".join(shipped) or "none installed"
    raise ValueError(f"{spec}: neither a checkpoint file nor a shipped model (shipped: {names})")


def torch_device(name: str) -> torch.device:
    """auto (CUDA when there is one), cpu, cuda or cuda:N; ValueError for another name or a missing GPU."""
    if not isinstance(name, str) or not DEVICES.fullmatch(name):
        raise ValueError(f"--device: must be auto, cpu, cuda or cuda:N (got {name!r})")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device: {name}: CUDA is not available on this machine")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ValueError(f"--device: {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def window_framing(framing: FramingConfig, window_ms: float) -> FramingConfig:
    """The model's framing with dt = window / T (the model still sees T frames); ValueError for a window that
    is not a finite positive number or gives frames under 1 us or over 10 s."""
    steps = framing.n_frames
    if not is_number(window_ms) or window_ms <= 0:
        raise ValueError(f"--window: must be a positive number of milliseconds (got {window_ms})")
    dt_us = int(round(window_ms * 1000 / steps))
    if not 1 <= dt_us <= MAX_DT_US:
        raise ValueError(f"--window: {window_ms} ms gives frames of {window_ms * 1000 / steps:.3g} us for the model's "
                         f"T = {steps}; frames must last 1 us to {MAX_DT_US // 1_000_000} s "
                         f"(a window from {steps / 1000:g} ms to {steps * MAX_DT_US / 1000:,.0f} ms)")
    return FramingConfig(dt_us, steps, framing.size, framing.mode, framing.denoise_us)


@dataclass
class Classifier:
    """A checkpoint ready to classify windows of frames [T, 2, H, W]."""

    model: torch.nn.Module  # eval mode, the trained modules (attention can be read from it)
    runner: torch.nn.Module  # what runs: the compiled inference copy on the CPU, the model itself elsewhere
    framing: FramingConfig
    class_names: list[str]
    weights: str
    model_args: dict
    device: torch.device
    loss: str = "mse"
    ce_scale: float = 10.0
    energy_preset: str = "fp32-45nm"

    @classmethod
    def load(cls, weights: str | Path | None = None, device: str = "auto", window_ms: float | None = None) -> "Classifier":
        """``window_ms`` other than the trained T x dt changes dt to window / T (the model still sees T frames)."""
        target = torch_device(device)  # options first: a bad one is refused before the checkpoint is read
        path = resolve_weights(weights)
        checkpoint = load_checkpoint(path)  # checked against its schema: the fields below are there and sane
        config = checkpoint.get("config") or {}
        args = checkpoint["model_args"]
        framing = framing_config(config.get("framing", {}), args["T"])
        if window_ms is not None:
            framing = window_framing(framing, window_ms)
        model = build_model(checkpoint).eval()
        runner = prepare_for_inference(model) if target.type == "cpu" else model.to(target)
        names = list(config.get("class_names") or [f"class {i}" for i in range(args["num_classes"])])
        return cls(model, runner, framing, names, str(path), dict(args), target, config.get("loss", "mse"),
                   config.get("ce_scale", 10.0))

    @property
    def window_us(self) -> int:
        return self.framing.dt_us * self.framing.n_frames

    def probabilities(self, rates: torch.Tensor) -> torch.Tensor:
        if self.loss == "ce":
            return torch.softmax(rates * self.ce_scale, -1)
        total = rates.sum(-1, keepdim=True)
        uniform = torch.full_like(rates, 1.0 / rates.shape[-1])
        return torch.where(total > 0, rates / total.clamp_min(1e-12), uniform)

    @torch.inference_mode()
    def __call__(self, frames: np.ndarray, top_k: int = 3) -> dict:
        """One window: {"top_k": [...], "probabilities": [...], "stats": {...}} (no timing of the window)."""
        x = torch.from_numpy(np.ascontiguousarray(frames)).float()[:, None].to(self.device)  # (T, 1, 2, H, W)
        started = time.perf_counter()
        rates, trace = self.runner(x, record=True)
        latency = time.perf_counter() - started
        report = account(trace, self.energy_preset)
        probabilities = self.probabilities(rates[0].float().cpu())
        return {"top_k": self.top_k(probabilities, top_k), "probabilities": probabilities.tolist(),
                "stats": window_stats(report, int(frames.sum()), latency)}

    def top_k(self, probabilities: torch.Tensor, k: int) -> list[dict]:
        values, indices = probabilities.topk(min(k, len(probabilities)))
        return [{"class": self.class_names[i], "index": int(i), "probability": float(v)} for v, i in zip(values.tolist(), indices.tolist())]


def window_stats(report, events: int, latency_s: float) -> dict:
    """One window's figures; ``macs`` without attention, ``attention_macs`` apart (as in `masnn evaluate`)."""
    return {"events": events, "spikes": report.spikes, "spikes_per_layer": {layer.name: layer.spikes for layer in report.layers},
            "firing_rate_per_layer": {layer.name: layer.firing_rate for layer in report.layers}, "nasar": report.nasar,
            "sops": report.sops, "macs": report.macs, "attention_macs": report.attention_macs, "energy_uj": report.energy_pj / 1e6,
            "ann_energy_uj": report.ann_frame_by_frame_energy_pj / 1e6, "latency_ms": 1e3 * latency_s}


@dataclass
class Window:
    start_us: int  # from the recording's first event
    frames: np.ndarray  # [T, 2, H, W]
    padded: bool = False  # the recording was shorter than one window: zeros after its end


def iter_windows(recording, framing: FramingConfig, stride_us: int) -> Iterator[Window]:
    """Sliding windows of ``framing.n_frames`` bins, every ``stride_us`` rounded to whole bins (at least one).
    Bounded: dt and T must be positive, and a recording may not make more than MAX_BINS bins or MAX_WINDOWS
    windows (ValueError naming the file: before any frame is made where the format tells the time range,
    else as soon as the count is passed)."""
    steps, dt = framing.n_frames, framing.dt_us
    if not (is_number(dt) and dt >= 1 and is_number(steps) and steps >= 1):
        raise ValueError(f"{recording.info.path}: frames of {dt} us x {steps}: both must be at least 1")
    if not is_number(stride_us) or stride_us <= 0:
        raise ValueError(f"--stride: must be a positive number of microseconds (got {stride_us})")
    stride = max(1, int(round(stride_us / dt)))
    if recording.info.time_range is not None:
        first, last = recording.info.time_range
        _check_counts(recording.info.path, dt, (last - first) // dt + 1, steps, stride)
    held = None  # the frames some window still needs
    first_bin = 0  # bin index of held[0]
    for block in iter_recording_frames(recording, framing, first_event_time(recording)):
        held = block if held is None else np.concatenate([held, block])
        _check_counts(recording.info.path, dt, first_bin + len(held), steps, stride)
        while len(held) >= steps:
            yield Window(first_bin * dt, held[:steps])
            held, first_bin = held[stride:], first_bin + stride
    if first_bin == 0 and held is not None:  # no window yet: the recording is shorter than one
        padding = np.zeros((steps - len(held), *held.shape[1:]), held.dtype)
        yield Window(0, np.concatenate([held, padding]), padded=True)


def _check_counts(path, dt: int, bins: int, steps: int, stride: int) -> None:
    """Hours of microsecond frames would run for days, not end: refuse more than MAX_BINS bins or MAX_WINDOWS
    windows (``bins`` so far, or all the recording's time range holds)."""
    windows = max(1, (bins - steps) // stride + 1)
    if windows > MAX_WINDOWS or bins > MAX_BINS:
        raise ValueError(f"{path}: {(bins - 1) * dt / 1e6:,.1f} s in frames of {dt} us make {bins:,} frames and "
                         f"{windows:,} windows (at most {MAX_BINS:,} and {MAX_WINDOWS:,}); use a longer --window or --stride")


def smooth(probabilities: np.ndarray, width: int) -> np.ndarray:
    """Centred moving average over windows (edges average what they have)."""
    if width <= 1 or len(probabilities) < 2:
        return probabilities
    kernel = np.ones(width)
    sums = np.stack([np.convolve(column, kernel, "same") for column in probabilities.T], 1)
    counts = np.convolve(np.ones(len(probabilities)), kernel, "same")[:, None]
    return sums / counts


def segments(windows: list[dict], class_names: list[str], smoothing: int = 3, min_windows: int = 2) -> list[dict]:
    """Runs of one smoothed class over the windows; idle windows make idle runs."""
    if not windows:
        return []
    probabilities = smooth(np.array([w["probabilities"] for w in windows]), smoothing)
    labels = [IDLE if w["idle"] else int(p.argmax()) for w, p in zip(windows, probabilities)]
    runs = []  # [label, first, last]
    for i, label in enumerate(labels):
        if runs and runs[-1][0] == label:
            runs[-1][2] = i
        else:
            runs.append([label, i, i])
    changed = True
    while changed and len(runs) > 1:  # absorb the shortest too-short run into its longer neighbour
        changed = False
        short = [k for k, r in enumerate(runs) if r[2] - r[1] + 1 < min_windows]
        if short:
            k = min(short, key=lambda k: runs[k][2] - runs[k][1])
            neighbours = [j for j in (k - 1, k + 1) if 0 <= j < len(runs)]
            j = max(neighbours, key=lambda j: runs[j][2] - runs[j][1])
            runs[j][1], runs[j][2] = min(runs[j][1], runs[k][1]), max(runs[j][2], runs[k][2])
            del runs[k]
            merged = []
            for r in runs:
                if merged and merged[-1][0] == r[0]:
                    merged[-1][2] = r[2]
                else:
                    merged.append(r)
            runs, changed = merged, True
    out = []
    for label, first, last in runs:
        span = probabilities[first:last + 1]
        entry = {"start_s": windows[first]["start_s"], "end_s": windows[last]["end_s"], "windows": last - first + 1}
        if label == IDLE:
            entry.update({"class": IDLE, "index": None, "confidence": None})
        else:
            entry.update({"class": class_names[label], "index": label, "confidence": float(span[:, label].mean())})
        out.append(entry)
    return out


@dataclass
class ClassifyOptions:
    window_ms: float | None = None  # None: the model's T x dt
    stride_ms: float | None = None  # None: half a window
    top_k: int = 3
    smoothing: int = 3
    min_windows: int = 2
    min_events: int = 200
    mode: str = "auto"  # auto | clip | timeline

    def __post_init__(self):  # checked before any work, not after a long recording was classified
        if self.mode not in MODES:
            raise ValueError(f"--mode: must be one of {', '.join(MODES)} (got {self.mode!r})")
        for name in ("window_ms", "stride_ms"):
            value = getattr(self, name)
            if value is not None and not (is_number(value) and value > 0):
                raise ValueError(f"--{name[:-3]}: must be a positive number of milliseconds (got {value})")
        for name, low in (("top_k", 1), ("smoothing", 1), ("min_windows", 1), ("min_events", 0)):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= low):
                raise ValueError(f"--{name.replace('_', '-')}: must be a whole number >= {low} (got {value!r})")


def classify_recording(path: str | Path, classifier: Classifier, options: ClassifyOptions = ClassifyOptions(),
                       on_window: Callable[[Window, dict], None] | None = None,
                       progress: Callable[[float], None] | None = None) -> dict:
    """The report (see SCHEMA in classify_schema.json) of one recording. ``on_window(window, entry)`` sees every
    window (the renderer); ``progress(seconds_done)`` is called after each."""
    stride_us = int(round((options.stride_ms or classifier.window_us / 2000) * 1000))
    started = time.perf_counter()
    with open_recording(path) as recording:
        info = recording.info
        windows = []
        for window in iter_windows(recording, classifier.framing, stride_us):
            entry = classifier(window.frames, options.top_k)
            entry.update({"start_s": window.start_us / 1e6, "end_s": (window.start_us + classifier.window_us) / 1e6,
                          "padded": window.padded, "idle": entry["stats"]["events"] < options.min_events})
            windows.append(entry)
            if on_window is not None:
                on_window(window, entry)
            if progress is not None:
                progress(entry["end_s"])
    if not windows:
        raise ValueError(f"{path}: no events to classify")
    return build_report(path, info, classifier, options, windows, stride_us, time.perf_counter() - started)


def build_report(path, info, classifier: Classifier, options: ClassifyOptions, windows: list[dict], stride_us: int, seconds: float) -> dict:
    active = [w for w in windows if not w["idle"]] or windows
    mean = torch.tensor(np.mean([w["probabilities"] for w in active], 0))
    clip = options.mode == "clip" or (options.mode == "auto" and windows[-1]["end_s"] <= CLIP_SECONDS)
    timeline = [] if clip else segments(windows, classifier.class_names, options.smoothing, options.min_windows)
    latencies = np.array([w["stats"]["latency_ms"] for w in windows])
    stats = [w["stats"] for w in windows]
    totals = {"windows": len(windows), "events_in_windows": int(sum(s["events"] for s in stats)),
              "spikes": float(sum(s["spikes"] for s in stats)), "nasar_mean": float(np.mean([s["nasar"] for s in stats])),
              "sops": float(sum(s["sops"] for s in stats)), "macs": float(sum(s["macs"] for s in stats)),
              "attention_macs": float(sum(s["attention_macs"] for s in stats)),
              "energy_uj": float(sum(s["energy_uj"] for s in stats)), "ann_energy_uj": float(sum(s["ann_energy_uj"] for s in stats)),
              "energy_per_inference_uj": float(np.mean([s["energy_uj"] for s in stats])),
              "latency_ms": {"mean": float(latencies.mean()), "p50": float(np.percentile(latencies, 50)), "p99": float(np.percentile(latencies, 99))},
              "wall_s": seconds}
    for w in windows:
        del w["probabilities"]
    return {
        "schema": SCHEMA,
        "file": str(path),
        "recording": {"format": info.format, "camera": info.camera or "unknown", "sensor": [info.width, info.height],
                      "duration_s": (info.time_range[1] - info.time_range[0]) / 1e6 if info.time_range else None},
        "model": {"weights": classifier.weights, "name": classifier.model_args["name"], "attention": classifier.model_args.get("attention"),
                  "classes": classifier.class_names, "framing": classifier.framing.to_dict(), "window_us": classifier.window_us,
                  "stride_us": max(1, round(stride_us / classifier.framing.dt_us)) * classifier.framing.dt_us,
                  "device": str(classifier.device), "energy_preset": classifier.energy_preset},
        "mode": "clip" if clip else "timeline",
        "prediction": {"top_k": classifier.top_k(mean, options.top_k)},
        "segments": timeline,
        "windows": windows,
        "totals": totals,
    }
