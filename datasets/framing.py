"""Events -> frames [T, 2, H, W] of per-pixel, per-polarity event counts (channel 0 OFF, 1 ON).

Three ways to cut time, each equal to tonic.transforms.ToFrame where their parameters coincide:
- fixed windows (``time_window``, optionally exactly ``n_frames`` of them from ``start``: the MA-SNN
  protocol, dt = 15 ms, T = 60);
- a number of equal time bins (``n_time_bins``). tonic makes bins of (t_last - t_0) // n microseconds and
  drops whatever falls after the last one, at least the events at the final timestamp (tonic issue #313;
  a one-event sample gives empty frames). Here the last bin reaches to t_last inclusive, so every event
  counts; the bins before it are tonic's;
- a number of events per frame (``event_count``).
Counts saturate at the output type's maximum (int16 by default) instead of wrapping, and ``clip`` caps
them lower (``clip=1`` binarises).

The accumulation is one compiled pass over time-sorted events; ``iter_time_frames`` does the same over a
stream of chunks with memory bounded by a few frames, whatever the recording's length.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator

import numba
import numpy as np

COUNT_DTYPE = np.int16
_NO_END = np.iinfo(np.int64).max


UNSORTED = -2


@numba.njit(cache=True, nogil=True)
def _accumulate(events, edges, cap, out):
    """Adds each event with edges[k] <= t < edges[k + 1] to out[k], saturating at ``cap``.

    Returns -1 when done, UNSORTED if any two events (in range or not) are out of time order, or the
    index of the first event outside out's width/height (nothing is added after a fault).
    """
    n = events.shape[0]
    n_frames = edges.shape[0] - 1
    height, width = out.shape[2], out.shape[3]
    plane = height * width
    counts = out.reshape(n_frames, 2 * plane)
    previous = np.iinfo(np.int64).min
    i = 0
    while i < n and events[i].t < edges[0]:  # before the first frame: only the order is checked
        if events[i].t < previous:
            return UNSORTED
        previous = events[i].t
        i += 1
    for k in range(n_frames):
        frame_end = edges[k + 1]
        row = counts[k]
        while i < n:
            e = events[i]
            if e.t >= frame_end:
                break
            if e.t < previous:
                return UNSORTED
            previous = e.t
            if e.x < 0 or e.x >= width or e.y < 0 or e.y >= height:
                return i
            j = (1 if e.p else 0) * plane + e.y * width + e.x
            if row[j] < cap:
                row[j] += 1
            i += 1
    while i < n:
        if events[i].t < previous:
            return UNSORTED
        previous = events[i].t
        i += 1
    return -1


def _count_cap(dtype, clip: int | None) -> int:
    limit = np.iinfo(dtype).max
    return limit if clip is None else min(int(clip), limit)


def accumulate_frames(events, edges, sensor_size, clip=None, dtype=COUNT_DTYPE) -> np.ndarray:
    """Frames for the time bins [edges[k], edges[k + 1]); ``events`` must be sorted by time."""
    width, height = sensor_size
    edges = np.asarray(edges, dtype=np.int64)
    frames = np.zeros((len(edges) - 1, 2, height, width), dtype=dtype)
    if len(events) and len(frames):
        fault = _accumulate(events, edges, _count_cap(dtype, clip), frames)
        if fault == UNSORTED:
            raise UnsortedEvents
        if fault >= 0:
            raise ValueError(f"event at (x={events['x'][fault]}, y={events['y'][fault]}) lies outside {width}x{height}")
    return frames


class UnsortedEvents(ValueError):
    pass


def _time_sorted_frames(events, make_edges, sensor_size, clip, dtype):
    """Frames over edges made from (t_first, t_last). Sorted input, the common case, costs one pass;
    unsorted input is detected by that pass and sorted (stably) before a second one."""
    try:
        return accumulate_frames(events, make_edges(int(events["t"][0]), int(events["t"][-1])), sensor_size, clip, dtype)
    except UnsortedEvents:
        events = events[np.argsort(events["t"], kind="stable")]
        return accumulate_frames(events, make_edges(int(events["t"][0]), int(events["t"][-1])), sensor_size, clip, dtype)


def time_window_edges(t_first, t_last, time_window, n_frames=None, start=None, include_incomplete=False):
    """tonic's windows: from ``start`` (default t_first); n = floor((t_last - start - dt) / dt) + 1, at least 1."""
    start = t_first if start is None else start
    if n_frames is None:
        span = (t_last - start - time_window) / time_window
        n_frames = max(int(np.ceil(span) if include_incomplete else np.floor(span)) + 1, 1)
    return start + np.arange(n_frames + 1, dtype=np.int64) * time_window


