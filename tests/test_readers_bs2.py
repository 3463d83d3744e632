"""slayer / lava-dl .bs2 files (5 bytes an event): a file whose bytes are written out by hand against its decoded
values, a large file packed here from the format description (not by masnn's writer), the real DVS128 Gesture clips
($MASNN_REAL_DATA, skipped where absent), bad input through the command line, and `masnn classify` on a .bs2."""
from __future__ import annotations

import json
import subprocess
import sys
import warnings

import numpy as np
import pytest
from reader_test_helpers import assert_events, concat, selected

from masnn.datasets.events import EventFileError, TruncatedRecordingWarning
from masnn.datasets.io.readers import detect_format, open_recording, read_events
from masnn.datasets.io.writers import write_bs2

# Each event's 5 bytes and what they mean: x, y, polarity (byte 2's bit 7), t = 23 bits over bytes 2 (low 7 bits),
# 3 and 4, big-endian.
HAND_BYTES = bytes([
    0x00, 0x00, 0x00, 0x00, 0x00,  # x 0, y 0, OFF, t 0
    0x01, 0x02, 0x80, 0x00, 0x03,  # x 1, y 2, ON, t 3 (byte 4 only)
    0x7F, 0x7F, 0x00, 0x01, 0x00,  # x 127, y 127 (the largest DVS128 pixel), OFF, t 256 (byte 3 only)
    0x05, 0x06, 0x81, 0x00, 0x00,  # x 5, y 6, ON, t 65536 (byte 2's low bits only)
    0x40, 0x41, 0x92, 0x34, 0x56,  # x 64, y 65, ON, t 0x123456 = 1193046 (all three bytes)
    0x0A, 0x14, 0x7F, 0xFF, 0xFF,  # x 10, y 20, OFF, t 0x7FFFFF = 8388607 (the largest time)
])
HAND_EVENTS = {
    "x": [0, 1, 127, 5, 64, 10],
    "y": [0, 2, 127, 6, 65, 20],
    "p": [0, 1, 0, 1, 1, 0],
    "t": [0, 3, 256, 65536, 1193046, 8388607],
}

REAL_BS2 = {  # name: events, as the folder's README states them
    "class01_hand_clap.bs2": 63_471,
    "class04_right_arm_clockwise.bs2": 151_879,
    "class09_air_drums.bs2": 141_773,
}


def pack(x, y, t, p) -> bytes:
    """The format description, one event at a time: x, y, then polarity and a 23-bit time in 3 big-endian bytes."""
    return b"".join(bytes([xi, yi]) + ((pi << 23) | ti).to_bytes(3, "big") for xi, yi, ti, pi in zip(x, y, t, p))


def masnn(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "masnn", *map(str, args)], capture_output=True, text=True, timeout=300)


# --------------------------------------------------------------------------------------------- decoding

def test_a_hand_decoded_file(tmp_path):
    path = tmp_path / "hand.bs2"
    path.write_bytes(HAND_BYTES)
    assert detect_format(path) == "slayer .bs2"
    with open_recording(path) as recording:
        events = recording.read()
        info = recording.info
    assert_events(events, HAND_EVENTS)
    assert (info.format, info.sensor_size, info.time_range) == ("slayer .bs2", (128, 128), (0, 8388607))
    upper = path.with_suffix(".BS2")
    upper.write_bytes(HAND_BYTES)
    assert detect_format(upper) == "slayer .bs2"


@pytest.mark.parametrize("extreme, sensor", [
    (bytes([0x7F, 0x7F, 0x80, 0x00, 0x09]), (128, 128)),  # x 127, y 127: DVS128
    (bytes([0x80, 0x00, 0x80, 0x00, 0x09]), (240, 180)),  # x 128: the next common sensor, DAVIS240
    (bytes([0xEF, 0xB3, 0x80, 0x00, 0x09]), (240, 180)),  # x 239, y 179: still DAVIS240
    (bytes([0xFF, 0xFF, 0x80, 0x00, 0x09]), (346, 260)),  # x 255, y 255: the largest a byte holds
])
def test_the_sensor_is_the_smallest_common_one_holding_every_coordinate(tmp_path, extreme, sensor):
    path = tmp_path / "extent.bs2"
    path.write_bytes(bytes([0x03, 0x04, 0x00, 0x00, 0x07]) + extreme)
    events, info = read_events(path)
    assert info.sensor_size == sensor
    assert_events(events, {"x": [3, extreme[0]], "y": [4, extreme[1]], "p": [0, 1], "t": [7, 9]})


