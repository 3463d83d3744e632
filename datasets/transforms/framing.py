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

The accumulation is compiled: per cache-sized block of time-sorted events, one pass computes pixel
indices (checking order and bounds), a second counts them into the frames. ``stream.StreamFramer`` (and
``stream.iter_time_frames``) drives the same kernels over a stream of chunks, with memory bounded by one block of
frames whatever the recording's length.
Frames are allocated uncleared and each is cleared when the count pass first reaches it, so that it is in
cache for its increments: with many sparse frames (a long recording framed whole) that halves the count pass.
"""
from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from masnn.datasets.events import first_fault

COUNT_DTYPE = np.int16
DONE, UNSORTED = -1, -2
SCRATCH_EVENTS = 1 << 16  # events whose pixel indices are computed per pass; they stay in cache


@numba.njit(cache=True, nogil=True)
def _lower_bound(events, t, lo, hi):
    """First index in [lo, hi) whose time is >= t (events sorted by time)."""
    while lo < hi:
        mid = (lo + hi) >> 1
        if events[mid].t < t:
            lo = mid + 1
        else:
            hi = mid
    return lo


@numba.njit(cache=True, nogil=True)
def _pixel_indices(events, previous, width, height, pixels):
    """pixels[i] = p * H * W + y * W + x of each event.

    Returns -1, UNSORTED - i for the first event earlier than its predecessor (``previous`` before the
    first), or the index of the first event outside the width x height sensor. The loop has no early exit
    and no lookup, so it compiles to vector code; faults are located afterwards.
    """
    plane = height * width
    first_previous = previous
    faulty = False
    for i in range(events.shape[0]):
        e = events[i]
        x, y = np.uint32(np.int32(e.x)), np.uint32(np.int32(e.y))  # unsigned: one comparison per bound
        faulty |= (e.t < previous) | (x >= width) | (y >= height)
        previous = e.t
        pixels[i] = (plane if e.p else 0) + y * width + x
    if not faulty:
        return -1
    i = first_fault(events, width, height, first_previous)
    return UNSORTED - i if events[i].t < (events[i - 1].t if i > 0 else first_previous) else i


@numba.njit(cache=True, nogil=True)
def _map_pixels(pixels, table):
    """Sensor pixels -> output pixels (-1: cropped away). A separate pass: folded into the one above, the
    lookups keep it from vectorising and it runs at less than half the speed of both passes together."""
    for i in range(pixels.shape[0]):
        pixels[i] = table[pixels[i]]


@numba.njit(cache=True, nogil=True)
def _count_frames(events, lo, hi, edges, pixels, cap, out, cleared):
    """Adds pixels (of events[lo:hi], all within edges) to their frames, saturating at ``cap``.

    Frames from ``cleared`` on are uninitialised memory: each is cleared when first reached, and so are
    the ones skipped before it. Returns the new count of cleared frames.
    """
    n_frames = edges.shape[0] - 1
    counts = out.reshape(n_frames, out.shape[1] * out.shape[2] * out.shape[3])
    begin = lo
    k = np.searchsorted(edges, events[lo].t, side="right") - 1  # the frame of the first event
    while begin < hi:
        end = _lower_bound(events, edges[k + 1], begin, hi)
        while cleared <= k:
            counts[cleared][:] = 0
            cleared += 1
        row = counts[k]
        for pixel in pixels[begin - lo : end - lo]:
            if pixel >= 0 and row[pixel] < cap:
                row[pixel] += 1
        begin = end
        k += 1
    return cleared


@numba.njit(cache=True, nogil=True)
def _first_unsorted(events, begin):
    for i in range(max(begin, 1), events.shape[0]):
        if events[i].t < events[i - 1].t:
            return i
    return -1


def uncleared_frames(shape, dtype) -> np.ndarray:
    """Memory for frames that the count pass clears as it reaches them (tests make it hold garbage)."""
    return np.empty(shape, dtype)


def first_index_at_or_after(events, t) -> int:
    """Binary search on time-sorted events, without copying the strided t column."""
    return int(_lower_bound(events, t, 0, len(events)))


class UnsortedEvents(ValueError):
    pass


def count_cap(dtype, clip: int | None) -> int:
    """The count at which a pixel saturates: ``clip`` if given, never beyond what ``dtype`` holds."""
    limit = np.iinfo(dtype).max
    return limit if clip is None else min(int(clip), limit)


@numba.njit(cache=True, nogil=True)
def _add_events_kernel(events, begin, edges, sensor_width, sensor_height, pixel_table, cap, out, cleared):
    """Returns (status, index, cleared): DONE and the first event at or after edges[-1], UNSORTED and an
    event earlier than its predecessor, or (index, index) for an event outside the sensor; and the count of
    leading frames of ``out`` now cleared (see _count_frames)."""
    n = events.shape[0]
    lo = _lower_bound(events, edges[0], begin, n)
    hi = _lower_bound(events, edges[-1], lo, n)
    checked_from = max(begin - 1, 0)
    unsorted = _first_unsorted(events[checked_from : lo + 1], 0)  # binary search needs order
    if unsorted >= 0:
        return UNSORTED, checked_from + unsorted, cleared
    pixels = np.empty(min(hi - lo, SCRATCH_EVENTS), dtype=np.int32)
    for block in range(lo, hi, SCRATCH_EVENTS):  # cache-sized blocks: pixel indices, then counts
        block_end = min(block + SCRATCH_EVENTS, hi)
        status = _pixel_indices(events[block:block_end], events[max(block - 1, lo)].t, sensor_width, sensor_height, pixels)
        if status <= UNSORTED:
            return UNSORTED, block + UNSORTED - status, cleared
        if status >= 0:
            return block + status, block + status, cleared
        if pixel_table is not None:  # numba compiles the case without a table separately
            _map_pixels(pixels[: block_end - block], pixel_table)
        cleared = _count_frames(events, block, block_end, edges, pixels, cap, out, cleared)
    return DONE, hi, cleared


def count_into_frames(events, begin, edges, spatial, cap, out, cleared) -> tuple[int, int]:
    """Adds events[begin:] falling within edges to ``out``, through ``spatial`` (a SpatialMap, or None where
    the events' pixels are the frames'); frames from ``cleared`` on are not yet cleared. Raises on unsorted
    events or pixels outside the sensor; returns the index of the first event at or after edges[-1] and the
    new count of cleared frames.

    Two tight compiled passes (pixel indices, then counts) run about twice as fast as one pass doing both.
    """
    sensor = (out.shape[3], out.shape[2]) if spatial is None else spatial.sensor_size
    table = None if spatial is None else spatial.pixel_table
    status, index, cleared = _add_events_kernel(events, begin, edges, *sensor, table, cap, out, cleared)
    if status == UNSORTED:
        raise UnsortedEvents(f"events are not in time order (event {index})")
    if status >= 0:
        x, y = int(events["x"][index]), int(events["y"][index])
        raise ValueError(f"event at (x={x}, y={y}) lies outside the {sensor[0]}x{sensor[1]} sensor")
    return index, cleared


def accumulate_frames(events, edges, sensor_size, clip=None, dtype=COUNT_DTYPE) -> np.ndarray:
    """Frames for the time bins [edges[k], edges[k + 1]); ``events`` must be sorted by time."""
    width, height = sensor_size
    edges = np.asarray(edges, dtype=np.int64)
    frames = uncleared_frames((len(edges) - 1, 2, height, width), dtype)
    cleared = 0
    if len(events) and len(frames):
        stop, cleared = count_into_frames(events, 0, edges, None, count_cap(dtype, clip), frames, cleared)
        if _first_unsorted(events, stop) >= 0:
            raise UnsortedEvents("events are not in time order")
    frames[cleared:] = 0
    return frames


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
    if 0 < n < event_count:  # as tonic: a sample shorter than one frame still makes one frame
        n_frames = 1
    frames = uncleared_frames((n_frames, 2, sensor_size[1], sensor_size[0]), dtype)
    cleared = 0
    # Stream order, not time order, defines these frames: give each event its own tick as the "time".
    ticks = np.zeros(n, dtype=events.dtype)
    ticks["x"], ticks["y"], ticks["p"] = events["x"], events["y"], events["p"]
    ticks["t"] = np.arange(n)
    if n_frames:
        edges = np.arange(n_frames + 1, dtype=np.int64) * event_count
        _, cleared = count_into_frames(ticks, 0, edges, None, count_cap(dtype, clip), frames, cleared)
    frames[cleared:] = 0
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
