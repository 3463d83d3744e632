"""slayer / lava-dl binary spike files (.bs2, "binary spikes 2D"; also N-MNIST's original layout).

5 bytes an event, no header: byte 0 x, byte 1 y (origin top left), byte 2 bit 7 the polarity (1 = ON), bits 6-0 of
byte 2 then bytes 3 and 4 the timestamp in microseconds, 23 bits big-endian:
t = ((b2 & 0x7F) << 16) | (b3 << 8) | b4. lava-dl writes them with ``slayer.io.encode_2d_spikes`` and reads them
with ``read_2d_spikes``; its converted DVS128 Gesture clips and N-MNIST samples are such files.

With no magic bytes to tell them by, a file is read as .bs2 by its extension (.bs2, any case), and only when its
content is no other format's (see ``readers``). What the format leaves open is decided here:

- Sensor size: the format has none. Every coordinate is scanned when the file is opened, and the sensor is the
  smallest common one that holds them all (``COMMON_SENSORS``): 128x128 for DVS128 Gesture clips and for
  N-MNIST's 34x34 samples (which sit in its top-left corner), 240x180 for DAVIS240 data; a byte's coordinates
  always fit 346x260. ``open_recording(path, sensor_size=(34, 34))`` states the size instead, and coordinates
  beyond a stated size are refused by the common checks.
- Time order: the format does not promise it, masnn needs it (framing, time selections), and the other readers
  refuse a step back rather than sort; so does this one, when the file is opened, naming the event.
- The 23-bit clock: times reach at most 2^23 - 1 us (8.39 s). lava-dl's writer drops the higher bits without a
  word, so a longer recording comes back wrapped to 0; that is a step back like any other (the refusal says the
  clock probably wrapped when the step is over half the range), never guessed round, since a file in no
  particular order would then be read as a longer one. ``writers.write_bs2`` refuses such times instead.
- A size that is not a multiple of 5: a file cut short, like the other binary readers: the whole events before
  the cut are read, with a TruncatedRecordingWarning naming the bytes left over; a file of less than one event
  is then "no events".
"""
from __future__ import annotations

import bisect
import os
import warnings
from pathlib import Path

import numpy as np

from masnn.datasets.events import EventFileError, RecordingInfo, TruncatedRecordingWarning, empty_events
from masnn.datasets.io.recording import DEFAULT_CHUNK_EVENTS, Recording, describe_time_fault, sensor_from_extent

SUFFIXES = (".bs2",)
EVENT_BYTES = 5
TIME_BITS = 23
TIME_LIMIT_US = 1 << TIME_BITS  # times are below this: 8.39 s
COORDINATE_LIMIT = 256  # one byte each for x and y
SCAN_EVENTS = 1 << 20  # events checked at a time when a file is opened (5 MB)


def named_bs2(path: Path) -> bool:
    return path.suffix.lower() in SUFFIXES


