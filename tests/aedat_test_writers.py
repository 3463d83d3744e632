"""Test-side AEDAT 3.1 and AEDAT 2.0 writers, built from the format description in
shared/reference/event-data.md with struct and numpy only (no masnn code), so that the readers are
checked against files their own code did not make; AEDAT 4.0 files come from dv-processing's own writer.

AEDAT 3.1: '#' header lines ending "\\r\\n" up to "#!END-HEADER", then packets: a 28-byte little-endian
header (int16 eventType, int16 eventSource, int32 eventSize, int32 eventTSOffset, int32 eventTSOverflow,
int32 eventCapacity, int32 eventNumber, int32 eventValid) and eventCapacity * eventSize bytes. Polarity
events (type 1, size 8): uint32 data (bit 0 valid, bit 1 ON, bits 2-16 y, bits 17-31 x), int32 timestamp;
the full time is (eventTSOverflow << 31) | timestamp.

AEDAT 2.0: '#' header lines, then big-endian (int32 address, int32 timestamp) pairs. DVS128 address
(jAER's coordinates, y counted from the bottom row): x = 127 - ((a & 0xFE) >> 1), y = (a & 0x7F00) >> 8,
ON when bit 0 is 0; bit 15 marks an external (non-pixel) event.
"""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

PACKET_HEADER = struct.Struct("<hhiiiiii")  # 28 bytes
POLARITY_TYPE = 1
POLARITY_SIZE = 8


# ----------------------------------------------------------------------------------------- AEDAT 3.1

def aedat31_header(source: str = "DVS128", extra_lines: tuple[str, ...] = ()) -> bytes:
    lines = ["#!AER-DAT3.1", "#Format: RAW", f"#Source 1: {source}", "#Start-Time: 2017-06-01 10:00:00 (TZ+0000)",
             *extra_lines, "#!END-HEADER"]
    return b"".join(line.encode("latin-1") + b"\r\n" for line in lines)


def packet_header(event_type: int, event_size: int, overflow: int, capacity: int, number: int, valid: int,
                  source: int = 1) -> bytes:
    return PACKET_HEADER.pack(event_type, source, event_size, 4, overflow, capacity, number, valid)


