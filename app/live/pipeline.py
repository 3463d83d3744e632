"""`masnn live`: classify a live event stream: a DVS camera, a DV network stream, or a recording replayed at
its own pace.

Two threads share the work. The reader thread pulls event batches from the source and bins them into
dt-wide frames at model resolution as they arrive (masnn.datasets.transforms.stream's framer, one frame at a
time), keeping only a ring of the newest T frames; every ``stride`` frames it hands a window to
the main thread, which classifies it, logs it and draws the dashboard. numba's kernels run without the GIL
and torch releases it, so reading goes on while the network runs.

The hand-off holds at most ``capacity`` windows. When the classifier falls behind, the oldest waiting
window is dropped and counted: memory and latency stay bounded whatever the event rate, and the dashboard
says how much went unclassified. A replay at speed 0 is the exception: a file can wait, so there the
reader waits for the classifier and every window is classified.

A camera or network stream that goes away is reopened with exponential backoff; framing starts afresh on
the new connection, whose clock may differ from the old one's. A network stream that sends nothing for its read
timeout is one that went away, from the first connection on; its damaged packets are skipped and counted.
Sources are in masnn.live.sources (network streams in masnn.live.network), the framer in masnn.live.framer, the
hand-off in masnn.live.handoff, the figures and the log in masnn.live.stats, the dashboard and the OpenCV view
in masnn.live.view.
"""
from __future__ import annotations

import os
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from masnn.datasets.events import EventFileError
from masnn.datasets.transforms.framing import COUNT_DTYPE, UnsortedEvents
from masnn.live.framer import Framed, LiveWindow, WindowFramer
from masnn.live.handoff import Handoff
from masnn.live.network import StreamSilent
from masnn.live.sources import POLL_S, Connection, Source
from masnn.live.stats import IngestState, JsonLines, LiveStats, percentiles
from masnn.live.view import EventView, notice_line, prediction_line, render_dashboard, summary_table