def test_a_stated_sensor_size_is_used_and_coordinates_beyond_it_are_refused(tmp_path):
    path = tmp_path / "nmnist.bs2"  # N-MNIST: 34x34
    path.write_bytes(pack([0, 33, 12], [0, 33, 40], [10, 20, 30], [1, 0, 1]))
    with open_recording(path, sensor_size=(34, 34)) as recording:
        assert recording.info.sensor_size == (34, 34)
        with pytest.raises(EventFileError, match=r"event 2 at \(x=12, y=40\) lies outside the 34x34 sensor"):
            recording.read()
    assert read_events(path)[1].sensor_size == (128, 128)


def test_a_file_packed_from_the_format_description_round_trips(tmp_path):
    n = 300_000
    rng = np.random.default_rng(3)
    t = np.cumsum(rng.integers(0, 50, n))  # zero steps: events sharing a timestamp
    t[-1] = (1 << 23) - 1  # the largest time the format holds
    x, y, p = rng.integers(0, 256, n), rng.integers(0, 256, n), rng.integers(0, 2, n)
    x[0], y[0] = 255, 255
    expected = {"x": x, "y": y, "t": t, "p": p}
    path = tmp_path / "packed.bs2"
    path.write_bytes(pack(x.tolist(), y.tolist(), t.tolist(), p.tolist()))

    with open_recording(path) as recording:
        assert recording.info.sensor_size == (346, 260) and recording.info.time_range == (int(t[0]), int(t[-1]))
        assert_events(recording.read(), expected)
        assert_events(concat(recording.chunks(chunk_events=7_777)), expected)
        for start, end in ((None, 1_000_000), (2_500_000, 2_500_100), (int(t[1000]), int(t[1000]) + 1),
                           (int(t[-2]), None)):
            assert_events(recording.read(start, end), selected(expected, start, end))

    # masnn's writer writes the same bytes
    write_bs2(tmp_path / "written.bs2", read_events(path)[0])
    assert (tmp_path / "written.bs2").read_bytes() == path.read_bytes()


def test_the_writer_refuses_what_the_format_cannot_hold(tmp_path):
    from masnn.datasets.events import make_events

    path = tmp_path / "out.bs2"
    for x, t, problem in (([0, 256], [0, 1], "event 1's x=256"), ([0, 1], [0, 1 << 23], "event 1's t=8388608 us"),
                          ([0, 1], [-1, 1], "event 0's t=-1 us"), ([0, 1], [5, 4], "must be in time order")):
        with pytest.raises(ValueError, match=problem):
            write_bs2(path, make_events(x, [0, 0], t, [0, 1]))
        assert not path.exists()


# ------------------------------------------------------------------------------------------ real clips

@pytest.mark.parametrize("name", REAL_BS2)
def test_real_dvs_gesture_clips(real_data, name):
    path = real_data / "dvsgesture_bs2" / name
    if not path.is_file():
        pytest.skip(f"{path} not found (the real .bs2 clips sit in dvsgesture_bs2/ of the real-data folder)")
    raw = np.frombuffer(path.read_bytes(), dtype=np.uint8).reshape(-1, 5).astype(np.int64)
    reference = {"x": raw[:, 0], "y": raw[:, 1], "p": raw[:, 2] >> 7,  # lava-dl's read_2d_spikes, in microseconds
                 "t": ((raw[:, 2] << 16) | (raw[:, 3] << 8) | raw[:, 4]) & 0x7FFFFF}
    with open_recording(path) as recording:
        events = recording.read()
        assert (recording.info.format, recording.info.sensor_size) == ("slayer .bs2", (128, 128))
    assert len(events) == REAL_BS2[name]
    assert_events(events, reference)
    assert np.all(np.diff(events["t"]) >= 0)
    assert (events["t"][-1] - events["t"][0]) / 1e6 == pytest.approx(1.45, abs=0.01)
    assert 0.45 < events["p"].mean() < 0.55  # ON and OFF close to 1:1


# ------------------------------------------------------------------------------- the command line

def test_inspect_reads_a_bs2_file(tmp_path):
    path = tmp_path / "hand.bs2"
    path.write_bytes(HAND_BYTES)
    result = masnn("inspect", path, "--json")
    assert result.returncode == 0 and result.stderr == "", result.stderr
    summary = json.loads(result.stdout)
    assert (summary["format"], summary["sensor"], summary["events"]) == ("slayer .bs2", [128, 128], 6)
    assert (summary["first_t_us"], summary["last_t_us"]) == (0, 8388607)


