"""AEDAT 4.0 event packets decoded without dv-processing, for the whole-file read that framing does.

Why: dv-processing decodes holding the GIL, so nothing overlaps its decode in-process. ``lz4_frame`` does not
hold it, so two threads here decompress the next packets while the caller frames this one. Files compressed
with LZ4 (DV's default; where liblz4 is found) or not at all are decoded here; others are left to
dv-processing.

Layout (iniVation's AEDAT 4.0 format): "#!AER-DAT4.0\\r\\n", an int32 length and an IOHeader flatbuffer
(compression, dataTablePosition, infoNode: an XML tree naming each stream and its type), then packets: an
int32 stream id, an int32 size and that many bytes of a compressed, size-prefixed flatbuffer. An events
packet ("EVTS") is a table whose first field is a vector of 16-byte structs: int64 t (absolute us),
int16 x, int16 y, bool on, 3 bytes of padding. The file data table at dataTablePosition ends the packets.
"""
from __future__ import annotations

import mmap
import struct
import xml.etree.ElementTree as ElementTree
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np

from . import lz4_frame

MAGIC = b"#!AER-DAT4.0\r\n"
NONE, LZ4, LZ4_HIGH, ZSTD, ZSTD_HIGH = range(5)
PACKET_EVENT_DTYPE = np.dtype({"names": ["t", "x", "y", "p"], "formats": ["<i8", "<i2", "<i2", "u1"],
                               "offsets": [0, 8, 10, 12], "itemsize": 16})
DECODED_HERE = (NONE, LZ4, LZ4_HIGH) if lz4_frame.AVAILABLE else (NONE,)
DECODE_THREADS = 2
BATCH_BYTES = 1 << 20  # compressed bytes handed to a decoding thread at once
READ_AHEAD_BATCHES = 3


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
    if file.read(len(MAGIC)) != MAGIC:
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
    return Header(compression, table_position, len(MAGIC) + 4 + size, *_event_stream(xml))


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


def _decompressor(compression: int):
    if compression in (LZ4, LZ4_HIGH) and lz4_frame.AVAILABLE:
        return lz4_frame.decompress
    if compression == NONE:
        return bytes  # a copy: the events outlive the file's mapping
    raise PacketError(f"compression {compression} is not decoded here")


def decode_events(data) -> np.ndarray:
    """The events of one decompressed packet, a read-only view on ``data``."""
    try:
        buffer = memoryview(data)[4:]  # after the size prefix
        if bytes(buffer[4:8]) != b"EVTS":
            raise PacketError("an events packet without the EVTS identifier")
        vector = _follow(buffer, _field_positions(buffer, _follow(buffer, 0))[0])
        (count,) = struct.unpack_from("<I", buffer, vector)
    except (struct.error, IndexError) as e:
        raise PacketError(f"malformed events packet ({e})") from None
    if vector + 4 + count * PACKET_EVENT_DTYPE.itemsize > len(buffer):
        raise PacketError(f"events packet claims {count} events but is cut short")
    return np.frombuffer(buffer, PACKET_EVENT_DTYPE, count, vector + 4)


def _compressed_event_packets(file: BinaryIO, header: Header) -> Iterator[memoryview]:
    """The events packets' bodies, views on the file mapped into memory: no copy, no read call per packet."""
    # no close here: the views handed out keep the mapping alive, and it closes when the last one goes
    data = memoryview(mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ))
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
            yield data[position + 8 : position + 8 + size]
        position += 8 + size


def iter_event_packets(path: str | Path, header: Header | None = None) -> Iterator[np.ndarray]:
    """Each events packet of the file in order, as a structured array (t, x, y, p: PACKET_EVENT_DTYPE).

    DECODE_THREADS threads decompress batches of packets, up to READ_AHEAD_BATCHES ahead of the caller. Raises
    PacketError at the first fault, after yielding every packet before it, and for a compression not in
    DECODED_HERE. ``header``: the file's, when the caller has read it already.
    """
    with open(path, "rb") as file:
        header = header or read_header(file)
        if header.event_stream is None:
            return
        decompress = _decompressor(header.compression)

        def decode(bodies: list) -> tuple[list[np.ndarray], PacketError | None]:
            """The batch's packets' events, and the fault that stopped it (None: all decoded)."""
            packets, fault = [], None
            for body in bodies:
                try:
                    packets.append(decode_events(decompress(body)))
                except PacketError as e:
                    fault = e
                except Exception as e:  # the codecs raise their own types on corrupt data
                    fault = PacketError(f"a packet does not decompress ({e})")
                if fault is not None:
                    break
            return packets, fault

        with ThreadPoolExecutor(DECODE_THREADS, thread_name_prefix="masnn-aedat4") as pool:
            pending, batch, batch_bytes = deque(), [], 0

            def submit():
                nonlocal batch, batch_bytes
                pending.append(pool.submit(decode, batch))
                batch, batch_bytes = [], 0

            bodies, read_fault = _compressed_event_packets(file, header), None
            while True:
                try:
                    body = next(bodies)
                except StopIteration:
                    break
                except PacketError as e:
                    read_fault = e  # the file cuts a packet short: the packets before it are still yielded
                    break
                # batches of packets: one hand-over per batch costs far less than one per packet
                batch.append(body)
                batch_bytes += len(body)
                if batch_bytes >= BATCH_BYTES:
                    submit()
                if len(pending) > READ_AHEAD_BATCHES:
                    packets, fault = pending.popleft().result()
                    yield from packets
                    if fault is not None:
                        raise fault
            if batch:
                submit()
            while pending:
                packets, fault = pending.popleft().result()
                yield from packets
                if fault is not None:
                    raise fault
            if read_fault is not None:
                raise read_fault
