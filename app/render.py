"""`masnn classify --render OUT.mp4|OUT.gif`: a video of what the network saw, predicted and attended to.

Each dt bin of the recording becomes one video frame, so the video plays in real time (fps = 1e6 / dt_us). Windows
overlap; each bin is drawn once, when the first window holding it arrives (the first window gives all T bins,
later ones their newest ``stride`` bins), and is annotated with that window's results:

    +----------------+--------+--------------------------------------+
    | the sensor's   | model  | predicted class and %, bar, top-k    |
    | own view: its  | input  | TA weight per step of the window,    |
    | events in this | 32x32  |   one line per layer, current step   |
    | bin (the crop  +--------+ firing rate per layer, scrolling     |
    | the model sees | SA map |                                      |
    | outlined)      | (heat) |                                      |
    | time, step, events      | spikes, NASAR, energy                |
    +-------------------------+--------------------------------------+

The sensor view is read from the recording itself (``recording=``) at the sensor's resolution; the SA heat map
has its own panel, so it never dims the events. The mp4 is H.264 (yuv420p), written with PyAV, whose wheels
carry FFmpeg with libx264: browsers play it.

The prediction is classify's (its runner); attention and per-step firing rates come from one more run of the
trained modules (``classifier.model``) on the same window, which is where the gates can be read.
"""
from __future__ import annotations

import contextlib
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from masnn.classify import Classifier, Window
from masnn.datasets.io.readers import open_recording
from masnn.datasets.io.recording import first_event_time
from masnn.datasets.io.writers import atomic_path
from masnn.datasets.transforms.pipeline import FramingConfig, iter_recording_frames
from masnn.models.attention import capture_attention
from masnn.pictures import colour_peak, event_colours
from masnn.video import GifSink, Mp4Sink

SIZE = (640, 360)  # width, height of every video frame
SUFFIXES = (".mp4", ".gif")
EVENT_FLOOR = 110  # brightness of a single event: it must stand out from the dark background
STRIP_BINS = 108  # bins of firing-rate history shown

BACKGROUND = (24, 24, 24)
TEXT = (225, 225, 225)
DIM = (140, 140, 140)
LAYER_COLOURS = [(255, 190, 80), (90, 200, 255), (120, 230, 120), (230, 130, 230), (80, 140, 255), (200, 200, 90), (180, 180, 255)]
FONT = cv2.FONT_HERSHEY_SIMPLEX

SENSOR_BOX = (10, 36, 256, 256)  # x, y, width, height: the recording's events at the sensor's resolution
INPUT_BOX = (276, 36, 96, 96)  # the model's input (32x32 at 3x)
SA_BOX = (276, 168, 96, 96)  # the first SA map, as a heat map of its own
RIGHT_X, RIGHT_WIDTH = 386, 244  # the prediction, TA and firing-rate column
PREDICTION_Y = 30
NAME_SCALE, PERCENT_SCALE, PREDICTION_GAP = 0.8, 0.7, 12  # the predicted class, its percentage, at least this apart
TA_BOX = (RIGHT_X, 146, RIGHT_WIDTH, 74)
STRIP_BOX = (RIGHT_X, 254, RIGHT_WIDTH, 80)  # rows of layers; a label column then the scrolling strip


@dataclass
class WindowView:
    """Everything the frames of one window are drawn from."""

    entry: dict  # classify's per-window results
    frames: np.ndarray  # [T, 2, H, W] counts
    first_bin: int  # bin index of frames[0] from the recording's first event
    peak: int  # count that saturates the event colours
    sa_layer: str | None
    sa: np.ndarray | None  # [T, h, w] SA map of sa_layer
    ta: dict[str, np.ndarray]  # layer -> [T] TA weights
    rates: dict[str, np.ndarray]  # layer -> [T] fraction of neurons that fired at each step


