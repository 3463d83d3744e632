"""What the reader tests share: synthetic recordings as plain dicts of columns, event-by-event comparison, and
AEDAT 4.0 files written and read back by dv-processing (the reference that is not masnn's code)."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import aedat_test_writers as aw
import numpy as np

from masnn.datasets.events import EVENT_DTYPE

N = 3000
GAP_US = 2_000_000  # a quiet gap between the two halves of every synthetic recording
AEDAT4_T0 = 1_700_000_000_000_000  # AEDAT 4 stores Unix time in microseconds


def synthetic(n=N, seed=0, t0=0, width=128, height=128):
    rng = np.random.default_rng(seed)
    steps = rng.integers(0, 40, n)  # zero steps: several events share a timestamp
    steps[0] = 0
    t = t0 + np.cumsum(steps)
    t[n // 2 :] += GAP_US
    return {"x": rng.integers(0, width, n), "y": rng.integers(0, height, n), "t": t, "p": rng.integers(0, 2, n)}


def subset(events: dict, keep) -> dict:
    return {k: np.asarray(v)[keep] for k, v in events.items()}


def selected(events: dict, start, end) -> dict:
    t = events["t"]
    keep = np.ones(len(t), dtype=bool)
    if start is not None:
        keep &= t >= start
    if end is not None:
        keep &= t < end
    return subset(events, keep)


def assert_events(actual: np.ndarray, expected: dict):
    assert set(actual.dtype.names) == {"x", "y", "t", "p"}
    assert len(actual) == len(expected["t"])
    for field in "txyp":
        np.testing.assert_array_equal(actual[field], expected[field], err_msg=f"field {field}")


def concat(chunks) -> np.ndarray:
    chunks = list(chunks)
    assert all(len(c) > 0 for c in chunks)
    return np.concatenate(chunks) if chunks else np.zeros(0, EVENT_DTYPE)


def write_dv(path, events: dict, breaks=(N // 4, N // 2, 3 * N // 4), **options):
    aw.write_dv(path, events, breaks=breaks, **options)


def read_dv(path) -> dict:
    import dv_processing as dv

    recording = dv.io.MonoCameraRecording(str(path))
    parts = []
    while (batch := recording.getNextEventBatch()) is not None:
        if batch.size():
            parts.append(batch.numpy())
    a = np.concatenate(parts)
    return {"t": a["timestamp"], "x": a["x"], "y": a["y"], "p": a["polarity"]}


def run_isolated(code: str, timeout: float, memory: int | None = None) -> subprocess.CompletedProcess:
    """Runs ``code`` (dedented) in a fresh Python, optionally with its address space capped at ``memory`` bytes:
    a case that used to hang or to allocate without bound then fails its test instead of stalling the run."""
    limit = f"import resource; resource.setrlimit(resource.RLIMIT_AS, ({memory}, {memory}))\n" if memory else ""
    return subprocess.run([sys.executable, "-c", limit + textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout)
