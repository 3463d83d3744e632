"""AEDAT 2.0 (jAER; DVS128 cameras before 2017).

'#' header lines ("#!AER-DAT2.0" first), then big-endian (int32 address, int32 timestamp [us]) pairs.
DVS128 address: x = 127 - ((a & 0xFE) >> 1), y = (a & 0x7F00) >> 8, ON when bit 0 is 0; bit 15 marks
external (non-pixel) events, which are skipped. jAER counts y from the bottom row (its displays draw y
upwards); masnn's origin is the top-left pixel as in AEDAT 3.1 and 4.0, so rows are flipped: y = 127 - y.
(A walking person then has the head at the top of the frame.) The 32-bit timestamp wraps after about 71 minutes;
a wrap is unwrapped, any other backward step is reported by the common checks.
"""
from __future__ import annotations

from pathlib import Path

import numba
import numpy as np

from masnn.datasets.events import EVENT_DTYPE, EventFileError, RecordingInfo
from masnn.datasets.io.blocks import iter_blocks, read_text_header
from masnn.datasets.io.recording import DEFAULT_CHUNK_EVENTS, Recording

AEDAT2_MAGIC = b"#!AER-DAT2.0"
EXTERNAL_EVENT_BIT = 0x8000
WRAP = 1 << 32


def sniff_aedat2(head: bytes) -> bool:
    return head.startswith(AEDAT2_MAGIC)


@numba.njit(cache=True, nogil=True)
def _decode_dvs128(words, n_pairs, start, end, wrap_state, out):
    """Decodes big-endian address/timestamp pairs. ``wrap_state`` = [wraps, last raw timestamp]."""
    n = 0
    for k in range(n_pairs):
        address = words[2 * k]
        address = ((address & 0xFF) << 24) | ((address & 0xFF00) << 8) | ((address >> 8) & 0xFF00) | (address >> 24)
        raw = words[2 * k + 1]
        raw = ((raw & 0xFF) << 24) | ((raw & 0xFF00) << 8) | ((raw >> 8) & 0xFF00) | (raw >> 24)
        raw_t = np.int64(raw)
        if raw_t < wrap_state[1] - (1 << 31):
            wrap_state[0] += 1
        wrap_state[1] = raw_t
        if address & EXTERNAL_EVENT_BIT:
            continue
        t = raw_t + wrap_state[0] * WRAP
        if t < start:
            continue
        if t >= end:
            return n, True
        out[n].t = t
        out[n].x = 127 - ((address & 0xFE) >> 1)
        out[n].y = 127 - ((address & 0x7F00) >> 8)
        out[n].p = 1 - (address & 1)
        n += 1
    return n, False


class Aedat2Recording(Recording):
    def __init__(self, path: Path, sensor_size: tuple[int, int] | None = None):
        lines, self._data_offset = read_text_header(str(path))
        chip = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("# AEChip:")), "")
        if chip and not chip.endswith("DVS128"):
            raise EventFileError(path, f"AEDAT 2.0 from chip {chip!r} is not supported (only DVS128 addresses)")
        hardware = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("# HardwareInterface:")), "")
        width, height = sensor_size or (128, 128)
        self.info = RecordingInfo(str(path), "AEDAT 2.0", width, height, hardware or "DVS128")

    def _chunks(self, start, end, chunk_events=DEFAULT_CHUNK_EVENTS):
        start = np.iinfo(np.int64).min if start is None else start
        end = np.iinfo(np.int64).max if end is None else end
        wrap_state = np.zeros(2, dtype=np.int64)

        def decode(buffer, filled, at_end):
            n_pairs = filled // 8
            out = np.empty(n_pairs, dtype=EVENT_DTYPE)
            n, stop = _decode_dvs128(buffer.view(np.uint32), n_pairs, start, end, wrap_state, out)
            return n_pairs * 8, out[:n], stop, 0

        yield from iter_blocks(self.info.path, self._data_offset, chunk_events * 8, decode, "an address/timestamp pair")
