"""Statistics for putting event recordings side by side, e.g. generated vs real ones.

``recording_stats(path)`` streams a recording once, in bounded memory, and returns a flat dict:

- events, duration_s (last minus first selected event time), event_rate_per_s (events / duration_s);
- on_fraction (ON / all events) and on_off_ratio (ON / OFF; None when there is no OFF event);
- spatial: sensor ("WxH"); active_pixels, the pixels with at least ``active_threshold`` events (2 by
  default, so that isolated noise events do not count), and active_pixel_fraction of the sensor;
  centroid_x / centroid_y, the mean event coordinates; x_p1, x_p99, y_p1, y_p99, the box that holds the
  central 98% of events in each axis (1st and 99th percentiles of the event coordinates);
- events_per_active_pixel, the events that fell on active pixels divided by their number, and
  events_per_active_pixel_per_s, the same over duration_s. Over a whole recording this figure dilutes
  with idle periods and with motion sweeping new pixels; the busy-window figure below is the one to match;
- interval_us_pN, percentiles (N = 5, 25, 50, 75, 95) of the time between consecutive events of the
  whole stream, and pixel_isi_us_pN, of the time between consecutive events of the same pixel (either
  polarity), both carried across chunk boundaries;
- busy windows: the selection is cut into ``window_ms`` windows from its first event (only complete
  windows count: windows = duration // window). In each window, a pixel is active with at least
  ``active_threshold`` events in that window. A window is busy when it holds at least ``busy_fraction``
  times the events of the fullest window. busy_event_rate_per_s is the busy windows' events over their
  total time; busy_active_pixels the median of their active-pixel counts;
  busy_event_rate_per_active_pixel_per_s the median over busy windows of (events on the window's active
  pixels) / (its active pixels) / window length. This is the "events per active pixel per second while
  something moves" figure (real DVS128 Gesture: about 15-30), free of the idle periods real recordings have.

Percentiles use numpy's default (linear interpolation between order statistics). Intervals are counted
in a histogram that is exact below 2**16 us (65.5 ms) and keeps 16 significant bits above (relative
error < 2**-16), so memory does not grow with the number of events.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from masnn.datasets.io.readers import open_recording
from masnn.datasets.io.recording import DEFAULT_CHUNK_EVENTS, first_event_time

PERCENTILES = (5, 25, 50, 75, 95)
EXACT_BITS = 16
_NO_EVENT = np.iinfo(np.int64).min


def weighted_percentiles(values: np.ndarray, counts: np.ndarray, qs) -> list[float | None]:
    """np.percentile (linear) of the multiset where ``values[i]`` (ascending) occurs ``counts[i]`` times."""
    cumulative = np.cumsum(counts)
    n = int(cumulative[-1]) if len(cumulative) else 0
    if n == 0:
        return [None for _ in qs]
    result = []
    for q in qs:
        position = q / 100 * (n - 1)
        k = math.floor(position)
        low = values[np.searchsorted(cumulative, k, "right")]  # k-th smallest (0-based)
        high = values[np.searchsorted(cumulative, min(k + 1, n - 1), "right")]
        result.append(float(low + (position - k) * (high - low)))
    return result


class IntervalHistogram:
    """Counts of non-negative integer intervals (us) for percentiles, in memory ~ log2(largest interval).

    Intervals below 2**EXACT_BITS have a bin each; a larger one keeps its top EXACT_BITS bits and is
    read back as its bin's middle.
    """

    def __init__(self):
        self.counts = np.zeros(0, np.int64)

    def add(self, intervals) -> None:
        v = np.asarray(intervals, dtype=np.int64)
        if len(v) == 0:
            return
        shift = np.maximum(np.frexp(v.astype(np.float64))[1] - EXACT_BITS, 0).astype(np.int64)  # bit length - 16
        added = np.bincount((shift << (EXACT_BITS - 1)) + (v >> shift))
        if len(added) > len(self.counts):
            self.counts = np.concatenate([self.counts, np.zeros(len(added) - len(self.counts), np.int64)])
        self.counts[: len(added)] += added

    def bin_values(self) -> np.ndarray:
        i = np.arange(len(self.counts), dtype=np.int64)
        shift = np.maximum((i >> (EXACT_BITS - 1)) - 1, 0)
        return ((i - (shift << (EXACT_BITS - 1))) << shift) + ((1 << shift) - 1) / 2

    def percentiles(self, qs=PERCENTILES) -> list[float | None]:
        return weighted_percentiles(self.bin_values(), self.counts, qs)


def pixel_intervals(pixel: np.ndarray, t: np.ndarray, last_t: np.ndarray) -> np.ndarray:
    """Time since the same pixel's previous event, for every event of a chunk that has one.

    ``last_t`` (per pixel, _NO_EVENT where none yet) carries the previous chunks and is updated in place.
    """
    order = np.argsort(pixel, kind="stable")  # stable: time order within each pixel
    pix, ts = pixel[order], t[order]
    first = np.r_[True, pix[1:] != pix[:-1]]  # a pixel's first event in this chunk
    within = np.diff(ts)[~first[1:]]
    before = last_t[pix[first]]
    seen = before != _NO_EVENT
    across = ts[first][seen] - before[seen]
    final = np.r_[first[1:], True]
    last_t[pix[final]] = ts[final]
    return np.concatenate([within, across])


class WindowActivity:
    """Per fixed time window: events, active pixels, events on active pixels; streamed chunk by chunk.

    Per-chunk (window, pixel) counts come from np.unique; the last window of a chunk may go on in the
    next chunk, so its counts wait in ``pending`` and are merged before the window is closed.
    """

    def __init__(self, n_pixels: int, window_us: int, threshold: int):
        self.n_pixels, self.window_us, self.threshold = n_pixels, window_us, threshold
        self.pending = (np.zeros(0, np.int64), np.zeros(0, np.int64))
        self.rows: list[np.ndarray] = []  # each (4, k): window, events, active pixels, events on them

    def add(self, pixel: np.ndarray, t: np.ndarray, origin: int) -> None:
        keys, counts = np.unique((t - origin) // self.window_us * self.n_pixels + pixel, return_counts=True)
        keys, inverse = np.unique(np.r_[self.pending[0], keys], return_inverse=True)
        counts = np.bincount(inverse, weights=np.r_[self.pending[1], counts]).astype(np.int64)
        open_ = keys // self.n_pixels == keys[-1] // self.n_pixels
        self._close(keys[~open_], counts[~open_])
        self.pending = (keys[open_], counts[open_])

    def _close(self, keys: np.ndarray, counts: np.ndarray) -> None:
        if len(keys) == 0:
            return
        windows, inverse = np.unique(keys // self.n_pixels, return_inverse=True)
        active = counts >= self.threshold
        self.rows.append(np.stack([
            windows,
            np.bincount(inverse, weights=counts),
            np.bincount(inverse, weights=active),
            np.bincount(inverse, weights=counts * active),
        ]).astype(np.int64))

    def summary(self, duration_us: int, busy_fraction: float) -> dict:
        self._close(*self.pending)
        self.pending = (np.zeros(0, np.int64), np.zeros(0, np.int64))
        complete = duration_us // self.window_us
        rows = np.concatenate(self.rows, axis=1) if self.rows else np.zeros((4, 0), np.int64)
        window, events, active, on_active = rows[:, rows[0] < complete]
        seconds = self.window_us / 1e6
        busy = (events >= busy_fraction * events.max()) & (active > 0) if len(events) else np.zeros(0, bool)
        any_busy = bool(busy.any())
        return {
            "windows": int(complete),
            "busy_windows": int(busy.sum()),
            "busy_event_rate_per_s": float(events[busy].sum() / (busy.sum() * seconds)) if any_busy else None,
            "busy_active_pixels": float(np.median(active[busy])) if any_busy else None,
            "busy_event_rate_per_active_pixel_per_s":
                float(np.median(on_active[busy] / active[busy] / seconds)) if any_busy else None,
        }


class _Totals:
    """What a recording's chunks add up to: per-pixel counts, interval histograms, window activity, sums."""

    def __init__(self, width: int, height: int, window_us: int, active_threshold: int):
        self.width, self.height = width, height
        n_pixels = width * height
        self.per_pixel = np.zeros(n_pixels, np.int64)
        self.last_t = np.full(n_pixels, _NO_EVENT, np.int64)
        self.intervals, self.isi = IntervalHistogram(), IntervalHistogram()
        self.windows = WindowActivity(n_pixels, window_us, active_threshold)
        self.n = self.on = self.sum_x = self.sum_y = 0
        self.first = self.last = None

    def add(self, chunk: np.ndarray) -> None:
        t = chunk["t"]
        pixel = chunk["y"].astype(np.int64) * self.width + chunk["x"]
        if self.first is None:
            self.first = int(t[0])
        else:
            self.intervals.add([t[0] - self.last])
        self.intervals.add(np.diff(t))
        self.isi.add(pixel_intervals(pixel, t, self.last_t))
        self.windows.add(pixel, t, self.first)
        self.per_pixel += np.bincount(pixel, minlength=len(self.per_pixel))
        self.n += len(chunk)
        self.on += int(np.count_nonzero(chunk["p"]))
        self.sum_x += int(chunk["x"].sum(dtype=np.int64))
        self.sum_y += int(chunk["y"].sum(dtype=np.int64))
        self.last = int(t[-1])

    def spatial(self, active_threshold: int, duration: float) -> dict:
        active = self.per_pixel >= active_threshold
        n_active = int(active.sum())
        per_active = int(self.per_pixel[active].sum()) / n_active if n_active else None
        grid = self.per_pixel.reshape(self.height, self.width)
        x_box = weighted_percentiles(np.arange(self.width), grid.sum(axis=0), (1, 99))
        y_box = weighted_percentiles(np.arange(self.height), grid.sum(axis=1), (1, 99))
        return {
            "active_threshold": active_threshold,
            "active_pixels": n_active,
            "active_pixel_fraction": n_active / len(self.per_pixel),
            "events_per_active_pixel": per_active,
            "events_per_active_pixel_per_s": per_active / duration if per_active is not None and duration > 0 else None,
            "centroid_x": self.sum_x / self.n,
            "centroid_y": self.sum_y / self.n,
            "x_p1": x_box[0], "x_p99": x_box[1],
            "y_p1": y_box[0], "y_p99": y_box[1],
        }


