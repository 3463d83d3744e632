"""`masnn live`: classify a live event stream: a DVS camera, a DV network stream, or a recording replayed at
its own pace.

Two threads share the work. The reader thread pulls event batches from the source and bins them into
dt-wide frames at model resolution as they arrive (the compiled kernel of masnn.datasets.framing, driven
frame by frame), keeping only a ring of the newest T frames; every ``stride`` frames it hands a window to
the main thread, which classifies it, logs it and draws the dashboard. numba's kernels run without the GIL
and torch releases it, so reading goes on while the network runs.

The hand-off holds at most ``capacity`` windows. When the classifier falls behind, the oldest waiting
window is dropped and counted: memory and latency stay bounded whatever the event rate, and the dashboard
says how much went unclassified. A replay at speed 0 is the exception: a file can wait, so there the
reader waits for the classifier and every window is classified.

A camera or network stream that goes away is reopened with exponential backoff; framing starts afresh on
the new connection, whose clock may differ from the old one's.
"""
from __future__ import annotations

import json
import os
import queue
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Callable, Iterator, Protocol
from urllib.parse import urlsplit

import numpy as np

from masnn.datasets.denoise import filter_background_activity, new_filter_state
from masnn.datasets.events import EventFileError, as_events
from masnn.datasets.framing import COUNT_DTYPE, UnsortedEvents, _count_cap, _FrameBlocks
from masnn.datasets.ingest import FramingConfig, contact_sheet
from masnn.datasets.readers import open_recording

BACKOFF_S = (0.5, 8.0)  # first and longest wait between reconnection attempts (doubling in between)
POLL_S = 0.001  # a live source with nothing new is asked again after this long
PACE_SLICE_US = 5_000  # a paced replay hands events over in slices this long, as a camera would
TICK_S = 0.1  # the dashboard is redrawn at least this often, windows or not
READER_JOIN_S = 2.0  # a reader stuck inside a device call is a daemon thread: never wait for it forever
HISTORY = 100_000  # predictions whose latencies the summary's percentiles cover
DASHBOARD_HISTORY = 1_000  # the dashboard's: the last minute or two, and cheap to sort ten times a second
RECENT_ACTIONS = 6


