"""What the `masnn live` tests share: a recorded clip, fast reconnects, free ports, a watchdog."""
from __future__ import annotations

import socket
import threading
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
