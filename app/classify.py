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
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from masnn.calibration import UNCERTAIN, answer, class_probabilities, is_uncertain, load_calibration
from masnn.checkpoint import (
    MAX_DT_US,
    both_ways_runner,
    build_model,
    checkpoint_framing,
    file_sha256,
    is_number,
    load_checkpoint,
)
from masnn.datasets.events import EventFileError
from masnn.datasets.io.readers import open_recording
from masnn.datasets.io.recording import Recording, first_event_time
from masnn.datasets.transforms.pipeline import FramingConfig, iter_recording_frames
from masnn.models.accounting import account
from masnn.models.both_ways import BothWays
from masnn.models.inference import prepare_for_inference
from masnn.shipped import DEFAULT_WEIGHTS, resolve_weights, shipped_file, shipped_weights  # noqa: F401  (shipped_file, shipped_weights: imported from here too)

SCHEMA = "masnn.classify/1"
SAMPLE_RECORDING = "sample-gesture.aedat4"
IDLE = "idle"
CLIP_SECONDS = 8.0
MODES = ("auto", "clip", "timeline")
MAX_WINDOWS = 10_000_000  # a week of 60 ms strides; more is a mistake (a stride of microseconds), not a run
MAX_BINS = 10 * MAX_WINDOWS  # frames streamed to make the windows, however far apart the windows are
DEVICES = re.compile(r"auto|cpu|cuda(:\d+)?")


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
    calibration: dict | None = None  # <name>.calibration.json beside the checkpoint (masnn.calibration), or None
    sha256: str = ""  # of the weights file: which model made a report, wherever the file was moved since

    @property
    def both_ways(self) -> bool:
        """Whether each window is scored as recorded and played backwards (``masnn.models.both_ways``)."""
        return isinstance(self.runner, BothWays)

    @property
    def uncertain_threshold(self) -> float | None:
        """Windows whose top probability is below it are "uncertain"; None: no calibration, no threshold."""
        return None if self.calibration is None else float(self.calibration["threshold"])

    @classmethod
    def load(cls, weights: str | Path | None = None, device: str = "auto", window_ms: float | None = None,
             calibrated: bool = True, both_ways: bool | None = None) -> "Classifier":
        """``window_ms`` other than the trained T x dt changes dt to window / T (the model still sees T frames).
        ``calibrated``: read the threshold of "uncertain" from ``<name>.calibration.json`` beside the checkpoint; a
        calibration made the other way (one way or both ways) does not apply. ``both_ways``: score every window as
        recorded and played backwards (None: as the checkpoint was trained, ``scores_both_ways``)."""
        target = torch_device(device)  # options first: a bad one is refused before the checkpoint is read
        path = resolve_weights(weights)
        checkpoint = load_checkpoint(path)  # checked against its schema: the fields below are there and sane
        config = checkpoint.get("config") or {}
        args = checkpoint["model_args"]
        framing = checkpoint_framing(checkpoint)
        if window_ms is not None:
            framing = window_framing(framing, window_ms)
        model = build_model(checkpoint).eval()
        runner = prepare_for_inference(model) if target.type == "cpu" else model.to(target)
        runner = both_ways_runner(checkpoint, runner, both_ways).to(target)
        names = list(config.get("class_names") or [f"class {i}" for i in range(args["num_classes"])])
        calibration = load_calibration(path) if calibrated else None
        if calibration is not None and bool(calibration.get("both_ways", False)) != isinstance(runner, BothWays):
            calibration = None  # its threshold was set on the other way's confidences
        return cls(model, runner, framing, names, str(path), dict(args), target, config.get("loss", "mse"),
                   config.get("ce_scale", 10.0), calibration=calibration, sha256=file_sha256(path))

    @property
    def window_us(self) -> int:
        return self.framing.window_us

    def probabilities(self, rates: torch.Tensor) -> torch.Tensor:
        return class_probabilities(rates, self.loss, self.ce_scale)

    @torch.inference_mode()
    def __call__(self, frames: np.ndarray, top_k: int = 3) -> dict:
        """One window: {"class": the top class or "uncertain", "confidence": the top probability, "top_k": [...],
        "probabilities": [...], "stats": {...}} (no timing of the window)."""
        x = torch.from_numpy(np.ascontiguousarray(frames)).float()[:, None].to(self.device)  # (T, 1, 2, H, W)
        started = time.perf_counter()
        rates, trace = self.runner(x, record=True)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)  # CUDA kernels run asynchronously: the latency is the GPU's work too
        latency = time.perf_counter() - started
        report = account(trace, self.energy_preset)
        probabilities = self.probabilities(rates[0].float().cpu())
        ranked = self.top_k(probabilities, top_k)
        label, confidence = answer(ranked, self.uncertain_threshold)
        return {"class": label, "confidence": confidence, "top_k": ranked, "probabilities": probabilities.tolist(),
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


def iter_windows(recording, framing: FramingConfig, stride_us: int, start_us: int | None = None, end_us: int | None = None) -> Iterator[Window]:
    """Sliding windows of ``framing.n_frames`` bins, every ``stride_us`` rounded to whole bins (at least one),
    over [start_us, end_us) after the first event (default: all of it); window times count from the first event.
    Bounded: dt and T must be positive, and a recording may not make more than MAX_BINS bins or MAX_WINDOWS
    windows (ValueError naming the file: before any frame is made where the format tells the time range,
    else as soon as the count is passed)."""
    steps, dt = framing.n_frames, framing.dt_us
    if not (is_number(dt) and dt >= 1 and is_number(steps) and steps >= 1):
        raise ValueError(f"{recording.info.path}: frames of {dt} us x {steps}: both must be at least 1")
    if not is_number(stride_us) or stride_us <= 0:
        raise ValueError(f"--stride: must be a positive number of microseconds (got {stride_us})")
    stride = max(1, int(round(stride_us / dt)))
    offset = start_us or 0
    origin = first_event_time(recording)
    start, end = origin + offset, None if end_us is None else origin + end_us
    if recording.info.time_range is not None:
        last = recording.info.time_range[1] if end is None else min(recording.info.time_range[1], end - 1)
        end = None if end is None else last + 1  # no empty frames after the last event
        _check_counts(recording.info.path, dt, max(0, last - start) // dt + 1, steps, stride)
    held = None  # the frames some window still needs
    first_bin = 0  # bin index of held[0]
    for block in iter_recording_frames(recording, framing, start, end):
        held = block if held is None else np.concatenate([held, block])
        _check_counts(recording.info.path, dt, first_bin + len(held), steps, stride)
        while len(held) >= steps:
            yield Window(offset + first_bin * dt, held[:steps])
            held, first_bin = held[stride:], first_bin + stride
    if first_bin == 0 and held is not None:  # no window yet: the recording is shorter than one
        padding = np.zeros((steps - len(held), *held.shape[1:]), held.dtype)
        yield Window(offset, np.concatenate([held, padding]), padded=True)


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


def segments(windows: list[dict], class_names: list[str], smoothing: int = 3, min_windows: int = 2,
             threshold: float | None = None) -> list[dict]:
    """Runs of one smoothed class over the windows; idle windows make idle runs, windows whose smoothed top
    probability is below ``threshold`` uncertain runs. A window stands for its centre: a boundary between two
    segments is halfway between the centres of the windows either side, the first segment starts at the first
    window's start and the last ends at the last window's end, so the segments tile that span without overlap."""
    if not windows:
        return []
    probabilities = smooth(np.array([w["probabilities"] for w in windows]), smoothing)
    labels = [IDLE if w["idle"] else UNCERTAIN if is_uncertain(float(p.max()), threshold) else int(p.argmax())
              for w, p in zip(windows, probabilities)]
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
    centres = [(w["start_s"] + w["end_s"]) / 2 for w in windows]
    bounds = [windows[0]["start_s"]] + [(centres[first - 1] + centres[first]) / 2 for _, first, _ in runs[1:]] + [windows[-1]["end_s"]]
    out = []
    for k, (label, first, last) in enumerate(runs):
        span = probabilities[first:last + 1]
        entry = {"start_s": bounds[k], "end_s": bounds[k + 1], "windows": last - first + 1}
        if label == IDLE:
            entry.update({"class": IDLE, "index": None, "confidence": None, "top_guess": None})
        else:
            guess = int(span.mean(0).argmax()) if label == UNCERTAIN else label
            confidence = float(span.max(1).mean()) if label == UNCERTAIN else float(span[:, label].mean())
            entry.update({"class": UNCERTAIN if label == UNCERTAIN else class_names[label], "index": None if label == UNCERTAIN else label,
                          "confidence": confidence, "top_guess": class_names[guess]})
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
    start_s: float | None = None  # part of the recording: seconds after its first event
    end_s: float | None = None

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
        for name in ("start_s", "end_s"):
            value = getattr(self, name)
            if value is not None and not (is_number(value) and value >= 0):
                raise ValueError(f"--{name[:-2]}: must be a number of seconds >= 0 (got {value})")
        if self.start_s is not None and self.end_s is not None and self.end_s <= self.start_s:
            raise ValueError(f"--end: must come after --start (got {self.end_s} s, --start {self.start_s} s)")


def classify_recording(path: str | Path | Recording, classifier: Classifier, options: ClassifyOptions = ClassifyOptions(),
                       on_window: Callable[[Window, dict], None] | None = None,
                       progress: Callable[[float], None] | None = None) -> dict:
    """The report (see SCHEMA in classify_schema.json) of one recording (a file, or an open Recording such as
    events in memory). ``on_window(window, entry)`` sees every window (the renderer); ``progress(seconds_done)``
    is called after each."""
    stride_us = int(round((options.stride_ms or classifier.window_us / 2000) * 1000))
    started = time.perf_counter()
    if isinstance(path, Recording):
        recording, path = path, path.info.path
    else:
        recording = open_recording(path)
    with recording:
        info = recording.info
        span_seen = _track_events(recording)  # first and last event read: the duration where the format gives none
        windows = []
        span = [None if s is None else int(round(s * 1e6)) for s in (options.start_s, options.end_s)]
        for window in iter_windows(recording, classifier.framing, stride_us, *span):
            entry = classifier(window.frames, options.top_k)
            entry.update({"start_s": window.start_us / 1e6, "end_s": (window.start_us + classifier.window_us) / 1e6,
                          "padded": window.padded, "idle": entry["stats"]["events"] < options.min_events})
            if entry["idle"]:
                entry["class"] = IDLE
            windows.append(entry)
            if on_window is not None:
                on_window(window, entry)
            if progress is not None:
                progress(entry["end_s"])
    if not windows:
        within = "" if options.start_s is None and options.end_s is None else f" from {options.start_s or 0:g} s to {'the end' if options.end_s is None else f'{options.end_s:g} s'}"
        raise EventFileError(path, f"no events to classify{within}")  # a damaged file's one line names the damage
    if info.time_range is not None:
        duration_s = (info.time_range[1] - info.time_range[0]) / 1e6
    else:  # measured: the first event to the last (read to the end unless --end stopped short)
        duration_s = None if options.end_s is not None or span_seen[0] is None else (span_seen[1] - span_seen[0]) / 1e6
    return build_report(path, info, classifier, options, windows, stride_us, time.perf_counter() - started, duration_s)


def _track_events(recording) -> list:
    """[first t, last t] of the events ``recording.chunks`` yields from now on (updated as they are read)."""
    seen = [None, None]
    chunks = recording.chunks

    def tracked(*args, **kwargs):
        for chunk in chunks(*args, **kwargs):
            if len(chunk):
                seen[0] = int(chunk["t"][0]) if seen[0] is None else min(seen[0], int(chunk["t"][0]))
                seen[1] = int(chunk["t"][-1]) if seen[1] is None else max(seen[1], int(chunk["t"][-1]))
            yield chunk

    recording.chunks = tracked
    return seen


def padding_note(duration_s: float | None, window_us: int) -> str:
    recording = "the recording" if duration_s is None else f"the recording ({duration_s:.2f} s)"
    return f"{recording} is shorter than one window ({window_us / 1e6:.2f} s): padded with empty frames"


def build_report(path, info, classifier: Classifier, options: ClassifyOptions, windows: list[dict], stride_us: int, seconds: float,
                 duration_s: float | None = None) -> dict:
    active = [w for w in windows if not w["idle"]]
    mean = torch.tensor(np.mean([w["probabilities"] for w in active or windows], 0))
    ranked = classifier.top_k(mean, options.top_k)
    label, confidence = answer(ranked, classifier.uncertain_threshold) if active else (IDLE, ranked[0]["probability"])
    threshold = classifier.uncertain_threshold
    calibration = classifier.calibration or {}
    clip = options.mode == "clip" or (options.mode == "auto" and windows[-1]["end_s"] <= CLIP_SECONDS)
    timeline = [] if clip else segments(windows, classifier.class_names, options.smoothing, options.min_windows, threshold)
    notes = [padding_note(duration_s, classifier.window_us)] if windows[0]["padded"] else []
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
                      "duration_s": duration_s},
        "model": {"weights": classifier.weights, "sha256": classifier.sha256, "name": classifier.model_args["name"], "attention": classifier.model_args.get("attention"),
                  "classes": classifier.class_names, "framing": classifier.framing.to_dict(), "window_us": classifier.window_us,
                  "stride_us": max(1, round(stride_us / classifier.framing.dt_us)) * classifier.framing.dt_us,
                  "device": str(classifier.device), "energy_preset": classifier.energy_preset, "both_ways": classifier.both_ways,
                  "uncertain_threshold": threshold,
                  "uncertain_rule": calibration.get("rule", "no calibration file beside the checkpoint: no answer is called uncertain"),
                  "calibration_data": calibration.get("data")},
        "mode": "clip" if clip else "timeline",
        "prediction": {"class": label, "confidence": confidence, "top_k": ranked},
        "notes": notes,
        "segments": timeline,
        "windows": windows,
        "totals": totals,
    }
