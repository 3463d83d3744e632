"""Where an AEDAT 4.0 file's event packets are: its packet table, checked, or a scan of the packets.

DV ends a complete recording with a packet table (a "FileDataTable" flatbuffer, compressed as the packets
are, from the header's dataTablePosition to the end of the file): one entry per packet, giving the byte
offset of its body, its stream and size, how many elements it holds and their first and last timestamps.
The table lets a time selection skip packets without decompressing them. A damaged table could send a
decoder anywhere, so it is used only if every entry checks out: the packets it lists tile the bytes between
the header and the table exactly, each packet's own header agrees, and the event packets' times never go
backwards. Decoding then checks each packet's events against its entry (``aedat4_packets``). Without a
usable table the packets are read one after another from the start (``scan_event_packets``).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import cached_property
from typing import Iterator

import numba
import numpy as np

from masnn.datasets.io import lz4_frame
from masnn.datasets.io.aedat4_header import LZ4, LZ4_HIGH, NO_TABLE, NONE, Header, PacketError

PACKET_HEADER_BYTES = 8  # int32 stream id, int32 size
ENTRY_BYTES_AT_MOST = 128  # a table entry with its vtable takes about 70 bytes
ANY_TIME = (np.iinfo(np.int64).min, np.iinfo(np.int64).max)
UNKNOWN_COUNT = -1


class TableError(ValueError):
    """A packet table that cannot be trusted; the message says why."""


@dataclass(frozen=True)
class EventPackets:
    """The event stream's packets as the packet table lists them, in file order: body offset and size, and
    how many events each holds between which times. All int64 arrays of one length."""

    offsets: np.ndarray
    sizes: np.ndarray
    counts: np.ndarray
    t_first: np.ndarray
    t_last: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets)

    def take(self, keep) -> EventPackets:
        return EventPackets(*(array[keep] for array in self.rows()))

    def rows(self) -> tuple[np.ndarray, ...]:
        return self.offsets, self.sizes, self.counts, self.t_first, self.t_last

    @cached_property
    def _holding(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        full = np.flatnonzero(self.counts > 0)
        return full, self.t_first[full], self.t_last[full]

    def holding_events(self) -> np.ndarray:
        """Indices of the packets the table says hold events (their times never go backwards)."""
        return self._holding[0]

    def overlapping(self, start: int | None, end: int | None) -> EventPackets:
        """The packets that may hold events with start <= t < end: those the table says are empty, or wholly
        outside, are left out without being decompressed."""
        full, t_first, t_last = self._holding
        low = 0 if start is None else int(np.searchsorted(t_last, start, "left"))
        high = len(full) if end is None else int(np.searchsorted(t_first, end, "left"))
        return self.take(full[low:max(low, high)])


def read_packet_table(data: np.ndarray, header: Header) -> EventPackets:
    """The event stream's packets from the file's packet table, every entry checked. Raises TableError."""
    if header.table_position == NO_TABLE:
        raise TableError(header.table_problem or "the recording ends without its packet index")
    table = _table_bytes(data, header)
    status, entries = _decode_table(np.frombuffer(table, np.uint8), _most_packets(header))
    if status:
        raise TableError(TABLE_FAULTS[status])
    offsets, streams, sizes, counts, t_first, t_last = entries
    _check_tiling(data, header, offsets, streams, sizes)
    events = streams == header.event_stream
    packets = EventPackets(offsets[events], sizes[events], counts[events], t_first[events], t_last[events])
    _check_event_times(packets)
    return packets


def _most_packets(header: Header) -> int:
    return (header.table_position - header.packets_start) // PACKET_HEADER_BYTES


def _table_bytes(data: np.ndarray, header: Header):
    """The table's flatbuffer (with its size prefix), decompressed; at most what that many packets need."""
    raw = data[header.table_position :]
    limit = ENTRY_BYTES_AT_MOST * (_most_packets(header) + 1) + 4096
    if header.compression == NONE:
        return raw
    if header.compression in (LZ4, LZ4_HIGH):
        try:
            return lz4_frame.decompress_frame(raw, limit)
        except lz4_frame.LZ4FrameError as e:
            raise TableError(f"the packet index does not decompress ({e})") from None
    raise TableError(f"a {header.compression_name} packet index is not decoded here")


