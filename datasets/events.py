"""The canonical event record shared by every reader, transform and the live pipeline.

Field names follow tonic (x, y, t, p). The memory layout (t at byte 0, x at 8, y at 10, p at 12,
16 bytes a record) is the one dv-processing's EventStore.numpy() and expelliarmus produce, so their
arrays become ours with a zero-copy ``view`` instead of a per-field copy.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numba
import numpy as np

EVENT_DTYPE = np.dtype(
    {
        "names": ["x", "y", "t", "p"],
        "formats": ["<i2", "<i2", "<i8", "u1"],
        "offsets": [8, 10, 0, 12],
        "itemsize": 16,
    }
)

# The last-event time of a pixel that has not fired: far enough back for any filter or refractory period.
NEVER_FIRED = np.iinfo(np.int64).min // 2


class EventFileError(Exception):
    """A recording that cannot be read. ``str()`` is one line naming the file and the fault."""

    def __init__(self, path: str | Path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class TruncatedRecordingWarning(UserWarning):
    """A recording ended mid-record; the events before the fault were kept."""


@dataclass(frozen=True)
class RecordingInfo:
    """What a reader knows about a recording before decoding its events.

    Timestamps are microseconds in the recording's own timebase (absolute: Unix time for AEDAT4,
    the device clock for AEDAT 2.0/3.1, which is also the timebase of DVS128 Gesture's label files).
    ``time_range`` is (first, last) event time when the format tells it without a full decode.
    """

    path: str
    format: str
    width: int
    height: int
    camera: str = ""
    time_range: tuple[int, int] | None = None

    @property
    def sensor_size(self) -> tuple[int, int]:
        return (self.width, self.height)


def empty_events(n: int = 0) -> np.ndarray:
    return np.zeros(n, dtype=EVENT_DTYPE)


def make_events(x, y, t, p) -> np.ndarray:
    """Builds a canonical event array from four equally long sequences (copies them)."""
    t = np.asarray(t)
    events = np.zeros(t.shape[0], dtype=EVENT_DTYPE)
    events["x"] = x
    events["y"] = y
    events["t"] = t
    events["p"] = p
    return events


def as_events(array: np.ndarray) -> np.ndarray:
    """Returns ``array`` as canonical events: a view where the layout already matches, else a copy.

    Accepts any structured array with fields x, y, t, p, or dv-processing's timestamp/polarity names.
    """
    if array.dtype == EVENT_DTYPE:
        return array
    names = array.dtype.names or ()
    if "timestamp" in names and "polarity" in names:
        t_name, p_name = "timestamp", "polarity"
    elif {"x", "y", "t", "p"} <= set(names):
        t_name, p_name = "t", "p"
    else:
        raise ValueError(f"events need fields x, y, t, p; got {names}")
    fields = array.dtype.fields
    if (
        array.dtype.itemsize == 16
        and fields[t_name][1] == 0 and fields[t_name][0] == np.dtype("<i8")
        and fields["x"][1] == 8 and fields["x"][0] == np.dtype("<i2")
        and fields["y"][1] == 10 and fields["y"][0] == np.dtype("<i2")
        and fields[p_name][1] == 12 and fields[p_name][0].itemsize == 1
    ):
        return array.view(EVENT_DTYPE)
    return make_events(array["x"], array["y"], array[t_name], array[p_name] > 0)


def concatenate(chunks: list[np.ndarray]) -> np.ndarray:
    # without dtype=, numpy 2 packs the fields into a new 13-byte layout
    return np.concatenate(chunks, dtype=EVENT_DTYPE) if chunks else empty_events()


@numba.njit(cache=True, nogil=True)
def first_fault(events, width, height, previous_t):
    """Index of the first event outside the width x height sensor or earlier than its predecessor
    (``previous_t`` before the first); -1 if none."""
    for i in range(events.shape[0]):
        e = events[i]
        if np.uint32(np.int32(e.x)) >= width or np.uint32(np.int32(e.y)) >= height or e.t < previous_t:
            return i
        previous_t = e.t
    return -1
