"""AEDAT 4.0 event packets decoded without dv-processing, for the whole-file read that framing does.

Why: dv-processing decodes holding the GIL, so nothing overlaps its decode in-process. Here one compiled call
per batch of packets decompresses them (liblz4, see ``lz4_frame``), copies their events into one array and
checks them, all without the GIL, so two threads decode the next batches while the caller frames this one.
Files compressed with LZ4 (DV's default; where liblz4 is found) or not at all are decoded here; others are
left to dv-processing.

Layout (iniVation's AEDAT 4.0 format): after the header (``aedat4_header``) come packets: an int32 stream id,
an int32 size and that many bytes of a compressed, size-prefixed flatbuffer. An events packet ("EVTS") is a
table whose first field is a vector of 16-byte structs: int64 t (absolute us), int16 x, int16 y, bool on,
3 bytes of padding. Which packets to decode, and what each should hold, comes from ``aedat4_table``. Every
offset inside a packet is checked before it is followed, a packet may not decompress to more than LZ4 can
make of its size, and its events must agree with its table entry (count, first and last time).
"""
from __future__ import annotations

import sys
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from typing import Iterable, Iterator

import numba
import numpy as np

from masnn.datasets.events import EVENT_DTYPE, first_fault
from masnn.datasets.io import lz4_frame
from masnn.datasets.io.aedat4_header import LZ4, LZ4_HIGH, NONE, PacketError
from masnn.datasets.io.aedat4_table import PACKET_HEADER_BYTES

EVENT_BYTES = 16  # an event in a packet: masnn's EVENT_DTYPE has the same layout
DECODED_HERE = (NONE, LZ4, LZ4_HIGH) if lz4_frame.AVAILABLE else (NONE,)
DECODE_THREADS = 2
BATCH_BYTES = 1 << 20  # compressed bytes handed to a decoding thread at once
READ_AHEAD_BATCHES = 3
SCRATCH_BYTES = 1 << 20  # a decompressed packet, before its events are copied out; grown when too small
OUT_BYTES = 4 << 20  # a batch's events; a batch that decompresses to more fills several
# LZ4 writes at most about 255 bytes per byte of input: a packet that decompresses to more is corrupt
LZ4_MOST_RATIO, LZ4_SLACK = 256, 1 << 16


_memcpy = numba.types.ExternalFunction("memcpy", numba.types.uintp(*[numba.types.uintp] * 3))  # addresses as integers
# _decode_packets' outcomes
DECODED, CORRUPT, NOT_EVENTS, MALFORMED, CUT_SHORT, SCRATCH_FULL, OUT_FULL, NOT_AS_INDEXED, TOO_LARGE = range(9)
FAULTS = {
    CORRUPT: "a packet does not decompress (corrupt LZ4 data)",
    NOT_EVENTS: "an events packet without the EVTS identifier",
    MALFORMED: "malformed events packet",
    CUT_SHORT: "an events packet claims more events than it holds",
    NOT_AS_INDEXED: "an events packet holds other events than the packet index says",
    TOO_LARGE: "a packet decompresses to more than LZ4 can make of its size (corrupt LZ4 data)",
}


@numba.njit(cache=True, nogil=True)
def _unsigned(buffer, position, size):
    """The little-endian unsigned integer of ``size`` bytes at ``position``."""
    value = 0
    for i in range(size):
        value |= np.int64(buffer[position + i]) << (8 * i)
    return value


@numba.njit(cache=True, nogil=True)
def events_vector(packet, n):
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
def _decode_packets(file, offsets, sizes, counts, t_first, t_last, context, scratch, out, out_events, width, height):
    """Decodes the packets file[offsets[k] : offsets[k] + sizes[k]] in order, their events one after another
    into ``out`` (``out_events``: the same memory as events). LZ4 frames with ``context`` (a liblz4 context's
    address), uncompressed with None (numba then compiles a version without liblz4). A packet must hold
    counts[k] events (unless that is negative) between t_first[k] and t_last[k]. Returns (status, packets
    decoded, events written, whether those are in time order and inside width x height). Stops at a fault, or
    before a packet that fills ``scratch`` or does not fit ``out``; all without the GIL. A packet that
    disagrees with counts or times is written, unchecked, before stopping."""
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
            status, start, count = events_vector(scratch, sizes_io[0])
            source = scratch.ctypes.data + np.uintp(start)
        else:
            status, start, count = events_vector(file[offsets[k] : offsets[k] + sizes[k]], sizes[k])
            source = file.ctypes.data + np.uintp(offsets[k] + start)
        if status != DECODED:
            return status, k, written, checked
        if (written + count) * EVENT_BYTES > out.shape[0]:
            return OUT_FULL, k, written, checked
        # libc's memcpy: numba copies an array slice byte by byte, and that took as long as the decompression
        _memcpy(out.ctypes.data + np.uintp(written * EVENT_BYTES), source, np.uintp(count * EVENT_BYTES))
        if (counts[k] >= 0 and count != counts[k]) or (
                count and (out_events[written].t < t_first[k] or out_events[written + count - 1].t > t_last[k])):
            # its events go to the caller unchecked, so that a fault in them is named before the disagreement
            return NOT_AS_INDEXED, k, written + count, False
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


