"""AEDAT 4.0 event packets decoded without dv-processing, for the whole-file read that framing does.

Why: dv-processing decodes holding the GIL, so nothing overlaps its decode in-process. Here one compiled call
per batch of packets decompresses them (liblz4, see ``lz4_frame``), copies their events into one array and
checks them, all without the GIL, so two threads decode the next batches while the caller frames this one.
Files compressed with LZ4 (DV's default; where liblz4 is found) or not at all are decoded here; others are
left to dv-processing.

Layout (iniVation's AEDAT 4.0 format): "#!AER-DAT4.0\\r\\n", an int32 length and an IOHeader flatbuffer
(compression, dataTablePosition, infoNode: an XML tree naming each stream and its type), then packets: an
int32 stream id, an int32 size and that many bytes of a compressed, size-prefixed flatbuffer. An events
packet ("EVTS") is a table whose first field is a vector of 16-byte structs: int64 t (absolute us),
int16 x, int16 y, bool on, 3 bytes of padding. The file data table at dataTablePosition ends the packets.
"""
from __future__ import annotations

import mmap
import struct
import sys
import threading
import xml.etree.ElementTree as ElementTree
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

import numba
import numpy as np

from masnn.datasets.events import EVENT_DTYPE, first_fault
from masnn.datasets.io import lz4_frame

AEDAT4_MAGIC = b"#!AER-DAT4.0\r\n"
NONE, LZ4, LZ4_HIGH, ZSTD, ZSTD_HIGH = range(5)
EVENT_BYTES = 16  # an event in a packet: masnn's EVENT_DTYPE has the same layout
DECODED_HERE = (NONE, LZ4, LZ4_HIGH) if lz4_frame.AVAILABLE else (NONE,)
DECODE_THREADS = 2
BATCH_BYTES = 1 << 20  # compressed bytes handed to a decoding thread at once
READ_AHEAD_BATCHES = 3
SCRATCH_BYTES = 1 << 20  # a decompressed packet, before its events are copied out; grown when too small
OUT_BYTES = 4 << 20  # a batch's events; a batch that decompresses to more fills several


class PacketError(ValueError):
    """A packet or header that cannot be decoded; the message says what is wrong."""


@dataclass(frozen=True)
class Header:
    compression: int
    data_table_position: int  # where the packets end; -1 when the recording was interrupted before writing it
    packets_start: int
    event_stream: int | None  # id of the first "EVTS" stream
    sensor_size: tuple[int, int] | None
    camera: str


def _field_positions(buffer: bytes, table: int) -> list[int]:
    """Absolute positions of a flatbuffer table's fields, 0 for a field left at its default."""
    vtable = table - struct.unpack_from("<i", buffer, table)[0]
    vtable_size = struct.unpack_from("<H", buffer, vtable)[0]
    offsets = struct.unpack_from(f"<{(vtable_size - 4) // 2}H", buffer, vtable + 4)
    return [table + offset if offset else 0 for offset in offsets]


def _follow(buffer: bytes, position: int) -> int:
    return position + struct.unpack_from("<I", buffer, position)[0]


def read_header(file: BinaryIO) -> Header:
    file.seek(0)
    if file.read(len(AEDAT4_MAGIC)) != AEDAT4_MAGIC:
        raise PacketError("not an AEDAT 4.0 file")
    try:
        (size,) = struct.unpack("<i", file.read(4))
        buffer = file.read(max(size, 0))
        if size <= 0 or len(buffer) < size:
            raise struct.error(f"a header of {size} bytes, {len(buffer)} present")
        fields = _field_positions(buffer, _follow(buffer, 0)) + [0, 0, 0]
        compression = struct.unpack_from("<i", buffer, fields[0])[0] if fields[0] else NONE
        table_position = struct.unpack_from("<q", buffer, fields[1])[0] if fields[1] else -1
        info = _follow(buffer, fields[2]) if fields[2] else 0
        xml = buffer[info + 4 : info + 4 + struct.unpack_from("<I", buffer, info)[0]].decode() if info else ""
    except (struct.error, IndexError, UnicodeDecodeError) as e:
        raise PacketError(f"unreadable file header ({e})") from None
    if compression not in (NONE, LZ4, LZ4_HIGH, ZSTD, ZSTD_HIGH):
        raise PacketError(f"unknown compression {compression}")
    return Header(compression, table_position, len(AEDAT4_MAGIC) + 4 + size, *_event_stream(xml))


def _event_stream(xml: str) -> tuple[int | None, tuple[int, int] | None, str]:
    """(id, (width, height), camera) of the first "EVTS" stream in the header's XML."""
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError:
        return None, None, ""
    for node in root.iter("node"):
        types = [attr.text for attr in node.findall("attr") if attr.get("key") == "typeIdentifier"]
        if types == ["EVTS"] and node.get("name", "").isdigit():
            info = {attr.get("key"): attr.text for attr in node.findall("node[@name='info']/attr")}
            try:
                size = (int(info["sizeX"]), int(info["sizeY"]))
            except (KeyError, TypeError, ValueError):
                size = None
            return int(node.get("name")), size, info.get("source") or ""
    return None, None, ""