def test_a_truncated_file_keeps_its_whole_events_with_one_warning(tmp_path):
    path = tmp_path / "cut.bs2"
    path.write_bytes(HAND_BYTES[:-2])  # the last event loses 2 of its 5 bytes
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        events, _ = read_events(path)
    assert_events(events, {k: v[:5] for k, v in HAND_EVENTS.items()})
    assert [w.category for w in caught] == [TruncatedRecordingWarning]

    result = masnn("inspect", path, "--json")
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [f"warning: {path}: ends inside an event (3 of its 5 bytes left over); "
                                          "kept the events before it"]
    assert json.loads(result.stdout)["events"] == 5


def hand(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    return path


BAD_BS2 = {  # name: (bytes, the problem the one error line names)
    "less than one event": (HAND_BYTES[:3], "no events before the damage: ends inside an event (3 of its 5 bytes "
                                            "left over)"),
    "empty": (b"", "is empty (0 bytes)"),
    "out of order": (pack([1, 2, 3], [1, 2, 3], [100, 50, 200], [0, 1, 0]),
                     "timestamps go backwards at event 1 (t=50 us after t=100 us); .bs2 events must be in time order"),
    "a wrapped clock": (pack([1, 2, 3], [1, 2, 3], [7_900_000, 8_000_000, 1_000], [0, 1, 1]),
                        "at event 2 (t=1000 us after t=8000000 us); .bs2 events must be in time order (a drop of "
                        "8.00 s: the 23-bit clock probably wrapped, so the recording is longer than the 8.39 s"),
    "one corrupt time": (pack([1, 2, 3], [1, 2, 3], [1_000, 8_388_607, 1_100], [0, 1, 1]),
                         "at event 2 (t=1100 us after t=8388607 us); .bs2 events must be in time order (event 1 "
                         "leaps 8.39 s ahead of the one before it: a corrupt time)"),
}


@pytest.mark.parametrize("case", BAD_BS2)
def test_bad_bs2_files_are_one_error_line(tmp_path, case):
    data, problem = BAD_BS2[case]
    path = hand(tmp_path, "bad.bs2", data)
    result = masnn("inspect", path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: ") and problem in lines[0], lines


@pytest.mark.parametrize("scan_events", [1, 2, 4])
def test_the_scan_at_open_checks_across_its_blocks(tmp_path, monkeypatch, scan_events):
    import masnn.datasets.io.bs2 as bs2

    monkeypatch.setattr(bs2, "SCAN_EVENTS", scan_events)
    with open_recording(hand(tmp_path, "hand.bs2", HAND_BYTES)) as recording:
        assert recording.info.time_range == (0, 8388607) and recording.info.sensor_size == (128, 128)
        assert_events(recording.read(), HAND_EVENTS)
    for case in ("out of order", "a wrapped clock", "one corrupt time"):
        data, problem = BAD_BS2[case]
        with pytest.raises(EventFileError) as refused:
            open_recording(hand(tmp_path, "bad.bs2", data))
        assert problem in str(refused.value)


def test_the_extension_names_a_bs2_file_only_when_its_content_is_no_other_format(tmp_path):
    text = hand(tmp_path, "events.bs2", b"100 1 2 1\n200 3 4 0\n")  # a text recording under a .bs2 name
    assert detect_format(text) == "text t x y p"
    with pytest.raises(EventFileError, match="unknown or unsupported event format"):
        detect_format(hand(tmp_path, "events.bin", HAND_BYTES))  # .bs2 content under another name


def test_classify_runs_on_a_bs2_file(tmp_path, untrained_checkpoint):
    from masnn.datasets.synth.generator import write_action_clip

    clip = tmp_path / "guitar.aedat4"
    write_action_clip(clip, "air guitar", "dvs128", 5, 1.5, "lab")
    events, _ = read_events(clip)
    events["t"] -= events["t"][0]  # AEDAT 4.0 holds Unix time; a .bs2 clip starts near 0
    path = tmp_path / "guitar.bs2"
    write_bs2(path, events)
    for weights in (untrained_checkpoint, "gesture-tcsa"):
        result = masnn("classify", path, "--weights", weights, "--json")
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        assert report["recording"]["sensor"] == [128, 128]
        assert report["totals"]["events_in_windows"] > 0


def test_the_fuzzer_has_bs2_seeds(tmp_path):
    from masnn.bench.fuzz import REAL_SEEDS, make_seeds

    seeds = make_seeds(tmp_path, None)
    assert detect_format(seeds["bs2"]) == "slayer .bs2"
    assert REAL_SEEDS["dvsgesture_bs2/class01_hand_clap.bs2"] == "bs2-real"
