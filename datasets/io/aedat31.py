"""AEDAT 3.1 (jAER/cAER, the DVS128 Gesture originals): a vectorised-speed reader in one compiled pass.

Layout: '#' header lines ending with "#!END-HEADER\\r\\n", then packets. A packet is a 28-byte little-endian
header (int16 eventType, int16 eventSource, int32 eventSize, int32 eventTSOffset, int32 eventTSOverflow,
int32 eventCapacity, int32 eventNumber, int32 eventValid) followed by eventCapacity * eventSize bytes.
Polarity events (type 1, 8 bytes): uint32 data (bit 0 valid, bit 1 polarity, bits 2-16 y, bits 17-31 x),
int32 timestamp; the full timestamp is (eventTSOverflow << 31) | timestamp. Other packet types are skipped
by their size.
"""
from __future__ import annotations

from pathlib import Path

import numba
import numpy as np

from masnn.datasets.events import EVENT_DTYPE, EventFileError, RecordingInfo
from masnn.datasets.io.blocks import header_value, iter_blocks, read_text_header
from masnn.datasets.io.recording import DEFAULT_CHUNK_EVENTS, Recording, sensor_from_camera_name

AEDAT31_MAGIC = b"#!AER-DAT3."
HEADER_WORDS = 7  # a packet header: 28 bytes
POLARITY_EVENT = 1
NO_LIMIT = np.iinfo(np.int64).max


def sniff_aedat31(head: bytes) -> bool:
    return head.startswith(AEDAT31_MAGIC)


# Decoder status codes
_OK, _STOPPED, _BAD_HEADER = 0, 1, 2


@numba.njit(cache=True, nogil=True)
def _decode_packets(words, n_words, at_end, start, end, out):
    """Decodes whole packets from ``words`` (uint32, packet-aligned) into ``out``.

    Returns (words consumed, events written, status, words needed for the next packet, bad offset).
    At the end of the file a packet cut short still gives up its complete events (consumed stays 0).
    """
    pos = 0
    n = 0
    while pos + HEADER_WORDS <= n_words:
        event_type = words[pos] & 0xFFFF
        event_size = np.int32(words[pos + 1])
        overflow = np.int64(words[pos + 3])
        capacity = np.int32(words[pos + 4])
        number = np.int32(words[pos + 5])
        if event_size <= 0 or event_size % 4 != 0 or capacity < 0 or number < 0 or number > capacity:
            return pos, n, _BAD_HEADER, 0, pos
        if event_type == POLARITY_EVENT and event_size != 8:
            return pos, n, _BAD_HEADER, 0, pos
        packet_words = HEADER_WORDS + capacity * (event_size // 4)
        complete = pos + packet_words <= n_words
        if not complete and not (at_end and pos == 0):
            return pos, n, _OK, packet_words, 0
        if event_type == POLARITY_EVENT:
            available = number if complete else min(number, (n_words - pos - HEADER_WORDS) // 2)
            base = overflow << 31
            if available > 0:
                last = base | np.int64(words[pos + HEADER_WORDS + 2 * (available - 1) + 1])
                if last < start:
                    available = 0  # the whole packet precedes the selection: skip it undecoded
            for k in range(available):
                data = words[pos + HEADER_WORDS + 2 * k]
                if data & 1 == 0:
                    continue
                t = base | np.int64(words[pos + HEADER_WORDS + 1 + 2 * k])
                if t < start:
                    continue
                if t >= end:
                    return pos, n, _STOPPED, 0, 0
                out[n].t = t
                out[n].x = (data >> 17) & 0x7FFF
                out[n].y = (data >> 2) & 0x7FFF
                out[n].p = (data >> 1) & 1
                n += 1
        if not complete:
            return 0, n, _OK, 0, 0
        pos += packet_words
    return pos, n, _OK, 0, 0


class Aedat31Recording(Recording):
    def __init__(self, path: Path, sensor_size: tuple[int, int] | None = None):
        lines, self._data_offset = read_text_header(str(path), end_line=b"#!END-HEADER")
        if not lines or not lines[-1].startswith("#!END-HEADER"):
            raise EventFileError(path, "AEDAT 3.1 header has no #!END-HEADER line")
        data_format = header_value(lines, "#Format:")
        if data_format is not None and data_format.upper() != "RAW":
            raise EventFileError(path, f"AEDAT 3.1 header line '#Format: {data_format}': only RAW packets can be read")
        source = header_value(lines, "#Source")  # "#Source 1: DVS128"
        camera = source.partition(":")[2].strip() if source else ""
        size = sensor_size or sensor_from_camera_name(camera)
        if size is None:
            what = f"unknown camera {camera!r}" if camera else "no camera (#Source line)"
            raise EventFileError(path, f"AEDAT 3.1 header names {what}; the sensor size is unknown")
        self.info = RecordingInfo(str(path), "AEDAT 3.1", size[0], size[1], camera)

    def _chunks(self, start, end, chunk_events=DEFAULT_CHUNK_EVENTS):
        start = np.iinfo(np.int64).min if start is None else start
        end = NO_LIMIT if end is None else end
        path = self.info.path
        decoded_words = 0

        def decode(buffer, filled, at_end):
            words = buffer[: len(buffer) // 4 * 4].view(np.uint32)
            out = np.empty(filled // 8, dtype=EVENT_DTYPE)
            consumed, n, status, need, bad = _decode_packets(words, filled // 4, at_end, start, end, out)
            nonlocal decoded_words
            if status == _BAD_HEADER:
                byte = self._data_offset + (decoded_words + bad) * 4
                raise EventFileError(path, f"corrupt AEDAT 3.1 packet header at byte {byte}")
            decoded_words += consumed
            return consumed * 4, out[:n], status == _STOPPED, need * 4

        yield from iter_blocks(path, self._data_offset, chunk_events * 8, decode, "an AEDAT 3.1 packet")
