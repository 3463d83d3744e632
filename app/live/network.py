"""A DV network stream (tcp://HOST:PORT, as dv-processing's NetworkWriter and DV's TCP server send it), read with
a plain socket instead of dv-processing's NetworkReader.

Why: NetworkReader's constructor waits for the stream header holding the GIL and without a timeout, so a server
that accepts and sends nothing froze the whole process; and a packet whose header is damaged makes its reading
thread throw where nothing catches it, and std::terminate aborts the process (flipped bytes in a stream showed
both). Here every wait has a timeout, and a damaged packet is skipped and counted.

Protocol: the server sends an int32 length and an IOHeader flatbuffer (as in an AEDAT 4.0 file, without the
file's magic line: compression and the stream description), then packets: int32 stream id, int32 size, and a
size-prefixed flatbuffer of that many bytes ("EVTS": a vector of 16-byte events), LZ4-compressed or not.

Damage, without checksums to tell it, is what does not fit: a packet header with another stream id or a size its
flatbuffer's own size prefix contradicts (the stream is then searched for the next packet that fits), a body that
does not decode, events outside the sensor, out of time order or spread over more than MAX_PACKET_SPAN_US. Such a
packet is skipped; DAMAGED_IN_A_ROW of them with no good one between, and the stream counts as lost (reconnected).
"""
from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass

import numpy as np

from masnn.datasets.events import EVENT_DTYPE, first_fault
from masnn.datasets.io import lz4_frame
from masnn.datasets.io.aedat4_header import AEDAT4_MAGIC, NONE, Header, HeaderError, read_header
from masnn.datasets.io.aedat4_packets import DECODED, LZ4_MOST_RATIO, LZ4_SLACK, events_vector
from masnn.datasets.io.aedat4_table import PACKET_HEADER_BYTES

CONNECT_TIMEOUT_S = 5.0  # a server that does not accept within this long is not there
READ_TIMEOUT_S = 5.0  # a connection with no bytes for this long (the header included) is lost
RECV_WAIT_S = 0.05  # one wait for bytes: the reader sees a stop request at least this often
RECV_BYTES = 1 << 20
MAX_STREAM_HEADER_BYTES = 1 << 20  # a stream description is a few kB: a larger length is not a DV stream
MAX_PACKET_BYTES = 64 << 20  # 4 million events: a larger size is a damaged packet header
MAX_PACKET_SPAN_US = 10_000_000  # a camera sends its events every few milliseconds, never ten seconds in one packet
DAMAGED_IN_A_ROW = 20
RESYNC_BYTES = 1 << 20  # bytes without a packet that fits count as one more damaged packet
LZ4_MAGIC = b"\x04\x22\x4d\x18"  # an LZ4 frame's first bytes


class StreamSilent(OSError):
    """The server accepted the connection but sent no stream header in time: there, but not streaming (yet)."""


@dataclass(frozen=True)
class Damaged:
    reason: str


