"""Writers for the formats users feed masnn: AEDAT 3.1 (DVS128 Gesture layout), AEDAT 4.0, text, npz.

Used by the synthetic-data generator and the benchmarks. Outputs go to a temporary file that is renamed
into place once complete, so an interrupted write never leaves a half file under the final name.
"""
from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

import numpy as np

AEDAT31_PACKET_EVENTS = 4096


@contextlib.contextmanager
def atomic_path(path: str | Path):
    """Yields a temporary path beside ``path``; renames it to ``path`` if the block succeeds."""
    path = Path(path)
    # unique per process and thread, so concurrent writers of one path never share a temporary;
    # the suffix stays last because some readers and writers check it
    temporary = path.with_name(f".{path.stem}.{os.getpid()}.{threading.get_ident()}.tmp{path.suffix}")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def aedat31_polarity_words(events: np.ndarray) -> np.ndarray:
    """(N, 2) uint32: data word (valid bit set) and the low 31 bits of the timestamp."""
    words = np.empty((len(events), 2), dtype=np.uint32)
    words[:, 0] = (
        (events["x"].astype(np.uint32) << 17) | (events["y"].astype(np.uint32) << 2) | ((events["p"] != 0).astype(np.uint32) << 1) | 1
    )
    words[:, 1] = (events["t"] & 0x7FFFFFFF).astype(np.uint32)
    return words


def write_aedat31(path, events, camera: str = "DVS128", start_time: str = "", packet_events: int = AEDAT31_PACKET_EVENTS):
    """Writes time-sorted events (t >= 0) as AEDAT 3.1 polarity packets from source 1.

    ``events`` is one array or an iterable of arrays (chunks), so files larger than memory can be written.
    """
    header = [b"#!AER-DAT3.1", b"#Format: RAW", f"#Source 1: {camera}".encode()]
    if start_time:
        header.append(f"#Start-Time: {start_time}".encode())
    header.append(b"#!END-HEADER")
    chunks = [events] if isinstance(events, np.ndarray) else events
    with atomic_path(path) as temporary, open(temporary, "wb") as f:
        f.write(b"".join(line + b"\r\n" for line in header))
        for chunk in chunks:
            _write_aedat31_packets(f, chunk, packet_events)


def _write_aedat31_packets(f, events: np.ndarray, packet_events: int):
    overflow = events["t"] >> 31
    # a packet never spans two timestamp-overflow epochs
    breaks = np.flatnonzero(np.diff(overflow)) + 1
    for segment_start, segment_end in zip(np.r_[0, breaks], np.r_[breaks, len(events)]):
        for begin in range(segment_start, segment_end, packet_events):
            packet = events[begin : min(begin + packet_events, segment_end)]
            n = len(packet)
            # int16 type 1 (polarity) | int16 source 1, eventSize 8, TSOffset 4, TSOverflow, capacity, number, valid
            packet_header = np.array([1 | (1 << 16), 8, 4, int(overflow[begin]), n, n, n], dtype="<i4")
            f.write(packet_header.tobytes())
            f.write(aedat31_polarity_words(packet).tobytes())


def write_aedat4(path, events: np.ndarray, sensor_size: tuple[int, int], camera: str = "DVS128"):
    """Writes events (t: absolute microseconds, non-decreasing) as an AEDAT 4.0 event-only file."""
    import dv_processing as dv

    with atomic_path(path) as temporary:
        config = dv.io.MonoCameraWriter.EventOnlyConfig(camera, tuple(int(v) for v in sensor_size))
        writer = dv.io.MonoCameraWriter(str(temporary), config)
        for begin in range(0, len(events), 10_000):
            store = dv.EventStore()
            part = events[begin : begin + 10_000]
            for t, x, y, p in zip(part["t"].tolist(), part["x"].tolist(), part["y"].tolist(), part["p"].tolist()):
                store.push_back(t, x, y, bool(p))
            writer.writeEvents(store)
        del writer  # dv-processing completes the file when the writer is destroyed


def write_text(path, events: np.ndarray):
    """One "t x y p" line per event (the DVS128 Gait layout)."""
    table = np.stack([events["t"], events["x"], events["y"], events["p"]], axis=1).astype(np.int64)
    with atomic_path(path) as temporary:
        np.savetxt(temporary, table, fmt="%d")


def write_npz(path, events: np.ndarray, sensor_size: tuple[int, int]):
    with atomic_path(path) as temporary:
        with open(temporary, "wb") as f:
            # one array per field: npz cannot store a dtype with out-of-order field offsets
            fields = {name: np.ascontiguousarray(events[name]) for name in ("x", "y", "t", "p")}
            np.savez_compressed(f, **fields, sensor_size=np.array(sensor_size))
