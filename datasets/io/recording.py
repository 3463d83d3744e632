"""``Recording``: one recording open for streaming (metadata plus bounded, checked chunks of events), the base
every format's reader extends, and what readers share (chunking, sensor sizes by camera name or extent).

Every reader's output passes through the same checks in ``Recording.chunks``: coordinates inside the sensor,
timestamps that never go backwards and never jump forward by more than ``MAX_TIME_JUMP_US``, across chunk
boundaries too. A reader that runs the first two checks itself while decoding, off the main thread (AEDAT 4.0),
marks its chunks checked; here only their boundaries and jumps are then compared, and a chunk it found faulty
is scanned again to name the event.

The jump check is what bounds the work of every command: framing and classifying walk a recording's duration,
so one corrupt timestamp (a zeroed or NaN time, a flipped high bit) would otherwise make them walk days or
centuries of empty windows.
"""
from __future__ import annotations

import re
from typing import Iterator

import numba
import numpy as np

from masnn.datasets.events import EventFileError, RecordingInfo, concatenate, first_fault

DEFAULT_CHUNK_EVENTS = 1 << 18  # 4 MB of events: decoding and checks stay in cache

# Sensors by the names their files give; used where a format stores a camera name but no size.
KNOWN_SENSORS = {
    "DVS128": (128, 128),
    "DAVIS240": (240, 180),
    "DAVIS346": (346, 260),
    "DAVIS640": (640, 480),
    "DVXPLORER_LITE": (320, 240),
    "DVXPLORER": (640, 480),
}
# Sensor sizes in common use, smallest first: a file without a size gets the smallest that holds its events.
COMMON_SENSORS = [(128, 128), (240, 180), (320, 240), (346, 260), (640, 480), (1280, 720)]

# The largest sensor side a file may state (a header's geometry, an .npz's sensor_size). Event cameras today
# are at most 1280 pixels wide (Prophesee IMX636, Samsung Gen4, CeleX-V); 2048 leaves room for the next ones.
# A larger value is a corrupt number, and taken as a size it would ask for gigabytes of frames.
MAX_SENSOR_SIDE = 2048

# The longest a recording can go without an event: a day. A sensor emits background-activity events every few
# milliseconds even in a still, dark scene, so real pauses are short; a day leaves room for recordings that were
# paused and resumed. A longer step forward is a corrupt timestamp (a zeroed, NaN or flipped 64-bit value, a
# damaged overflow counter); read as a pause, it would make framing and classifying walk years of empty windows.
MAX_TIME_JUMP_US = 24 * 3600 * 1_000_000

_NO_PREVIOUS = np.iinfo(np.int64).min


def sensor_from_camera_name(name: str) -> tuple[int, int] | None:
    key = re.sub(r"[^A-Z0-9]+", "_", name.upper())
    for known, size in KNOWN_SENSORS.items():  # DVXPLORER_LITE is listed before its prefix DVXPLORER
        if key.startswith(known):
            return size
    return None


def sensor_from_extent(max_x: int, max_y: int) -> tuple[int, int] | None:
    """The smallest common sensor that holds these coordinates; None beyond the largest (1280x720).

    Coordinates beyond every common sensor are far more often a corrupt value than a camera nobody uses, and
    a size inferred from one stray value would define every frame; such a file needs its size stated."""
    for size in COMMON_SENSORS:
        if max_x < size[0] and max_y < size[1]:
            return size
    return None


def stated_sensor_size(path, width, height, where: str) -> tuple[int, int]:
    """A sensor size a file states (``where`` names the header line or key), checked: whole, positive and at
    most ``MAX_SENSOR_SIDE`` on each side."""
    try:
        size = (int(width), int(height))
        exact = size == (width, height) or (float(width), float(height)) == size
    except (TypeError, ValueError, OverflowError):
        exact = False
    if not exact or not (0 < size[0] <= MAX_SENSOR_SIDE and 0 < size[1] <= MAX_SENSOR_SIDE):
        raise EventFileError(
            path, f"{where} gives a sensor size of {width}x{height}: not whole sides from 1 to {MAX_SENSOR_SIDE}"
        )
    return size


@numba.njit(cache=True, nogil=True)
def _first_jump(times, previous_t, limit):
    """Index of the first time more than ``limit`` after the one before it (``previous_t`` before the first;
    _NO_PREVIOUS: nothing before it); -1 if none. Steps back are left to ``first_fault``. A step as uint64 is
    exact for any forward pair, where int64 would overflow between a NaN-made minimum and a real time."""
    before = times[0] if previous_t == _NO_PREVIOUS else previous_t
    for i in range(times.shape[0]):
        t = times[i]
        if t > before and np.uint64(t) - np.uint64(before) > limit:
            return i
        before = t
    return -1