def dv_message(error: Exception) -> str:
    """dv-processing's error text without its source path, stack trace and boost details."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for line in lines:
        if line.startswith("RuntimeError: "):
            return line[len("RuntimeError: "):]
    return lines[0].split(" [", 1)[0] if lines else type(error).__name__


# --- sources -------------------------------------------------------------------------------------------

class Connection(Protocol):
    name: str
    sensor_size: tuple[int, int]
    lost: str  # why batches() ended

    def batches(self, stop: threading.Event) -> Iterator[np.ndarray | None]:
        """Canonical event arrays as they arrive; None when there is nothing new yet."""

    def close(self) -> None: ...


@dataclass
class Source:
    """Where events come from. ``connect`` opens a connection or raises OSError / EventFileError naming the
    problem. A source that ``reconnects`` is reopened when it ends (cameras, streams); otherwise its end is
    the end of the run. ``speed``: stream seconds per wall second (0: unpaced, as fast as it is read)."""

    name: str
    connect: Callable[[], Connection]
    reconnects: bool = True
    lossless: bool = False  # the reader waits for the classifier instead of dropping windows
    speed: float = 1.0


class DvConnection:
    """A dv-processing input (camera or network reader) as batches of canonical events."""

    def __init__(self, reader, name: str):
        if not reader.isEventStreamAvailable():
            raise OSError(f"{name}: has no event stream")
        resolution = reader.getEventResolution()
        if resolution is None:
            raise OSError(f"{name}: the event stream does not give its resolution")
        self.reader, self.name = reader, name
        self.sensor_size = (int(resolution[0]), int(resolution[1]))
        self.lost = ""

    def batches(self, stop):
        while not stop.is_set():
            try:
                batch = self.reader.getNextEventBatch()
            except RuntimeError as error:  # the device or the peer went away mid-read
                self.lost = dv_message(error)
                return
            if batch is None:
                if not self.reader.isRunning():
                    self.lost = "the stream ended"
                    return
                yield None
            elif batch.size():
                yield as_events(batch.numpy())

    def close(self):
        self.reader = None


def camera_source(serial: str | None = None) -> Source:
    name = f"camera {serial}" if serial else "camera"

    def connect():
        import dv_processing as dv

        try:
            camera = dv.io.camera.open(serial) if serial else dv.io.camera.open()
        except IndexError:  # dv-processing's answer when discovery found no camera at all
            raise OSError("no DVS camera found (none connected, or not readable by this user)") from None
        except RuntimeError as error:
            raise OSError(f"{name}: cannot be opened ({dv_message(error)})") from None
        return DvConnection(camera, f"camera {camera.getCameraName()}")

    return Source(name, connect)


def parse_stream_url(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:  # out of range or not a number
        port = None
    if parts.scheme != "tcp" or not parts.hostname or not port or parts.path not in ("", "/"):
        raise ValueError(f"--stream {url!r}: expected tcp://HOST:PORT, e.g. tcp://127.0.0.1:7777")
    return parts.hostname, port


def stream_source(url: str) -> Source:
    host, port = parse_stream_url(url)

    def connect():
        import dv_processing as dv

        try:
            reader = dv.io.NetworkReader(host, port)
        except RuntimeError as error:
            raise OSError(f"{url}: cannot connect ({dv_message(error)})") from None
        return DvConnection(reader, url)

    return Source(url, connect)


class Pacer:
    """Holds events back until the wall clock reaches their stream time, scaled by ``speed`` (0: no waiting)."""

    def __init__(self, speed: float):
        self.speed = speed
        self.origin: tuple[float, int] | None = None  # (wall, stream time) of the first event

    def wait_for(self, t_us: int, stop: threading.Event) -> bool:
        """False when ``stop`` was set (while waiting or before)."""
        if not self.speed:
            return not stop.is_set()
        if self.origin is None:
            self.origin = (time.perf_counter(), t_us)
        delay = self.origin[0] + (t_us - self.origin[1]) / 1e6 / self.speed - time.perf_counter()
        return not stop.wait(delay) if delay > 0 else not stop.is_set()


def time_slices(events: np.ndarray, slice_us: int) -> list[np.ndarray]:
    """Time-sorted events cut at multiples of ``slice_us`` (views, no copy)."""
    t = events["t"]
    first = int(t[0])
    edges = np.arange(first - first % slice_us + slice_us, int(t[-1]) + 1, slice_us)
    return [piece for piece in np.split(events, np.searchsorted(t, edges)) if len(piece)]


class ReplayConnection:
    def __init__(self, path: Path, speed: float):
        self.recording = open_recording(path)
        self.name, self.sensor_size, self.speed = f"replay {path}", self.recording.info.sensor_size, speed
        self.lost = "end of the recording"

    def batches(self, stop):
        pacer = Pacer(self.speed)
        for chunk in self.recording.chunks():
            for piece in time_slices(chunk, PACE_SLICE_US) if self.speed else [chunk]:
                if not pacer.wait_for(int(piece["t"][-1]), stop):
                    return
                yield piece

    def close(self):
        self.recording.close()


def replay_source(path: str | Path, speed: float = 1.0) -> Source:
    """A recording played as a live stream: real speed by default; speed 0 plays it as fast as the
    classifier goes, classifying every window."""
    if speed < 0:
        raise ValueError(f"--speed must be 0 (unpaced) or positive, got {speed}")
    path = Path(path)
    with open_recording(path):  # an unreadable file fails here, before any model is loaded
        pass
    return Source(f"replay {path}", lambda: ReplayConnection(path, speed), reconnects=False, lossless=speed == 0, speed=speed)


# --- frames and windows --------------------------------------------------------------------------------

@dataclass
class LiveWindow:
    index: int  # windows made on this connection, dropped ones included
    connection: int  # framing restarts on every connection
    first_frame: int  # frame number of frames[0] on this connection
    start_us: int  # stream time
    end_us: int
    frames: np.ndarray  # [T, 2, H, W] int16 counts
    frame_events: np.ndarray  # events counted in each frame
    arrival: float  # perf_counter() when the batch holding the window's last event was handed over
    origin_us: int = 0  # the connection's first event


@dataclass
class Framed:
    windows: list[LiveWindow]
    superseded: int  # windows completed by the same batch as a newer one and never handed over
    framed_events: int  # events in the frames this batch completed


class WindowFramer:
    """Events -> windows of the newest T frames at model resolution, one every ``stride_frames`` frames.

    A frame is complete once an event at or after its end arrives (stream time has passed it); only the
    newest T frames are kept. ``newest_only``: when one batch completes several windows (a burst after a
    silent stream), only the newest is worth classifying; the others count as superseded."""

    def __init__(self, framing: FramingConfig, sensor_size: tuple[int, int], stride_frames: int,
                 connection: int = 0, newest_only: bool = True):
        self.framing, self.stride, self.connection, self.newest_only = framing, stride_frames, connection, newest_only
        self.steps, self.dt = framing.n_frames, framing.dt_us
        spatial = framing.spatial_map(sensor_size)
        self.tables = spatial.tables if spatial is not None else (None, None)
        width, height = framing.output_size(sensor_size)
        self.ring = np.zeros((self.steps, 2, height, width), COUNT_DTYPE)
        self.ring_events = np.zeros(self.steps, np.int64)
        self.denoise = new_filter_state(sensor_size) if framing.denoise_us else None
        self.frame_size = (width, height)
        self.blocks = None
        self.origin = self.last_t = None
        self.completed = 0  # frames completed on this connection
        self.windows_made = 0
        self.previous_arrival = self.frame_arrival = 0.0

    def add(self, events: np.ndarray, arrival: float) -> Framed:
        if self.denoise is not None:
            events = filter_background_activity(events, self.denoise, self.framing.denoise_us)
        if len(events) == 0:
            return Framed([], 0, 0)
        first_t = int(events["t"][0])
        if self.blocks is None:
            self.origin = first_t
            self.blocks = _FrameBlocks(self.frame_size, self.tables, first_t, self.dt, 1, _count_cap(COUNT_DTYPE, None), COUNT_DTYPE)
        elif first_t < self.last_t:
            raise UnsortedEvents(f"stream time went back from t={self.last_t} to t={first_t} us")
        self.last_t = int(events["t"][-1])
        windows, framed = [], 0
        for frame in self.blocks.add(events):
            frame_end = self.origin + (self.completed + 1) * self.dt
            # the frame's last event came with this batch unless the batch starts after the frame
            framed += self._push(frame[0], arrival if first_t < frame_end else self.previous_arrival)
            if self.completed >= self.steps and (self.completed - self.steps) % self.stride == 0:
                windows.append(self._snapshot())
        self.previous_arrival = arrival
        if self.newest_only and len(windows) > 1:
            return Framed(windows[-1:], len(windows) - 1, framed)
        return Framed(windows, 0, framed)

    def _push(self, frame: np.ndarray, arrival: float) -> int:
        slot = self.completed % self.steps
        self.ring[slot] = frame
        self.ring_events[slot] = events = int(frame.sum())
        self.completed += 1
        self.frame_arrival = arrival
        return events

    def _snapshot(self) -> LiveWindow:
        split = self.completed % self.steps  # the oldest frame's slot
        first = self.completed - self.steps
        window = LiveWindow(self.windows_made, self.connection, first, self.origin + first * self.dt, self.origin + self.completed * self.dt,
                            np.concatenate((self.ring[split:], self.ring[:split])),
                            np.concatenate((self.ring_events[split:], self.ring_events[:split])), self.frame_arrival, self.origin)
        self.windows_made += 1
        return window


class Handoff:
    """Windows from the reader to the classifier, at most ``capacity`` held. When full, the oldest waiting
    window is dropped (live: the newest data is the one worth classifying), or with ``lossless`` the reader
    waits."""

    def __init__(self, capacity: int = 1, lossless: bool = False):
        if capacity < 1:
            raise ValueError(f"the hand-off must hold at least one window, got {capacity}")
        self.capacity, self.lossless = capacity, lossless
        self._items: deque[LiveWindow] = deque()
        self._changed = threading.Condition()
        self.closed = False
        self.dropped = 0
        self.high_water = 0  # the most windows it ever held

    def put(self, window: LiveWindow, stop: threading.Event) -> LiveWindow | None:
        """Returns the window dropped to make room, if any."""
        with self._changed:
            while self.lossless and len(self._items) >= self.capacity:
                if stop.is_set():  # the run is over: nothing waits for this window any more
                    return None
                self._changed.wait(TICK_S)
            dropped = self._items.popleft() if len(self._items) >= self.capacity else None
            if dropped is not None:
                self.dropped += 1
            self._items.append(window)
            self.high_water = max(self.high_water, len(self._items))
            self._changed.notify_all()
            return dropped

    def get(self, timeout: float) -> LiveWindow | None:
        with self._changed:
            if not self._items and not self.closed:
                self._changed.wait(timeout)
            if not self._items:
                return None
            window = self._items.popleft()
            self._changed.notify_all()
            return window

    def close(self) -> None:
        with self._changed:
            self.closed = True
            self._changed.notify_all()

    def drop_waiting(self) -> None:
        """At the end of a run: windows still waiting were never classified, so they count as dropped."""
        with self._changed:
            self.dropped += len(self._items)
            self._items.clear()

    @property
    def finished(self) -> bool:
        return self.closed and not self._items


# --- the pipeline --------------------------------------------------------------------------------------

@dataclass
class LiveOptions:
    stride_ms: float = 100.0  # rounded down to whole frames, so updates come at least this often
    top_k: int = 3
    capacity: int = 1  # windows waiting for the classifier
    backoff_s: tuple[float, float] = BACKOFF_S
    log: Path | None = None  # JSON lines: every prediction, reconnects, the summary
    torch_threads: int | None = None  # None: all cores but the reader's
    warm_up: bool = True  # one inference on empty frames first, so the first window is not the slow one

    def stride_frames(self, dt_us: int) -> int:
        if self.stride_ms <= 0:
            raise ValueError(f"--stride must be positive, got {self.stride_ms} ms")
        return max(1, int(self.stride_ms * 1000 // dt_us))


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
        top = record["top_k"][0]
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


class LivePipeline:
    """Source -> reader thread (framing, windows) -> bounded hand-off -> classifier in the calling thread.

    ``classifier`` is a masnn.classify.Classifier or anything with its ``framing``, ``class_names``,
    ``window_us`` and ``__call__(frames, top_k)``."""

    def __init__(self, source: Source, classifier, options: LiveOptions = LiveOptions()):
        self.source, self.classifier, self.options = source, classifier, options
        self.stride_frames = options.stride_frames(classifier.framing.dt_us)
        if options.top_k < 1:
            raise ValueError(f"--top-k must be at least 1, got {options.top_k}")
        self.handoff = Handoff(options.capacity, source.lossless)
        self.ingest = IngestState(source=source.name)
        self.stats = LiveStats()
        self._stop = threading.Event()
        self._notices: queue.SimpleQueue = queue.SimpleQueue()
        self._error: BaseException | None = None
        self._log = JsonLines(None)
        self.started = self.ended = None
        self.interrupted = False

    def stop(self) -> None:
        """Ends the run (from any thread); ``run`` then returns its summary."""
        self._stop.set()

    @property
    def dropped_windows(self) -> int:
        return self.handoff.dropped + self.ingest.superseded

    def run(self, on_prediction: Callable[[dict, LiveWindow], None] | None = None,
            on_tick: Callable[["LivePipeline"], None] | None = None) -> dict:
        """Classifies until the source ends (a replay), ``stop()`` or Ctrl-C; returns the summary. The first
        connection is made here: if it fails, the error is the caller's (a wrong address, no camera)."""
        connection = self.source.connect()
        threads = self._set_torch_threads()
        self._log = JsonLines(self.options.log)
        reader = threading.Thread(target=self._read, args=(connection,), name="masnn-live-reader", daemon=True)
        try:
            self._warm_up(connection.sensor_size)
            self.started = time.perf_counter()
            reader.start()
            self._serve(on_prediction, on_tick)
        except KeyboardInterrupt:
            self.interrupted = True
        finally:
            self._stop.set()
            if reader.ident is None:  # never started: the connection is still ours to close
                connection.close()
            elif reader.is_alive():
                reader.join(READER_JOIN_S)
            self.handoff.drop_waiting()
            self.ended = time.perf_counter()
            self._handle_notices()
            summary = self.summary()
            self._log.write({"event": "summary", "wall_time": time.time(), **summary})
            self._log.close()
            self._restore_torch_threads(threads)
        if self._error is not None:
            raise self._error
        return summary

    def _serve(self, on_prediction, on_tick) -> None:
        while not self._stop.is_set():
            window = self.handoff.get(TICK_S)
            self._handle_notices()
            if window is not None:
                record = self._classify(window)
                if on_prediction is not None:
                    on_prediction(record, window)
            elif self.handoff.finished:
                return
            if on_tick is not None:
                on_tick(self)

    def _classify(self, window: LiveWindow) -> dict:
        entry = self.classifier(window.frames, self.options.top_k)
        done = time.perf_counter()
        record = {"event": "prediction", "index": self.stats.predictions, "wall_time": time.time(),
                  "connection": window.connection, "window": window.index,
                  "stream_us": [window.start_us, window.end_us],
                  "stream_s": [(window.start_us - window.origin_us) / 1e6, (window.end_us - window.origin_us) / 1e6],
                  "top_k": entry["top_k"], "stats": entry["stats"], "latency_ms": 1e3 * (done - window.arrival),
                  "dropped_windows": self.dropped_windows}
        self.stats.add(record, window, done)
        self._log.write(record)
        return record

    def _warm_up(self, sensor_size: tuple[int, int]) -> None:
        if self.options.warm_up:
            framing = self.classifier.framing
            width, height = framing.output_size(sensor_size)
            self.classifier(np.zeros((framing.n_frames, 2, height, width), COUNT_DTYPE), 1)

    def _set_torch_threads(self) -> int | None:
        """On a few cores torch's own threads fight the reader for them; leave the reader one."""
        import torch

        previous = torch.get_num_threads()
        wanted = self.options.torch_threads or max(1, (os.cpu_count() or 1) - 1)
        torch.set_num_threads(wanted)
        return previous

    @staticmethod
    def _restore_torch_threads(previous: int | None) -> None:
        import torch

        if previous:
            torch.set_num_threads(previous)

    # -- the reader thread --

    def _read(self, connection: Connection) -> None:
        cpu_started = time.thread_time()
        try:
            while connection is not None:
                try:
                    self._ingest(connection)
                finally:
                    connection.close()
                if self._stop.is_set() or not self.source.reconnects:
                    self.ingest.status = "ended" if self._stop.is_set() else f"ended ({connection.lost})"
                    connection = None
                else:
                    connection = self._reconnect(connection.lost)
        except BaseException as error:  # handed to the main thread, which raises it after the summary
            self._error = error
            self._stop.set()
        finally:
            self.ingest.reader_cpu_s = time.thread_time() - cpu_started
            self.handoff.close()

    def _ingest(self, connection: Connection) -> None:
        state = self.ingest
        state.connection += 1
        state.source, state.sensor_size, state.status, state.clock = connection.name, connection.sensor_size, "connected", None
        framer = self._framer(connection)
        for batch in connection.batches(self._stop):
            if batch is None:
                self._stop.wait(POLL_S)
                continue
            arrival = time.perf_counter()
            state.note_batch(batch, arrival, self.source.speed)
            try:
                framed = framer.add(batch, arrival)
            except UnsortedEvents as error:  # a device reset or a restarted stream: frames start afresh
                self._notify({"event": "time-reset", "source": connection.name, "reason": str(error)})
                framer, state.clock = self._framer(connection), None
                framed = framer.add(batch, arrival)
            state.superseded += framed.superseded
            state.windows += len(framed.windows) + framed.superseded
            state.framed_events += framed.framed_events
            for window in framed.windows:
                self.handoff.put(window, self._stop)

    def _framer(self, connection: Connection) -> WindowFramer:
        return WindowFramer(self.classifier.framing, connection.sensor_size, self.stride_frames,
                            self.ingest.connection, newest_only=not self.handoff.lossless)

    def _reconnect(self, reason: str) -> Connection | None:
        """Reopens the source, waiting 0.5 s, 1 s, 2 s ... 8 s between attempts, until it answers or the run ends."""
        lost_at = time.perf_counter()
        self._notify({"event": "disconnect", "source": self.source.name, "reason": reason})
        delay, attempts = self.options.backoff_s[0], 0
        while True:
            self.ingest.status = f"disconnected ({reason}); attempt {attempts + 1} in {delay:g} s"
            if self._stop.wait(delay):
                return None
            attempts += 1
            try:
                connection = self.source.connect()
            except (OSError, EventFileError, RuntimeError) as error:
                reason = str(error)
                delay = min(2 * delay, self.options.backoff_s[1])
                continue
            self._notify({"event": "reconnect", "source": self.source.name, "attempts": attempts,
                          "offline_s": round(time.perf_counter() - lost_at, 3)})
            return connection

    def _notify(self, notice: dict) -> None:
        self._notices.put({**notice, "wall_time": time.time()})

    def _handle_notices(self) -> None:
        while True:
            try:
                notice = self._notices.get_nowait()
            except queue.Empty:
                return
            self.stats.reconnects += notice["event"] == "reconnect"
            self.stats.disconnects += notice["event"] == "disconnect"
            self.stats.notices.append(notice)
            self._log.write(notice)

    # -- figures --

    def snapshot(self, latency_history: int | None = DASHBOARD_HISTORY) -> dict:
        """Every figure the dashboard and the summary show, as plain data; latency percentiles over the
        newest ``latency_history`` predictions (None: all kept)."""
        now = self.ended or time.perf_counter()
        stats, ingest, framing = self.stats, self.ingest, self.classifier.framing
        wall = now - self.started if self.started else 0.0
        ingest_s = (ingest.last_batch - ingest.first_batch) if ingest.first_batch and ingest.last_batch else 0.0
        last = stats.last
        window_s = self.classifier.window_us / 1e6
        return {
            "source": ingest.source, "status": ingest.status, "sensor": ingest.sensor_size, "connections": ingest.connection,
            "model": {"weights": getattr(self.classifier, "weights", "?"), "T": framing.n_frames, "dt_ms": framing.dt_us / 1000,
                      "window_ms": window_s * 1000, "stride_ms": self.stride_frames * framing.dt_us / 1000},
            "wall_s": wall,
            "current": last["top_k"] if last else [],
            "current_stream_s": last["stream_s"] if last else None,
            "recent_actions": list(stats.recent),
            "events": ingest.events,
            "events_per_s": stats.events_per_s(now, ingest.events),
            "events_per_s_mean": ingest.events / ingest_s if ingest_s > 0 else 0.0,
            "spikes_per_s": last["stats"]["spikes"] / window_s if last else 0.0,  # the network's activity in the last window
            "energy_per_inference_uj": last["stats"]["energy_uj"] if last else None,
            "energy_per_inference_mean_uj": stats.energy_uj / stats.predictions if stats.predictions else None,
            "predictions": stats.predictions,
            "predictions_per_s": self._prediction_rate(),
            "latency_ms": percentiles(stats.latency_ms, latency_history),
            "model_latency_ms": percentiles(stats.model_ms, latency_history),
            "windows": ingest.windows,
            "dropped_windows": self.dropped_windows,
            "unclassified_events": max(0, ingest.framed_events - stats.covered_events),
            "handoff": {"capacity": self.handoff.capacity, "high_water": self.handoff.high_water},
            "lag_s": ingest.lag_s if self.source.speed else None,
            "max_lag_s": ingest.max_lag_s if self.source.speed else None,
            "reader_cpu_share": ingest.reader_cpu_s / ingest_s if ingest_s > 0 else None,  # of one core, while streaming
            "reconnects": stats.reconnects,
            "notices": list(stats.notices),
        }

    def _prediction_rate(self) -> float:
        """Predictions per second once they started (the first needs a whole window of stream)."""
        stats = self.stats
        return (stats.predictions - 1) / (stats.last_at - stats.first_at) if stats.predictions > 1 and stats.last_at > stats.first_at else 0.0

    def summary(self) -> dict:
        """The run's figures; the dashboard's momentary ones (the last second, the last window) are left out."""
        figures = self.snapshot(latency_history=None)
        for key in ("current", "current_stream_s", "notices", "status", "recent_actions", "events_per_s", "spikes_per_s", "energy_per_inference_uj"):
            figures.pop(key)
        window_s = self.classifier.window_us / 1e6
        figures["spikes_per_s_mean"] = self.stats.spikes / (self.stats.predictions * window_s) if self.stats.predictions else 0.0
        figures["interrupted"] = self.interrupted
        return figures