_memcpy = numba.types.ExternalFunction("memcpy", numba.types.uintp(*[numba.types.uintp] * 3))  # addresses as integers
# _decode_packets' outcomes
DECODED, CORRUPT, NOT_EVENTS, MALFORMED, CUT_SHORT, SCRATCH_FULL, OUT_FULL = range(7)
FAULTS = {
    CORRUPT: "a packet does not decompress (corrupt LZ4 data)",
    NOT_EVENTS: "an events packet without the EVTS identifier",
    MALFORMED: "malformed events packet",
    CUT_SHORT: "an events packet claims more events than it holds",
}


@numba.njit(cache=True, nogil=True)
def _unsigned(buffer, position, size):
    """The little-endian unsigned integer of ``size`` bytes at ``position``."""
    value = 0
    for i in range(size):
        value |= np.int64(buffer[position + i]) << (8 * i)
    return value


@numba.njit(cache=True, nogil=True)
def _events_vector(packet, n):
    """(status, first byte, count) of the events in a decompressed packet's first n bytes: a size prefix, then
    a flatbuffer whose root table's first field is the events vector. Every offset is checked before it is
    followed, so a corrupt packet cannot send the reads outside the packet."""
    if n < 12:
        return MALFORMED, 0, 0
    if packet[8] != ord("E") or packet[9] != ord("V") or packet[10] != ord("T") or packet[11] != ord("S"):
        return NOT_EVENTS, 0, 0
    root = 4 + _unsigned(packet, 4, 4)
    if root + 4 > n:
        return MALFORMED, 0, 0
    vtable = root - np.int64(np.int32(_unsigned(packet, root, 4)))
    if vtable < 4 or vtable + 4 > n:
        return MALFORMED, 0, 0
    if _unsigned(packet, vtable, 2) < 6:
        return DECODED, 0, 0  # no field: no events
    if vtable + 6 > n:
        return MALFORMED, 0, 0
    field_offset = _unsigned(packet, vtable + 4, 2)
    if field_offset == 0:
        return DECODED, 0, 0
    field = root + field_offset
    if field + 4 > n:
        return MALFORMED, 0, 0
    vector = field + _unsigned(packet, field, 4)
    if vector + 4 > n:
        return MALFORMED, 0, 0
    count = _unsigned(packet, vector, 4)
    if vector + 4 + count * EVENT_BYTES > n:
        return CUT_SHORT, 0, count
    return DECODED, vector + 4, count


@numba.njit(cache=True, nogil=True)
def _decode_packets(file, offsets, sizes, context, scratch, out, out_events, width, height):
    """Decodes the packets file[offsets[k] : offsets[k] + sizes[k]] in order, their events one after another
    into ``out`` (``out_events``: the same memory as events). LZ4 frames with ``context`` (a liblz4 context's
    address), uncompressed with None (numba then compiles a version without liblz4). Returns (status, packets
    decoded, events written, whether those are in time order and inside width x height). Stops at a fault, or
    before a packet that fills ``scratch`` or does not fit ``out``; all without the GIL."""
    sizes_io = np.empty(2, np.uintp)  # LZ4F_decompress' in-out sizes: output then input
    written, checked, previous = 0, True, np.iinfo(np.int64).min
    for k in range(offsets.shape[0]):
        if context is not None:
            sizes_io[0], sizes_io[1] = scratch.shape[0], sizes[k]
            status = lz4_frame.lz4f_decompress(context, scratch.ctypes.data, sizes_io.ctypes.data,
                                               file.ctypes.data + np.uintp(offsets[k]), sizes_io.ctypes.data + 8, 0)
            if status != 0 or sizes_io[1] != sizes[k]:
                full = status > 0 and sizes_io[0] == scratch.shape[0]
                return (SCRATCH_FULL if full else CORRUPT), k, written, checked
            status, start, count = _events_vector(scratch, sizes_io[0])
            source = scratch.ctypes.data + np.uintp(start)
        else:
            status, start, count = _events_vector(file[offsets[k] : offsets[k] + sizes[k]], sizes[k])
            source = file.ctypes.data + np.uintp(offsets[k] + start)
        if status != DECODED:
            return status, k, written, checked
        if (written + count) * EVENT_BYTES > out.shape[0]:
            return OUT_FULL, k, written, checked
        # libc's memcpy: numba copies an array slice byte by byte, and that took as long as the decompression
        _memcpy(out.ctypes.data + np.uintp(written * EVENT_BYTES), source, np.uintp(count * EVENT_BYTES))
        if checked and count:  # while the events are in cache
            checked = first_fault(out_events[written : written + count], width, height, previous) < 0
            previous = out_events[written + count - 1].t
        written += count
    return DECODED, offsets.shape[0], written, checked


