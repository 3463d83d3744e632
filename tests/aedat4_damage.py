"""Damaged AEDAT 4.0 files made by hand, for the reader tests: recordings from dv-processing's writer, edits of
their header, packet table and packets, and a reader run in a child process with a time limit, so that a
crash or a hang fails a test instead of killing pytest."""
from __future__ import annotations

import ctypes
import json
import struct
import subprocess
import sys

import numpy as np
import pytest
from reader_test_helpers import AEDAT4_T0, N, synthetic, write_dv

from masnn.datasets.events import EVENT_DTYPE
from masnn.datasets.io import lz4_frame
from masnn.datasets.io.aedat4_header import NONE, read_header

PACKET_BREAKS = tuple(range(250, N, 250))  # 12 packets of 250 events
needs_liblz4 = pytest.mark.skipif(not lz4_frame.AVAILABLE, reason="no liblz4: LZ4 files are left to dv-processing")
DECODED_HERE = ["NONE", pytest.param("LZ4", marks=needs_liblz4)]
CHILD_SECONDS = 60

# Reads each case (path, start, end) in one child process: events to case<i>.bin, outcome as a JSON line.
CHILD_READER = r"""
import json, sys, warnings
import numpy as np
from masnn.datasets.events import EventFileError
from masnn.datasets.io.readers import open_recording

for i, (path, start, end) in enumerate(json.loads(sys.argv[1])):
    outcome = {"error": None, "time_range": None}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with open_recording(path) as recording:
                outcome["time_range"] = recording.info.time_range
                recording.read(start, end).tofile(f"{sys.argv[2]}/case{i}.bin")
        except EventFileError as e:
            outcome["error"] = str(e)
    outcome["warnings"] = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    print(json.dumps(outcome), flush=True)
"""


def read_in_child(tmp_path, cases, timeout=CHILD_SECONDS) -> list[dict]:
    """Each case's outcome: error (one line or None), warnings, time_range and events (None after an error)."""
    folder = tmp_path / "child"
    folder.mkdir(exist_ok=True)
    cases = [(str(path), start, end) for path, start, end in cases]
    done = subprocess.run([sys.executable, "-c", CHILD_READER, json.dumps(cases), str(folder)],
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"the reader died (exit status {done.returncode}): {done.stderr[-2000:]}"
    outcomes = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(outcomes) == len(cases)
    for i, outcome in enumerate(outcomes):
        outcome["events"] = None if outcome["error"] else np.fromfile(folder / f"case{i}.bin", EVENT_DTYPE)
    return outcomes


def assert_one_line_naming(message: str, path) -> None:
    assert message.startswith(f"{path}: ") and "\n" not in message, message


def assert_honest(outcome: dict, path) -> None:
    """Either one error, or events that passed the checks, with every warning naming the file."""
    if outcome["error"] is not None:
        assert_one_line_naming(outcome["error"], path)
        return
    for message in outcome["warnings"]:
        assert_one_line_naming(message, path)
    events = outcome["events"]
    assert len(events) and (np.diff(events["t"]) >= 0).all()
    for axis in "xy":
        assert (events[axis] >= 0).all() and (events[axis] < 128).all()


def recorded(tmp_path, compression, name="rec.aedat4"):
    events = synthetic(t0=AEDAT4_T0)
    path = tmp_path / name
    write_dv(path, events, breaks=PACKET_BREAKS, compression=compression)
    return path, events


def replace_once(data: bytearray, old: bytes, new: bytes, start: int = 0, end: int | None = None) -> None:
    where = data.find(old, start, end)
    assert where >= 0 and data.find(old, where + 1, end) < 0, f"{old!r} is not unique"
    data[where : where + len(old)] = new


def set_table_position(path, value: int) -> None:
    data = bytearray(path.read_bytes())
    header = read_header(bytes(data))
    replace_once(data, struct.pack("<q", header.table_position), struct.pack("<q", value), 18, header.packets_start)
    path.write_bytes(bytes(data))


def lz4_compress(raw: bytes) -> bytes:
    lib = lz4_frame.LIBLZ4
    lib.LZ4F_compressFrameBound.restype = lib.LZ4F_compressFrame.restype = ctypes.c_size_t
    lib.LZ4F_compressFrameBound.argtypes = [ctypes.c_size_t, ctypes.c_void_p]
    lib.LZ4F_compressFrame.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_size_t,
                                       ctypes.c_void_p]
    bound = lib.LZ4F_compressFrameBound(len(raw), None)
    out = ctypes.create_string_buffer(bound)
    return out.raw[: lib.LZ4F_compressFrame(out, bound, raw, len(raw), None)]


def edit_table(path, edit) -> None:
    """Rewrites the packet table (decompressed, edited by ``edit(bytearray)``, compressed again)."""
    data = path.read_bytes()
    header = read_header(data)
    raw = data[header.table_position :]
    compressed = header.compression != NONE
    table = bytearray(lz4_frame.decompress_frame(np.frombuffer(raw, np.uint8), 1 << 24) if compressed else raw)
    edit(table)
    path.write_bytes(data[: header.table_position] + (lz4_compress(bytes(table)) if compressed else bytes(table)))


def _field_positions(buffer: bytes, table: int, count: int) -> list[int]:
    vtable = table - struct.unpack_from("<i", buffer, table)[0]
    return [table + struct.unpack_from("<H", buffer, vtable + 4 + 2 * i)[0] for i in range(count)]


def table_field(table: bytes, entry: int | None, field: int = 0) -> int:
    """Position of field ``field`` of entry ``entry`` in a size-prefixed FileDataTable; of the entry count
    where ``entry`` is None."""
    vector_at = _field_positions(table, 4 + struct.unpack_from("<I", table, 4)[0], 1)[0]
    vector = vector_at + struct.unpack_from("<I", table, vector_at)[0]
    if entry is None:
        return vector
    slot = vector + 4 + 4 * entry
    return _field_positions(table, slot + struct.unpack_from("<I", table, slot)[0], field + 1)[field]


def header_field(data: bytes, field: int) -> int:
    """Position in the file of field ``field`` of the IOHeader (0: compression, 1: table position)."""
    header = data[18:]
    return 18 + _field_positions(header, struct.unpack_from("<I", header, 0)[0], field + 1)[field]


def packet_positions(path) -> list[int]:
    """Where each packet's header starts."""
    data = path.read_bytes()
    header = read_header(data)
    positions, position = [], header.packets_start
    while position < header.table_position:
        positions.append(position)
        position += 8 + struct.unpack_from("<i", data, position + 4)[0]
    return positions