def _selection(recording, start_us: int | None, end_us: int | None) -> tuple[int | None, int | None]:
    """Times after the first event -> the recording's timebase; the first event is looked up only when a time is
    given (for a format without an index that decodes the recording's first chunk)."""
    if start_us is None and end_us is None:
        return None, None
    origin = first_event_time(recording)
    return (None if start_us is None else origin + start_us), (None if end_us is None else origin + end_us)


def recording_stats(
    path: str | Path,
    start_us: int | None = None,
    end_us: int | None = None,
    active_threshold: int = 2,
    window_ms: float = 100.0,
    busy_fraction: float = 0.25,
    chunk_events: int = DEFAULT_CHUNK_EVENTS,
) -> dict:
    """Statistics of one recording (see the module docstring), streamed in bounded memory.

    ``start_us`` / ``end_us`` select events by time after the recording's first event, as in ``summarize``.
    """
    with open_recording(path) as recording:
        info = recording.info
        start, end = _selection(recording, start_us, end_us)
        totals = _Totals(info.width, info.height, max(1, round(window_ms * 1000)), active_threshold)
        for chunk in recording.chunks(start, end, chunk_events=chunk_events):
            totals.add(chunk)

    duration_us = totals.last - totals.first
    duration = duration_us / 1e6
    n, on = totals.n, totals.on
    stats = {
        "file": str(path),
        "format": info.format,
        "camera": info.camera or "unknown",
        "sensor": [info.width, info.height],  # [width, height], as every JSON of masnn gives it
        "events": n,
        "duration_s": duration,
        "event_rate_per_s": n / duration if duration > 0 else None,
        "on_fraction": on / n,
        "on_off_ratio": on / (n - on) if n > on else None,
        **totals.spatial(active_threshold, duration),
    }
    stats.update({f"interval_us_p{q}": v for q, v in zip(PERCENTILES, totals.intervals.percentiles())})
    stats.update({f"pixel_isi_us_p{q}": v for q, v in zip(PERCENTILES, totals.isi.percentiles())})
    stats.update({"window_ms": window_ms, "busy_fraction": busy_fraction})
    stats.update(totals.windows.summary(duration_us, busy_fraction))
    return stats