def first_jump(times: np.ndarray, previous_t: int = _NO_PREVIOUS, ordered: bool = False) -> int:
    """Index of the first of ``times`` (int64 microseconds, any stride) more than MAX_TIME_JUMP_US after the time
    before it (``previous_t`` before the first); -1 if none. Times known to be ``ordered`` (after ``previous_t``
    too) that span less than a jump need no scan."""
    if len(times) == 0:
        return -1
    before = int(times[0]) if previous_t == _NO_PREVIOUS else previous_t
    if ordered and int(times[-1]) - before <= MAX_TIME_JUMP_US:
        return -1
    return _first_jump(times, previous_t, np.uint64(MAX_TIME_JUMP_US))


def describe_time_fault(index: int, t: int, before: int) -> str:
    """Why event ``index`` at ``t`` cannot follow an event at ``before``: a step backwards or a jump."""
    if t < before:
        return f"timestamps go backwards at event {index} (t={t} us after t={before} us)"
    hours = MAX_TIME_JUMP_US // 3_600_000_000
    return (f"timestamp jumps {(t - before) / 1e6:.0f} s at event {index} (t={t} us after t={before} us): corrupt, "
            f"no recording pauses {hours} h without an event")


class Recording:
    """A recording open for streaming. Subclasses set ``info`` and implement ``_chunks``.

    ``_chunks(start, end, chunk_events)`` yields arrays covering at least the events with
    start <= t < end (a reader skips what it can without decoding; the exact cut is made here).
    """

    info: RecordingInfo

    def _chunks(self, start: int | None, end: int | None, chunk_events: int) -> Iterator[np.ndarray]:
        raise NotImplementedError

    def _checked_chunks(self, start, end, chunk_events) -> Iterator[tuple[np.ndarray, bool]]:
        """``_chunks``, each with whether the reader has checked it already (inside the sensor, in time order
        within the chunk). A reader that checks while decoding, on other threads, overrides this."""
        for chunk in self._chunks(start, end, chunk_events):
            yield chunk, False

    def chunks(
        self, start: int | None = None, end: int | None = None, chunk_events: int = DEFAULT_CHUNK_EVENTS
    ) -> Iterator[np.ndarray]:
        """Yields events with start <= t < end (microseconds, the recording's timebase) in order."""
        previous_t = _NO_PREVIOUS
        total = 0
        for chunk, checked in self._checked_chunks(start, end, chunk_events):
            chunk = _cut(chunk, start, end)
            if len(chunk) == 0:
                continue
            if checked and chunk["t"][0] >= previous_t:
                fault = -1
            else:  # finds and locates the fault, wherever the reader saw one
                fault = first_fault(chunk, self.info.width, self.info.height, previous_t)
            # a jump before the first fault (outside the sensor, backwards) is the first fault
            jump = first_jump(chunk["t"][: fault if fault >= 0 else len(chunk)], previous_t, ordered=True)
            if jump >= 0:
                fault = jump
            if fault >= 0:
                raise EventFileError(self.info.path, self._describe_fault(chunk, fault, previous_t, total))
            previous_t = int(chunk["t"][-1])
            total += len(chunk)
            yield chunk
        if total == 0:
            where = "" if start is None and end is None else f" between t={start} and t={end} us"
            raise EventFileError(self.info.path, f"no events{where}")

    def read(self, start: int | None = None, end: int | None = None) -> np.ndarray:
        """All selected events in one array (for clips; stream long recordings with ``chunks``)."""
        return concatenate(list(self.chunks(start, end)))

    def _describe_fault(self, chunk, i, previous_t, offset) -> str:
        x, y, t = int(chunk["x"][i]), int(chunk["y"][i]), int(chunk["t"][i])
        w, h = self.info.width, self.info.height
        if not (0 <= x < w and 0 <= y < h):
            return f"event {offset + i} at (x={x}, y={y}) lies outside the {w}x{h} sensor"
        before = int(chunk["t"][i - 1]) if i > 0 else previous_t
        return describe_time_fault(offset + i, t, before)

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _cut(chunk: np.ndarray, start: int | None, end: int | None) -> np.ndarray:
    if len(chunk) == 0:
        return chunk
    t = chunk["t"]
    lo = 0 if start is None or t[0] >= start else int(np.searchsorted(t, start, "left"))
    hi = len(chunk) if end is None or t[-1] < end else int(np.searchsorted(t, end, "left"))
    return chunk[lo:hi]


def chunked(events: np.ndarray, chunk_events: int) -> Iterator[np.ndarray]:
    for begin in range(0, len(events), chunk_events):
        yield events[begin : begin + chunk_events]


def first_event_time(recording: Recording) -> int:
    """The time of the recording's first event (from its index where the format has one)."""
    if recording.info.time_range is not None:
        return recording.info.time_range[0]
    return int(next(recording.chunks())["t"][0])


class EventsRecording(Recording):
    """Events already in memory (a clip transformed after reading, say), streamed like a recording; ``path`` is the
    name its reports and errors give."""

    def __init__(self, events: np.ndarray, sensor_size: tuple[int, int], path: str, format: str = "events in memory"):
        self._events = events
        time_range = (int(events["t"][0]), int(events["t"][-1])) if len(events) else None
        self.info = RecordingInfo(path, format, sensor_size[0], sensor_size[1], "", time_range)

    def _chunks(self, start, end, chunk_events):
        return chunked(self._events, chunk_events)
