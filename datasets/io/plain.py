"""Formats without a camera header: numpy arrays and "t x y p" text.

- .npy holding a structured array with fields x, y, t, p (memory-mapped, so streaming costs no memory),
  or tonic's DVS128 Gesture layout: an (N, 4) array of x, y, p, t with t in milliseconds.
- .npz holding an 'events' structured array or x/y/t/p arrays, optionally 'sensor_size' (width, height).
- text with one event per line "t x y p" (DVS128 Gait; p = 1 is ON).
Without a size in the file, a numpy file's sensor is the smallest common one that holds every coordinate, and
coordinates beyond the largest (1280x720) are refused rather than taken as a size; a text file's sensor is
DVS128's 128x128 (the Gait layout) unless a size is given.

These formats hold plain numbers of any type, so their values are checked before they become an event's int16
coordinates and int64 microseconds (a cast would wrap x = 65541 to 5 without a word): whole numbers that fit
the field, no NaN or infinity. The refusal names the event and its value.
"""
from __future__ import annotations

import bisect
import os
import re
import zipfile
from pathlib import Path

import numpy as np

from masnn.datasets.events import EventFileError, RecordingInfo, as_events, make_events
from masnn.datasets.io.recording import (
    COMMON_SENSORS,
    DEFAULT_CHUNK_EVENTS,
    Recording,
    chunked,
    describe_time_fault,
    first_jump,
    sensor_from_extent,
    stated_sensor_size,
)

NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = b"PK\x03\x04"
_TEXT_LINE = re.compile(rb"^\s*\d+\s+\d+\s+\d+\s+-?\d+\s*$")

# Value ranges as [low, high): what an event's int16 coordinate and int64 microsecond time can hold.
COORDINATE_RANGE = (-(1 << 15), 1 << 15)
TIME_RANGE = (-(1 << 63), 1 << 63)
_NUMBER_KINDS = "biuf"  # bool, signed, unsigned, float
TIME_SCAN_ROWS = 1 << 20  # rows of times checked at a time when a file is opened


def sniff_npy(head: bytes) -> bool:
    return head.startswith(NPY_MAGIC)


def sniff_npz(head: bytes) -> bool:
    return head.startswith(ZIP_MAGIC)


def sniff_text(head: bytes) -> bool:
    first_line = head.split(b"\n", 1)[0]
    return bool(_TEXT_LINE.match(first_line))


# ------------------------------------------------------------------------------------------------ value checks

def check_values(path, name: str, values: np.ndarray, first_index: int, value_range=None, whole: bool = True) -> None:
    """Refuses the first value of one field that an event cannot hold as it is: NaN, infinite, a fraction where
    ``whole``, or outside ``value_range`` [low, high). ``first_index`` is values[0]'s event number."""
    kind = values.dtype.kind
    if kind not in _NUMBER_KINDS:
        raise EventFileError(path, f"field {name} holds {values.dtype}, not numbers")
    if kind == "b" or (kind in "iu" and (value_range is None or _type_fits(values.dtype, value_range))):
        return  # every value of this type fits: nothing to scan
    ok = np.ones(values.shape, dtype=bool)
    if kind == "f":
        ok &= np.isfinite(values)
        if whole:
            ok &= values == np.floor(values)
    if value_range is not None:
        ok &= _within(values, *value_range)
    if not ok.all():
        i = int(np.argmin(ok))
        raise EventFileError(path, f"event {first_index + i} has {name}={values[i]}, {_fault(values[i], name, whole)}")


def _within(values: np.ndarray, low: int, high: int) -> np.ndarray:
    if values.dtype.kind == "u":  # compared as unsigned: numpy would otherwise go through float64
        return values < np.uint64(high) if high > 0 else np.zeros(values.shape, dtype=bool)
    if values.dtype.kind == "f":
        return (values >= float(low)) & (values < float(high))
    return (values >= low) & (values < high)


def _type_fits(dtype: np.dtype, value_range) -> bool:
    info = np.iinfo(dtype)
    return value_range[0] <= info.min and info.max < value_range[1]


def _fault(value, name: str, whole: bool) -> str:
    if np.isnan(value):
        return "not a number"
    if np.isinf(value):
        return "an infinite value"
    if whole and value != np.floor(value):
        return "not a whole number"
    if name in ("x", "y"):
        return "beyond a 16-bit coordinate"
    return "beyond 64-bit microseconds"