BACKOFF_S = (0.5, 8.0)  # first and longest wait between reconnection attempts (doubling in between)
TICK_S = 0.1  # the dashboard is redrawn at least this often, windows or not
READER_JOIN_S = 2.0  # a reader stuck inside a device call is a daemon thread: never wait for it forever
DASHBOARD_HISTORY = 1_000  # the dashboard's latency percentiles: the last minute or two, and cheap to sort ten times a second


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
        connection, silent = self._first_connection()
        threads = self._set_torch_threads()
        self._log = JsonLines(self.options.log)
        reader = threading.Thread(target=self._read, args=(connection, silent), name="masnn-live-reader", daemon=True)
        try:
            self._warm_up(connection.sensor_size if connection is not None else None)
            self.started = time.perf_counter()
            reader.start()
            self._serve(on_prediction, on_tick)
        except KeyboardInterrupt:
            self.interrupted = True
        finally:
            self._stop_reader(reader, connection)
            summary = self._close_run()
            self._restore_torch_threads(threads)
        if self._error is not None:
            raise self._error
        return summary

    def _first_connection(self) -> tuple[Connection | None, str]:
        """(connection, "") or, for a server that answered but sends nothing yet, (None, why): the reader then
        retries it as a lost connection. Any other failure (a wrong address, no camera) is the caller's."""
        try:
            return self.source.connect(), ""
        except StreamSilent as error:
            if not self.source.reconnects:
                raise
            return None, str(error)

    def _stop_reader(self, reader: threading.Thread, connection: Connection | None) -> None:
        self._stop.set()
        if reader.ident is None and connection is not None:  # never started: the connection is still ours to close
            connection.close()
        elif reader.is_alive():
            reader.join(READER_JOIN_S)

    def _close_run(self) -> dict:
        """Counts the windows never classified as dropped, logs the summary and closes the log."""
        self.handoff.drop_waiting()
        self.ended = time.perf_counter()
        self._handle_notices()
        summary = self.summary()
        self._log.write({"event": "summary", "wall_time": time.time(), **summary})
        self._log.close()
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
                  "class": entry.get("class", entry["top_k"][0]["class"]),  # "uncertain" below the calibrated threshold
                  "top_k": entry["top_k"], "stats": entry["stats"], "latency_ms": 1e3 * (done - window.arrival),
                  "dropped_windows": self.dropped_windows}
        self.stats.add(record, window, done)
        self._log.write(record)
        return record

    def _warm_up(self, sensor_size: tuple[int, int] | None) -> None:
        if self.options.warm_up and sensor_size is not None:  # None: no connection yet, the first window warms up
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

    def _read(self, connection: Connection | None, silent: str = "") -> None:
        cpu_started = time.thread_time()
        try:
            if connection is None:
                connection = self._reconnect(silent)
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
        framer, damaged = self._framer(connection), 0
        for batch in connection.batches(self._stop):
            damaged = self._note_damage(connection, damaged)
            if batch is None:
                self._stop.wait(POLL_S)
                continue
            arrival = time.perf_counter()
            state.note_batch(batch, arrival, self.source.speed)
            framer = self._frame(framer, connection, batch, arrival)
        self._note_damage(connection, damaged)

    def _note_damage(self, connection: Connection, noted: int) -> int:
        """Counts and reports the packets the connection skipped since ``noted`` of them; returns its count."""
        damaged = getattr(connection, "damaged", 0)
        if damaged > noted:
            self.ingest.damaged_packets += damaged - noted
            self._notify({"event": "damaged-packet", "source": connection.name, "skipped": damaged - noted,
                          "reason": connection.damage})
        return damaged

    def _frame(self, framer: WindowFramer, connection: Connection, batch: np.ndarray, arrival: float) -> WindowFramer:
        """Frames one batch and hands its windows over; returns the framer for the next batch."""
        try:
            framed = framer.add(batch, arrival)
        except UnsortedEvents as error:  # a device reset or a restarted stream: frames start afresh
            self._notify({"event": "time-reset", "source": connection.name, "reason": str(error)})
            framer, self.ingest.clock = self._framer(connection), None
            framed = framer.add(batch, arrival)
        self._hand_over(framed)
        return framer

    def _hand_over(self, framed: Framed) -> None:
        state = self.ingest
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
            self.stats.notice_count += 1
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
            "model": {"weights": getattr(self.classifier, "weights", "?"), "T": framing.n_frames, "dt_us": framing.dt_us,
                      "window_us": self.classifier.window_us, "stride_us": self.stride_frames * framing.dt_us,
                      "both_ways": getattr(self.classifier, "both_ways", False)},
            "wall_s": wall,
            "current": last["top_k"] if last else [],
            "current_class": last.get("class") if last else None,  # the answer: a class or "uncertain"
            "uncertain_threshold": getattr(self.classifier, "uncertain_threshold", None),
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
            "damaged_packets": ingest.damaged_packets,
            "notices": list(stats.notices),
        }

    def _prediction_rate(self) -> float:
        """Predictions per second once they started (the first needs a whole window of stream)."""
        stats = self.stats
        return (stats.predictions - 1) / (stats.last_at - stats.first_at) if stats.predictions > 1 and stats.last_at > stats.first_at else 0.0

    def summary(self) -> dict:
        """The run's figures; the dashboard's momentary ones (the last second, the last window) are left out."""
        figures = self.snapshot(latency_history=None)
        for key in ("current", "current_class", "current_stream_s", "notices", "status", "recent_actions", "events_per_s", "spikes_per_s", "energy_per_inference_uj"):
            figures.pop(key)
        window_s = self.classifier.window_us / 1e6
        figures["spikes_per_s_mean"] = self.stats.spikes / (self.stats.predictions * window_s) if self.stats.predictions else 0.0
        figures["interrupted"] = self.interrupted
        return figures


def run_live(source: Source, classifier, options: LiveOptions, console, show: bool = False) -> dict:
    """`masnn live`: the pipeline with a dashboard (or one line per prediction and per notice off a terminal),
    an optional OpenCV view, and the summary at the end."""
    from rich.live import Live

    pipeline = LivePipeline(source, classifier, options)
    view = EventView(pipeline.stride_frames) if show else None
    printed = 0  # notices printed off a terminal

    def print_notices(stats: LiveStats) -> None:
        nonlocal printed
        fresh = min(stats.notice_count - printed, len(stats.notices))
        for notice in list(stats.notices)[len(stats.notices) - fresh:]:
            console.print(notice_line(notice), highlight=False)
        printed = stats.notice_count

    def on_prediction(record, window):
        if not console.is_terminal:
            console.print(prediction_line(record), highlight=False)
        if view is not None and not view.show(record, window):
            pipeline.stop()

    def on_tick(p):
        if live is not None:
            live.update(render_dashboard(p.snapshot()))
        else:
            print_notices(p.stats)
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
    if live is None:
        print_notices(pipeline.stats)  # those of the run's last moments
    console.print(summary_table(summary))
    return summary
