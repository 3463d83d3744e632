"""What `masnn live` measures: the reader thread's ingest figures, the classifier thread's prediction
figures, latency percentiles, and the --log file. Each record has one writer thread."""
from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import numpy as np

from masnn.live.framer import LiveWindow

HISTORY = 100_000  # predictions whose latencies the summary's percentiles cover
RECENT_ACTIONS = 6


@dataclass
class IngestState:
    """What the reader thread reports; only it writes here."""

    status: str = "connecting"
    source: str = ""
    sensor_size: tuple[int, int] | None = None
    connection: int = 0
    events: int = 0
    batches: int = 0
    framed_events: int = 0  # events in completed frames (after the spatial crop)
    windows: int = 0  # windows made, dropped and superseded ones included
    superseded: int = 0
    damaged_packets: int = 0  # skipped as damaged (network streams)
    lag_s: float = 0.0  # wall time minus (speed-scaled) stream time since the connection's first event
    max_lag_s: float = 0.0
    reader_cpu_s: float = 0.0  # the reader thread's CPU time, set when it ends
    first_batch: float | None = None
    last_batch: float | None = None
    clock: tuple[float, int] | None = None  # (wall, stream time) at the connection's first batch

    def note_batch(self, events: np.ndarray, arrival: float, speed: float) -> None:
        self.events += len(events)
        self.batches += 1
        self.first_batch = self.first_batch or arrival
        self.last_batch = arrival
        if self.clock is None:
            self.clock = (arrival, int(events["t"][0]))
        if speed:
            self.lag_s = (arrival - self.clock[0]) - (int(events["t"][-1]) - self.clock[1]) / 1e6 / speed
            self.max_lag_s = max(self.max_lag_s, self.lag_s)


@dataclass
class LiveStats:
    """What the main thread measured; only it writes here."""

    predictions: int = 0
    first_at: float | None = None  # perf_counter() of the first and the latest prediction
    last_at: float | None = None
    latency_ms: deque = field(default_factory=lambda: deque(maxlen=HISTORY))  # event arrival -> prediction
    model_ms: deque = field(default_factory=lambda: deque(maxlen=HISTORY))
    energy_uj: float = 0.0
    spikes: float = 0.0
    covered_events: int = 0  # events in frames some classified window held
    covered: tuple[int, int] = (0, 0)  # (connection, frames) classified so far
    last: dict | None = None
    recent: deque = field(default_factory=lambda: deque(maxlen=RECENT_ACTIONS))  # runs of one top class
    reconnects: int = 0
    disconnects: int = 0
    notices: deque = field(default_factory=lambda: deque(maxlen=4))
    notice_count: int = 0  # notices ever handled (the deque keeps the newest)
    rate_samples: deque = field(default_factory=lambda: deque(maxlen=64))  # (wall, events ingested)

    def add(self, record: dict, window: LiveWindow, done: float) -> None:
        self.predictions += 1
        self.first_at = self.first_at or done
        self.last_at = done
        self.latency_ms.append(record["latency_ms"])
        self.model_ms.append(record["stats"]["latency_ms"])
        self.energy_uj += record["stats"]["energy_uj"]
        self.spikes += record["stats"]["spikes"]
        self.last = record
        self._cover(window)
        self._remember_action(record)

    def _cover(self, window: LiveWindow) -> None:
        """Counts only the frames no earlier classified window held, so overlapping windows count once."""
        connection, done = self.covered
        done = done if connection == window.connection else 0
        fresh = max(0, done - window.first_frame)
        self.covered_events += int(window.frame_events[fresh:].sum())
        self.covered = (window.connection, window.first_frame + len(window.frame_events))

    def _remember_action(self, record: dict) -> None:
        top = dict(record["top_k"][0], **{"class": record.get("class", record["top_k"][0]["class"])})  # "uncertain" too
        if self.recent and self.recent[-1]["class"] == top["class"]:
            run = self.recent[-1]
            run["to_s"], run["windows"] = record["stream_s"][1], run["windows"] + 1
            run["confidence"] = max(run["confidence"], top["probability"])
        else:
            self.recent.append({"class": top["class"], "from_s": record["stream_s"][1], "to_s": record["stream_s"][1],
                                "windows": 1, "confidence": top["probability"]})

    def events_per_s(self, now: float, events: int) -> float:
        self.rate_samples.append((now, events))
        while len(self.rate_samples) > 2 and now - self.rate_samples[1][0] >= 1.0:
            self.rate_samples.popleft()  # keep about the last second
        (t0, e0), (t1, e1) = self.rate_samples[0], self.rate_samples[-1]
        return (e1 - e0) / (t1 - t0) if t1 > t0 else 0.0


def percentiles(values: deque, newest: int | None = None) -> dict:
    """p50 and p99 of the ``newest`` values (all by default)."""
    chosen = np.fromiter(values if newest is None else islice(reversed(values), newest), float)
    if not len(chosen):
        return {"p50": None, "p99": None}
    p50, p99 = np.percentile(chosen, [50, 99])
    return {"p50": float(p50), "p99": float(p99)}


class JsonLines:
    """The --log file: one JSON object a line, flushed at once, so a crash or Ctrl-C loses nothing written."""

    def __init__(self, path: Path | None):
        self.file = open(path, "w", encoding="utf-8") if path is not None else None

    def write(self, record: dict) -> None:
        if self.file is not None:
            self.file.write(json.dumps(record) + "\n")
            self.file.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