TABLE_MALFORMED, TABLE_CUT_SHORT, TABLE_NOT_FTAB, TABLE_TOO_MANY = range(1, 5)
TABLE_FAULTS = {
    TABLE_MALFORMED: "the packet index is malformed (an offset points outside it)",
    TABLE_CUT_SHORT: "the packet index is cut short",
    TABLE_NOT_FTAB: "the packet index lacks its FTAB identifier",
    TABLE_TOO_MANY: "the packet index lists more packets than the file has room for",
}
ENTRY_FIELD_BYTES = np.array([8, 8, 8, 8, 8], np.int64)  # ByteOffset, PacketInfo, NumElements, TimestampStart, End
ROOT_FIELD_BYTES = np.array([4], np.int64)  # the vector of entries


@numba.njit(cache=True)
def _int(buffer, position, size):
    """The little-endian signed integer of ``size`` bytes at ``position`` (the caller checked the bounds)."""
    value = np.int64(0)
    for i in range(size):
        value |= np.int64(buffer[position + i]) << (8 * i)
    if size < 8 and value >= np.int64(1) << (8 * size - 1):
        value -= np.int64(1) << (8 * size)
    return value


@numba.njit(cache=True)
def _fields(buffer, table, end, widths, out):
    """Positions of a flatbuffer table's fields into ``out`` (0: left at its default); False where the table,
    its vtable or a field lies outside buffer[:end]."""
    if table < 4 or table + 4 > end:
        return False
    vtable = table - _int(buffer, table, 4)
    if vtable < 4 or vtable + 4 > end:
        return False
    vtable_size, table_size = _int(buffer, vtable, 2) & 0xFFFF, _int(buffer, vtable + 2, 2) & 0xFFFF
    if vtable_size < 4 or vtable + vtable_size > end or table + table_size > end:
        return False
    for i in range(widths.shape[0]):
        offset = _int(buffer, vtable + 4 + 2 * i, 2) & 0xFFFF if 4 + 2 * i + 2 <= vtable_size else 0
        if offset and offset + widths[i] > table_size:
            return False
        out[i] = table + offset if offset else 0
    return True


@numba.njit(cache=True)
def _decode_table(buffer, most_entries):
    """(status, (offsets, streams, sizes, counts, t_first, t_last)) of a size-prefixed FileDataTable."""
    empty = np.zeros(0, np.int64)
    nothing = (empty, empty, empty, empty, empty, empty)
    if buffer.shape[0] < 12:
        return TABLE_CUT_SHORT, nothing
    end = 4 + (_int(buffer, 0, 4) & 0xFFFFFFFF)
    if end > buffer.shape[0]:
        return TABLE_CUT_SHORT, nothing
    if buffer[8] != ord("F") or buffer[9] != ord("T") or buffer[10] != ord("A") or buffer[11] != ord("B"):
        return TABLE_NOT_FTAB, nothing
    root_fields = np.zeros(1, np.int64)
    if not _fields(buffer, 4 + (_int(buffer, 4, 4) & 0xFFFFFFFF), end, ROOT_FIELD_BYTES, root_fields):
        return TABLE_MALFORMED, nothing
    if root_fields[0] == 0:
        return 0, nothing  # no vector: no packets
    vector = root_fields[0] + (_int(buffer, root_fields[0], 4) & 0xFFFFFFFF)
    if vector + 4 > end:
        return TABLE_MALFORMED, nothing
    n = _int(buffer, vector, 4) & 0xFFFFFFFF
    if n > most_entries:
        return TABLE_TOO_MANY, nothing
    if vector + 4 + 4 * n > end:
        return TABLE_MALFORMED, nothing
    columns = np.zeros((6, n), np.int64)
    fields = np.zeros(5, np.int64)
    for k in range(n):
        slot = vector + 4 + 4 * k
        if not _fields(buffer, slot + (_int(buffer, slot, 4) & 0xFFFFFFFF), end, ENTRY_FIELD_BYTES, fields):
            return TABLE_MALFORMED, nothing
        if fields[1] == 0:  # PacketInfo has no default
            return TABLE_MALFORMED, nothing
        columns[0, k] = _int(buffer, fields[0], 8) if fields[0] else 0
        columns[1, k] = _int(buffer, fields[1], 4)
        columns[2, k] = _int(buffer, fields[1] + 4, 4)
        for column in range(3, 6):
            columns[column, k] = _int(buffer, fields[column - 1], 8) if fields[column - 1] else 0
    return 0, (columns[0], columns[1], columns[2], columns[3], columns[4], columns[5])


