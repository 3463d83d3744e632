"""AEDAT 4.0 (iniVation DV: DVXplorer, DAVIS, DVS128 with DV).

Nothing reaches a decoder unchecked. The header is read and checked first (``aedat4_header``). A file
compressed with LZ4 or not at all (DECODED_HERE) is then decoded here alone, from its packet table when that
checks out (``aedat4_table``): the time range comes from the table, confirmed by decoding the first and last
packets that hold events, and a time selection decompresses only the packets the table places in it.
Without a usable table (a recording cut short or interrupted) the packets are read one after another from
the start. The packets themselves are decoded on two threads without the GIL (``aedat4_packets``), so the
next packets decompress, and are checked, while the caller frames this one.

Only files nothing else here can read (Zstandard, or LZ4 where no liblz4 is found) go to dv-processing, in a
child process with a time limit (``aedat4_dv``), since it can crash or spin on damaged input. Only the event
stream is read; frames, IMU and triggers are skipped.
"""
from __future__ import annotations

import mmap
import warnings
from pathlib import Path

import numpy as np

from masnn.datasets.events import EventFileError, RecordingInfo, TruncatedRecordingWarning, as_events
from masnn.datasets.io.aedat4_dv import run_dv_processing
from masnn.datasets.io.aedat4_header import AEDAT4_MAGIC, NO_TABLE, Header, HeaderError, PacketError, read_header
from masnn.datasets.io.aedat4_packets import DECODED_HERE, iter_event_batches
from masnn.datasets.io.aedat4_table import EventPackets, TableError, read_packet_table, scan_event_packets
from masnn.datasets.io.recording import DEFAULT_CHUNK_EVENTS, Recording, chunked


def sniff_aedat4(head: bytes) -> bool:
    return head.startswith(AEDAT4_MAGIC.rstrip())


class Aedat4Recording(Recording):
    def __init__(self, path: Path, sensor_size: tuple[int, int] | None = None):
        self._path = path
        file, self._header = _checked_header(path)
        size = sensor_size or self._header.sensor_size
        if size is None:
            raise EventFileError(path, "the header gives no sensor size (sizeX, sizeY) for the event stream")
        self._data = np.frombuffer(file, np.uint8)
        if self._decoded_here:
            self._packets, table_problem = _usable_table(self._data, self._header)
            time_range = self._time_range(size, table_problem)
            camera = self._header.camera
        else:
            self._packets, self._structure_fault = None, self._check_structure()
            dv_info = run_dv_processing(path, "info").info
            time_range, camera = tuple(dv_info["time_range"]), dv_info["camera"]
        self.info = RecordingInfo(str(path), "AEDAT 4.0", int(size[0]), int(size[1]), camera, time_range)

    @property
    def _decoded_here(self) -> bool:
        return self._header.compression in DECODED_HERE

    def _batches(self, packets: EventPackets | None, sensor_size=None):
        """(events, checked) of the given packets, or (None) of every event packet, found by reading the
        file from the start; PacketError at a fault."""
        if packets is None:
            rows = scan_event_packets(self._data, self._header)
        else:
            rows = zip(*(column.tolist() for column in packets.rows()))
        return iter_event_batches(self._data, sensor_size or self.info.sensor_size, self._header.compression, rows)

    def _time_range(self, sensor_size, table_problem: str) -> tuple[int, int] | None:
        """(first, last) event time: the first and last packets that the table says hold events, once they
        decode as it says; else what decoding everything up to the first fault finds."""
        if self._packets is not None:
            holding = self._packets.holding_events()
            if len(holding) == 0:
                return None  # reading the events says "no events", or where the table is wrong
            ends = self._packets.take(np.unique(holding[[0, -1]]))
            try:
                events = [batch for batch, _ in self._batches(ends, sensor_size)]
                return int(events[0]["t"][0]), int(events[-1]["t"][-1])
            except PacketError:
                pass  # a damaged first or last packet: the events before it are what can be read
        return self._scanned_time_range(sensor_size, table_problem)

    def _scanned_time_range(self, sensor_size, table_problem: str) -> tuple[int, int] | None:
        first = last = None
        try:
            for events, _ in self._batches(None, sensor_size):
                first = int(events["t"][0]) if first is None else first
                last = int(events["t"][-1])
        except PacketError as e:  # reading the events warns about it
            if first is None:
                raise EventFileError(self._path, f"AEDAT 4.0 file is damaged before its first event ({e})") from None
        else:
            if table_problem:
                warnings.warn(TruncatedRecordingWarning(
                    f"{self._path}: {table_problem}; its packets were read from the start"), stacklevel=5)
        return None if first is None else (first, last)

    def _check_structure(self) -> str:
        """What walking the packets' headers finds wrong (without decoding them: dv-processing does that),
        before dv-processing sees the file; "" where nothing is."""
        if self._header.table_problem:  # dv-processing would follow it outside the file
            raise EventFileError(self._path, self._header.table_problem)
        try:
            for _ in scan_event_packets(self._data, self._header):
                pass
        except PacketError as e:
            return str(e)
        if self._header.table_position == NO_TABLE:
            warnings.warn(TruncatedRecordingWarning(
                f"{self._path}: the recording ends without its packet index; it is read from the start"), stacklevel=4)
        return ""

    def close(self) -> None:
        self._data = None  # the mapping closes once no decoding thread holds it

    def _checked_chunks(self, start, end, chunk_events=DEFAULT_CHUNK_EVENTS):
        if not self._decoded_here:
            yield from self._dv_chunks(start, end, chunk_events)
            return
        if self._data is None:
            raise EventFileError(self._path, "the recording is closed")
        # a whole read walks the packets themselves, so a table wrong only in its counts or times costs
        # nothing there; a selection decodes only the packets the table places in it
        selecting = start is not None or end is not None
        selected = self._packets.overlapping(start, end) if selecting and self._packets is not None else None
        try:
            for batch, checked in self._batches(selected):
                if end is not None and selected is None and batch["t"][0] >= end:
                    return  # read from the start, without a table: nothing later is selected
                for chunk in chunked(batch, chunk_events):
                    yield chunk, checked
        except PacketError as e:
            self._warn_stopped(str(e))

    def _dv_chunks(self, start, end, chunk_events):
        outcome = run_dv_processing(self._path, "events", start, end)
        for chunk in chunked(as_events(outcome.events), chunk_events):
            yield chunk, False
        if outcome.fault is not None or self._structure_fault:
            self._warn_stopped(outcome.fault or self._structure_fault)

    def _warn_stopped(self, fault: str) -> None:
        warnings.warn(TruncatedRecordingWarning(f"{self._path}: stops decoding ({fault}); kept the events before it"),
                      stacklevel=4)


def _checked_header(path: Path) -> tuple[mmap.mmap, Header]:
    """The file mapped into memory, and its checked header; EventFileError where either fails."""
    try:
        with open(path, "rb") as file:
            data = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError) as e:  # ValueError: an empty file cannot be mapped
        raise EventFileError(path, f"cannot be read ({getattr(e, 'strerror', None) or e})") from None
    try:
        return data, read_header(data)
    except HeaderError as e:
        raise EventFileError(path, str(e)) from None


def _usable_table(data: np.ndarray, header: Header) -> tuple[EventPackets | None, str]:
    """The checked packet table, or None and why it cannot be used."""
    try:
        return read_packet_table(data, header), ""
    except TableError as e:
        return None, str(e)
