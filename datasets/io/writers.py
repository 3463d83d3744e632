"""Writers for the formats users feed masnn: AEDAT 3.1 (DVS128 Gesture layout), AEDAT 4.0, text, npz, slayer .bs2.

Used by the synthetic-data generator and the benchmarks. Outputs go to a temporary file that is renamed
into place once complete, so an interrupted write never leaves a half file under the final name
(``atomic_path``, which every masnn output goes through: checkpoints, frames, caches, reports).
"""
from __future__ import annotations

import atexit
import contextlib
import hashlib
import itertools
import os
import re
import socket
import time
from pathlib import Path

import numpy as np

AEDAT31_PACKET_EVENTS = 4096


# A temporary's name: ".STEM.masnn-HOST-PID-N.tmpSUFFIX" beside the final "STEM.SUFFIX". The suffix stays last
# because some writers check it (np.save adds ".npy" to a name without it; OpenCV picks the codec by it); HOST
# (a hash of the host name) and PID say whose it is, so another run can tell a dead writer's leftover from a
# file a live process is still writing. The older name (before the mark) was ".STEM.PID.THREAD.tmpSUFFIX".
_TEMPORARY = re.compile(r"^\..*\.masnn-(?P<host>[0-9a-f]{8})-(?P<pid>\d+)-\d+\.tmp(\.[^.]*)?$")
_OLDER_TEMPORARY = re.compile(r"^\..*\.(?P<pid>\d+)\.\d{6,}\.tmp(\.[^.]*)?$")
FOREIGN_STALE_S = 24 * 3600  # another host's temporary untouched this long: its writer is gone
_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
_serial = itertools.count()  # next() on a count is atomic: threads never share a name
_writing: set[Path] = set()  # this process's temporaries not yet renamed or removed
_swept: set[Path] = set()  # folders already cleaned of dead writers' temporaries by this process


@contextlib.contextmanager
def atomic_path(path: str | Path):
    """Yields a temporary path beside ``path``; renames it to ``path`` if the block succeeds, removes it if
    the block raises (KeyboardInterrupt and SystemExit too). The first use of a folder in a process removes the
    temporaries that killed writers left there (see ``remove_stale_temporaries``)."""
    path = Path(path)
    if path.parent not in _swept:
        remove_stale_temporaries(path.parent)
    temporary = path.with_name(f".{path.stem}.masnn-{_HOST}-{os.getpid()}-{next(_serial)}.tmp{path.suffix}")
    _writing.add(temporary)
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
        _writing.discard(temporary)


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Removes the temporaries in ``folder`` whose writer is dead (a killed run's); returns them. A temporary of
    a live process is never touched (another run filling the same frame cache). On this host the writer's pid
    tells (a process with this process's pid that is not writing it was an earlier one: a container's pid
    comes round again); another host's temporary goes once nothing wrote to it for FOREIGN_STALE_S."""
    removed = []
    _swept.add(Path(folder))
    try:
        entries = list(os.scandir(folder))
    except OSError:  # no folder yet, or unreadable: nothing to clean
        return removed
    for entry in entries:
        if entry.name.startswith(".") and ".tmp" in entry.name and _stale(Path(entry.path)):
            try:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
            except OSError:  # gone already (another process swept it) or not ours to remove
                pass
    return removed


def _stale(temporary: Path) -> bool:
    match = _TEMPORARY.match(temporary.name) or _OLDER_TEMPORARY.match(temporary.name)
    if match is None:
        return False
    host = match.groupdict().get("host")
    if host is not None and host != _HOST:
        try:
            return time.time() - temporary.stat().st_mtime > FOREIGN_STALE_S
        except OSError:
            return False
    pid = int(match["pid"])
    if pid == os.getpid():
        return temporary.name not in {writing.name for writing in list(_writing)}  # names are unique in a process
    return not _alive(pid)


def _alive(pid: int) -> bool:
    if pid <= 0:  # os.kill(0, ...) would signal our own process group
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


@atexit.register
def _remove_unfinished() -> None:
    """A daemon thread still writing when the interpreter exits never reaches its ``finally``."""
    for temporary in list(_writing):
        if f"-{os.getpid()}-" in temporary.name:  # a forked child inherits the set, not the files
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


def write_bs2(path, events: np.ndarray):
    """Writes events as a slayer / lava-dl .bs2 file (5 bytes an event, see ``bs2``). The format holds times from
    0 to 2^23 - 1 us (8.39 s) in order and coordinates from 0 to 255: anything else is refused (ValueError) before
    a byte is written, so subtract the first time from a recording's absolute times, and cut long ones."""
    from masnn.datasets.io.bs2 import encode_bs2

    data = encode_bs2(events)
    with atomic_path(path) as temporary:
        Path(temporary).write_bytes(data)
