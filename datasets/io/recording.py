"""``Recording``: one recording open for streaming (metadata plus bounded, checked chunks of events), the base
every format's reader extends, and what readers share (chunking, sensor sizes by camera name or extent).

Every reader's output passes through the same checks in ``Recording.chunks``: coordinates inside the sensor
and timestamps that never go backwards, across chunk boundaries too. A reader that runs those checks itself
while decoding, off the main thread (AEDAT 4.0), marks its chunks checked; here only their boundaries are
then compared, and a chunk it found faulty is scanned again to name the event.
"""
from __future__ import annotations

import re
from typing import Iterator

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


def sensor_from_camera_name(name: str) -> tuple[int, int] | None:
    key = re.sub(r"[^A-Z0-9]+", "_", name.upper())
    for known, size in KNOWN_SENSORS.items():  # DVXPLORER_LITE is listed before its prefix DVXPLORER
        if key.startswith(known):
            return size
    return None


def sensor_from_extent(max_x: int, max_y: int) -> tuple[int, int]:
    """The smallest common sensor that holds these coordinates, else the coordinates' own extent."""
    for size in [(128, 128), (240, 180), (320, 240), (346, 260), (640, 480), (1280, 720)]:
        if max_x < size[0] and max_y < size[1]:
            return size
    return (int(max_x) + 1, int(max_y) + 1)


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
        previous_t = np.iinfo(np.int64).min
        total = 0
        for chunk, checked in self._checked_chunks(start, end, chunk_events):
            chunk = _cut(chunk, start, end)
            if len(chunk) == 0:
                continue
            if checked and chunk["t"][0] >= previous_t:
                fault = -1
            else:  # finds and locates the fault, wherever the reader saw one
                fault = first_fault(chunk, self.info.width, self.info.height, previous_t)
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
        return f"timestamps go backwards at event {offset + i} (t={t} us after t={before} us)"

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
