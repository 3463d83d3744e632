"""What the `masnn live` tests share: a recorded clip, fast reconnects, free ports, a watchdog, DV network peers
(dv-processing's NetworkWriter in a child process) and a server of raw stream bytes (captured from one, then damaged)."""
from __future__ import annotations

import socket
import struct
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from masnn.datasets.io.readers import read_events

WINDOW_MS = 450  # T = 20 frames of 22.5 ms: tests need less stream before the first prediction
FAST_BACKOFF = (0.05, 0.2)


def write_clip(folder: Path) -> tuple[Path, Path, np.ndarray]:
    """A 2 s DVS128 gesture clip as AEDAT 4.0 and as a structured .npy, and its events."""
    from masnn.datasets.synth.generator import write_action_clip

    path = folder / "air-guitar.aedat4"
    write_action_clip(path, "air guitar", "dvs128", 3, 2.0, "lab")
    events, _ = read_events(path)
    plain = np.zeros(len(events), [("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("p", "u1")])  # .npy refuses out-of-order fields
    for name in plain.dtype.names:
        plain[name] = events[name]
    np.save(folder / "events.npy", plain)
    return path, folder / "events.npy", events


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def watchdog(pipeline, seconds=30.0):
    """A test that goes wrong ends with a failed assertion, not a hang."""
    timer = threading.Timer(seconds, pipeline.stop)
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


# A DV protocol peer: serves the events of an .npy file (stream seconds [start, stop) from the first event)
# on 127.0.0.1:PORT once a client connects, paced at SPEED x real time, then exits, closing the connection.
# It runs in its own process: dv-processing's NetworkWriter cannot be destroyed in a process while a client
# is connected (its destructor waits holding the GIL), and a process ending is a true disconnect.
PEER = r"""
import os, sys, time
import numpy as np
import dv_processing as dv
path, port, start_s, stop_s, speed = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
events = np.load(path)
t = events["t"] - events["t"][0]
events = events[(t >= start_s * 1e6) & (t < stop_s * 1e6)]
stores, ends = [], []
for batch in np.split(events, np.searchsorted(events["t"], np.arange(events["t"][0], events["t"][-1], 10_000)[1:])):
    store = dv.EventStore()
    for ts, x, y, p in zip(batch["t"].tolist(), batch["x"].tolist(), batch["y"].tolist(), batch["p"].tolist()):
        store.push_back(ts, x, y, bool(p))
    stores.append(store)
    ends.append(int(batch["t"][-1]))
writer = dv.io.NetworkWriter("127.0.0.1", port, dv.io.Stream.EventStream(0, "events", "DVS128_test", (128, 128)))
print("listening", flush=True)
deadline = time.time() + 20
while writer.getClientCount() == 0 and time.time() < deadline:
    time.sleep(0.005)
begin = time.perf_counter()
for store, end in zip(stores, ends):
    time.sleep(max(0.0, begin + (end - ends[0]) / 1e6 / speed - time.perf_counter()))
    writer.writeEvents(store)
while writer.getQueuedPacketCount():
    time.sleep(0.005)
time.sleep(0.1)
print("sent", len(events), flush=True)
os._exit(0)
"""


@contextmanager
def peers():
    """Starts DV peers on demand; kills any still running at the end."""
    started = []

    def start(events_path, port, start_s=0.0, stop_s=99.0, speed=1.0, wait=True):
        process = subprocess.Popen([sys.executable, "-c", PEER, str(events_path), str(port), str(start_s), str(stop_s), str(speed)],
                                   stdout=subprocess.PIPE, text=True)
        started.append(process)
        if wait:
            assert process.stdout.readline().strip() == "listening"
        return process

    try:
        yield start
    finally:
        for process in started:
            if process.poll() is None:
                process.kill()
            process.wait(10)


def capture_stream(events_path, speed: float = 50.0) -> bytes:
    """Every byte a DV peer sends for ``events_path``: its header, then its packets, as one client receives them."""
    port = free_port()
    with peers() as start:
        start(events_path, port, speed=speed)
        with socket.create_connection(("127.0.0.1", port), timeout=30) as client:
            chunks = []
            while chunk := client.recv(1 << 20):
                chunks.append(chunk)
    return b"".join(chunks)


def first_packet_at(stream: bytes) -> int:
    """Where a captured stream's first packet starts: after its length-prefixed IOHeader (read from the front
    alone, so it holds for a stream damaged further on)."""
    return 4 + struct.unpack_from("<i", stream)[0]


def packet_spans(stream: bytes) -> list[tuple[int, int]]:
    """(start, end) of each packet (its 8-byte header, then its body) in a captured stream."""
    position, spans = first_packet_at(stream), []
    while position < len(stream):
        end = position + 8 + struct.unpack_from("<i", stream, position + 4)[0]
        spans.append((position, end))
        position = end
    return spans


class StreamServer:
    """Serves ``stream`` (raw bytes) on 127.0.0.1 to one client: the header, then its packets ``packet_s`` apart,
    then it closes the connection; with ``silent_after`` packets it stops sending there and keeps the connection
    open. Runs in a thread: the reader under test never holds the GIL while it waits."""

    def __init__(self, stream: bytes, packet_s: float = 0.005, silent_after: int | None = None):
        self.stream, self.packet_s, self.silent_after = stream, packet_s, silent_after
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        client, _ = self.server.accept()
        with client:
            spans = packet_spans(self.stream)
            try:
                client.sendall(self.stream[: spans[0][0]])
                for n, (start, end) in enumerate(spans):
                    if n == self.silent_after or self.done.is_set():
                        self.done.wait(60)
                        return
                    client.sendall(self.stream[start:end])
                    time.sleep(self.packet_s)
            except OSError:  # the client went away
                pass

    def close(self) -> None:
        self.done.set()
        self.server.close()
        self.thread.join(10)