class PacketReader:
    """The stream's bytes after its header, as they arrive (``feed``), into packets (``next``)."""

    def __init__(self, header: Header):
        self.stream_id, self.compressed = header.event_stream, header.compression != NONE
        self.width, self.height = header.sensor_size
        self.buffer, self.start = bytearray(), 0  # bytes before ``start`` are consumed
        self.resyncing, self.skipped = False, 0  # searching for the next packet, and the bytes skipped so far

    def feed(self, data: bytes) -> None:
        del self.buffer[: self.start]  # once per arrival, not per packet: consumed bytes are dropped in one move
        self.start = 0
        self.buffer += data

    def next(self) -> np.ndarray | Damaged | None:
        """The next packet's events, Damaged for a packet skipped, or None until more bytes arrive."""
        while True:
            if len(self.buffer) - self.start < PACKET_HEADER_BYTES:
                return None
            fits = self._fits(self.start)
            if fits is None:
                return None
            if fits:
                self.resyncing = False
                break
            damaged = self._resync()
            if damaged is not None:
                return damaged
        stream, size = struct.unpack_from("<ii", self.buffer, self.start)
        end = self.start + PACKET_HEADER_BYTES + size
        if end > len(self.buffer):
            return None
        body = np.frombuffer(self.buffer[self.start + PACKET_HEADER_BYTES : end], np.uint8)  # a copy: the buffer moves on feed
        self.start = end
        return self._events(body)

    def _fits(self, at: int) -> bool | None:
        """Whether a packet header at ``at`` fits its body's first bytes; None when too few bytes are here yet."""
        stream, size = struct.unpack_from("<ii", self.buffer, at)
        if stream != self.stream_id or not 12 <= size <= MAX_PACKET_BYTES:
            return False
        if self.compressed:
            return _lz4_frame_fits(self.buffer, at + PACKET_HEADER_BYTES, size)
        head = self.buffer[at + PACKET_HEADER_BYTES : at + PACKET_HEADER_BYTES + 12]
        if len(head) < 12:
            return None
        return struct.unpack_from("<i", head)[0] == size - 4 and head[8:12] == b"EVTS"

    def _resync(self) -> Damaged | None:
        """Skips to the next place a packet header fits its body, or to the buffer's last few bytes (they may
        begin one) until more arrive. The bytes skipped are one damaged packet, whose header lost its length:
        Damaged when a search starts, and again after every RESYNC_BYTES skipped without finding a packet."""
        marker, offset = (LZ4_MAGIC, 8) if self.compressed else (b"EVTS", 16)
        found = self.buffer.find(marker, self.start + 1 + offset)
        while found >= 0 and self._fits(found - offset) is False:  # None: a candidate whose end is not here yet
            found = self.buffer.find(marker, found + 1)
        new_start = found - offset if found >= 0 else max(self.start + 1, len(self.buffer) - offset - len(marker) + 1)
        counted = not self.resyncing or self.skipped >= RESYNC_BYTES
        self.skipped = (0 if counted else self.skipped) + new_start - self.start
        self.start, self.resyncing = new_start, True  # until a packet at the new start fits
        return Damaged("a damaged packet header: skipped to the next packet") if counted else None

    def _events(self, body: np.ndarray) -> np.ndarray | Damaged:
        if self.compressed:
            try:
                body = np.frombuffer(lz4_frame.decompress_frame(body, len(body) * LZ4_MOST_RATIO + LZ4_SLACK), np.uint8)
            except lz4_frame.LZ4FrameError as error:
                return Damaged(str(error))
        status, start, count = events_vector(body, len(body))
        if status != DECODED:
            return Damaged("a packet that does not decode as events")
        events = np.frombuffer(body, EVENT_DTYPE, count, start).copy()  # aligned, and writable
        if first_fault(events, self.width, self.height, np.iinfo(np.int64).min) >= 0:
            return Damaged("events outside the sensor or out of time order")
        if count and (events["p"].max() > 1 or int(events["t"][-1]) - int(events["t"][0]) > MAX_PACKET_SPAN_US):
            return Damaged("events with impossible polarity or timestamps")
        return events


def _lz4_frame_fits(data: bytearray, start: int, size: int) -> bool | None:
    """Whether the LZ4 frame at ``start`` is ``size`` bytes long, found by walking its block sizes (no
    decompression), so a damaged packet size is caught before the packets after it are taken for its body; None
    when the bytes that tell have not arrived. Layout: magic, flags, block descriptor, [content size: 8 bytes],
    [dictionary id: 4], header checksum, then blocks (4-byte size, high bit: stored uncompressed; [4-byte
    checksum]), a zero end mark and [a 4-byte content checksum]."""
    if len(data) < start + 5:
        return None
    flags = data[start + 4]
    if data[start : start + 4] != LZ4_MAGIC or flags >> 6 != 1:
        return False
    position = start + 7 + (8 if flags & 0x08 else 0) + (4 if flags & 0x01 else 0)
    block_checksum = 4 if flags & 0x10 else 0
    while position <= start + size:
        if len(data) < position + 4:
            return None
        block = int.from_bytes(data[position : position + 4], "little") & 0x7FFFFFFF
        position += 4
        if block == 0:
            return position + (4 if flags & 0x04 else 0) == start + size
        position += block + block_checksum
    return False


