"""Prophesee EVT 2.0 / EVT 3.0 (.raw) and DAT (.dat) files, decoded by expelliarmus in a child process.

The '%' header is read and checked here: the encoding ('% evt 2.0', '% format EVT3;width=..;height=..', a DAT
'% Data file containing Event2D events' line), the sensor size ('% geometry WxH', the format line's width and
height, DAT's '% Width' and '% Height', else the camera generation in '% plugin_name'), each line a key reads
must have a value, sizes at most MAX_SENSOR_SIDE, and event data must follow a complete header.

Why a child process: expelliarmus is C code that prints its own errors straight to fds 1 and 2 (onto the user's
terminal), stops silently at a word it does not know, and loops forever on a file cut inside its header
(which the header check above now refuses). In a child, whatever else it meets, a crash or a spin ends as one
EventFileError: the child's output goes to a temporary file (its first line goes into the message), its events
come back through a pipe chunk by chunk, and a child silent for longer than it takes to decode a chunk many
times over is stopped.
"""
from __future__ import annotations

import os
import re
import select
import signal
import struct
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

from masnn.datasets.events import EVENT_DTYPE, EventFileError, RecordingInfo, TruncatedRecordingWarning
from masnn.datasets.io.blocks import read_text_header
from masnn.datasets.io.recording import DEFAULT_CHUNK_EVENTS, Recording, chunked, stated_sensor_size

PLUGIN_SENSORS = {"gen3": (640, 480), "gen31": (640, 480), "gen4": (1280, 720), "gen41": (1280, 720), "imx636": (1280, 720)}
_KEY = re.compile(r"^% ?(evt|format|geometry|plugin_name|integrator_name|serial_number|data file containing)\b", re.I)
WORD_BYTES = {"evt2": 4, "evt3": 2, "dat": 8}  # the unit each encoding is written in

# How long the child may stay silent before it counts as hung: its start (importing numpy and expelliarmus, a
# second or two on a busy machine) plus one chunk's decoding, at a rate a hundred times below expelliarmus' own.
QUIET_LIMIT_S = 30.0
SLOWEST_EVENTS_PER_S = 200_000

# The child: decodes with expelliarmus and writes each chunk to the pipe as (int64 count, count 16-byte events);
# -2 at the end of the file, -1 where expelliarmus stopped before it (a word it refused).
_CHILD = """
import os, struct, sys
import expelliarmus
encoding, path, chunk_events, fd = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
with os.fdopen(fd, "wb") as out:
    wizard = expelliarmus.Wizard(encoding=encoding, chunk_size=chunk_events)
    wizard._fpath = path  # set past its check: it wants a .raw or .dat name, and masnn chose the format by content
    wizard.reset()
    for block in wizard.read_chunk():
        out.write(struct.pack("<q", len(block)))
        out.write(block.tobytes())
        out.flush()
    out.write(struct.pack("<q", -2 if wizard.cargo.events_info.finished else -1))
"""


def sniff_prophesee(head: bytes) -> bool:
    return head.startswith(b"%") and any(_KEY.match(line) for line in head.decode("latin-1").splitlines())


def _header_line(path, lines: list[str], key: str) -> tuple[str, str] | None:
    """(line, value) of the first '% key value' line; refuses one without a value."""
    for line in lines:
        words = line[1:].split(None, 1)
        if words and words[0].lower() == key:
            if len(words) < 2:
                raise EventFileError(path, f"header line {line!r} has no value")
            return line, words[1].strip()
    return None


def _encoding(path, lines: list[str]) -> str:
    if found := _header_line(path, lines, "evt"):
        line, value = found
        encoding = {"2.0": "evt2", "2": "evt2", "3.0": "evt3", "3": "evt3"}.get(value)
    elif found := _header_line(path, lines, "format"):
        line, value = found
        encoding = {"evt2": "evt2", "evt3": "evt3"}.get(value.split(";")[0].strip().lower())
    elif any(re.search(r"event2d|data file containing", line, re.I) for line in lines):
        return "dat"
    else:
        raise EventFileError(path, "Prophesee header names no encoding (no '% evt', '% format' or DAT line)")
    if encoding is None:
        raise EventFileError(path, f"header line {line!r} names an encoding that cannot be read (EVT 2.0, EVT 3.0, DAT)")
    return encoding


def _sensor_size(path, lines: list[str]) -> tuple[int, int] | None:
    if found := _header_line(path, lines, "geometry"):
        line, value = found
        match = re.fullmatch(r"(\d+)x(\d+)", value)
        if match is None:
            raise EventFileError(path, f"header line {line!r} is not a geometry WIDTHxHEIGHT")
        return stated_sensor_size(path, int(match[1]), int(match[2]), f"header line {line!r}")
    text = "\n".join(lines)
    width = re.search(r"width=(\d+)", text) or re.search(r"^% ?width (\d+)\s*$", text, re.I | re.M)
    height = re.search(r"height=(\d+)", text) or re.search(r"^% ?height (\d+)\s*$", text, re.I | re.M)
    if width and height:
        return stated_sensor_size(path, int(width[1]), int(height[1]), f"header ({width[0]}, {height[0]})")
    if found := _header_line(path, lines, "plugin_name"):
        match = re.search(r"(gen\d+|imx\d+)", found[1])
        return PLUGIN_SENSORS.get(match[1]) if match else None
    return None