def stats_json(results: list[dict]) -> list[dict]:
    """The results as plain JSON values (Python numbers and strings; NaN or infinity become None)."""
    def plain(value):
        if isinstance(value, (np.integer, np.floating)):
            value = value.item()
        if isinstance(value, float) and not math.isfinite(value):
            return None
        return value

    return [{key: plain(value) for key, value in result.items()} for result in results]


def _format(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, (list, tuple)):  # the sensor's [width, height]
        return "x".join(map(str, value))
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    if isinstance(value, (float, np.floating)):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.1f}" if abs(value) >= 10 else f"{value:.3f}"
    return str(value)


def compare_table(results: list[dict], title: str = "recording statistics"):
    """A rich Table: one row per statistic, one column per recording (headed by its file name)."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=title)
    table.add_column("statistic")
    for result in results:
        table.add_column(escape(Path(result["file"]).name), justify="right")
    keys = [key for key in results[0] if key != "file"] if results else []
    for key in keys:
        table.add_row(key.replace("_", " "), *(escape(_format(result.get(key))) for result in results))
    return table


def summarize(path: str | Path, start_us: int | None = None, end_us: int | None = None) -> dict:
    """Counts and extents of a recording, streamed in bounded memory."""
    with open_recording(path) as recording:
        info = recording.info
        start, end = _selection(recording, start_us, end_us)
        n = on = 0
        first = last = None
        pixels = np.zeros(info.width * info.height, dtype=bool)
        for chunk in recording.chunks(start, end):
            n += len(chunk)
            on += int(np.count_nonzero(chunk["p"]))
            first = int(chunk["t"][0]) if first is None else first
            last = int(chunk["t"][-1])
            pixels[chunk["y"].astype(np.int64) * info.width + chunk["x"]] = True
    duration = (last - first) / 1e6
    return {
        "file": str(path),
        "format": info.format,
        "camera": info.camera or "unknown",
        "sensor": [info.width, info.height],  # [width, height] as in every JSON (classify's too); "WxH" in text
        "events": n,
        "first_t_us": first,
        "last_t_us": last,
        "duration_s": duration,
        "event_rate_per_s": n / duration if duration > 0 else float(n),
        "on_fraction": on / n,
        "active_pixels": int(pixels.sum()),
    }