class Renderer:
    """Writes an annotated video while classify runs: ``with Renderer(out, classifier, stride_bins) as r:`` then
    ``classify_recording(..., on_window=r.add)``. The video appears under ``out_path`` only when the block ends
    without error (it is written beside it under a temporary name). ``recording``: the file being classified,
    read a second time for the sensor's own view (without it that panel says so)."""

    def __init__(self, out_path: str | Path, classifier: Classifier, stride_bins: int | None = None,
                 recording: str | Path | None = None):
        self.path = Path(out_path)
        suffix = self.path.suffix.lower()
        if suffix not in SUFFIXES:
            raise ValueError(f"{out_path}: the rendered video must end in .mp4 or .gif (got {suffix or 'no suffix'!r})")
        if not self.path.parent.is_dir():
            raise ValueError(f"{out_path}: folder {self.path.parent} does not exist")
        self.classifier = classifier
        self.recording = None if recording is None else Path(recording)
        self.stride_bins = stride_bins  # shown in the header; which bins are new follows from each window's start
        self.dt_us = classifier.framing.dt_us
        self.fps = 1e6 / self.dt_us
        self.size = SIZE
        self.frames_written = 0
        self._next_bin = 0
        self._rate_history: deque[np.ndarray] = deque(maxlen=STRIP_BINS)
        self._sink = None
        self._sensor: SensorStream | None = None
        self._stack = None

    def __enter__(self) -> Renderer:
        with contextlib.ExitStack() as stack:
            if self.recording is not None:
                self._sensor = stack.enter_context(SensorStream(self.recording, self.classifier.framing))
            temporary = stack.enter_context(atomic_path(self.path))
            sink = Mp4Sink if self.path.suffix.lower() == ".mp4" else GifSink
            self._sink = sink(temporary, self.dt_us, SIZE)
            stack.push(self._finish)  # runs before atomic_path renames (success) or deletes (error) the file
            self._stack = stack.pop_all()
        return self

    def __exit__(self, kind, error, trace) -> bool:
        return self._stack.__exit__(kind, error, trace)

    def _finish(self, kind, error, trace) -> None:
        complete = kind is None
        self._sink.close(complete)
        if complete and not self.frames_written:
            raise ValueError(f"{self.path}: no frames to render")

    def add(self, window: Window, entry: dict) -> None:
        """Draws and writes the bins of ``window`` that no earlier window held."""
        if self._sink is None:
            raise RuntimeError("Renderer.add needs an open renderer: use it in a with block")
        view = self._view(window, entry)
        last_bin = view.first_bin + _real_length(window)
        for bin_index in range(max(self._next_bin, view.first_bin), last_bin):
            step = bin_index - view.first_bin
            self._rate_history.append(np.array([rates[step] for rates in view.rates.values()]))
            self._sink.write(self.draw(view, step))
            self.frames_written += 1
        self._next_bin = max(self._next_bin, last_bin)

    def _view(self, window: Window, entry: dict) -> WindowView:
        model = self.classifier.model
        device = next(model.parameters()).device
        x = torch.from_numpy(np.ascontiguousarray(window.frames)).float()[:, None].to(device)  # (T, 1, 2, H, W)
        capture = capture_attention(model, x, record=True)
        _, trace = capture.output
        rates = {layer.name: layer.spikes[:, 0].flatten(1).float().mean(1).cpu().numpy() for layer in trace.layers}
        sa_layer = next((name for name, gates in capture.layers.items() if "sa" in gates), None)
        return WindowView(entry, window.frames, window.start_us // self.dt_us, colour_peak(window.frames), sa_layer,
                          capture.layers[sa_layer]["sa"] if sa_layer else None,
                          {name: gates["ta"] for name, gates in capture.layers.items() if "ta" in gates}, rates)

    def draw(self, view: WindowView, step: int) -> np.ndarray:
        """One BGR frame [360, 640, 3]: bin ``step`` of the window in ``view``."""
        canvas = np.full((SIZE[1], SIZE[0], 3), BACKGROUND, np.uint8)
        self._draw_sensor(canvas, view.first_bin + step)
        self._draw_events(canvas, view, step)
        self._draw_prediction(canvas, view.entry)
        _draw_ta(canvas, view.ta, step, self._layer_colours(view))
        _draw_rate_strip(canvas, list(view.rates), np.array(self._rate_history), self._layer_colours(view))
        self._draw_footer(canvas, view, step)
        return canvas

    def _layer_colours(self, view: WindowView) -> dict[str, tuple]:
        names = ["input", *view.rates]  # fixed order, so a layer keeps its colour in every panel
        return {name: LAYER_COLOURS[i % len(LAYER_COLOURS)] for i, name in enumerate(names)}

    def _draw_sensor(self, canvas: np.ndarray, bin_index: int) -> None:
        x0, y0, width, height = SENSOR_BOX
        if self._sensor is None:
            cv2.rectangle(canvas, (x0, y0), (x0 + width, y0 + height), (70, 70, 70), 1)
            _text(canvas, _fit("sensor view: no recording given", 0.42, width - 16), (x0 + 8, y0 + height // 2), 0.42, DIM)
            return
        sensor = self._sensor
        frame, peak = sensor.frame(bin_index)
        (left, top), image = _place(event_colours(frame, peak, floor=EVENT_FLOOR), SENSOR_BOX, whole_multiples=True)
        canvas[top : top + image.shape[0], left : left + image.shape[1]] = image
        scale = image.shape[1] / frame.shape[2]
        cv2.rectangle(canvas, (left - 1, top - 1), (left + image.shape[1], top + image.shape[0]), (70, 70, 70), 1)
        width_px, height_px = sensor.sensor_size
        if sensor.crop_box is not None and sensor.crop_box != (0, 0, width_px, height_px):
            cx, cy, cw, ch = sensor.crop_box  # the region the model sees
            cv2.rectangle(canvas, (left + round(cx * scale), top + round(cy * scale)),
                          (left + round((cx + cw) * scale) - 1, top + round((cy + ch) * scale) - 1), (0, 200, 255), 1)
        camera = f"{sensor.camera} " if sensor.camera else ""
        _text(canvas, _fit(f"sensor: {camera}{width_px}x{height_px}, {int(frame.sum())} events", 0.42, width), (x0, y0 - 10), 0.42, DIM)

    def _draw_events(self, canvas: np.ndarray, view: WindowView, step: int) -> None:
        """The model's input at this step, and beside it (its own panel) the first SA map."""
        x0, y0, width, height = INPUT_BOX
        events = event_colours(view.frames[step], view.peak, floor=EVENT_FLOOR)
        (left, top), image = _place(events, INPUT_BOX, whole_multiples=True)
        canvas[top : top + image.shape[0], left : left + image.shape[1]] = image
        cv2.rectangle(canvas, (left - 1, top - 1), (left + image.shape[1], top + image.shape[0]), (70, 70, 70), 1)
        side = "x".join(map(str, view.frames.shape[:1:-1]))
        _text(canvas, _fit(f"input {side}", 0.42, width), (x0, y0 - 10), 0.42, DIM)
        x0, y0, width, height = SA_BOX
        if view.sa is None:
            _text(canvas, _fit("no SA", 0.42, width), (x0, y0 - 10), 0.42, DIM)
            return
        lo, hi = _range(view.sa)
        (left, top), heat = _place(_heat(view.sa[step], (lo, hi)), SA_BOX, whole_multiples=True)
        canvas[top : top + heat.shape[0], left : left + heat.shape[1]] = heat
        _text(canvas, _fit(f"{view.sa_layer} SA", 0.42, width), (x0, y0 - 10), 0.42, DIM)
        _text(canvas, _fit(f"{lo:.2f}-{hi:.2f}", 0.36, width), (x0, top + heat.shape[0] + 14), 0.36, DIM)

    def _draw_prediction(self, canvas: np.ndarray, entry: dict) -> None:
        x0, width = TA_BOX[0], TA_BOX[2]
        if entry["idle"]:
            _text(canvas, "idle", (x0, PREDICTION_Y), 0.8, DIM, 2)
            _text(canvas, "fewer events than needed for a prediction", (x0, PREDICTION_Y + 28), 0.4, DIM)
            return
        best = entry["top_k"][0]
        uncertain = entry.get("class") == "uncertain"  # below the calibrated threshold: the guesses are listed, none claimed
        name, percent = prediction_texts("uncertain" if uncertain else best["class"], best["probability"], width)
        colour = (80, 190, 230) if uncertain else TEXT
        _text(canvas, name, (x0, PREDICTION_Y), NAME_SCALE, colour, 2)
        _text(canvas, percent, (x0 + width - _text_width(percent, PERCENT_SCALE, 2), PREDICTION_Y), PERCENT_SCALE, colour, 2)
        _bar(canvas, (x0, PREDICTION_Y + 10, width, 12), best["probability"], (80, 190, 230) if uncertain else (90, 200, 90))
        label_width = width * 3 // 5  # the runners-up (for an uncertain window, the top guesses): name, then their bar
        first = 1 if uncertain else 2
        for rank, other in enumerate(entry["top_k"][first - 1:first + 1], start=first):
            y = PREDICTION_Y + 44 + 18 * (rank - first)
            _text(canvas, _fit(f"{rank}. {other['class']}", 0.4, label_width - 8), (x0, y), 0.4, DIM)
            _bar(canvas, (x0 + label_width, y - 9, width - label_width, 8), other["probability"], (110, 110, 110))

    def _draw_footer(self, canvas: np.ndarray, view: WindowView, step: int) -> None:
        entry, stats = view.entry, view.entry["stats"]
        seconds = (view.first_bin + step) * self.dt_us / 1e6
        events = int(view.frames[step].sum())
        footer = f"t {seconds:6.2f} s   step {step + 1}/{len(view.frames)}   {events} events in the input"
        _text(canvas, _fit(footer, 0.42, RIGHT_X - SENSOR_BOX[0] - 12), (SENSOR_BOX[0], 348), 0.42, TEXT)
        stride = f", stride {self.stride_bins}" if self.stride_bins else ""
        _text(canvas, _fit(f"window {entry['start_s']:.2f}-{entry['end_s']:.2f} s (dt {self.dt_us / 1000:g} ms, T {len(view.frames)}{stride})",
                           0.36, RIGHT_WIDTH), (RIGHT_X, 114), 0.36, DIM)
        _text(canvas, _fit(f"{stats['spikes']:.0f} spikes  NASAR {stats['nasar']:.3f}  {stats['energy_uj']:.2f} µJ", 0.36, RIGHT_WIDTH),
              (RIGHT_X, 352), 0.36, DIM)


def _real_length(window: Window) -> int:
    """Bins of the window inside the recording: a padded window ends in zero frames after the last event."""
    if not window.padded:
        return len(window.frames)
    active = np.flatnonzero(window.frames.reshape(len(window.frames), -1).any(1))
    return int(active[-1]) + 1 if len(active) else 1


def _range(values: np.ndarray) -> tuple[float, float]:
    return float(values.min()), float(values.max())


def _heat(attention: np.ndarray, value_range: tuple[float, float]) -> np.ndarray:
    """The map as a BGR heat image, scaled over the window's range so that steps compare."""
    lo, hi = value_range
    level = np.zeros_like(attention) if hi - lo < 1e-9 else (attention - lo) / (hi - lo)
    return cv2.applyColorMap((255 * np.clip(level, 0, 1)).astype(np.uint8), cv2.COLORMAP_VIRIDIS)


def _place(image: np.ndarray, box: tuple[int, int, int, int], whole_multiples: bool = False) -> tuple[tuple[int, int], np.ndarray]:
    """``image`` scaled to fit ``box`` (nearest pixel; by a whole factor where it is smaller than the box, so
    every sensor pixel is the same size), and the top-left corner that centres it there."""
    x0, y0, width, height = box
    scale = min(width / image.shape[1], height / image.shape[0])
    if whole_multiples and scale >= 1:
        scale = int(scale)
    shown = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    resized = cv2.resize(image, shown, interpolation=cv2.INTER_NEAREST if scale >= 1 else cv2.INTER_AREA)
    return (x0 + (width - shown[0]) // 2, y0 + (height - shown[1]) // 2), resized


class SensorStream:
    """The recording's events at the sensor's resolution, one dt bin at a time from its first event (the bins
    of classify's windows), for the sensor panel. Bins are asked for in order; past the end they are empty."""

    def __init__(self, path: Path, framing: FramingConfig):
        self.path, self.framing = path, framing
        self.held = np.zeros((0,), np.int16)
        self.first = 0  # bin index of held[0]
        self.peak = 1

    def __enter__(self) -> SensorStream:
        self.recording = open_recording(self.path)
        info = self.recording.info
        self.sensor_size, self.camera = info.sensor_size, info.camera
        spatial = self.framing.spatial_map(self.sensor_size)
        self.crop_box = None if spatial is None else spatial.crop_box
        config = FramingConfig(dt_us=self.framing.dt_us, n_frames=None, size=None)
        self.blocks = iter_recording_frames(self.recording, config, first_event_time(self.recording))
        self.held = np.zeros((0, 2, self.sensor_size[1], self.sensor_size[0]), np.int16)
        return self

    def __exit__(self, *exc) -> None:
        self.recording.close()

    def frame(self, bin_index: int) -> tuple[np.ndarray, int]:
        """Bin ``bin_index`` [2, H, W] and the count that saturates its colour (the 99th percentile of its block)."""
        while bin_index >= self.first + len(self.held):
            block = next(self.blocks, None)
            if block is None:
                return np.zeros(self.held.shape[1:], np.int16), self.peak
            self.first += len(self.held)
            self.held, self.peak = block, colour_peak(block)
        return self.held[max(0, bin_index - self.first)], self.peak


def _draw_ta(canvas: np.ndarray, ta: dict[str, np.ndarray], step: int, colours: dict[str, tuple]) -> None:
    x0, y0, width, height = TA_BOX
    _text(canvas, "TA weight per step", (x0, y0 - 8), 0.42, DIM)
    cv2.rectangle(canvas, (x0, y0), (x0 + width, y0 + height), (70, 70, 70), 1)
    if not ta:
        _text(canvas, "no temporal attention in this model", (x0 + 8, y0 + height // 2), 0.4, DIM)
        return
    values = np.stack(list(ta.values()))
    lo, hi = _range(values)
    middle, half = (lo + hi) / 2, max((hi - lo) / 2, 0.025)  # a near-flat curve stays flat, not amplified noise
    lo, hi = middle - 1.1 * half, middle + 1.1 * half
    steps = values.shape[1]
    xs = x0 + (np.arange(steps) + 0.5) * width / steps
    marker = int(xs[step])
    cv2.line(canvas, (marker, y0 + 1), (marker, y0 + height - 1), (200, 200, 200), 1)
    for name, weights in ta.items():
        ys = y0 + height - (weights - lo) / (hi - lo) * height
        points = np.stack([xs, ys], 1).round().astype(np.int32)
        cv2.polylines(canvas, [points], False, colours[name], 1, cv2.LINE_AA)
        cv2.circle(canvas, tuple(points[step]), 2, colours[name], -1, cv2.LINE_AA)
    _text(canvas, f"{hi:.2f}", (x0 + 3, y0 + 12), 0.32, DIM)
    _text(canvas, f"{lo:.2f}", (x0 + 3, y0 + height - 4), 0.32, DIM)
    _legend(canvas, list(ta), colours, (x0 + _text_width("TA weight per step", 0.42) + 12, y0 - 8))


def _legend(canvas: np.ndarray, names: list[str], colours: dict[str, tuple], origin: tuple[int, int]) -> None:
    x, y = origin
    for name in names:
        if x + _text_width(name, 0.34) > TA_BOX[0] + TA_BOX[2]:
            break  # no room for more names in the column: they stay out rather than run off it
        _text(canvas, name, (x, y), 0.34, colours[name])
        x += _text_width(name, 0.34) + 8


def _draw_rate_strip(canvas: np.ndarray, layers: list[str], history: np.ndarray, colours: dict[str, tuple]) -> None:
    """Rows: layers; columns: past bins, newest at the right. Each row is scaled by its own recent peak, since
    early layers fire far more than the output layer; the label gives the current rate."""
    x0, y0, width, height = STRIP_BOX
    _text(canvas, f"firing rate per layer (last {STRIP_BINS} bins)", (x0, y0 - 8), 0.42, DIM)
    label_width, row_height = 84, height // max(1, len(layers))
    strip_width = width - label_width
    cv2.rectangle(canvas, (x0 + label_width - 1, y0 - 1), (x0 + width, y0 + row_height * len(layers)), (70, 70, 70), 1)
    for row, name in enumerate(layers):
        current = history[-1, row] if len(history) else 0.0
        _text(canvas, f"{name} {100 * current:4.1f}%", (x0, y0 + row * row_height + row_height - 4), 0.34, colours[name])
    if not len(history):
        return
    level = history.T / np.maximum(history.max(0), 1e-6)[:, None]  # (layers, bins)
    image = cv2.applyColorMap((255 * level).astype(np.uint8), cv2.COLORMAP_INFERNO)
    shown = round(strip_width * level.shape[1] / STRIP_BINS)  # the strip fills from the right as history grows
    image = cv2.resize(image, (shown, row_height * len(layers)), interpolation=cv2.INTER_NEAREST)
    canvas[y0 : y0 + image.shape[0], x0 + width - shown : x0 + width] = image


def _bar(canvas: np.ndarray, box: tuple[int, int, int, int], fraction: float, colour: tuple) -> None:
    x, y, width, height = box
    cv2.rectangle(canvas, (x, y), (x + width, y + height), (70, 70, 70), 1)
    filled = round(float(np.clip(fraction, 0, 1)) * (width - 2))
    if filled:
        cv2.rectangle(canvas, (x + 1, y + 1), (x + filled, y + height - 1), colour, -1)


def _text_width(text: str, scale: float, thickness: int = 1) -> int:
    return cv2.getTextSize(text, FONT, scale, thickness)[0][0]


def text_box(text: str, origin: tuple[int, int], scale: float, thickness: int = 1) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) that cv2.putText covers for ``text`` drawn at ``origin`` (its baseline's left end)."""
    (width, height), baseline = cv2.getTextSize(text, FONT, scale, thickness)
    return origin[0], origin[1] - height, origin[0] + width, origin[1] + baseline


def _fit(text: str, scale: float, width: int, thickness: int = 1) -> str:
    """``text``, cut and ended with ".." where it would be wider than ``width`` pixels."""
    if _text_width(text, scale, thickness) <= width:
        return text
    while text and _text_width(text + "..", scale, thickness) > width:
        text = text[:-1]
    return text.rstrip() + ".."


def prediction_texts(name: str, probability: float, width: int) -> tuple[str, str]:
    """The predicted class (elided as needed) and its percentage, sized to share one line of ``width`` pixels
    with a gap between them: the name left, the percentage right-aligned."""
    percent = f"{100 * probability:.0f}%"
    room = width - _text_width(percent, PERCENT_SCALE, 2) - PREDICTION_GAP
    return _fit(name, NAME_SCALE, room, 2), percent


TEXT_LOG: list[tuple[str, tuple[int, int, int, int]]] | None = None  # set to a list to collect every text's box (tests)


def _text(canvas: np.ndarray, text: str, origin: tuple[int, int], scale: float, colour: tuple, thickness: int = 1) -> None:
    if TEXT_LOG is not None:
        TEXT_LOG.append((text, text_box(text, origin, scale, thickness)))
    cv2.putText(canvas, text, origin, FONT, scale, colour, thickness, cv2.LINE_AA)
