"""`masnn live` with cameras (a fake dv-processing camera: unplugged, restarted, absent) and the clear errors
of sources, the CLI and --show."""
from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest
from live_helpers import FAST_BACKOFF, free_port, watchdog

from masnn.live.pipeline import LiveOptions, LivePipeline
from masnn.live.sources import DISCOVERY_TIMEOUT_S, camera_source, check_camera


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


def test_camera_unplugged_and_back_is_reconnected(monkeypatch, live_clip, live_classifier):
    import dv_processing as dv

    _, _, events = live_clip
    answers = iter([FakeCamera(events[: len(events) // 2]), RuntimeError("no device"), *[FakeCamera(events) for _ in range(50)]])

    def fake_open(*serial):
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(dv.io.camera, "open", fake_open)
    pipeline = LivePipeline(camera_source(), live_classifier, LiveOptions(backoff_s=FAST_BACKOFF))
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


def test_no_camera_found_by_discovery_says_what_was_looked_for(monkeypatch):
    import dv_processing as dv

    monkeypatch.setattr(dv.io.camera, "discover", lambda: [])
    with pytest.raises(OSError, match=r"no DVS camera found \(looked for DVS128, DAVIS, DVXplorer over USB"):
        check_camera()


def test_slow_discovery_gives_up_in_time(monkeypatch):
    import dv_processing as dv

    monkeypatch.setattr(dv.io.camera, "discover", lambda: time.sleep(5) or [])
    started = time.perf_counter()
    with pytest.raises(OSError, match="no DVS camera found: looking for one .* took over 0.2 s"):
        check_camera(timeout_s=0.2)
    assert time.perf_counter() - started < 1


def test_a_serial_discovery_did_not_find_is_named(monkeypatch):
    import dv_processing as dv

    found = type("Descriptor", (), {"serialNumber": "DXA00093"})()
    monkeypatch.setattr(dv.io.camera, "discover", lambda: [found])
    check_camera()  # any camera will do
    check_camera("DXA00093")
    with pytest.raises(OSError, match=r"camera X1: not found \(cameras found: DXA00093\)"):
        check_camera("X1")


def test_live_without_a_camera_fails_fast_before_loading_the_model():
    import dv_processing as dv

    if dv.io.camera.discover():
        pytest.skip("a camera is attached")
    started = time.perf_counter()
    result = cli()
    elapsed = time.perf_counter() - started
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith("error: no DVS camera found (looked for DVS128, DAVIS, DVXplorer")
    assert "torch" not in result.stderr and elapsed < DISCOVERY_TIMEOUT_S + 3  # interpreter start-up on a busy machine


@pytest.mark.parametrize("width", [80, 110])
@pytest.mark.parametrize("status", ["connecting", "disconnected (device disconnected); attempt 3 in 2 s"])
def test_dashboard_title_fits_the_terminal(width, status):
    from rich.console import Console

    from masnn.live.view import render_dashboard

    source = "replay /home/someone/recordings/a-rather-long-folder-name/user01_fluorescent_led_gestures.aedat4"
    figures = {"source": source, "status": status, "sensor": (346, 260), "connections": 1,
               "model": {"T": 20, "dt_us": 45_000, "window_us": 900_000, "stride_us": 90_000}, "current": [],
               "current_class": None, "recent_actions": [], "events": 0, "events_per_s": 0.0, "spikes_per_s": 0.0,
               "energy_per_inference_uj": None, "latency_ms": {"p50": None, "p99": None},
               "model_latency_ms": {"p50": None, "p99": None}, "predictions": 0, "predictions_per_s": 0.0,
               "dropped_windows": 0, "windows": 0, "unclassified_events": 0, "lag_s": None, "reconnects": 0,
               "damaged_packets": 0, "notices": []}
    console = Console(width=width, record=True, color_system=None)
    console.print(render_dashboard(figures))
    lines = console.export_text().splitlines()
    assert all(len(line) <= width for line in lines)
    title = f"masnn live · {status.split(' (')[0]}"
    assert title in lines[0] and "…" not in lines[0] and "…" not in lines[-1]  # neither title nor subtitle cut
    body = " ".join(line.strip("│ ") for line in lines)
    assert "user01_fluorescent_led_gestures" in body.replace(" ", "") and "attempt" in body or status == "connecting"


def test_stream_time_going_back_restarts_the_frames(monkeypatch, live_clip, live_classifier, tmp_path):
    import dv_processing as dv

    events = live_clip[2]

    def restarting_camera(*serial):
        camera = FakeCamera(events[: len(events) // 2])
        camera.batches += FakeCamera(events).batches  # the device restarted its clock mid-stream
        return camera

    monkeypatch.setattr(dv.io.camera, "open", restarting_camera)
    log = tmp_path / "live.jsonl"
    pipeline = LivePipeline(camera_source(), live_classifier, LiveOptions(backoff_s=FAST_BACKOFF, log=log))

    def stop_when_unplugged(p):
        if p.stats.disconnects:
            p.stop()

    with watchdog(pipeline):
        summary = pipeline.run(on_tick=stop_when_unplugged)
    kinds = [json.loads(line)["event"] for line in log.read_text().splitlines()]
    assert kinds.index("time-reset") < kinds.index("disconnect")  # survived, and reported
    assert summary["events"] >= len(events) // 2 + len(events) and summary["predictions"] >= 1


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