class PropheseeRecording(Recording):
    def __init__(self, path: Path, sensor_size: tuple[int, int] | None = None):
        self._path = path
        lines, self._data_offset = read_text_header(str(path), prefix=b"%")
        self._encoding = _encoding(path, lines)
        plugin = _header_line(path, lines, "plugin_name")
        size = sensor_size or _sensor_size(path, lines)
        if size is None:
            raise EventFileError(path, "Prophesee header gives no sensor size; pass it explicitly")
        if self._data_bytes() < WORD_BYTES[self._encoding]:
            raise EventFileError(path, "has no events after its header")
        camera = plugin[1] if plugin else "Prophesee"
        self.info = RecordingInfo(str(path), f"Prophesee {self._encoding.upper()}", size[0], size[1], camera)

    def _data_bytes(self) -> int:
        """Bytes of event words: DAT has an event-type and an event-size byte before its records."""
        return os.path.getsize(self._path) - self._data_offset - (2 if self._encoding == "dat" else 0)

    def _chunks(self, start, end, chunk_events=DEFAULT_CHUNK_EVENTS):
        with _ChildDecoder(self.info.path, self._encoding, max(chunk_events, 16)) as decoder:
            for block in decoder.blocks():
                if end is not None and block["t"][0] >= end:
                    return
                yield from chunked(block, chunk_events)
        left_over = self._data_bytes() % WORD_BYTES[self._encoding]
        if left_over:
            warnings.warn(TruncatedRecordingWarning(
                f"{self.info.path}: ends inside an event word ({left_over} bytes left over); kept the events before it"),
                stacklevel=3)


class _ChildDecoder:
    """expelliarmus decoding one file in a child process; ``blocks()`` yields its chunks as canonical events."""

    def __init__(self, path: str, encoding: str, chunk_events: int):
        self._path, self._encoding, self._chunk_events = path, encoding, chunk_events
        self._limit_s = QUIET_LIMIT_S + chunk_events / SLOWEST_EVENTS_PER_S
        self._messages = tempfile.TemporaryFile(prefix="masnn-prophesee-")
        read_end, write_end = os.pipe()
        try:
            command = [sys.executable, "-c", _CHILD, encoding, path, str(chunk_events), str(write_end)]
            self._process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=self._messages,
                                             stderr=subprocess.STDOUT, pass_fds=(write_end,))
        finally:
            os.close(write_end)
        self._pipe = read_end
        self._events = 0

    def blocks(self):
        while True:
            header = self._read(8)
            count = struct.unpack("<q", header)[0]
            if count < 0:
                if count == -1:
                    self._fail(f"expelliarmus stopped after {self._events} events, before the end of the file")
                return
            if count > self._chunk_events + 64:  # expelliarmus overshoots by a vector (12 events) at most
                self._fail(f"the decoder sent a chunk of {count} events")
            block = np.frombuffer(self._read(count * EVENT_DTYPE.itemsize), dtype=EVENT_DTYPE)
            self._events += count
            if count:
                yield block

    def _read(self, n: int) -> bytearray:
        """n bytes from the child, waiting at most the silence limit for each part of them."""
        data = bytearray(n)
        view, got = memoryview(data), 0
        while got < n:
            ready, _, _ = select.select([self._pipe], [], [], self._limit_s)
            if not ready:
                self._fail(f"expelliarmus stopped answering for {self._limit_s:.0f} s (a decoder hang)")
            k = os.readv(self._pipe, [view[got:]])
            if k == 0:
                self._fail(self._death())
            got += k
        return data

    def _death(self) -> str:
        code = self._process.wait()
        if code < 0:
            name = signal.Signals(-code).name if -code in signal.valid_signals() else f"signal {-code}"
            return f"expelliarmus crashed ({name}) after {self._events} events"
        return f"the decoder ended (exit status {code}) after {self._events} events without finishing"

    def _fail(self, problem: str):
        said = self._said()
        raise EventFileError(self._path, f"cannot be decoded as Prophesee {self._encoding.upper()}: {problem}"
                             + (f" (it said: {said})" if said else ""))

    def _said(self) -> str:
        """The child's first non-empty line of output (expelliarmus' error, or a Python exception's last line)."""
        self._stop()
        self._messages.seek(0)
        lines = [line.strip() for line in self._messages.read(16384).decode("utf-8", "replace").splitlines()]
        lines = [line for line in lines if line]
        python_error = next((line for line in reversed(lines) if re.match(r"^\w+(Error|Exception)\b", line)), None)
        return (python_error or (lines[0] if lines else ""))[:200]

    def _stop(self):
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._stop()
        os.close(self._pipe)
        self._messages.close()