def decode_bs2(data: bytes | np.ndarray) -> np.ndarray:
    """The whole events in ``data`` (bytes that begin on an event boundary) as canonical events."""
    raw = np.frombuffer(data, dtype=np.uint8, count=len(data) // EVENT_BYTES * EVENT_BYTES).reshape(-1, EVENT_BYTES)
    events = empty_events(len(raw))
    events["x"] = raw[:, 0]
    events["y"] = raw[:, 1]
    events["p"] = raw[:, 2] >> 7
    events["t"] = ((raw[:, 2].astype(np.int64) & 0x7F) << 16) | (raw[:, 3].astype(np.int64) << 8) | raw[:, 4]
    return events


def encode_bs2(events: np.ndarray) -> bytes:
    """Events as .bs2 bytes; refuses (ValueError, naming the first such event) coordinates outside 0-255, times
    outside 0 to 2^23 - 1 us and times out of order, none of which the format or its readers can carry."""
    x, y, t = (events[k].astype(np.int64) for k in "xyt")
    for name, values, limit in (("x", x, COORDINATE_LIMIT), ("y", y, COORDINATE_LIMIT), ("t", t, TIME_LIMIT_US)):
        bad = np.flatnonzero((values < 0) | (values >= limit))
        if len(bad):
            unit = " us" if name == "t" else ""
            raise ValueError(f".bs2 cannot hold event {bad[0]}'s {name}={values[bad[0]]}{unit} "
                             f"(0 to {limit - 1}{unit}{'; subtract the first time' if name == 't' else ''})")
    back = np.flatnonzero(np.diff(t) < 0)
    if len(back):
        raise ValueError(f".bs2 events must be in time order: event {back[0] + 1} (t={t[back[0] + 1]} us) comes "
                         f"after t={t[back[0]]} us")
    raw = np.empty((len(t), EVENT_BYTES), dtype=np.uint8)
    raw[:, 0], raw[:, 1] = x, y
    raw[:, 2] = ((t >> 16) & 0x7F) | ((events["p"] != 0).astype(np.int64) << 7)
    raw[:, 3], raw[:, 4] = (t >> 8) & 0xFF, t & 0xFF
    return raw.tobytes()


class Bs2Recording(Recording):
    def __init__(self, path: Path, sensor_size: tuple[int, int] | None = None):
        self._path = path
        size = os.path.getsize(path)
        self._events, self._left_over = divmod(size, EVENT_BYTES)
        max_x, max_y, time_range = self._scan()
        width, height = sensor_size or sensor_from_extent(max_x, max_y)
        self.info = RecordingInfo(str(path), "slayer .bs2", width, height, "", time_range)

    def _scan(self) -> tuple[int, int, tuple[int, int] | None]:
        """(largest x, largest y, (first, last) time) of every whole event, refusing a step back in time: one
        pass, a block at a time."""
        max_x = max_y = 0
        first = previous = None
        last_step = 0  # into the last event of the block before
        with open(self._path, "rb") as f:
            for offset in range(0, self._events, SCAN_EVENTS):
                events = decode_bs2(f.read(min(SCAN_EVENTS, self._events - offset) * EVENT_BYTES))
                if len(events) == 0:
                    break  # shorter than when it was measured: the stream stops there too
                t = events["t"]
                steps = np.diff(t, prepend=t[0] if previous is None else previous)
                back = np.flatnonzero(steps < 0)
                if len(back):
                    i = int(back[0])
                    step_before = int(steps[i - 1]) if i > 0 else last_step
                    problem = _describe_step_back(offset + i, int(t[i]), int(t[i] - steps[i]), step_before)
                    raise EventFileError(self._path, problem)
                max_x, max_y = max(max_x, int(events["x"].max())), max(max_y, int(events["y"].max()))
                first = int(t[0]) if first is None else first
                previous, last_step = int(t[-1]), int(steps[-1])
        return max_x, max_y, None if first is None else (first, previous)

    def _time_at(self, i: int) -> int:
        with open(self._path, "rb") as f:
            f.seek(i * EVENT_BYTES)
            return int(decode_bs2(f.read(EVENT_BYTES))["t"][0])

    def _chunks(self, start, end, chunk_events=DEFAULT_CHUNK_EVENTS):
        n = self._events
        # In time order (checked at open): a selection is found by binary search and decodes only its own events.
        lo = 0 if start is None else bisect.bisect_left(range(n), start, key=self._time_at)
        hi = n if end is None else bisect.bisect_left(range(n), end, key=self._time_at)
        with open(self._path, "rb") as f:
            f.seek(lo * EVENT_BYTES)
            for begin in range(lo, hi, chunk_events):
                events = decode_bs2(f.read(min(chunk_events, hi - begin) * EVENT_BYTES))
                if len(events) == 0:
                    return
                yield events
        if self._left_over and hi == n:
            warnings.warn(TruncatedRecordingWarning(
                f"{self._path}: ends inside an event ({self._left_over} of its {EVENT_BYTES} bytes left over); "
                "kept the events before it"), stacklevel=3)


def _describe_step_back(index: int, t: int, before: int, step_before: int) -> str:
    """Why event ``index`` at ``t`` cannot follow ``before``, reached by ``step_before``. A drop of over half the
    23-bit range after a climb in small steps looks like the clock wrapping; after a leap of as much, like one
    corrupt time (a run of 0xFF bytes) that the next event falls back from."""
    text = f"{describe_time_fault(index, t, before)}; .bs2 events must be in time order"
    half = TIME_LIMIT_US // 2
    if before - t > half and step_before > half:
        text += f" (event {index - 1} leaps {step_before / 1e6:.2f} s ahead of the one before it: a corrupt time)"
    elif before - t > half:
        text += (f" (a drop of {(before - t) / 1e6:.2f} s: the 23-bit clock probably wrapped, so the recording "
                 f"is longer than the {TIME_LIMIT_US / 1e6:.2f} s a .bs2 file can hold)")
    return text