class NetworkConnection:
    """A connected DV stream as batches of canonical events (see masnn.live.sources.Connection)."""

    def __init__(self, sock: socket.socket, header: Header, rest: bytes, name: str, read_timeout_s: float):
        self.socket, self.name, self.read_timeout_s = sock, name, read_timeout_s
        self.sensor_size = header.sensor_size
        self.reader = PacketReader(header)
        self.reader.feed(rest)
        self.lost = ""
        self.damaged, self.damage = 0, ""  # packets skipped on this connection, and why the newest was
        sock.settimeout(RECV_WAIT_S)

    def batches(self, stop):
        quiet_since, in_a_row = time.monotonic(), 0
        while not stop.is_set():
            item = self.reader.next()
            if isinstance(item, Damaged):
                self.damaged, self.damage, in_a_row = self.damaged + 1, item.reason, in_a_row + 1
                if in_a_row >= DAMAGED_IN_A_ROW:
                    self.lost = f"the stream is unreadable ({in_a_row} damaged packets in a row)"
                    return
                yield None  # the pipeline sees the count go up
            elif item is not None:
                in_a_row = 0
                if len(item):
                    yield item
            elif (data := self._receive()) is None:
                if time.monotonic() - quiet_since > self.read_timeout_s:
                    self.lost = f"no data for {self.read_timeout_s:g} s"
                    return
                yield None
            elif not data:
                return
            else:
                quiet_since = time.monotonic()
                self.reader.feed(data)

    def _receive(self) -> bytes | None:
        """The next bytes; None when none came within RECV_WAIT_S; b"" when the connection ended (``lost`` says why)."""
        try:
            data = self.socket.recv(RECV_BYTES)
        except TimeoutError:
            return None
        except OSError as error:
            self.lost = f"the connection failed ({error.strerror or error})"
            return b""
        if not data:
            self.lost = "the server closed the stream"
        return data

    def close(self):
        self.socket.close()


def connect_stream(host: str, port: int, name: str, connect_timeout_s: float = CONNECT_TIMEOUT_S,
                   read_timeout_s: float = READ_TIMEOUT_S) -> tuple[socket.socket, Header, bytes]:
    """A connected socket, the stream's header and the bytes after it. OSError where nothing answers, StreamSilent
    where the server sends no header within ``read_timeout_s``, OSError where what it sends is no DV event stream."""
    try:
        sock = socket.create_connection((host, port), timeout=connect_timeout_s)
    except TimeoutError:
        raise OSError(f"{name}: cannot connect (connect: no answer within {connect_timeout_s:g} s)") from None
    except OSError as error:
        raise OSError(f"{name}: cannot connect (connect: {error.strerror or error})") from None
    try:
        header, rest = _read_header(sock, name, time.monotonic() + read_timeout_s)
    except TimeoutError:
        sock.close()
        raise StreamSilent(f"{name}: connected, but no stream header came within {read_timeout_s:g} s") from None
    except BaseException:
        sock.close()
        raise
    return sock, header, rest


def _read_header(sock: socket.socket, name: str, deadline: float) -> tuple[Header, bytes]:
    """The header and the bytes after it; TimeoutError at ``deadline``, OSError naming the stream otherwise."""
    data = _receive_at_least(sock, 4, b"", name, deadline)
    (size,) = struct.unpack_from("<i", data)
    if not 0 < size <= MAX_STREAM_HEADER_BYTES:
        raise OSError(f"{name}: not a DV event stream (its header claims {size} bytes)")
    data = _receive_at_least(sock, 4 + size, data, name, deadline)
    try:
        header = read_header(AEDAT4_MAGIC + data[: 4 + size])  # the file's header, without the file's first line
    except HeaderError as error:
        raise OSError(f"{name}: not a DV event stream ({error})") from None
    if header.sensor_size is None:
        raise OSError(f"{name}: the stream does not give its resolution")
    return header, data[4 + size :]


def _receive_at_least(sock: socket.socket, count: int, data: bytes, name: str, deadline: float) -> bytes:
    """``data`` and what arrives after it, until it holds ``count`` bytes; TimeoutError at ``deadline``."""
    while len(data) < count:
        sock.settimeout(max(deadline - time.monotonic(), 1e-3))
        try:
            chunk = sock.recv(RECV_BYTES)
        except TimeoutError:
            raise
        except OSError as error:
            raise OSError(f"{name}: the connection failed ({error.strerror or error})") from None
        if not chunk:
            raise OSError(f"{name}: the server closed the connection before sending a stream header")
        data += chunk
    return data
