"""`masnn live` end to end: real DV network peers on 127.0.0.1 (dv-processing's NetworkWriter in a child
process), a replayed recording, the drop policy under a slow classifier, the dashboard and --show."""
from __future__ import annotations

import json
import time

import numpy as np
import pytest
from live_helpers import FAST_BACKOFF, WINDOW_MS, free_port, peers, watchdog

from masnn.datasets.loaders.table import GESTURE_CLASSES
from masnn.datasets.transforms.pipeline import FramingConfig
from masnn.live.pipeline import LiveOptions, LivePipeline
from masnn.live.sources import replay_source, stream_source
from masnn.live.view import event_image, render_dashboard, summary_table


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


def test_network_stream_delivers_every_event_and_predictions(live_clip, live_classifier, tmp_path):
    _, npy, events = live_clip
    port = free_port()
    with peers() as start:
        start(npy, port, speed=2.0)
        pipeline = LivePipeline(stream_source(f"tcp://127.0.0.1:{port}"), live_classifier, LiveOptions(backoff_s=FAST_BACKOFF))
        records = []

        def stop_when_the_peer_has_gone(p):
            if p.stats.disconnects:
                p.stop()

        with watchdog(pipeline):
            summary = pipeline.run(lambda record, window: records.append(record), stop_when_the_peer_has_gone)
    assert pipeline.ingest.sensor_size == (128, 128)
    assert summary["events"] == len(events)  # every event the peer wrote came through
    # a loaded machine may drop windows to keep up (live's rule: never fall behind the stream); each is counted
    assert summary["windows"] >= 3 and len(records) == summary["predictions"] >= 1
    assert summary["predictions"] + summary["dropped_windows"] == summary["windows"]
    for record in records:
        assert len(record["top_k"]) == 3 and {entry["class"] for entry in record["top_k"]} <= set(GESTURE_CLASSES)
        assert record["stats"]["events"] > 0 and record["latency_ms"] > 0
        assert record["stream_s"][1] - record["stream_s"][0] == pytest.approx(WINDOW_MS / 1000)


def test_a_stream_that_disconnects_is_reconnected_and_reported(live_clip, live_classifier, tmp_path):
    _, npy, _ = live_clip
    port, log = free_port(), tmp_path / "live.jsonl"
    with peers() as start:
        start(npy, port, 0.0, 1.2, speed=2.0)  # the first peer serves 1.2 s, then goes away
        pipeline = LivePipeline(stream_source(f"tcp://127.0.0.1:{port}"), live_classifier, LiveOptions(backoff_s=FAST_BACKOFF, log=log))
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


def test_replay_unpaced_classifies_every_window_and_logs_each(live_clip, live_classifier, tmp_path):
    path, _, events = live_clip
    log = tmp_path / "replay.jsonl"
    pipeline = LivePipeline(replay_source(path, speed=0), live_classifier, LiveOptions(log=log))
    records = []
    summary = pipeline.run(lambda record, window: records.append(record))
    expected = expected_windows(events, live_classifier.framing, pipeline.stride_frames)
    assert pipeline.stride_frames * live_classifier.framing.dt_us <= 100_000  # at least 10 updates a second
    assert summary["predictions"] == len(records) == expected and summary["dropped_windows"] == 0
    assert [record["stream_s"][1] for record in records] == pytest.approx(
        [(WINDOW_MS + k * pipeline.stride_frames * live_classifier.framing.dt_us / 1000) / 1000 for k in range(expected)])
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    predictions = [line for line in lines if line["event"] == "prediction"]
    assert predictions == json.loads(json.dumps(records))  # every prediction, in order, as made
    assert [line["index"] for line in predictions] == list(range(expected))
    assert lines[-1]["event"] == "summary" and lines[-1]["predictions"] == expected
    assert summary["events"] == len(events)


def test_replay_at_speed_is_paced_by_the_event_clock(live_clip, live_classifier):
    path, _, events = live_clip
    duration = (int(events["t"][-1]) - int(events["t"][0])) / 1e6
    pipeline = LivePipeline(replay_source(path, speed=4.0), live_classifier)
    started = time.perf_counter()
    summary = pipeline.run()
    assert time.perf_counter() - started >= 0.95 * duration / 4
    expected = expected_windows(events, live_classifier.framing, pipeline.stride_frames)
    assert summary["windows"] == expected and summary["predictions"] + summary["dropped_windows"] == expected
    assert summary["predictions"] >= 1 and abs(summary["lag_s"]) < 0.2


@pytest.mark.parametrize("capacity", [1, 3])
def test_a_slow_classifier_makes_counted_drops_and_the_handoff_stays_bounded(live_clip, capacity):
    path, _, events = live_clip
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


def test_dashboard_and_summary_render(live_clip, live_classifier):
    from rich.console import Console

    path, _, _ = live_clip
    pipeline = LivePipeline(replay_source(path, speed=0), live_classifier)
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


def test_show_draws_each_prediction_and_q_ends_the_run(monkeypatch, live_clip, live_classifier):
    import io

    import cv2
    from rich.console import Console

    from masnn.live.pipeline import run_live

    shown = []
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.setattr(cv2, "namedWindow", lambda *args: None)
    monkeypatch.setattr(cv2, "destroyWindow", lambda *args: None)
    monkeypatch.setattr(cv2, "imshow", lambda title, image: shown.append(image))
    monkeypatch.setattr(cv2, "waitKey", lambda delay: ord("q") if len(shown) >= 3 else -1)  # the user presses q
    output = io.StringIO()
    summary = run_live(replay_source(live_clip[0], speed=0), live_classifier, LiveOptions(), Console(file=output, width=120), show=True)
    assert summary["predictions"] == len(shown) == 3
    assert all(image.dtype == np.uint8 and image.shape[2] == 3 for image in shown)
    lines = output.getvalue().splitlines()
    assert sum("latency" in line and "dropped" in line for line in lines) == 3  # off a terminal: a line per prediction
    assert any("predictions" in line and "3 in" in line for line in lines)
