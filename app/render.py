"""`masnn classify --render OUT.mp4|OUT.gif`: a video of what the network saw, predicted and attended to.

Each dt bin of the recording becomes one video frame, so the video plays in real time (fps = 1e6 / dt_us). Windows
overlap; each bin is drawn once, when the first window holding it arrives (the first window gives all T bins,
later ones their newest ``stride`` bins), and is annotated with that window's results:

    +------------------------+-----------------------------------------+
    | events (ON red,        | predicted class, confidence bar, top-k  |
    | OFF blue) over the     | TA weight per step of the window,       |
    | first SA map (heat)    |   one line per layer, current step      |
    |                        | firing rate per layer, scrolling        |
    | time, step, events     | spikes, NASAR, energy                   |
    +------------------------+-----------------------------------------+

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
from masnn.datasets.io.writers import atomic_path
from masnn.models.attention import capture_attention
from masnn.pictures import colour_peak, event_colours

SIZE = (640, 360)  # width, height of every video frame
SUFFIXES = (".mp4", ".gif")
GIF_MAX_FRAMES = 1500  # a GIF is encoded from all its frames at once: about 1 GB of 640 x 360 frames
HEAT_OPACITY = 0.55
EVENT_FLOOR = 110  # brightness of a single event: it must stand out from the heat map
STRIP_BINS = 108  # bins of firing-rate history shown, 2 px each

BACKGROUND = (24, 24, 24)
TEXT = (225, 225, 225)
DIM = (140, 140, 140)
LAYER_COLOURS = [(255, 190, 80), (90, 200, 255), (120, 230, 120), (230, 130, 230), (80, 140, 255), (200, 200, 90), (180, 180, 255)]
FONT = cv2.FONT_HERSHEY_SIMPLEX

EVENT_BOX = (10, 28, 300, 300)  # x, y, width, height
PREDICTION_Y = 30
TA_BOX = (330, 146, 300, 74)
STRIP_BOX = (330, 254, 300, 80)  # rows of layers; a label column then the scrolling strip


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
    without error (it is written beside it under a temporary name)."""

    def __init__(self, out_path: str | Path, classifier: Classifier, stride_bins: int | None = None):
        self.path = Path(out_path)
        suffix = self.path.suffix.lower()
        if suffix not in SUFFIXES:
            raise ValueError(f"{out_path}: the rendered video must end in .mp4 or .gif (got {suffix or 'no suffix'!r})")
        if not self.path.parent.is_dir():
            raise ValueError(f"{out_path}: folder {self.path.parent} does not exist")
        self.classifier = classifier
        self.stride_bins = stride_bins  # shown in the header; which bins are new follows from each window's start
        self.dt_us = classifier.framing.dt_us
        self.fps = 1e6 / self.dt_us
        self.size = SIZE
        self.frames_written = 0
        self._next_bin = 0
        self._rate_history: deque[np.ndarray] = deque(maxlen=STRIP_BINS)
        self._sink = None
        self._stack = None

    def __enter__(self) -> Renderer:
        with contextlib.ExitStack() as stack:
            temporary = stack.enter_context(atomic_path(self.path))
            self._sink = Mp4Sink(temporary, self.fps) if self.path.suffix.lower() == ".mp4" else GifSink(temporary, self.dt_us)
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
        self._draw_events(canvas, view, step)
        self._draw_prediction(canvas, view.entry)
        _draw_ta(canvas, view.ta, step, self._layer_colours(view))
        _draw_rate_strip(canvas, list(view.rates), np.array(self._rate_history), self._layer_colours(view))
        self._draw_footer(canvas, view, step)
        return canvas

    def _layer_colours(self, view: WindowView) -> dict[str, tuple]:
        names = ["input", *view.rates]  # fixed order, so a layer keeps its colour in every panel
        return {name: LAYER_COLOURS[i % len(LAYER_COLOURS)] for i, name in enumerate(names)}

    def _draw_events(self, canvas: np.ndarray, view: WindowView, step: int) -> None:
        x0, y0, width, height = EVENT_BOX
        events = event_colours(view.frames[step], view.peak, floor=EVENT_FLOOR)
        scale = min(width / events.shape[1], height / events.shape[0])
        shown = (max(1, round(events.shape[1] * scale)), max(1, round(events.shape[0] * scale)))
        image = cv2.resize(events, shown, interpolation=cv2.INTER_NEAREST)
        title = "events (ON red, OFF blue)"
        if view.sa is not None:
            lo, hi = _range(view.sa)
            image = _overlay_heat(image, view.sa[step], (lo, hi))
            title = f"events + {view.sa_layer} SA ({lo:.2f}-{hi:.2f})"
        left, top = x0 + (width - shown[0]) // 2, y0 + (height - shown[1]) // 2
        canvas[top : top + shown[1], left : left + shown[0]] = image
        _text(canvas, title, (x0, y0 - 10), 0.42, DIM)

    def _draw_prediction(self, canvas: np.ndarray, entry: dict) -> None:
        x0, width = TA_BOX[0], TA_BOX[2]
        if entry["idle"]:
            _text(canvas, "idle", (x0, PREDICTION_Y), 0.8, DIM, 2)
            _text(canvas, "fewer events than needed for a prediction", (x0, PREDICTION_Y + 28), 0.4, DIM)
            return
        best = entry["top_k"][0]
        _text(canvas, best["class"], (x0, PREDICTION_Y), 0.8, TEXT, 2)
        _text(canvas, f"{100 * best['probability']:.0f}%", (x0 + width - 50, PREDICTION_Y), 0.7, TEXT, 2)
        _bar(canvas, (x0, PREDICTION_Y + 10, width, 12), best["probability"], (90, 200, 90))
        for rank, other in enumerate(entry["top_k"][1:3], start=2):
            y = PREDICTION_Y + 44 + 18 * (rank - 2)
            _text(canvas, f"{rank}. {other['class']}", (x0, y), 0.4, DIM)
            _bar(canvas, (x0 + 190, y - 9, width - 190, 8), other["probability"], (110, 110, 110))

    def _draw_footer(self, canvas: np.ndarray, view: WindowView, step: int) -> None:
        entry, stats = view.entry, view.entry["stats"]
        seconds = (view.first_bin + step) * self.dt_us / 1e6
        events = int(view.frames[step].sum())
        _text(canvas, f"t {seconds:6.2f} s   step {step + 1}/{len(view.frames)}   {events} events", (EVENT_BOX[0], 348), 0.42, TEXT)
        stride = f", stride {self.stride_bins}" if self.stride_bins else ""
        _text(canvas, f"window {entry['start_s']:.2f}-{entry['end_s']:.2f} s  (dt {self.dt_us / 1000:g} ms, T {len(view.frames)}{stride})",
              (TA_BOX[0], 114), 0.38, DIM)
        _text(canvas, f"{stats['spikes']:.0f} spikes  NASAR {stats['nasar']:.3f}  {stats['energy_uj']:.2f} uJ",
              (TA_BOX[0], 352), 0.38, DIM)