def _check_tiling(data, header: Header, offsets, streams, sizes) -> None:
    """The listed packets must fill the bytes from the header to the table exactly, one after another, and
    each packet's own header must say the same stream and size."""
    if len(offsets) == 0:
        if header.table_position != header.packets_start:
            raise TableError("the packet index lists no packets, but the file holds some")
        return
    if (sizes < 0).any():
        raise TableError("the packet index lists a packet of negative size")
    lowest, highest = header.packets_start + PACKET_HEADER_BYTES, header.table_position
    if not ((lowest <= offsets) & (offsets <= highest)).all():
        raise TableError("the packet index points outside the packets")
    ends = offsets + sizes
    if offsets[0] != header.packets_start + PACKET_HEADER_BYTES or ends[-1] != header.table_position:
        raise TableError("the packets listed in the packet index do not cover the file")
    gaps = np.flatnonzero(offsets[1:] != ends[:-1] + PACKET_HEADER_BYTES)
    if len(gaps):
        where = offsets[gaps[0] + 1] - PACKET_HEADER_BYTES
        raise TableError(f"the packet index lists a packet at byte {where} that does not follow the one before")
    stated_streams, stated_sizes = _packet_headers(data, offsets)
    disagree = np.flatnonzero((stated_streams != streams) | (stated_sizes != sizes))
    if len(disagree):
        raise TableError(f"the packet at byte {offsets[disagree[0]]} disagrees with the packet index")


@numba.njit(cache=True)
def _packet_headers(data, offsets):
    """(stream ids, sizes) in the headers of the packets whose bodies start at ``offsets`` (checked to lie
    after the file header)."""
    streams, sizes = np.empty_like(offsets), np.empty_like(offsets)
    for k in range(offsets.shape[0]):
        streams[k] = _int(data, offsets[k] - PACKET_HEADER_BYTES, 4)
        sizes[k] = _int(data, offsets[k] - PACKET_HEADER_BYTES + 4, 4)
    return streams, sizes


def _check_event_times(packets: EventPackets) -> None:
    if (packets.counts < 0).any():
        raise TableError("the packet index gives an events packet a negative event count")
    full = packets.holding_events()
    first, last = packets.t_first[full], packets.t_last[full]
    if (first > last).any() or (last[:-1] > first[1:]).any():
        raise TableError("the packet index gives event packets times that go backwards")


def scan_event_packets(data, header: Header) -> Iterator[tuple[int, int, int, int, int]]:
    """The event stream's packets read one after another from the start, as (offset, size, UNKNOWN_COUNT,
    *ANY_TIME); PacketError where a packet is cut short. Stops where the table starts if a packet ends
    exactly there, else at the end of the file: a table position that falls inside a packet is wrong, and
    the packets after it are still read."""
    position, size_of_file = header.packets_start, len(data)
    while position < size_of_file and position != header.table_position:
        if position + PACKET_HEADER_BYTES > size_of_file:
            raise PacketError(f"a packet header cut short at byte {position}")
        stream, size = struct.unpack_from("<ii", data, position)
        if size < 0:
            raise PacketError(f"a packet of negative size at byte {position}")
        body = position + PACKET_HEADER_BYTES
        if body + size > size_of_file:
            raise PacketError(f"the packet at byte {position} is cut short ({size_of_file - body} of {size} bytes)")
        if stream == header.event_stream:
            yield body, size, UNKNOWN_COUNT, *ANY_TIME
        position = body + size