class _RecycledBuffers:
    """Memory for decoded batches, reused once the caller holds no view on it.

    Why: a new buffer per batch is new memory from the system, and faulting its pages in cost a fifth of the
    decode. Every view on a buffer refers to it, so a buffer that only this pool refers to is free again. At
    most ``keep`` are pooled; more (a caller keeping many batches) are left to the garbage collector.
    """

    def __init__(self, keep: int):
        self._buffers: list[np.ndarray] = []
        self._keep = keep
        self._lock = threading.Lock()

    def take(self, size: int) -> np.ndarray:
        with self._lock:
            for buffer in self._buffers:
                # referred to by the list, the loop's name and getrefcount's argument: nothing else holds it
                if buffer.size >= size and sys.getrefcount(buffer) <= 3:
                    return buffer
            buffer = np.empty(-(-size // BATCH_BYTES) * BATCH_BYTES, np.uint8)
            if len(self._buffers) < self._keep:
                self._buffers.append(buffer)
            return buffer


def _decode_batch(file, offsets, sizes, compressed, sensor_size, buffers) -> tuple[list[tuple[np.ndarray, bool]], PacketError | None]:
    """A batch of packets' events as (events, checked) arrays, and the fault that stopped it (None: all decoded)."""
    arrays, first, scratch_bytes, out_bytes = [], 0, SCRATCH_BYTES, OUT_BYTES
    while first < len(offsets):
        scratch = buffers.take(scratch_bytes) if compressed else np.empty(0, np.uint8)
        out = buffers.take(out_bytes)
        with lz4_frame.DecompressionContext() if compressed else nullcontext() as context:
            status, decoded, written, checked = _decode_packets(
                file, offsets[first:], sizes[first:], context.address if compressed else None, scratch, out,
                out.view(EVENT_DTYPE), *sensor_size)
        if written:
            events = out[: written * EVENT_BYTES].view(EVENT_DTYPE)
            events.flags.writeable = False
            arrays.append((events, checked))
        first += decoded
        if status == SCRATCH_FULL:
            scratch_bytes *= 4
        elif status == OUT_FULL:
            out_bytes = out_bytes if decoded else 2 * out_bytes  # one packet larger than the buffer
        elif status != DECODED:
            return arrays, PacketError(FAULTS[status])
    return arrays, None


def _event_packet_places(data, header: Header) -> Iterator[tuple[int, int]]:
    """(offset, size) of each events packet's body in the file's bytes; PacketError where a packet is cut."""
    end = len(data) if header.data_table_position <= 0 else min(header.data_table_position, len(data))
    position = header.packets_start
    while position < end:
        if position + 8 > len(data):
            raise PacketError(f"a packet header cut short at byte {position}")
        stream, size = struct.unpack_from("<ii", data, position)
        if size < 0:
            raise PacketError(f"a packet of negative size at byte {position}")
        if position + 8 + size > len(data):
            raise PacketError(f"the packet at byte {position} is cut short ({len(data) - position - 8} of {size} bytes)")
        if stream == header.event_stream:
            yield position + 8, size
        position += 8 + size


def iter_event_batches(path: str | Path, sensor_size: tuple[int, int], header: Header | None = None) -> Iterator[tuple[np.ndarray, bool]]:
    """The file's events in order, in arrays of several packets each (EVENT_DTYPE, read-only), each with
    whether it was found in time order and inside ``sensor_size`` (width, height) while decoding; False leaves
    the check, and saying what is wrong, to the caller.

    DECODE_THREADS threads decode batches of packets, up to READ_AHEAD_BATCHES ahead of the caller. Raises
    PacketError at the first fault, after yielding every event before it, and for a compression not in
    DECODED_HERE. ``header``: the file's, when the caller has read it already.
    """
    with open(path, "rb") as file:
        header = header or read_header(file)
        if header.event_stream is None:
            return
        if header.compression not in DECODED_HERE:
            raise PacketError(f"compression {header.compression} is not decoded here")
        data = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
    file_bytes = np.frombuffer(data, np.uint8)
    compressed = header.compression != NONE
    buffers = _RecycledBuffers(keep=2 * (READ_AHEAD_BATCHES + DECODE_THREADS + 1))
    with ThreadPoolExecutor(DECODE_THREADS, thread_name_prefix="masnn-aedat4") as pool:
        pending, batch, batch_bytes, read_fault = deque(), [], 0, None

        def submit():
            nonlocal batch, batch_bytes
            offsets, sizes = np.array(batch, np.int64).reshape(-1, 2).T
            pending.append(pool.submit(_decode_batch, file_bytes, offsets, sizes, compressed, sensor_size, buffers))
            batch, batch_bytes = [], 0

        def collect():
            arrays, fault = pending.popleft().result()
            yield from arrays
            if fault is not None:
                raise fault

        places = _event_packet_places(data, header)
        while True:
            try:
                offset, size = next(places)
            except StopIteration:
                break
            except PacketError as e:
                read_fault = e  # the file cuts a packet short: the events before it are still yielded
                break
            # batches of packets: one hand-over per batch costs far less than one per packet
            batch.append((offset, size))
            batch_bytes += size
            if batch_bytes >= BATCH_BYTES:
                submit()
            if len(pending) > READ_AHEAD_BATCHES:
                yield from collect()
        if batch:
            submit()
        while pending:
            yield from collect()
        if read_fault is not None:
            raise read_fault
