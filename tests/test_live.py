"""`masnn live`: real DV network peers on 127.0.0.1 (dv-processing's NetworkWriter in a child process), a
replayed recording, a fake camera, and the drop policy under a slow classifier."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager

import numpy as np
import pytest
from masnn.datasets.io.readers import read_events
from masnn.datasets.loaders.table import GESTURE_CLASSES
from masnn.datasets.transforms.framing import UnsortedEvents, iter_time_frames
from masnn.datasets.transforms.pipeline import FramingConfig
from masnn.live.framer import LiveWindow, WindowFramer
from masnn.live.pipeline import Handoff, LiveOptions, LivePipeline
from masnn.live.sources import camera_source, replay_source, stream_source
from masnn.live.view import event_image, render_dashboard, summary_table

WINDOW_MS = 450  # T = 20 frames of 22.5 ms: tests need less stream before the first prediction
FAST_BACKOFF = (0.05, 0.2)

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


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


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


@contextmanager
def watchdog(pipeline, seconds=30.0):
    """A test that goes wrong ends with a failed assertion, not a hang."""
    timer = threading.Timer(seconds, pipeline.stop)
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A 2 s DVS128 gesture clip as AEDAT 4.0 and as a structured .npy, and its events."""
    from masnn.datasets.synth.generator import write_action_clip

    folder = tmp_path_factory.mktemp("live")
    path = folder / "air-guitar.aedat4"
    write_action_clip(path, "air guitar", "dvs128", 3, 2.0, "lab")
    events, _ = read_events(path)
    plain = np.zeros(len(events), [("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("p", "u1")])  # .npy refuses out-of-order fields
    for name in plain.dtype.names:
        plain[name] = events[name]
    np.save(folder / "events.npy", plain)
    return path, folder / "events.npy", events


@pytest.fixture(scope="module")
def classifier(untrained_checkpoint):
    from masnn.classify import Classifier

    return Classifier.load(untrained_checkpoint, "cpu", window_ms=WINDOW_MS)


def expected_windows(events, framing: FramingConfig, stride_frames: int) -> int:
    """Frames complete once stream time passes their end; a window every stride frames after the first T."""
    frames = (int(events["t"][-1]) - int(events["t"][0])) // framing.dt_us
    return (frames - framing.n_frames) // stride_frames + 1


class SlowClassifier:
    """Takes ``seconds`` per window: a classifier that cannot keep up with the stride."""

    def __init__(self, framing: FramingConfig, seconds: float):
        self.framing, self.seconds, self.class_names = framing, seconds, ["a", "b"]
        self.window_us = framing.dt_us * framing.n_frames
        self.calls = 0

    def __call__(self, frames, top_k):
        self.calls += 1
        time.sleep(self.seconds)
        return {"top_k": [{"class": "a", "index": 0, "probability": 1.0}], "probabilities": [1.0, 0.0],
                "stats": {"events": int(frames.sum()), "spikes": 0.0, "energy_uj": 0.0, "latency_ms": 1e3 * self.seconds}}


def test_network_stream_delivers_every_event_and_predictions(clip, classifier, tmp_path):
    _, npy, events = clip
    port = free_port()
    with peers() as start:
        start(npy, port, speed=2.0)
        pipeline = LivePipeline(stream_source(f"tcp://127.0.0.1:{port}"), classifier, LiveOptions(backoff_s=FAST_BACKOFF))
        records = []

        def stop_when_the_peer_has_gone(p):
            if p.stats.disconnects:
                p.stop()

        with watchdog(pipeline):
            summary = pipeline.run(lambda record, window: records.append(record), stop_when_the_peer_has_gone)
    assert pipeline.ingest.sensor_size == (128, 128)
    assert summary["events"] == len(events)  # every event the peer wrote came through
    assert len(records) >= 3
    assert summary["predictions"] + summary["dropped_windows"] == summary["windows"]
    for record in records:
        assert len(record["top_k"]) == 3 and {entry["class"] for entry in record["top_k"]} <= set(GESTURE_CLASSES)
        assert record["stats"]["events"] > 0 and record["latency_ms"] > 0
        assert record["stream_s"][1] - record["stream_s"][0] == pytest.approx(WINDOW_MS / 1000)


def test_a_stream_that_disconnects_is_reconnected_and_reported(clip, classifier, tmp_path):
    _, npy, _ = clip
    port, log = free_port(), tmp_path / "live.jsonl"
    with peers() as start:
        start(npy, port, 0.0, 1.2, speed=2.0)  # the first peer serves 1.2 s, then goes away
        pipeline = LivePipeline(stream_source(f"tcp://127.0.0.1:{port}"), classifier, LiveOptions(backoff_s=FAST_BACKOFF, log=log))
        records = []

        def replace_the_peer_then_stop(p):
            if p.stats.disconnects == 1 and len(started) == 0:
                started.append(start(npy, port, speed=2.0, wait=False))  # a new peer on the same port
            if sum(record["connection"] == 2 for record in records) >= 3:
                p.stop()

        started = []
        with watchdog(pipeline):
            summary = pipeline.run(lambda record, window: records.append(record), replace_the_peer_then_stop)
    assert summary["reconnects"] == 1 and summary["connections"] == 2
    assert summary["predictions"] + summary["dropped_windows"] == summary["windows"]
    assert {record["connection"] for record in records} == {1, 2}
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    kinds = [line["event"] for line in lines]
    assert kinds.index("disconnect") < kinds.index("reconnect") < len(kinds) - 1
    reconnect = lines[kinds.index("reconnect")]
    assert reconnect["attempts"] >= 1 and reconnect["offline_s"] > 0
    assert kinds[-1] == "summary" and lines[-1]["reconnects"] == 1


def test_replay_unpaced_classifies_every_window_and_logs_each(clip, classifier, tmp_path):
    path, _, events = clip
    log = tmp_path / "replay.jsonl"
    pipeline = LivePipeline(replay_source(path, speed=0), classifier, LiveOptions(log=log))
    records = []
    summary = pipeline.run(lambda record, window: records.append(record))
    expected = expected_windows(events, classifier.framing, pipeline.stride_frames)
    assert pipeline.stride_frames * classifier.framing.dt_us <= 100_000  # at least 10 updates a second
    assert summary["predictions"] == len(records) == expected and summary["dropped_windows"] == 0
    assert [record["stream_s"][1] for record in records] == pytest.approx(
        [(WINDOW_MS + k * pipeline.stride_frames * classifier.framing.dt_us / 1000) / 1000 for k in range(expected)])
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    predictions = [line for line in lines if line["event"] == "prediction"]
    assert predictions == json.loads(json.dumps(records))  # every prediction, in order, as made
    assert [line["index"] for line in predictions] == list(range(expected))
    assert lines[-1]["event"] == "summary" and lines[-1]["predictions"] == expected
    assert summary["events"] == len(events)


def test_replay_at_speed_is_paced_by_the_event_clock(clip, classifier):
    path, _, events = clip
    duration = (int(events["t"][-1]) - int(events["t"][0])) / 1e6
    pipeline = LivePipeline(replay_source(path, speed=4.0), classifier)
    started = time.perf_counter()
    summary = pipeline.run()
    assert time.perf_counter() - started >= 0.95 * duration / 4
    expected = expected_windows(events, classifier.framing, pipeline.stride_frames)
    assert summary["windows"] == expected and summary["predictions"] + summary["dropped_windows"] == expected
    assert summary["predictions"] >= 1 and abs(summary["lag_s"]) < 0.2


@pytest.mark.parametrize("capacity", [1, 3])
def test_a_slow_classifier_makes_counted_drops_and_the_handoff_stays_bounded(clip, capacity):
    path, _, events = clip
    # 0.4 s a window at twice real time: 0.8 s of stream (36 frames) passes per prediction, more than a window
    slow = SlowClassifier(FramingConfig(dt_us=22_500, n_frames=20), seconds=0.4)
    pipeline = LivePipeline(replay_source(path, speed=2.0), slow, LiveOptions(capacity=capacity, warm_up=False))
    records = []
    summary = pipeline.run(lambda record, window: records.append(record))
    expected = expected_windows(events, slow.framing, pipeline.stride_frames)
    assert summary["windows"] == expected
    assert summary["dropped_windows"] >= expected // 3
    assert summary["predictions"] + summary["dropped_windows"] == expected == slow.calls + summary["dropped_windows"]
    assert pipeline.handoff.high_water <= capacity
    assert summary["unclassified_events"] > 0  # frames no classified window covered
    assert max(record["latency_ms"] for record in records) < 1e3 * (0.4 * (capacity + 1) + 0.3)  # waiting is bounded too
    assert [record["dropped_windows"] for record in records] == sorted(record["dropped_windows"] for record in records)


def window(index: int) -> LiveWindow:
    return LiveWindow(index, 1, index, 0, 1, np.zeros((1, 2, 2, 2), np.int16), np.array([index]), 0.0)


def test_handoff_drops_the_oldest_and_never_holds_more_than_its_capacity():
    handoff, stop = Handoff(capacity=2), threading.Event()
    dropped = [handoff.put(window(i), stop) for i in range(10)]
    assert [d.index for d in dropped if d is not None] == list(range(8))
    assert handoff.high_water == 2 and handoff.dropped == 8
    assert [handoff.get(0).index, handoff.get(0).index, handoff.get(0)] == [8, 9, None]


def test_lossless_handoff_makes_the_reader_wait():
    handoff, stop = Handoff(capacity=1, lossless=True), threading.Event()
    handoff.put(window(0), stop)
    writer = threading.Thread(target=handoff.put, args=(window(1), stop))
    writer.start()
    writer.join(0.3)
    assert writer.is_alive() and handoff.high_water == 1  # waiting, not dropping
    assert handoff.get(1).index == 0
    writer.join(2)
    assert handoff.get(1).index == 1 and handoff.dropped == 0


@pytest.mark.parametrize("sensor", [(128, 128), (346, 260)])
def test_incremental_windows_equal_offline_framing(sensor):
    from masnn.bench.common import moving_blob_events

    events = moving_blob_events(60_000, 1_500_000, sensor, seed=1, t0=1_000_000)
    framing = FramingConfig(dt_us=30_000, n_frames=10)
    offline = np.concatenate(list(iter_time_frames([events], sensor, framing.dt_us, spatial=framing.spatial_map(sensor))))
    framer = WindowFramer(framing, sensor, stride_frames=3, newest_only=False)
    cuts = np.sort(np.random.default_rng(0).integers(0, len(events), 40))
    windows = [w for batch in np.split(events, cuts) for w in framer.add(batch, time.perf_counter()).windows]
    assert len(windows) == (len(offline) - 1 - framing.n_frames) // 3 + 1  # the last offline frame is still open live
    for w in windows:
        expected = offline[w.first_frame : w.first_frame + framing.n_frames]
        assert np.array_equal(w.frames, expected)
        assert list(w.frame_events) == [int(f.sum()) for f in expected]
        assert w.end_us - w.start_us == framing.dt_us * framing.n_frames
    with pytest.raises(UnsortedEvents):
        framer.add(events[:10], 0.0)  # stream time going back is refused, not binned into old frames


def fake_batch(events):
    """What dv-processing's EventStore offers the pipeline: size() and numpy() with its field names."""
    dv_dtype = np.dtype({"names": ["timestamp", "x", "y", "polarity"], "formats": ["<i8", "<i2", "<i2", "i1"],
                         "offsets": [0, 8, 10, 12], "itemsize": 16})
    array = np.zeros(len(events), dv_dtype)
    array["timestamp"], array["x"], array["y"], array["polarity"] = events["t"], events["x"], events["y"], events["p"]
    return type("FakeStore", (), {"size": lambda self: len(array), "numpy": lambda self: array})()


class FakeCamera:
    """A camera that delivers ``events`` in 10 ms batches and then is unplugged (raises, as a lost USB device does)."""

    def __init__(self, events):
        self.batches = [fake_batch(b) for b in np.array_split(events, max(1, len(events) // 500))]

    def isEventStreamAvailable(self):
        return True

    def getEventResolution(self):
        return (128, 128)

    def getCameraName(self):
        return "DVS128_FAKE0001"

    def isRunning(self):
        return True

    def getNextEventBatch(self):
        if not self.batches:
            raise RuntimeError("device disconnected\nStacktrace: ...")
        time.sleep(0.002)  # a camera delivers over time: an instant one would leave every window but the last stale
        return self.batches.pop(0)


def test_camera_unplugged_and_back_is_reconnected(monkeypatch, clip, classifier):
    import dv_processing as dv

    _, _, events = clip
    answers = iter([FakeCamera(events[: len(events) // 2]), RuntimeError("no device"), *[FakeCamera(events) for _ in range(50)]])

    def fake_open(*serial):
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(dv.io.camera, "open", fake_open)
    pipeline = LivePipeline(camera_source(), classifier, LiveOptions(backoff_s=FAST_BACKOFF))
    records = []

    def stop_after_the_second_connection(record, window):
        records.append(record)
        if record["connection"] >= 2:
            pipeline.stop()

    with watchdog(pipeline):
        summary = pipeline.run(stop_after_the_second_connection)
    connections = {record["connection"] for record in records}
    assert summary["reconnects"] >= 1 and 1 in connections and max(connections) >= 2  # predictions resumed
    assert summary["predictions"] + summary["dropped_windows"] == summary["windows"]  # stopped mid-stream, still all counted
    reconnect = next(n for n in pipeline.stats.notices if n["event"] == "reconnect")
    assert reconnect["attempts"] == 2  # the first try found no camera; the second did
    assert summary["source"] == "camera DVS128_FAKE0001"


def test_no_camera_is_a_clear_error(monkeypatch):
    import dv_processing as dv

    def nothing_attached(*serial):
        raise IndexError("vector::_M_range_check: __n (which is 0) >= this->size() (which is 0)")

    monkeypatch.setattr(dv.io.camera, "open", nothing_attached)
    with pytest.raises(OSError, match="no DVS camera found"):
        camera_source().connect()


def test_dashboard_and_summary_render(clip, classifier):
    from rich.console import Console

    path, _, _ = clip
    pipeline = LivePipeline(replay_source(path, speed=0), classifier)
    summary = pipeline.run()
    console = Console(record=True, width=140)
    console.print(render_dashboard(pipeline.snapshot()))
    console.print(summary_table(summary))
    text = console.export_text()
    top = pipeline.stats.last["top_k"][0]["class"]
    for expected in (top, "events/s", "spikes/s", "energy/inference", "latency", "data dropped", "reconnects", "predictions"):
        assert expected in text
    image = event_image(np.ones((4, 2, 32, 32), np.int16), top)
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3


def cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "masnn", "live", *map(str, args)], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args, message", [
    (["--stream", "nonsense"], "error: --stream 'nonsense': expected tcp://HOST:PORT"),
    (["--stream", "tcp://127.0.0.1:70000"], "expected tcp://HOST:PORT"),
    (["--replay", "missing.aedat4"], "missing.aedat4: no such file"),
    (["--camera", "X1", "--stream", "tcp://127.0.0.1:1"], "error: give one source, not --camera and --stream"),
])
def test_bad_sources_exit_2_with_one_line(args, message):
    result = cli(*args)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(result.stderr.splitlines()) == 1 and message in result.stderr, result.stderr


def test_a_stream_nobody_serves_is_a_clear_error(untrained_checkpoint):
    port = free_port()
    result = cli("--stream", f"tcp://127.0.0.1:{port}", "--weights", untrained_checkpoint)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == f"error: tcp://127.0.0.1:{port}: cannot connect (connect: Connection refused)"


def test_show_draws_each_prediction_and_q_ends_the_run(monkeypatch, clip, classifier):
    import io

    import cv2
    from masnn.live.pipeline import run_live
    from rich.console import Console

    shown = []
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.setattr(cv2, "namedWindow", lambda *args: None)
    monkeypatch.setattr(cv2, "destroyWindow", lambda *args: None)
    monkeypatch.setattr(cv2, "imshow", lambda title, image: shown.append(image))
    monkeypatch.setattr(cv2, "waitKey", lambda delay: ord("q") if len(shown) >= 3 else -1)  # the user presses q
    output = io.StringIO()
    summary = run_live(replay_source(clip[0], speed=0), classifier, LiveOptions(), Console(file=output, width=120), show=True)
    assert summary["predictions"] == len(shown) == 3
    assert all(image.dtype == np.uint8 and image.shape[2] == 3 for image in shown)
    lines = output.getvalue().splitlines()
    assert sum("latency" in line and "dropped" in line for line in lines) == 3  # off a terminal: a line per prediction
    assert any("predictions" in line and "3 in" in line for line in lines)


def test_show_without_a_display_is_a_clear_error(monkeypatch):
    from masnn.live.view import EventView

    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(OSError, match="--show needs a display"):
        EventView(stride_frames=2)


def test_a_camera_serial_not_found_is_a_clear_error(monkeypatch):
    import dv_processing as dv

    def no_such_serial(*serial):
        raise RuntimeError("/project/include/dv-processing/io/camera/discovery.hpp(88): open()\n"
                           "RuntimeError: Could not find device with given serial number\nStacktrace:\n 0# ...")

    monkeypatch.setattr(dv.io.camera, "open", no_such_serial)
    with pytest.raises(OSError) as error:
        camera_source("DXA00093").connect()
    assert str(error.value) == "camera DXA00093: cannot be opened (Could not find device with given serial number)"


def test_stream_time_going_back_restarts_the_frames(monkeypatch, clip, classifier, tmp_path):
    import dv_processing as dv

    events = clip[2]

    def restarting_camera(*serial):
        camera = FakeCamera(events[: len(events) // 2])
        camera.batches += FakeCamera(events).batches  # the device restarted its clock mid-stream
        return camera

    monkeypatch.setattr(dv.io.camera, "open", restarting_camera)
    log = tmp_path / "live.jsonl"
    pipeline = LivePipeline(camera_source(), classifier, LiveOptions(backoff_s=FAST_BACKOFF, log=log))

    def stop_when_unplugged(p):
        if p.stats.disconnects:
            p.stop()

    with watchdog(pipeline):
        summary = pipeline.run(on_tick=stop_when_unplugged)
    kinds = [json.loads(line)["event"] for line in log.read_text().splitlines()]
    assert kinds.index("time-reset") < kinds.index("disconnect")  # survived, and reported
    assert summary["events"] >= len(events) // 2 + len(events) and summary["predictions"] >= 1