# --- the terminal and the window ------------------------------------------------------------------------

def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def _count(value: float) -> str:
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            return f"{value / limit:.2f} {suffix}"
    return f"{value:.0f}"


def render_dashboard(figures: dict):
    """The rich renderable of one snapshot()."""
    from rich.console import Group
    from rich.panel import Panel
    from rich.progress_bar import ProgressBar
    from rich.table import Table

    actions = Table.grid(padding=(0, 2))
    for rank, entry in enumerate(figures["current"]):
        style = "bold green" if rank == 0 else "dim"
        actions.add_row(f"[{style}]{entry['class']}[/]", ProgressBar(total=1.0, completed=entry["probability"], width=30),
                        f"{entry['probability']:.2f}")
    if not figures["current"]:
        actions.add_row("[dim]waiting for the first window[/]")
    recent = "  ".join(f"{run['class']} ({run['to_s'] - run['from_s'] + figures['model']['stride_ms'] / 1000:.1f} s)"
                       for run in reversed(figures["recent_actions"])) or "-"
    grid = Table.grid(padding=(0, 2))
    grid.add_row("last actions", recent)
    grid.add_row("events/s", f"{_count(figures['events_per_s'])}  (total {_count(figures['events'])})")
    grid.add_row("spikes/s", f"{_count(figures['spikes_per_s'])}  (in the last window)")
    energy = figures["energy_per_inference_uj"]
    grid.add_row("energy/inference", "-" if energy is None else f"{energy:.2f} uJ")
    grid.add_row("latency", f"p50 {_ms(figures['latency_ms']['p50'])}  p99 {_ms(figures['latency_ms']['p99'])}  "
                            f"(model p50 {_ms(figures['model_latency_ms']['p50'])})")
    grid.add_row("predictions", f"{figures['predictions']}  ({figures['predictions_per_s']:.1f}/s)")
    dropped = figures["dropped_windows"]
    style = "bold red" if dropped else "green"
    grid.add_row("data dropped", f"[{style}]{dropped} of {figures['windows']} windows[/], "
                                 f"{_count(figures['unclassified_events'])} events in no classified window")
    if figures["lag_s"] is not None:
        grid.add_row("stream lag", f"{1e3 * figures['lag_s']:.0f} ms (max {1e3 * figures['max_lag_s']:.0f} ms)")
    grid.add_row("reconnects", str(figures["reconnects"]))
    for notice in figures["notices"][-2:]:
        grid.add_row("[yellow]" + notice["event"] + "[/]", _notice_text(notice))
    model = figures["model"]
    sensor = "x".join(map(str, figures["sensor"])) if figures["sensor"] else "?"
    title = f"masnn live · {figures['source']} · {figures['status']} · {sensor}"
    subtitle = f"T {model['T']} x {model['dt_ms']:g} ms = {model['window_ms']:g} ms window, every {model['stride_ms']:g} ms · Ctrl-C ends"
    return Panel(Group(actions, "", grid), title=title, subtitle=subtitle)


