"""The AEDAT 4.0 file header, read and checked before any decoder sees the file.

Layout (iniVation's AEDAT 4.0 format): "#!AER-DAT4.0\\r\\n", an int32 length and an IOHeader flatbuffer:
compression (int32), dataTablePosition (int64: where the packet table starts, -1 when the recording was
interrupted before writing it) and infoNode (an XML tree naming each stream, its type and, for events, the
sensor size and camera). Every offset is checked before it is followed and every value against the file's
size, so a damaged header is one ``HeaderError`` that says what is wrong, never a crash further on.
"""
from __future__ import annotations

import struct
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass

from masnn.datasets.io.recording import MAX_SENSOR_SIDE

AEDAT4_MAGIC = b"#!AER-DAT4.0\r\n"
NONE, LZ4, LZ4_HIGH, ZSTD, ZSTD_HIGH = range(5)
COMPRESSION_NAMES = {NONE: "none", LZ4: "LZ4", LZ4_HIGH: "LZ4", ZSTD: "Zstandard", ZSTD_HIGH: "Zstandard"}
NO_TABLE = -1  # dataTablePosition of a recording interrupted before its packet table was written
PACKETS_OFFSET = len(AEDAT4_MAGIC) + 4  # the header flatbuffer starts here


class HeaderError(ValueError):
    """A header that cannot be trusted; the message says what is wrong."""


class PacketError(ValueError):
    """A packet, or the packet table, that cannot be decoded; the message says what is wrong and where."""


@dataclass(frozen=True)
class Header:
    compression: int
    table_position: int  # NO_TABLE, or where the packet table starts: packets_start <= it <= file_size
    packets_start: int
    file_size: int
    event_stream: int  # id of the first "EVTS" stream
    sensor_size: tuple[int, int] | None  # None where the header gives none
    camera: str
    table_problem: str = ""  # why a dataTablePosition other than NO_TABLE was not usable ("" when it is)

    @property
    def compression_name(self) -> str:
        return COMPRESSION_NAMES[self.compression]


def read_header(data) -> Header:
    """The checked header of a file's bytes (bytes, mmap). Raises HeaderError."""
    file_size = len(data)
    if data[: len(AEDAT4_MAGIC)] != AEDAT4_MAGIC:
        raise HeaderError("not an AEDAT 4.0 file")
    if file_size < PACKETS_OFFSET:
        raise HeaderError(f"the header is cut short ({file_size} bytes)")
    (size,) = struct.unpack_from("<i", data, len(AEDAT4_MAGIC))
    if not 0 < size <= file_size - PACKETS_OFFSET:
        raise HeaderError(f"the header claims {size} bytes; the file holds {file_size - PACKETS_OFFSET} after it")
    buffer = bytes(data[PACKETS_OFFSET : PACKETS_OFFSET + size])
    compression, table_position, xml = _io_header(_FlatBuffer(buffer))
    if compression not in COMPRESSION_NAMES:
        raise HeaderError(f"unknown compression {compression}")
    packets_start = PACKETS_OFFSET + size
    table_position, table_problem = _usable_table_position(table_position, packets_start, file_size)
    stream, sensor_size, camera = _event_stream(xml)
    return Header(compression, table_position, packets_start, file_size, stream, sensor_size, camera, table_problem)


def _usable_table_position(position: int, packets_start: int, file_size: int) -> tuple[int, str]:
    """(position, "") when it can hold the packet table, else (NO_TABLE, why not): packets are then found by
    reading them from the start."""
    if position == NO_TABLE:
        return NO_TABLE, ""
    if not packets_start <= position <= file_size:
        where = f"bytes {packets_start} to {file_size}"
        return NO_TABLE, f"the packet index position {position} lies outside the packets ({where})"
    return position, ""


class _FlatBuffer:
    """Bounds-checked reads from one flatbuffer; any read outside it is a HeaderError."""

    def __init__(self, buffer: bytes):
        self.buffer = buffer

    def unpack(self, fmt: str, position: int):
        if position < 0 or position + struct.calcsize(fmt) > len(self.buffer):
            raise HeaderError(f"the header points outside itself (byte {position} of {len(self.buffer)})")
        return struct.unpack_from(fmt, self.buffer, position)[0]

    def follow(self, position: int) -> int:
        return position + self.unpack("<I", position)

    def fields(self, table: int, count: int) -> list[int]:
        """Positions of a table's first ``count`` fields, 0 for a field left at its default."""
        vtable = table - self.unpack("<i", table)
        vtable_size, table_size = self.unpack("<H", vtable), self.unpack("<H", vtable + 2)
        if vtable_size < 4 or vtable_size % 2 or table_size < 4:
            raise HeaderError("malformed header table")
        offsets = [self.unpack("<H", vtable + 4 + 2 * i) if 4 + 2 * i < vtable_size else 0 for i in range(count)]
        if any(offset >= table_size for offset in offsets):
            raise HeaderError("malformed header table")
        return [table + offset if offset else 0 for offset in offsets]


def _io_header(flat: _FlatBuffer) -> tuple[int, int, str]:
    """(compression, dataTablePosition, infoNode XML) of the IOHeader flatbuffer, with their defaults."""
    compression_at, table_at, info_at = flat.fields(flat.follow(0), 3)
    compression = flat.unpack("<i", compression_at) if compression_at else NONE
    table_position = flat.unpack("<q", table_at) if table_at else NO_TABLE
    if not info_at:
        return compression, table_position, ""
    info = flat.follow(info_at)
    length = flat.unpack("<I", info)
    if info + 4 + length > len(flat.buffer):
        raise HeaderError("the header's stream description runs past the header")
    try:
        return compression, table_position, flat.buffer[info + 4 : info + 4 + length].decode()
    except UnicodeDecodeError:
        raise HeaderError("the header's stream description is not UTF-8 text") from None


def _event_stream(xml: str) -> tuple[int, tuple[int, int] | None, str]:
    """(id, (width, height) or None, camera) of the first "EVTS" stream in the header's XML."""
    try:
        root = ElementTree.fromstring(xml.rstrip("\0 \r\n\t"))
    except ElementTree.ParseError as e:
        raise HeaderError(f"the header's stream description is not readable XML ({e})") from None
    for node in root.iter("node"):
        types = [attr.text for attr in node.findall("attr") if attr.get("key") == "typeIdentifier"]
        if types == ["EVTS"]:
            return _stream_id(node.get("name")), *_stream_info(node)
    raise HeaderError("AEDAT 4.0 file has no event stream")


def _stream_id(name: str | None) -> int:
    if not _is_decimal(name) or int(name) >= 1 << 31:
        raise HeaderError(f"the event stream's id {name!r} is not a stream number")
    return int(name)


def _stream_info(node) -> tuple[tuple[int, int] | None, str]:
    """The event stream's sensor size (None when the header gives none) and camera name."""
    info = {attr.get("key"): (attr.text or "").strip() for attr in node.findall("node[@name='info']/attr")}
    if "sizeX" not in info and "sizeY" not in info:
        size = None
    else:
        size = (_side(info, "sizeX"), _side(info, "sizeY"))
    return size, info.get("source", "")


def _side(info: dict, key: str) -> int:
    value = info.get(key)
    if value is None:
        raise HeaderError(f"the event stream's {key} is missing")
    if not _is_decimal(value) or not 0 < int(value) <= MAX_SENSOR_SIDE:
        raise HeaderError(f"the event stream's {key} {value!r} is not a sensor size (1 to {MAX_SENSOR_SIDE})")
    return int(value)


def _is_decimal(text: str | None) -> bool:
    return text is not None and text.isascii() and text.isdigit() and len(text) <= 10