def _tonic_times_us(path, t_ms: np.ndarray, first_index: int) -> np.ndarray:
    """tonic's millisecond times as whole microseconds (rounded: they were microseconds before division)."""
    check_values(path, "t", t_ms, first_index, (TIME_RANGE[0] // 1000, TIME_RANGE[1] // 1000), whole=False)
    if t_ms.dtype.kind == "f":
        return np.rint(t_ms * 1000).astype(np.int64)
    return t_ms.astype(np.int64) * 1000


def checked_events(path, x, y, t, p, first_index: int = 0) -> np.ndarray:
    """Canonical events from four columns, each value checked first (see ``check_values``)."""
    for name, values in (("x", x), ("y", y)):
        check_values(path, name, values, first_index, COORDINATE_RANGE)
    check_values(path, "t", t, first_index, TIME_RANGE)
    check_values(path, "p", p, first_index, whole=False)
    return make_events(x, y, t, p > 0)


# ------------------------------------------------------------------------------------------------ numpy arrays

class _Layout:
    """How one numpy array holds events: a structured array (x, y, t|timestamp, p|polarity) or tonic's table."""

    def __init__(self, path, array: np.ndarray):
        self.path = path
        names = array.dtype.names or ()
        self.tonic = not names
        if self.tonic:
            if array.ndim != 2 or array.shape[1] != 4 or array.dtype.kind not in _NUMBER_KINDS:
                raise EventFileError(path, f"holds an array of dtype {array.dtype} and shape {array.shape}, not events")
            return
        self.t_name, self.p_name = ("timestamp", "polarity") if {"timestamp", "polarity"} <= set(names) else ("t", "p")
        fields = ["x", "y", self.t_name, self.p_name]
        if (not set(fields) <= set(names) or array.ndim != 1
                or any(array.dtype[f].shape or array.dtype[f].kind not in _NUMBER_KINDS for f in fields)):
            raise EventFileError(path, f"holds an array of dtype {array.dtype} and shape {array.shape}, not events")

    def column(self, rows: np.ndarray, name: str) -> np.ndarray:
        if self.tonic:
            return rows[:, "xypt".index(name)]
        return rows[{"t": self.t_name, "p": self.p_name}.get(name, name)]

    def times(self, rows: np.ndarray, first_index: int) -> np.ndarray:
        """The rows' times as int64 microseconds, checked (a view where they already are)."""
        if self.tonic:
            return _tonic_times_us(self.path, self.column(rows, "t"), first_index)
        times = np.asarray(self.column(rows, "t"))
        check_values(self.path, "t", times, first_index, TIME_RANGE)
        return times if times.dtype == np.int64 else times.astype(np.int64)

    def events(self, rows: np.ndarray, first_index: int) -> np.ndarray:
        """Rows as canonical events, checked: a view where the layout already is masnn's, else a copy."""
        x, y, p = (self.column(rows, k) for k in "xyp")
        if self.tonic:
            return checked_events(self.path, x, y, _tonic_times_us(self.path, self.column(rows, "t"), first_index), p,
                                  first_index)
        for name in "xytp":  # the dtype alone clears the common layouts without a scan
            check_values(self.path, name, self.column(rows, name), first_index,
                         {"x": COORDINATE_RANGE, "y": COORDINATE_RANGE, "t": TIME_RANGE}.get(name), whole=name != "p")
        return as_events(rows)


class _ArrayRecording(Recording):
    """A recording whose events sit in one (possibly memory-mapped) array."""

    format = ""
    _stored_size: tuple[int, int] | None = None  # a size the file itself records

    def __init__(self, path: Path, sensor_size: tuple[int, int] | None = None):
        self._path = path
        self._rows, self._layout = self._load(path, sensor_size is None)
        n = len(self._rows)
        sensor_size = sensor_size or self._stored_size
        if sensor_size is None:
            sensor_size = (128, 128) if n == 0 else self._inferred_size()
        time_range = self._checked_time_range() if n else None
        self.info = RecordingInfo(str(path), self.format, sensor_size[0], sensor_size[1], "", time_range)

    def _load(self, path, size_needed: bool) -> tuple[np.ndarray, _Layout]:
        raise NotImplementedError

    def _inferred_size(self) -> tuple[int, int]:
        """The smallest common sensor holding every coordinate (each checked); refused beyond the largest."""
        extent = []
        for name in "xy":
            values = self._layout.column(self._rows, name)
            check_values(self._path, name, values, 0, COORDINATE_RANGE)
            extent.append(int(np.argmax(values)))
        max_x, max_y = (int(self._layout.column(self._rows[i : i + 1], k)[0]) for i, k in zip(extent, "xy"))
        size = sensor_from_extent(max_x, max_y)
        if size is None:
            name, i, value = ("x", extent[0], max_x) if max_x >= COMMON_SENSORS[-1][0] else ("y", extent[1], max_y)
            largest = "x".join(map(str, COMMON_SENSORS[-1]))
            raise EventFileError(self._path, f"event {i} has {name}={value}, beyond the largest common sensor ({largest}); "
                                 "the file states no size: give the sensor size if the camera really is that large")
        return size

    def _checked_time_range(self) -> tuple[int, int]:
        """(first, last) event time, every time checked first (a whole number, no jump forward): what commands plan
        from the range (frames to allocate, windows to walk) is then bounded by real time. One pass, a block at a
        time. Steps back are left to the streaming checks, which name them where they are met."""
        first = previous = None
        for offset in range(0, len(self._rows), TIME_SCAN_ROWS):
            times = self._layout.times(self._rows[offset : offset + TIME_SCAN_ROWS], offset)
            i = first_jump(times) if previous is None else first_jump(times, previous)
            if i >= 0:
                before = int(times[i - 1]) if i > 0 else previous
                raise EventFileError(self._path, describe_time_fault(offset + i, int(times[i]), before))
            first = int(times[0]) if first is None else first
            previous = int(times[-1])
        return first, previous

    def _time_at(self, i: int) -> int:
        return int(self._layout.events(self._rows[i : i + 1], i)["t"][0])

    def _chunks(self, start, end, chunk_events=DEFAULT_CHUNK_EVENTS):
        n = len(self._rows)
        # Binary search on the stored times: a selection decodes only its own rows.
        lo = 0 if start is None else bisect.bisect_left(range(n), start, key=self._time_at)
        hi = n if end is None else bisect.bisect_left(range(n), end, key=self._time_at)
        for k, block in enumerate(chunked(self._rows[lo:hi], chunk_events)):
            yield self._layout.events(np.asarray(block), lo + k * chunk_events)


class NpyRecording(_ArrayRecording):
    format = "numpy .npy"

    def _load(self, path, size_needed):
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except Exception as e:  # noqa: BLE001 (numpy's header parser also lets tokenizer and syntax errors out)
            raise EventFileError(path, f"is not a readable .npy file ({_describe_error(e)})") from None
        return array, _Layout(path, array)


class NpzRecording(_ArrayRecording):
    format = "numpy .npz"

    def _load(self, path, size_needed):
        contents = _read_npz(path)
        if size_needed and "sensor_size" in contents:
            self._stored_size = _stored_sensor_size(path, contents["sensor_size"])
        if "events" in contents:
            return contents["events"], _Layout(path, contents["events"])
        if {"x", "y", "t", "p"} <= contents.keys():
            columns = [contents[k] for k in "xytp"]
            if any(c.ndim != 1 for c in columns) or len({len(c) for c in columns}) > 1:
                shapes = ", ".join(f"{k} {c.shape}" for k, c in zip("xytp", columns))
                raise EventFileError(path, f"has x/y/t/p arrays of unequal or not 1-D shapes ({shapes})")
            events = checked_events(path, *columns)
            return events, _Layout(path, events)
        raise EventFileError(path, f"has no 'events' array nor x/y/t/p arrays (holds {sorted(contents)})")


def _read_npz(path) -> dict[str, np.ndarray]:
    """Every array of an .npz, read whole; any damage (zip, zlib, numpy header) is one EventFileError."""
    try:
        with zipfile.ZipFile(path) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
    except Exception as e:  # noqa: BLE001 (zipfile raises several types for a damaged directory)
        raise _unreadable_npz(path, e) from None
    if unpacked > _memory_budget():
        raise EventFileError(path, f"unpacks to {unpacked / 2**30:.1f} GB, more than half this machine's memory "
                             "(an .npz is read whole; save long recordings as .npy, which is streamed)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except Exception as e:  # noqa: BLE001 (zipfile, zlib and numpy's parser each raise their own types)
        raise _unreadable_npz(path, e) from None


def _unreadable_npz(path, error: Exception) -> EventFileError:
    return EventFileError(path, f"is not a readable .npz file ({_describe_error(error)})")


def _memory_budget() -> int:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2
    except (ValueError, OSError):
        return 8 << 30


def _stored_sensor_size(path, stored: np.ndarray) -> tuple[int, int]:
    """'sensor_size' as (width, height); tonic's (width, height, polarities) is accepted too."""
    if stored.ndim != 1 or len(stored) not in (2, 3) or stored.dtype.kind not in "iuf":
        raise EventFileError(path, f"'sensor_size' must be (width, height), not {stored.tolist()!r}")
    return stated_sensor_size(path, stored[0].item(), stored[1].item(), "'sensor_size'")


def _fits_int64(word: bytes) -> bool:
    try:
        return TIME_RANGE[0] <= int(word) < TIME_RANGE[1]
    except ValueError:
        return True  # not a number at all: reported as a malformed line


def _describe_error(error: Exception) -> str:
    """'type: first line of the message', the type with its module unless built in (zlib.error)."""
    kind = type(error)
    name = kind.__name__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    text = str(error).strip()
    return f"{name}: {text.splitlines()[0]}" if text else name


# -------------------------------------------------------------------------------------------------------- text

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
                table = self._parse(lines, line_no)
                events = checked_events(self.info.path, table[:, 1], table[:, 2], table[:, 0], table[:, 3], line_no)
                line_no += len(lines)
                if end is not None and len(events) and events["t"][0] >= end:
                    return
                yield events

    def _parse(self, lines: list[bytes], line_no: int) -> np.ndarray:
        fields = [line.split() for line in lines]
        bad = next((i for i, row in enumerate(fields) if len(row) != 4), None)
        if bad is None:
            try:
                return np.array(fields, dtype=np.int64)
            except ValueError:
                bad = next(i for i, line in enumerate(lines) if not _TEXT_LINE.match(line))
            except OverflowError:
                bad = next((i for i, row in enumerate(fields) if not all(_fits_int64(v) for v in row)), 0)
                raise EventFileError(self.info.path, f"line {line_no + bad + 1} holds a number beyond 64 bits: "
                                     f"{lines[bad][:60]!r}") from None
        raise EventFileError(self.info.path, f"line {line_no + bad + 1} is not 't x y p': {lines[bad][:60]!r}")