def _notice_text(notice: dict) -> str:
    when = time.strftime("%H:%M:%S", time.localtime(notice["wall_time"]))
    if notice["event"] == "reconnect":
        return f"{when} back after {notice['offline_s']:.1f} s ({notice['attempts']} attempts)"
    return f"{when} {notice.get('reason', '')}"


def summary_table(summary: dict):
    from rich.table import Table

    table = Table(title=f"masnn live: {summary['source']}" + (" (interrupted)" if summary["interrupted"] else ""), show_header=False)
    rows = [
        ("predictions", f"{summary['predictions']} in {summary['wall_s']:.1f} s ({summary['predictions_per_s']:.1f}/s)"),
        ("dropped windows", f"{summary['dropped_windows']} of {summary['windows']} "
                            f"({_count(summary['unclassified_events'])} events in no classified window)"),
        ("events", f"{summary['events']:,} ({_count(summary['events_per_s_mean'])}/s while streaming)"),
        ("latency, event to prediction", f"p50 {_ms(summary['latency_ms']['p50'])}, p99 {_ms(summary['latency_ms']['p99'])}"),
        ("model latency", f"p50 {_ms(summary['model_latency_ms']['p50'])}, p99 {_ms(summary['model_latency_ms']['p99'])}"),
        ("energy per inference", "-" if summary["energy_per_inference_mean_uj"] is None else f"{summary['energy_per_inference_mean_uj']:.2f} uJ"),
        ("reconnects", str(summary["reconnects"])),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table


def prediction_line(record: dict) -> str:
    """One line per prediction where the output is no terminal (a pipe, a file)."""
    top = record["top_k"][0]
    return (f"{record['stream_s'][1]:8.2f} s  {top['class']:<24} {top['probability']:.2f}  "
            f"latency {record['latency_ms']:.0f} ms  dropped {record['dropped_windows']}")


def event_image(frames: np.ndarray, label: str, side: int = 384) -> np.ndarray:
    """The frames summed (what the network saw lately: ON red, OFF blue), enlarged, with the label on top."""
    import cv2

    image = contact_sheet(frames.sum(0, keepdims=True, dtype=np.int32), columns=1, min_side=side)
    band = np.full((28, image.shape[1], 3), 24, np.uint8)
    cv2.putText(band, label, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1, cv2.LINE_AA)
    return np.concatenate([band, image])


class EventView:
    """--show: an OpenCV window with the newest stride of frames and the current label; q or Esc ends the run."""

    title = "masnn live"

    def __init__(self, stride_frames: int):
        if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise OSError("--show needs a display (neither DISPLAY nor WAYLAND_DISPLAY is set)")
        import cv2

        self.cv2, self.stride_frames = cv2, stride_frames
        try:
            cv2.namedWindow(self.title, cv2.WINDOW_AUTOSIZE)
        except cv2.error as error:
            raise OSError(f"--show: cannot open a window ({str(error).strip().splitlines()[-1]})") from None

    def show(self, record: dict, window: LiveWindow) -> bool:
        top = record["top_k"][0]
        self.cv2.imshow(self.title, event_image(window.frames[-self.stride_frames:], f"{top['class']}  {top['probability']:.2f}"))
        return self.poll()

    def poll(self) -> bool:
        """False once the user asked to quit."""
        return self.cv2.waitKey(1) & 0xFF not in (ord("q"), 27)

    def close(self) -> None:
        self.cv2.destroyWindow(self.title)


def run_live(source: Source, classifier, options: LiveOptions, console, show: bool = False) -> dict:
    """`masnn live`: the pipeline with a dashboard (or one line per prediction off a terminal), an optional
    OpenCV view, and the summary at the end."""
    from rich.live import Live

    pipeline = LivePipeline(source, classifier, options)
    view = EventView(pipeline.stride_frames) if show else None

    def on_prediction(record, window):
        if not console.is_terminal:
            console.print(prediction_line(record), highlight=False)
        if view is not None and not view.show(record, window):
            pipeline.stop()

    def on_tick(p):
        if live is not None:
            live.update(render_dashboard(p.snapshot()))
        if view is not None and not view.poll():
            p.stop()

    live = Live(render_dashboard(pipeline.snapshot()), console=console, refresh_per_second=10) if console.is_terminal else None
    try:
        if live is not None:
            with live:
                summary = pipeline.run(on_prediction, on_tick)
        else:
            summary = pipeline.run(on_prediction, on_tick)
    finally:
        if view is not None:
            view.close()
    console.print(summary_table(summary))
    return summary
