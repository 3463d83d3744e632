"""AEDAT 4.0 (iniVation DV: DVXplorer, DAVIS, DVS128 with DV).

dv-processing opens the file (resolution, camera, time range) and serves time selections through the file's
packet index (getEventsTimeRange), so packets outside a selection are never decompressed. The whole-file
read of an LZ4 or uncompressed file decodes the event packets itself (``aedat4_packets``): dv-processing holds
the GIL while it decodes, and that decoder does not, so the next packets decompress, and are checked, while
the caller frames this one. Only the event stream is read; frames, IMU and triggers are skipped.

A file dv-processing refuses because its end is missing (a recording cut short: no packet index, a packet cut
in two) is read by ``aedat4_packets`` alone, up to the fault, with a warning (LZ4 and uncompressed files).
"""
from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np

from masnn.datasets.events import EventFileError, RecordingInfo, TruncatedRecordingWarning, as_events
from masnn.datasets.io.aedat4_packets import AEDAT4_MAGIC, DECODED_HERE, PacketError, iter_event_batches, read_header
from masnn.datasets.io.recording import DEFAULT_CHUNK_EVENTS, Recording, chunked

SELECTION_STEP_US = 50_000  # first window of a time selection; later windows adapt to the event rate


def sniff_aedat4(head: bytes) -> bool:
    return head.startswith(AEDAT4_MAGIC.rstrip())


class Aedat4Recording(Recording):
    def __init__(self, path: Path, sensor_size: tuple[int, int] | None = None):
        import dv_processing as dv

        self._path, self._alias_dir = path, None
        try:
            with open(path, "rb") as file:
                self._header = read_header(file)
        except PacketError:
            self._header = None  # dv-processing says what is wrong
        try:
            self._reader = dv.io.MonoCameraRecording(self._dv_readable_name(path))
        except RuntimeError as e:
            self._reader = None
            self.info = self._salvage_info(path, self._header, sensor_size, _first_line(e))
            return
        if not self._reader.isEventStreamAvailable():
            raise EventFileError(path, "AEDAT 4.0 file has no event stream")
        width, height = sensor_size or self._reader.getEventResolution()
        first, last = self._reader.getTimeRange()
        self.info = RecordingInfo(
            str(path), "AEDAT 4.0", int(width), int(height), self._reader.getCameraName(), (int(first), int(last))
        )

    @property
    def _decoded_here(self) -> bool:
        return self._header is not None and self._header.compression in DECODED_HERE

    @staticmethod
    def _salvage_info(path: Path, header, sensor_size, dv_error: str) -> RecordingInfo:
        """What a file dv-processing cannot open still tells: its header, and the events before its fault."""
        if (header is None or header.compression not in DECODED_HERE or header.event_stream is None
                or (header.sensor_size or sensor_size) is None):
            raise EventFileError(path, f"cannot be opened as AEDAT 4.0 ({dv_error})")
        first = last = None
        width, height = sensor_size or header.sensor_size
        try:
            for events, _ in iter_event_batches(path, (width, height), header):
                first = int(events["t"][0]) if first is None else first
                last = int(events["t"][-1])
        except PacketError:
            pass  # reading the events warns about the fault
        else:
            warnings.warn(TruncatedRecordingWarning(
                f"{path}: dv-processing refuses the file ({dv_error}); its event packets were read without it"), stacklevel=4)
        if first is None:
            raise EventFileError(path, f"AEDAT 4.0 file is damaged before its first event ({dv_error})")
        return RecordingInfo(str(path), "AEDAT 4.0", int(width), int(height), header.camera, (first, last))

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

    def _checked_chunks(self, start, end, chunk_events=DEFAULT_CHUNK_EVENTS):
        if start is None and end is None:
            yield from self._sequential(chunk_events)
        elif self._reader is None:  # no packet index to seek with: decode from the start; chunks() cuts
            for events, checked in self._sequential(chunk_events):
                if end is not None and events["t"][0] >= end:
                    return
                yield events, checked
        else:
            for events in self._selection(start, end, chunk_events):
                yield events, False

    def _sequential(self, chunk_events):
        """Yields (events, checked) in file order: batches of packets decoded and checked here (see
        ``iter_event_batches``), or dv-processing's packets, unchecked."""
        try:
            if self._decoded_here:
                batches = iter_event_batches(self._path, (self.info.width, self.info.height), self._header)
            else:
                batches = ((packet, False) for packet in self._dv_packets())
            for batch, checked in batches:
                for chunk in chunked(as_events(batch), chunk_events):
                    yield chunk, checked
        except (PacketError, RuntimeError) as e:
            warnings.warn(
                TruncatedRecordingWarning(f"{self.info.path}: stops decoding ({_first_line(e)}); kept the events before it"),
                stacklevel=3,
            )

    def _dv_packets(self):
        self._reader.resetSequentialRead()
        while True:
            batch = self._reader.getNextEventBatch()
            if batch is None:
                if not self._reader.isRunning():
                    return
                continue
            yield batch.numpy()

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
