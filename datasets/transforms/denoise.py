"""Noise suppression: a background-activity filter and hot-pixel removal.

Background activity (BA) noise is uncorrelated: a noise event seldom has a neighbour that fired
shortly before it. The filter keeps an event when one of its neighbouring pixels (4 or 8 of them,
not the pixel itself) fired less than ``filter_time`` microseconds earlier in the stream. This is
tonic's Denoise rule with neighbourhood=4, except that tonic starts as if every pixel fired at
t = 0, which passes everything in the first ``filter_time``; here a pixel that never fired supports nothing.
The per-pixel last-event times are explicit state, so chunks of a stream filter exactly as the whole.

Hot pixels fire at a high rate whatever the scene. ``find_hot_pixels`` flags pixels whose event
count exceeds ``factor`` times the mean count of the active pixels (best measured on a static scene);
``DropPixels`` removes a fixed list of pixels from every later chunk.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numba
import numpy as np

from masnn.datasets.events import NEVER_FIRED


@numba.njit(cache=True, nogil=True)
def _background_activity(events, last_time, filter_time, diagonal, keep):
    height, width = last_time.shape
    n = 0
    for i in range(events.shape[0]):
        e = events[i]
        x, y, t = e.x, e.y, e.t
        last_time[y, x] = t
        supported = False
        for dy in range(-1, 2):
            for dx in range(-1, 2):
                if (dx == 0 and dy == 0) or (not diagonal and dx != 0 and dy != 0):
                    continue
                nx, ny = x + dx, y + dy
                if 0 <= nx < width and 0 <= ny < height and t - last_time[ny, nx] < filter_time:
                    supported = True
        if supported:
            keep[n] = i
            n += 1
    return n


def new_filter_state(sensor_size: tuple[int, int]) -> np.ndarray:
    """Per-pixel last event time [H, W], with no pixel having fired."""
    return np.full((sensor_size[1], sensor_size[0]), NEVER_FIRED, dtype=np.int64)


def filter_background_activity(events, last_time, filter_time, neighbourhood=8):
    """Returns the supported events; updates ``last_time`` (from ``new_filter_state``) in place."""
    if neighbourhood not in (4, 8):
        raise ValueError(f"neighbourhood must be 4 or 8, got {neighbourhood}")
    height, width = last_time.shape
    if len(events) and (events["x"].max() >= width or events["y"].max() >= height or events["x"].min() < 0 or events["y"].min() < 0):
        raise ValueError(f"events lie outside the {width}x{height} sensor")
    keep = np.empty(len(events), dtype=np.int64)
    n = _background_activity(events, last_time, filter_time, neighbourhood == 8, keep)
    return events[keep[:n]]


@dataclass(frozen=True)
class DenoiseBackgroundActivity:
    """Background-activity filter over one recording or sample (fresh state per call)."""

    sensor_size: tuple[int, int]
    filter_time: int = 10_000
    neighbourhood: int = 8

    def __call__(self, events: np.ndarray) -> np.ndarray:
        return filter_background_activity(events, new_filter_state(self.sensor_size), self.filter_time, self.neighbourhood)


def find_hot_pixels(events, sensor_size, factor: float = 20.0, min_events: int = 10) -> np.ndarray:
    """(x, y) rows of pixels that fired more than ``factor`` x the mean of active pixels (and >= min_events)."""
    width, height = sensor_size
    counts = np.bincount(events["y"].astype(np.int64) * width + events["x"], minlength=width * height)
    active = counts[counts > 0]
    if len(active) == 0:
        return np.zeros((0, 2), dtype=np.int64)
    hot = np.flatnonzero((counts > factor * active.mean()) & (counts >= min_events))
    return np.stack([hot % width, hot // width], axis=1)


@dataclass(frozen=True)
class DropPixels:
    """Removes every event of the given (x, y) pixels."""

    sensor_size: tuple[int, int]
    pixels: tuple[tuple[int, int], ...]
    _mask: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        mask = np.zeros((self.sensor_size[1], self.sensor_size[0]), dtype=bool)
        for x, y in self.pixels:
            mask[y, x] = True
        object.__setattr__(self, "_mask", mask)

    def __call__(self, events: np.ndarray) -> np.ndarray:
        return events[~self._mask[events["y"], events["x"]]]