def time_bin_edges(t_first, t_last, n_bins):
    width = max((t_last - t_first) // n_bins, 1)
    edges = t_first + np.arange(n_bins + 1, dtype=np.int64) * width
    edges[-1] = max(edges[-1], t_last + 1)  # the last bin keeps what tonic drops
    return edges


def frames_by_time(events, sensor_size, time_window, n_frames=None, start=None, include_incomplete=False, clip=None, dtype=COUNT_DTYPE):
    if len(events) == 0:
        n = n_frames or (1 if start is not None and include_incomplete else 0)
        return np.zeros((n, 2, sensor_size[1], sensor_size[0]), dtype=dtype)

    def edges(t_first, t_last):
        return time_window_edges(t_first, t_last, time_window, n_frames, start, include_incomplete)

    return _time_sorted_frames(events, edges, sensor_size, clip, dtype)


def frames_by_time_bins(events, sensor_size, n_bins, clip=None, dtype=COUNT_DTYPE):
    if len(events) == 0:
        return np.zeros((n_bins, 2, sensor_size[1], sensor_size[0]), dtype=dtype)
    return _time_sorted_frames(events, lambda first, last: time_bin_edges(first, last, n_bins), sensor_size, clip, dtype)


def frames_by_event_count(events, sensor_size, event_count, include_incomplete=False, clip=None, dtype=COUNT_DTYPE):
    """Frame k holds events [k * event_count, (k + 1) * event_count) in stream order."""
    n = len(events)
    n_frames = -(-n // event_count) if include_incomplete else n // event_count
    frames = np.zeros((n_frames, 2, sensor_size[1], sensor_size[0]), dtype=dtype)
    # Stream order, not time order, defines these frames: give each event its own tick as the "time".
    ticks = np.zeros(n, dtype=events.dtype)
    ticks["x"], ticks["y"], ticks["p"] = events["x"], events["y"], events["p"]
    ticks["t"] = np.arange(n)
    if n_frames:
        edges = np.arange(n_frames + 1, dtype=np.int64) * event_count
        fault = _accumulate(ticks, edges, _count_cap(dtype, clip), frames)
        if fault >= 0:
            raise ValueError(f"event {fault} lies outside the {sensor_size[0]}x{sensor_size[1]} sensor")
    return frames


@dataclass(frozen=True)
class ToFrames:
    """Events -> int counts [T, 2, H, W]. Give exactly one of time_window (us), n_time_bins, event_count.

    ``sensor_size`` is (width, height) of the events' coordinates (after any spatial mapping).
    ``n_frames`` and ``start`` fix the window grid for time_window: frame k covers
    [start + k * dt, start + (k + 1) * dt), so every sample has the same T (MA-SNN: dt = 15 ms, T = 60).
    """

    sensor_size: tuple[int, int]
    time_window: int | None = None
    n_time_bins: int | None = None
    event_count: int | None = None
    n_frames: int | None = None
    start: int | None = None
    include_incomplete: bool = False
    clip: int | None = None

    def __post_init__(self):
        chosen = [v is not None for v in (self.time_window, self.n_time_bins, self.event_count)]
        if sum(chosen) != 1:
            raise ValueError("give exactly one of time_window, n_time_bins, event_count")
        for name in ("time_window", "n_time_bins", "event_count", "n_frames"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive, got {value}")

    def __call__(self, events: np.ndarray) -> np.ndarray:
        if self.time_window is not None:
            return frames_by_time(events, self.sensor_size, self.time_window, self.n_frames, self.start, self.include_incomplete, self.clip)
        if self.n_time_bins is not None:
            return frames_by_time_bins(events, self.sensor_size, self.n_time_bins, self.clip)
        return frames_by_event_count(events, self.sensor_size, self.event_count, self.include_incomplete, self.clip)


def iter_time_frames(
    chunks: Iterable[np.ndarray],
    sensor_size: tuple[int, int],
    time_window: int,
    start: int | None = None,
    end: int | None = None,
    block_frames: int = 64,
    clip: int | None = None,
    dtype=COUNT_DTYPE,
) -> Iterator[np.ndarray]:
    """Fixed-window frames of a time-ordered stream of event chunks, in blocks of at most ``block_frames``.

    Frame k covers [start + k * dt, start + (k + 1) * dt), ``start`` defaulting to the first event. A block
    is emitted once complete, so memory holds one block whatever the recording's length. The frames run to
    the one containing end - 1 when ``end`` is given, else to the one holding the last event; concatenated,
    they equal ``frames_by_time(all_events, ..., include_incomplete=True)``.
    """
    blocks = None
    for chunk in chunks:
        if end is not None:
            chunk = chunk[: np.searchsorted(chunk["t"], end, "left")]
        if len(chunk) == 0:
            continue
        if blocks is None:
            start = int(chunk["t"][0]) if start is None else start
            blocks = _FrameBlocks(sensor_size, start, time_window, block_frames, _count_cap(dtype, clip), dtype)
        yield from blocks.add(chunk[np.searchsorted(chunk["t"], start, "left") :])
    if end is not None and start is not None:
        blocks = blocks or _FrameBlocks(sensor_size, start, time_window, block_frames, 0, dtype)
        yield from blocks.finish((end - 1 - start) // time_window)
    elif blocks is not None and blocks.last_frame >= 0:
        yield from blocks.finish(blocks.last_frame)


class _FrameBlocks:
    """The block of frames being filled by ``iter_time_frames``; frames before ``block_start`` are out."""

    def __init__(self, sensor_size, start, time_window, block_frames, cap, dtype):
        self.width, self.height = sensor_size
        self.start, self.time_window, self.block_frames = start, time_window, block_frames
        self.cap, self.dtype = cap, dtype
        self.block_start = 0
        self.block = None
        self.last_frame = -1

    def _empty(self, n):
        return np.zeros((n, 2, self.height, self.width), dtype=self.dtype)

    def _advance_to(self, frame):
        while frame >= self.block_start + self.block_frames:
            yield self.block if self.block is not None else self._empty(self.block_frames)
            self.block = None
            self.block_start += self.block_frames

    def add(self, chunk):
        """Adds time-sorted events (all at or after ``start``); yields the blocks they complete."""
        t = chunk["t"]
        while len(chunk):
            yield from self._advance_to((int(t[0]) - self.start) // self.time_window)
            if self.block is None:
                self.block = self._empty(self.block_frames)
            frames = np.arange(self.block_start, self.block_start + self.block_frames + 1, dtype=np.int64)
            edges = self.start + frames * self.time_window
            cut = int(np.searchsorted(t, edges[-1], "left"))
            fault = _accumulate(chunk[:cut], edges, self.cap, self.block)
            if fault == UNSORTED:
                raise ValueError("events are not in time order")
            if fault >= 0:
                x, y = chunk["x"][fault], chunk["y"][fault]
                raise ValueError(f"event at (x={x}, y={y}) lies outside {self.width}x{self.height}")
            self.last_frame = (int(t[cut - 1]) - self.start) // self.time_window
            chunk, t = chunk[cut:], t[cut:]

    def finish(self, final_frame):
        """Yields the frames still held, and empty ones, up to ``final_frame`` inclusive."""
        yield from self._advance_to(final_frame)
        n = final_frame - self.block_start + 1
        if n > 0:
            yield (self.block if self.block is not None else self._empty(self.block_frames))[:n]