def _real_length(window: Window) -> int:
    """Bins of the window inside the recording: a padded window ends in zero frames after the last event."""
    if not window.padded:
        return len(window.frames)
    active = np.flatnonzero(window.frames.reshape(len(window.frames), -1).any(1))
    return int(active[-1]) + 1 if len(active) else 1


def _range(values: np.ndarray) -> tuple[float, float]:
    return float(values.min()), float(values.max())


def _overlay_heat(image: np.ndarray, attention: np.ndarray, value_range: tuple[float, float]) -> np.ndarray:
    """The map, scaled over the window's range so that steps compare, as a dimmed heat map behind the events;
    pixels with events keep their own colour, which a blend would wash out where counts are low."""
    lo, hi = value_range
    level = np.zeros_like(attention) if hi - lo < 1e-9 else (attention - lo) / (hi - lo)
    level = cv2.resize((255 * level).astype(np.uint8), (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)
    heat = (cv2.applyColorMap(level, cv2.COLORMAP_VIRIDIS) * HEAT_OPACITY).astype(np.uint8)
    return np.where(image.any(2, keepdims=True), image, heat)


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


def _text_width(text: str, scale: float) -> int:
    return cv2.getTextSize(text, FONT, scale, 1)[0][0]


def _text(canvas: np.ndarray, text: str, origin: tuple[int, int], scale: float, colour: tuple, thickness: int = 1) -> None:
    cv2.putText(canvas, text, origin, FONT, scale, colour, thickness, cv2.LINE_AA)


class Mp4Sink:
    """MPEG-4 part 2 ("mp4v"): the codec OpenCV's own FFmpeg build always has."""

    def __init__(self, path: Path, fps: float):
        self.writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, SIZE)
        if not self.writer.isOpened():
            raise OSError(f"{path}: OpenCV could not open an mp4v video writer")

    def write(self, image: np.ndarray) -> None:
        self.writer.write(image)

    def close(self, complete: bool) -> None:
        self.writer.release()


class GifSink:
    """OpenCV writes animated GIFs only whole (``imwriteanimation``), so frames are held until the end."""

    def __init__(self, path: Path, dt_us: int):
        self.path, self.dt_us = path, dt_us
        self.frames: list[np.ndarray] = []

    def write(self, image: np.ndarray) -> None:
        if len(self.frames) >= GIF_MAX_FRAMES:
            raise ValueError(f"a GIF keeps every frame in memory and stops at {GIF_MAX_FRAMES} frames "
                             f"({GIF_MAX_FRAMES * self.dt_us / 1e6:.0f} s); render a longer recording to .mp4")
        self.frames.append(image)

    def close(self, complete: bool) -> None:
        if not complete:
            return
        if not self.frames:
            return
        animation = cv2.Animation()
        animation.frames, animation.durations, animation.loop_count = self.frames, gif_durations(len(self.frames), self.dt_us), 0
        if not cv2.imwriteanimation(str(self.path), animation):
            raise OSError(f"{self.path}: OpenCV could not write the GIF")


def gif_durations(count: int, dt_us: int) -> list[int]:
    """Frame durations in ms. GIF counts in hundredths of a second, so a 45 ms bin cannot be one frame's delay;
    rounding the cumulative end times instead alternates 40 and 50 ms and keeps the whole in real time. (Browsers
    slow delays under 20 ms down to 100 ms, so GIFs of bins under 20 ms play slowly there.)"""
    ends = np.round(np.arange(count + 1) * dt_us / 10_000) * 10
    return np.diff(ends).astype(int).tolist()
