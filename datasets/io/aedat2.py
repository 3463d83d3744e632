"""AEDAT 2.0 (jAER; DVS128 cameras before 2017).

'#' header lines ("#!AER-DAT2.0" first), then big-endian (int32 address, int32 timestamp [us]) pairs.
DVS128 address: x = 127 - ((a & 0xFE) >> 1), y = (a & 0x7F00) >> 8, ON when bit 0 is 0; bit 15 marks
external (non-pixel) events, which are skipped. jAER counts y from the bottom row (its displays draw y
upwards); masnn's origin is the top-left pixel as in AEDAT 3.1 and 4.0, so rows are flipped: y = 127 - y.
(A walking person then has the head at the top of the frame.)

Timestamps: the 32-bit clock wraps every 2^32 us (71.6 minutes). Consecutive pixel events are taken to lie less
than 2^31 us (35.8 minutes) apart, which a DVS128 never comes near (it emits noise events every few
milliseconds) and without which a wrap could not be told from a step back. Each raw step is therefore read as
the shortest way around the clock:
- a drop of more than 2^31 (from near 2^32 to near 0) is a wrap: the time goes on increasing;
- a drop of less is a step backwards, which the common checks report;
- a rise of more than 2^31 would be the same, a step backwards across the wrap, but what it really is is one
  corrupt timestamp far above its neighbours (0xFFFFFFF0 among small values): refused, naming its byte.
  Read as a normal step and the next event as a wrap, it would move the rest of the recording 71 minutes on.
External events' timestamps are not used: a corrupt one there costs nothing.
"""
from __future__ import annotations

from pathlib import Path

import numba
import numpy as np

from masnn.datasets.events import EVENT_DTYPE, EventFileError, RecordingInfo
from masnn.datasets.io.blocks import header_value, iter_blocks, read_text_header
from masnn.datasets.io.recording import DEFAULT_CHUNK_EVENTS, Recording

AEDAT2_MAGIC = b"#!AER-DAT2.0"
EXTERNAL_EVENT_BIT = 0x8000
WRAP = 1 << 32
HALF_WRAP = 1 << 31
_NO_EVENT_YET = -1


def sniff_aedat2(head: bytes) -> bool:
    return head.startswith(AEDAT2_MAGIC)


@numba.njit(cache=True, nogil=True)
def _swap_bytes(word):
    return ((word & 0xFF) << 24) | ((word & 0xFF00) << 8) | ((word >> 8) & 0xFF00) | (word >> 24)


@numba.njit(cache=True, nogil=True)
def _decode_dvs128(words, n_pairs, start, end, clock, out):
    """Decodes big-endian address/timestamp pairs. ``clock`` = [unwrapped time, last raw timestamp] of the last
    pixel event (raw -1 before the first). Returns (events written, stopped at ``end``, index of the pair with a
    corrupt timestamp or -1)."""
    n = 0
    for k in range(n_pairs):
        address = _swap_bytes(words[2 * k])
        if address & EXTERNAL_EVENT_BIT:
            continue
        raw = np.int64(_swap_bytes(words[2 * k + 1]))
        if clock[1] == _NO_EVENT_YET:
            t = raw
        else:
            step = raw - clock[1]
            if step < -HALF_WRAP:
                step += WRAP  # from near 2**32 to near 0: the clock wrapped
            elif step > HALF_WRAP:
                return n, False, k  # one timestamp far above the last: corrupt, not a step or a wrap
            t = clock[0] + step
        clock[0], clock[1] = t, raw
        if t < start:
            continue
        if t >= end:
            return n, True, -1
        out[n].t = t
        out[n].x = 127 - ((address & 0xFE) >> 1)
        out[n].y = 127 - ((address & 0x7F00) >> 8)
        out[n].p = 1 - (address & 1)
        n += 1
    return n, False, -1


class Aedat2Recording(Recording):
    def __init__(self, path: Path, sensor_size: tuple[int, int] | None = None):
        lines, self._data_offset = read_text_header(str(path))
        chip = header_value(lines, "# AEChip:") or ""
        if chip and not chip.endswith("DVS128"):
            raise EventFileError(path, f"AEDAT 2.0 from chip {chip!r} is not supported (only DVS128 addresses)")
        hardware = header_value(lines, "# HardwareInterface:") or ""
        width, height = sensor_size or (128, 128)
        self.info = RecordingInfo(str(path), "AEDAT 2.0", width, height, hardware or "DVS128")

    def _chunks(self, start, end, chunk_events=DEFAULT_CHUNK_EVENTS):
        start = np.iinfo(np.int64).min if start is None else start
        end = np.iinfo(np.int64).max if end is None else end
        clock = np.array([0, _NO_EVENT_YET], dtype=np.int64)
        decoded_pairs = 0

        def decode(buffer, filled, at_end):
            nonlocal decoded_pairs
            n_pairs = filled // 8
            out = np.empty(n_pairs, dtype=EVENT_DTYPE)
            n, stop, corrupt = _decode_dvs128(buffer.view(np.uint32), n_pairs, start, end, clock, out)
            if corrupt >= 0:
                byte = self._data_offset + 8 * (decoded_pairs + corrupt)
                raw = int(buffer[8 * corrupt + 4 : 8 * corrupt + 8].view(">u4")[0])
                raise EventFileError(self.info.path, _describe_corrupt_time(byte, raw, int(clock[1])))
            decoded_pairs += n_pairs
            return n_pairs * 8, out[:n], stop, 0

        yield from iter_blocks(self.info.path, self._data_offset, chunk_events * 8, decode, "an address/timestamp pair")


def _describe_corrupt_time(byte: int, raw: int, last: int) -> str:
    return (f"corrupt timestamp at byte {byte}: {raw:#010x} lies {(raw - last) / 6e7:.0f} min after the event before "
            f"({last:#010x}), neither a step forward nor a 32-bit clock wrap")
