"""AEDAT 4.0 (iniVation DV: DVXplorer, DAVIS, DVS128 with DV) through dv-processing.

Only the event stream is read; frames, IMU and triggers are ignored. Time selection uses the file's
packet index (getEventsTimeRange), so packets outside the selection are never decompressed.
"""
from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np

from .events import EventFileError, RecordingInfo, TruncatedRecordingWarning, as_events
from .readers import DEFAULT_CHUNK_EVENTS, Recording

MAGIC = b"#!AER-DAT4.0"
SELECTION_STEP_US = 50_000  # first window of a time selection; later windows adapt to the event rate


def sniff(head: bytes) -> bool:
    return head.startswith(MAGIC)


class Aedat4Recording(Recording):
    def __init__(self, path: Path, sensor_size: tuple[int, int] | None = None):
        import dv_processing as dv

        self._alias_dir = None
        try:
            self._reader = dv.io.MonoCameraRecording(self._dv_readable_name(path))
        except RuntimeError as e:
            raise EventFileError(path, f"cannot be opened as AEDAT 4.0 ({_first_line(e)})") from None
        if not self._reader.isEventStreamAvailable():
            raise EventFileError(path, "AEDAT 4.0 file has no event stream")
        width, height = sensor_size or self._reader.getEventResolution()
        first, last = self._reader.getTimeRange()
        self.info = RecordingInfo(
            str(path), "AEDAT 4.0", int(width), int(height), self._reader.getCameraName(), (int(first), int(last))
        )

    def _dv_readable_name(self, path: Path) -> str:
        """dv-processing opens only names ending in .aedat4; the format was chosen by content, so a file
        named otherwise is opened through a symbolic link that has that ending."""
        if path.suffix.lower() == ".aedat4":
            return str(path)
        self._alias_dir = tempfile.TemporaryDirectory(prefix="masnn-")
        alias = Path(self._alias_dir.name) / "recording.aedat4"
        alias.symlink_to(path.resolve())
        return str(alias)

    def close(self) -> None:
        self._reader = None
        if self._alias_dir is not None:
            self._alias_dir.cleanup()
            self._alias_dir = None

    def _chunks(self, start, end, chunk_events=DEFAULT_CHUNK_EVENTS):
        if start is None and end is None:
            yield from self._sequential(chunk_events)
        else:
            yield from self._selection(start, end, chunk_events)

    def _sequential(self, chunk_events):
        """Yields dv-processing's packets as they come, each a view on its memory (no copy).

        Gathering packets into bigger chunks would copy them into fresh memory, which costs more than
        the decode. A read-ahead thread does not help either: dv-processing decodes holding the GIL.
        """
        self._reader.resetSequentialRead()
        while True:
            try:
                batch = self._reader.getNextEventBatch()
            except RuntimeError as e:
                warnings.warn(
                    TruncatedRecordingWarning(f"{self.info.path}: stops decoding ({_first_line(e)}); kept the events before it"),
                    stacklevel=3,
                )
                return
            if batch is None:
                if not self._reader.isRunning():
                    return
                continue
            events = as_events(batch.numpy())
            for begin in range(0, len(events), chunk_events):
                yield events[begin : begin + chunk_events]

    def _selection(self, start, end, chunk_events):
        first, last = self.info.time_range
        cursor = first if start is None else max(start, first)
        stop = last + 1 if end is None else min(end, last + 1)
        step = SELECTION_STEP_US
        while cursor < stop:
            window_end = min(cursor + step, stop)
            store = self._reader.getEventsTimeRange(int(cursor), int(window_end))
            if store is not None and store.size():
                events = as_events(store.numpy())
                yield events
                # aim the next window at about chunk_events events
                step = int(np.clip(step * chunk_events / len(events), 1_000, 60_000_000))
            else:
                step = min(step * 4, 60_000_000)
            cursor = window_end


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
