"""Formats without a camera header: numpy arrays and "t x y p" text.

- .npy holding a structured array with fields x, y, t, p (memory-mapped, so streaming costs no memory),
  or tonic's DVS128 Gesture layout: an (N, 4) array of x, y, p, t with t in milliseconds.
- .npz holding an 'events' structured array or x/y/t/p arrays, optionally 'sensor_size' (width, height).
- text with one event per line "t x y p" (DVS128 Gait; p = 1 is ON).
Without a size in the file, a numpy file's sensor is the smallest common one that holds every coordinate;
a text file's is DVS128's 128x128 (the Gait layout) unless a size is given.
"""
from __future__ import annotations

import bisect
import re
import zipfile
from pathlib import Path

import numpy as np

from masnn.datasets.events import EventFileError, RecordingInfo, as_events, make_events
from masnn.datasets.io.recording import DEFAULT_CHUNK_EVENTS, Recording, chunked, sensor_from_extent

NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = b"PK\x03\x04"
_TEXT_LINE = re.compile(rb"^\s*\d+\s+\d+\s+\d+\s+-?\d+\s*$")


def sniff_npy(head: bytes) -> bool:
    return head.startswith(NPY_MAGIC)


def sniff_npz(head: bytes) -> bool:
    return head.startswith(ZIP_MAGIC)


def sniff_text(head: bytes) -> bool:
    first_line = head.split(b"\n", 1)[0]
    return bool(_TEXT_LINE.match(first_line))


def _tonic_gesture_to_events(table: np.ndarray) -> np.ndarray:
    t_ms = table[:, 3]
    t_us = np.rint(t_ms * 1000) if np.issubdtype(t_ms.dtype, np.floating) else t_ms.astype(np.int64) * 1000
    return make_events(table[:, 0], table[:, 1], t_us.astype(np.int64), table[:, 2] > 0)


class _ArrayRecording(Recording):
    """A recording whose events sit in one (possibly memory-mapped) array."""

    format = ""
    _stored_size: tuple[int, int] | None = None  # a size the file itself records

    def __init__(self, path: Path, sensor_size: tuple[int, int] | None = None):
        self._events_or_table, self._convert = self._load(path)
        n = len(self._events_or_table)
        sensor_size = sensor_size or self._stored_size
        if sensor_size is None:
            if n == 0:
                sensor_size = (128, 128)
            else:
                max_x, max_y = self._max_xy()
                sensor_size = sensor_from_extent(max_x, max_y)
        time_range = (int(self._time_at(0)), int(self._time_at(n - 1))) if n else None
        self.info = RecordingInfo(str(path), self.format, sensor_size[0], sensor_size[1], "", time_range)

    def _load(self, path):
        raise NotImplementedError

    def _max_xy(self):
        if self._convert is _tonic_gesture_to_events:
            return int(self._events_or_table[:, 0].max()), int(self._events_or_table[:, 1].max())
        return int(self._events_or_table["x"].max()), int(self._events_or_table["y"].max())

    def _time_at(self, i: int) -> int:
        if self._convert is _tonic_gesture_to_events:
            return int(_tonic_gesture_to_events(self._events_or_table[i : i + 1])["t"][0])
        return int(self._events_or_table["t"][i])

    def _chunks(self, start, end, chunk_events=DEFAULT_CHUNK_EVENTS):
        data = self._events_or_table
        n = len(data)
        # Binary search on the stored times: a selection decodes only its own rows.
        lo = 0 if start is None else bisect.bisect_left(range(n), start, key=self._time_at)
        hi = n if end is None else bisect.bisect_left(range(n), end, key=self._time_at)
        for block in chunked(data[lo:hi], chunk_events):
            yield self._convert(np.asarray(block))


def _structured_events(path, array: np.ndarray):
    names = array.dtype.names or ()
    if {"x", "y", "timestamp", "polarity"} <= set(names):
        return as_events(array), as_events  # a view where the layout is dv-processing's, else a copy
    if {"x", "y", "t", "p"} <= set(names):
        return array, as_events
    if array.ndim == 2 and array.shape[1] == 4 and not names:
        return array, _tonic_gesture_to_events
    raise EventFileError(path, f"holds an array of dtype {array.dtype} and shape {array.shape}, not events")


class NpyRecording(_ArrayRecording):
    format = "numpy .npy"

    def _load(self, path):
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError) as e:
            raise EventFileError(path, f"is not a readable .npy file ({e})") from None
        return _structured_events(path, array)


class NpzRecording(_ArrayRecording):
    format = "numpy .npz"

    def _load(self, path):
        try:
            with np.load(path, allow_pickle=False) as archive:
                contents = {key: archive[key] for key in archive.files}
        except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
            raise EventFileError(path, f"is not a readable .npz file ({e})") from None
        if "sensor_size" in contents:
            self._stored_size = tuple(int(v) for v in contents["sensor_size"][:2])
        if "events" in contents:
            return _structured_events(path, contents["events"])
        if {"x", "y", "t", "p"} <= contents.keys():
            return make_events(contents["x"], contents["y"], contents["t"], contents["p"] > 0), as_events
        raise EventFileError(path, f"has no 'events' array nor x/y/t/p arrays (holds {sorted(contents)})")


class TextRecording(Recording):
    """One event per line, "t x y p" (DVS128 Gait). Parsed in blocks of lines."""

    def __init__(self, path: Path, sensor_size: tuple[int, int] | None = None):
        width, height = sensor_size or (128, 128)
        self.info = RecordingInfo(str(path), "text t x y p", width, height)

    def _chunks(self, start, end, chunk_events=DEFAULT_CHUNK_EVENTS):
        line_no = 0
        with open(self.info.path, "rb") as f:
            while True:
                lines = f.readlines(chunk_events * 24)
                if not lines:
                    return
                fields = [line.split() for line in lines]
                bad = next((i for i, row in enumerate(fields) if len(row) != 4), None)
                if bad is None:
                    try:
                        table = np.array(fields, dtype=np.int64)
                    except ValueError:
                        bad = next(i for i, line in enumerate(lines) if not _TEXT_LINE.match(line))
                if bad is not None:
                    raise EventFileError(self.info.path, f"line {line_no + bad + 1} is not 't x y p': {lines[bad][:60]!r}")
                line_no += len(lines)
                events = make_events(table[:, 1], table[:, 2], table[:, 0], table[:, 3] > 0)
                if end is not None and len(events) and events["t"][0] >= end:
                    return
                yield events