def polarity_packet(x, y, t, p, valid=None, source: int = 1) -> bytes:
    """One polarity packet. ``t`` are full timestamps; all must share one overflow epoch (t >> 31)."""
    x, y, t, p = (np.asarray(a, dtype=np.int64) for a in (x, y, t, p))
    n = len(t)
    valid = np.ones(n, dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    overflow = int(t[0] >> 31) if n else 0
    assert n == 0 or (t >> 31 == overflow).all(), "a packet cannot span two overflow epochs"
    body = np.empty((n, 2), dtype="<u4")
    body[:, 0] = (x << 17) | (y << 2) | ((p != 0).astype(np.int64) << 1) | valid.astype(np.int64)
    body[:, 1] = t & 0x7FFFFFFF
    return packet_header(POLARITY_TYPE, POLARITY_SIZE, overflow, n, n, int(valid.sum()), source) + body.tobytes()


def other_packet(event_type: int = 2, event_size: int = 20, n: int = 3, seed: int = 0) -> bytes:
    """A non-polarity packet (default: type 2, 20-byte events) filled with random bytes, to be skipped."""
    body = np.random.default_rng(seed).integers(0, 256, n * event_size, dtype=np.uint8).tobytes()
    return packet_header(event_type, event_size, 0, n, n, n) + body


def polarity_packets(x, y, t, p, sizes, valid=None, breaks=()) -> list[bytes]:
    """Splits events into packets of the given sizes (cycled), also at ``breaks`` (event indices) and at
    every overflow-epoch change."""
    t = np.asarray(t, dtype=np.int64)
    valid = np.ones(len(t), dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    bounds = sorted(set((np.flatnonzero(np.diff(t >> 31)) + 1).tolist()) | set(breaks) | {0, len(t)})
    packets, k = [], 0
    for segment_start, segment_end in zip(bounds[:-1], bounds[1:]):
        begin = segment_start
        while begin < segment_end:
            end = min(begin + sizes[k % len(sizes)], segment_end)
            k += 1
            packets.append(polarity_packet(x[begin:end], y[begin:end], t[begin:end], p[begin:end], valid[begin:end]))
            begin = end
    return packets


def write_aedat31(path: str | Path, packets, source: str = "DVS128", cut: int = 0) -> list[int]:
    """Writes header + packets, dropping ``cut`` bytes from the end. Returns each packet's byte offset."""
    header = aedat31_header(source)
    offsets, position = [], len(header)
    packets = list(packets)
    for packet in packets:
        offsets.append(position)
        position += len(packet)
    data = header + b"".join(packets)
    Path(path).write_bytes(data[: len(data) - cut])
    return offsets


# ----------------------------------------------------------------------------------------- AEDAT 2.0

AEDAT2_HEADER = (
    "#!AER-DAT2.0",
    "# This is a raw AE data file - do not edit",
    "# Data format is int32 address, int32 timestamp (8 bytes total), repeated for each event",
    "# Timestamps tick is 1 us",
    "# HardwareInterface: DVS128-V1 0042",
    "# AEChip: ch.unizh.ini.jaer.chip.retina.DVS128",
)


def dvs128_address(jaer_x, jaer_y, on) -> np.ndarray:
    """A DVS128 address from jAER's coordinates (y counted from the bottom row)."""
    jaer_x, jaer_y = np.asarray(jaer_x, dtype=np.int64), np.asarray(jaer_y, dtype=np.int64)
    return ((127 - jaer_x) << 1) | (jaer_y << 8) | np.where(np.asarray(on, dtype=bool), 0, 1)


def write_aedat2(path: str | Path, address, t, header=AEDAT2_HEADER, cut: int = 0) -> None:
    """Big-endian (address, timestamp) pairs; timestamps are stored modulo 2**32 (they wrap)."""
    address, t = np.asarray(address, dtype=np.int64), np.asarray(t, dtype=np.int64)
    body = np.empty((len(t), 2), dtype=">u4")
    body[:, 0] = address
    body[:, 1] = t & 0xFFFFFFFF
    data = b"".join(line.encode("latin-1") + b"\r\n" for line in header) + body.tobytes()
    Path(path).write_bytes(data[: len(data) - cut])


def read_aedat2_reference(path: str | Path) -> dict[str, np.ndarray]:
    """Independent decode of a DVS128 AEDAT 2.0 file into masnn's convention (y flipped, wrap unwrapped)."""
    raw = Path(path).read_bytes()
    offset = 0
    while raw[offset : offset + 1] == b"#":
        offset = raw.index(b"\n", offset) + 1
    pairs = np.frombuffer(raw, dtype=">u4", count=(len(raw) - offset) // 8 * 2, offset=offset).reshape(-1, 2)
    a, ts = pairs[:, 0].astype(np.int64), pairs[:, 1].astype(np.int64)
    t = ts + (np.cumsum(np.r_[0, np.diff(ts) < -(1 << 31)]) << 32)
    keep = (a & 0x8000) == 0
    a, t = a[keep], t[keep]
    return {"x": 127 - ((a & 0xFE) >> 1), "y": 127 - ((a & 0x7F00) >> 8), "t": t, "p": (a & 1 == 0).astype(np.int64)}


# ------------------------------------------------------------------------- files the readers must refuse

def _random_bytes(tmp_path):
    path = tmp_path / "noise.bin"
    path.write_bytes(b"\x00\x01\xfe" + np.random.default_rng(1).integers(0, 256, 2000, dtype=np.uint8).tobytes())
    return path, "unknown or unsupported event format"


def _empty(tmp_path):
    path = tmp_path / "empty.aedat"
    path.write_bytes(b"")
    return path, "is empty (0 bytes)"


def _missing(tmp_path):
    return tmp_path / "missing.aedat4", "no such file"


def _folder(tmp_path):
    path = tmp_path / "folder.aedat"
    path.mkdir()
    return path, "is a folder"


def _good_packet(first_t=1000, n=20):
    k = np.arange(n)
    return polarity_packet(k % 128, (3 * k) % 128, first_t + 10 * k, k % 2)


def _corrupt_header(**fields):
    def build(tmp_path):
        values = dict(event_type=1, event_size=8, overflow=0, capacity=4, number=4, valid=4) | fields
        bad = packet_header(**values) + bytes(8 * 4)
        path = tmp_path / "corrupt.aedat"
        offsets = write_aedat31(path, [_good_packet(), other_packet(), bad, _good_packet(5000)])
        return path, f"corrupt AEDAT 3.1 packet header at byte {offsets[2]}"
    return build


def _header_only(tmp_path):
    path = tmp_path / "header_only.aedat"
    write_aedat31(path, [])
    return path, "no events"


def _all_invalid(tmp_path):
    path = tmp_path / "all_invalid.aedat"
    write_aedat31(path, [polarity_packet([1, 2, 3], [4, 5, 6], [10, 20, 30], [0, 1, 0], valid=[0, 0, 0]), other_packet()])
    return path, "no events"


def _only_external(tmp_path):
    path = tmp_path / "only_external.aedat"
    write_aedat2(path, [0x8000, 0x8001, 0x80FF], [10, 20, 30])
    return path, "no events"


def _outside_sensor(tmp_path):
    path = tmp_path / "outside.aedat"
    x = np.array([1, 2, 3, 4, 5, 200, 6])
    write_aedat31(path, [polarity_packet(x[:3], [0] * 3, [1, 2, 3], [1] * 3), other_packet(),
                         polarity_packet(x[3:], [9] * 4, [4, 5, 6, 7], [0] * 4)])
    return path, "event 5 at (x=200, y=9) lies outside the 128x128 sensor"


def _backwards_in_packet(tmp_path):
    path = tmp_path / "backwards.aedat"
    t = np.array([100, 200, 300, 400, 500, 600, 700, 650, 800])
    write_aedat31(path, [polarity_packet(np.arange(9), np.arange(9), t, np.ones(9))])
    return path, "timestamps go backwards at event 7 (t=650 us after t=700 us)"


def _backwards_across_packets(tmp_path):
    path = tmp_path / "backwards_packets.aedat"
    k = np.arange(10)
    write_aedat31(path, [polarity_packet(k, k, 1000 + k, k % 2), other_packet(),
                         polarity_packet(k, k, 500 + k, k % 2)])
    return path, "timestamps go backwards at event 10 (t=500 us after t=1009 us)"


def _backwards_aedat2(tmp_path):
    path = tmp_path / "backwards2.aedat"
    t = np.array([10, 20, 30, 25, 40])
    write_aedat2(path, dvs128_address(np.arange(5), np.arange(5), np.ones(5)), t)
    return path, "timestamps go backwards at event 3 (t=25 us after t=30 us)"


def _npy_not_events(tmp_path):
    path = tmp_path / "table.npy"
    np.save(path, np.zeros((10, 3)))
    return path, "not events"


BAD_FILES = {
    "unknown format": _random_bytes,
    "empty file": _empty,
    "missing file": _missing,
    "folder": _folder,
    "negative packet capacity": _corrupt_header(capacity=-5, number=0, valid=0),
    "zero event size": _corrupt_header(event_size=0),
    "eventNumber above capacity": _corrupt_header(number=9),
    "polarity packet with 12-byte events": _corrupt_header(event_size=12),
    "header only": _header_only,
    "only invalid events": _all_invalid,
    "only external events": _only_external,
    "x outside the sensor": _outside_sensor,
    "backwards in a packet": _backwards_in_packet,
    "backwards across packets": _backwards_across_packets,
    "backwards AEDAT 2.0": _backwards_aedat2,
    "npy without events": _npy_not_events,
}


def truncated_aedat31(tmp_path, cut_kind: str):
    """An AEDAT 3.1 file cut short; returns (path, x, y, t, p of the complete events before the cut)."""
    n = 130
    k = np.arange(n)
    x, y, t, p = k % 128, (7 * k) % 128, 10_000 + 13 * k, k % 2
    full = polarity_packets(x[:120], y[:120], t[:120], p[:120], sizes=[50])
    full.insert(1, other_packet(n=4))
    extra = polarity_packet(x[120:], y[120:], t[120:], p[120:])  # 10 events, 108 bytes
    cut, keep = {
        "mid-event": (3, n - 1),               # the last event loses 3 of its 8 bytes
        "whole event": (8, n - 1),             # the packet holds one event fewer than its capacity says
        "inside the packet header": (len(extra) - 10, 120),
        "after the packet header": (len(extra) - 28, 120),
    }[cut_kind]
    path = tmp_path / "truncated.aedat"
    write_aedat31(path, [*full, extra], cut=cut)
    return path, x[:keep], y[:keep], t[:keep], p[:keep]


# ----------------------------------------------------------------------------------------- AEDAT 4.0

def write_dv(path, events: dict, camera="DVS128", size=(128, 128), breaks=(), compression="LZ4"):
    """An AEDAT 4.0 file from dv-processing's own writer, one writeEvents call (one packet) per part;
    ``events`` maps t, x, y, p to arrays, ``breaks`` are the indices where a new packet starts."""
    import dv_processing as dv

    config = dv.io.MonoCameraWriter.EventOnlyConfig(camera, size)
    config.compression = getattr(dv.CompressionType, compression)
    writer = dv.io.MonoCameraWriter(str(path), config)
    columns = [np.asarray(events[k]).tolist() for k in "txyp"]
    bounds = [0, *[b for b in breaks if b < len(columns[0])], len(columns[0])]
    for begin, end in zip(bounds[:-1], bounds[1:]):
        store = dv.EventStore()
        for t, x, y, p in zip(*(c[begin:end] for c in columns)):
            store.push_back(t, x, y, bool(p))
        writer.writeEvents(store)
    del writer  # the file is complete when the writer is destroyed