def _decode_batch(file, packets, compressed, sensor_size, buffers) -> tuple[list, PacketError | None]:
    """A batch of packets' events as (events, checked) arrays, and the fault that stopped it (None: all
    decoded). ``packets``: rows of offsets, sizes, counts, t_first, t_last (see ``aedat4_table``)."""
    arrays, first, scratch_bytes, out_bytes = [], 0, SCRATCH_BYTES, OUT_BYTES
    while first < len(packets[0]):
        scratch = buffers.take(scratch_bytes) if compressed else np.empty(0, np.uint8)
        out = buffers.take(out_bytes)
        with lz4_frame.DecompressionContext() if compressed else nullcontext() as context:
            status, decoded, written, checked = _decode_packets(
                file, *(rows[first:] for rows in packets), context.address if compressed else None, scratch, out,
                out.view(EVENT_DTYPE), *sensor_size)
        if written:
            events = out[: written * EVENT_BYTES].view(EVENT_DTYPE)
            events.flags.writeable = False
            arrays.append((events, checked))
        first += decoded
        if status == SCRATCH_FULL:
            scratch_bytes *= 4
            if scratch_bytes > LZ4_MOST_RATIO * packets[1][first] + LZ4_SLACK:
                status = TOO_LARGE
        elif status == OUT_FULL:
            out_bytes = out_bytes if decoded else 2 * out_bytes  # one packet larger than the buffer
        if status not in (DECODED, SCRATCH_FULL, OUT_FULL):
            where = packets[0][first] - PACKET_HEADER_BYTES
            return arrays, PacketError(f"{FAULTS[status]} (the packet at byte {where})")
    return arrays, None


def iter_event_batches(file: np.ndarray, sensor_size: tuple[int, int], compression: int,
                       packets: Iterable[tuple[int, int, int, int, int]]) -> Iterator[tuple[np.ndarray, bool]]:
    """The events of ``packets`` (rows of offset, size, count, t_first, t_last: see ``aedat4_table``) in the
    file's bytes ``file``, in order, in arrays of several packets each (EVENT_DTYPE, read-only), each with
    whether it was found in time order and inside ``sensor_size`` (width, height) while decoding; False leaves
    the check, and saying what is wrong, to the caller.

    DECODE_THREADS threads decode batches of packets, up to READ_AHEAD_BATCHES ahead of the caller. Raises
    PacketError at the first fault (also one that ``packets`` raises), after yielding every event before it.
    """
    if compression not in DECODED_HERE:
        raise PacketError(f"compression {compression} is not decoded here")
    compressed = compression != NONE
    buffers = _RecycledBuffers(keep=2 * (READ_AHEAD_BATCHES + DECODE_THREADS + 1))
    with ThreadPoolExecutor(DECODE_THREADS, thread_name_prefix="masnn-aedat4") as pool:
        pending, batch, batch_bytes, read_fault = deque(), [], 0, None

        def submit():
            nonlocal batch, batch_bytes
            rows = tuple(np.array(batch, np.int64).reshape(-1, 5).T.copy())
            pending.append(pool.submit(_decode_batch, file, rows, compressed, sensor_size, buffers))
            batch, batch_bytes = [], 0

        def collect():
            arrays, fault = pending.popleft().result()
            yield from arrays
            if fault is not None:
                raise fault

        places = iter(packets)
        while True:
            try:
                packet = next(places)
            except StopIteration:
                break
            except PacketError as e:
                read_fault = e  # the file cuts a packet short: the events before it are still yielded
                break
            # batches of packets: one hand-over per batch costs far less than one per packet
            batch.append(packet)
            batch_bytes += packet[1]
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
