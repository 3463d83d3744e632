"""Event-file readers checked against files written independently of them: every format's round trip, the
format chosen by content, streaming and time selection, bad input, and the plain formats (numpy, text).

References: AEDAT 4.0 files from dv-processing's own writer, AEDAT 3.1 / 2.0 files from the test-side
writers in aedat_test_writers.py (built from the format description, not from masnn), numpy/text files
written with numpy. masnn's own writers are checked the other way round: numpy reads them. AEDAT details are
in test_readers_aedat.py (2.0, 3.1) and test_readers_aedat4.py, real recordings in test_readers_real.py.
"""
from __future__ import annotations

import shutil

import aedat_test_writers as aw
import numpy as np
import pytest
from reader_test_helpers import AEDAT4_T0, GAP_US, N, assert_events, concat, selected, subset, synthetic, write_dv

from masnn.datasets.events import EVENT_DTYPE, EventFileError
from masnn.datasets.io.readers import detect_format, open_recording, read_events

# ----------------------------------------------------------------------- synthetic files per format

def make_aedat4(folder):
    events = synthetic(t0=AEDAT4_T0)
    path = folder / "rec.aedat4"
    write_dv(path, events)
    return path, events, {}


def make_aedat31(folder):
    # Starts just below 2**31 so the recording crosses a timestamp overflow; 5% of events are marked
    # invalid (some with an x outside the sensor, which a reader that kept them would trip on).
    events = synthetic(t0=(1 << 31) - 20_000)
    rng = np.random.default_rng(7)
    valid = rng.random(N) > 0.05
    x = events["x"].copy()
    x[~valid & (rng.random(N) < 0.5)] = 200
    packets = aw.polarity_packets(x, events["y"], events["t"], events["p"], sizes=[1, 37, 250, 500, 64],
                                  valid=valid, breaks=[N // 2])
    others = [aw.other_packet(2, 20, 3), aw.other_packet(7, 12, 40, seed=1), aw.other_packet(5, 16, 0)]
    mixed = []
    for i, packet in enumerate(packets):
        mixed.append(packet)
        if i % 2 == 0:
            mixed.append(others[i % 3])
    path = folder / "rec.aedat"
    aw.write_aedat31(path, mixed)
    assert (events["t"][-1] >> 31) > (events["t"][0] >> 31)
    return path, subset(events, valid), {"biggest_packet_bytes": max(len(p) for p in mixed)}


def make_aedat2(folder):
    # Starts just below 2**32 so the 32-bit timestamps wrap; external events are interleaved.
    events = synthetic(t0=(1 << 32) - 20_000)
    address = aw.dvs128_address(events["x"], 127 - events["y"], events["p"])
    external = np.arange(N) % 97 == 5
    address = np.insert(address, np.flatnonzero(external), 0x8000 | 0x0123)
    t = np.insert(events["t"], np.flatnonzero(external), events["t"][external])
    path = folder / "rec.aedat"
    aw.write_aedat2(path, address, t)
    return path, events, {}


def make_npy(folder):
    events = synthetic(t0=5_000_000)
    array = np.zeros(N, dtype=[("x", "<u2"), ("y", "<u2"), ("p", "i1"), ("t", "<i8")])  # not masnn's layout
    for k in "xytp":
        array[k] = events[k]
    path = folder / "rec.npy"
    np.save(path, array)
    return path, events, {}


def make_tonic_npy(folder):
    events = synthetic(t0=5_000_000)
    table = np.stack([events["x"], events["y"], events["p"], events["t"] / 1000.0], axis=1)  # x, y, p, t [ms]
    path = folder / "rec_tonic.npy"
    np.save(path, table)
    return path, events, {}


def make_npz_events(folder):
    events = synthetic(t0=5_000_000)
    array = np.zeros(N, dtype=[("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("p", "u1")])
    for k in "xytp":
        array[k] = events[k]
    path = folder / "rec_events.npz"
    np.savez(path, events=array, sensor_size=np.array([128, 128]))
    return path, events, {}


def make_npz_xytp(folder):
    events = synthetic(t0=5_000_000)
    path = folder / "rec_xytp.npz"
    np.savez_compressed(path, x=events["x"], y=events["y"], t=events["t"], p=events["p"], sensor_size=np.array([128, 128]))
    return path, events, {}


def make_text(folder):
    events = synthetic(t0=5_000_000)
    path = folder / "rec.txt"
    path.write_text("".join(f"{t} {x} {y} {p}\n" for t, x, y, p in zip(*(events[k].tolist() for k in "txyp"))))
    return path, events, {}


MAKERS = {
    "aedat4": (make_aedat4, "AEDAT 4.0"),
    "aedat31": (make_aedat31, "AEDAT 3.1"),
    "aedat2": (make_aedat2, "AEDAT 2.0"),
    "npy": (make_npy, "numpy .npy"),
    "tonic_npy": (make_tonic_npy, "numpy .npy"),
    "npz_events": (make_npz_events, "numpy .npz"),
    "npz_xytp": (make_npz_xytp, "numpy .npz"),
    "text": (make_text, "text t x y p"),
}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    made = {}
    for name, (make, _) in MAKERS.items():
        made[name] = make(tmp_path_factory.mktemp(name))
    return made


# ------------------------------------------------------------------------------------ round trips

@pytest.mark.parametrize("fmt", MAKERS)
def test_chunks_have_the_canonical_layout(files, fmt):
    """readers.py promises canonical event arrays: masnn's EVENT_DTYPE (t at byte 0, 16-byte records)."""
    path, _, _ = files[fmt]
    for chunk in open_recording(path).chunks(chunk_events=1000):
        assert chunk.dtype == EVENT_DTYPE


@pytest.mark.parametrize("fmt", ["aedat31", "npy"])
def test_read_has_the_canonical_layout(files, fmt):
    path, _, _ = files[fmt]
    assert read_events(path)[0].dtype == EVENT_DTYPE


@pytest.mark.parametrize("fmt", MAKERS)
def test_round_trip(files, fmt):
    path, expected, _ = files[fmt]
    events, info = read_events(path)
    assert_events(events, expected)
    assert info.format == MAKERS[fmt][1]
    assert info.sensor_size == (128, 128)
    assert info.path == str(path)


@pytest.mark.parametrize("max_xy, expected_size", [((127, 127), (128, 128)), ((239, 100), (240, 180)),
                                                   ((300, 200), (320, 240)), ((345, 259), (346, 260))])
def test_npy_sensor_is_the_smallest_common_one_holding_the_events(tmp_path, max_xy, expected_size):
    events = synthetic(n=200)
    events["x"][50], events["y"][60] = max_xy
    array = np.zeros(200, dtype=[("x", "<i2"), ("y", "<i2"), ("t", "<i8"), ("p", "u1")])
    for k in "xytp":
        array[k] = events[k]
    np.save(tmp_path / "e.npy", array)
    read, info = read_events(tmp_path / "e.npy")
    assert info.sensor_size == expected_size
    assert_events(read, events)


def test_npz_sensor_size_key_and_explicit_override(tmp_path):
    events = synthetic(n=300)
    np.savez(tmp_path / "e.npz", x=events["x"], y=events["y"], t=events["t"], p=events["p"], sensor_size=np.array([346, 260]))
    assert open_recording(tmp_path / "e.npz").info.sensor_size == (346, 260)
    assert open_recording(tmp_path / "e.npz", sensor_size=(640, 480)).info.sensor_size == (640, 480)


def test_npy_with_dv_processing_field_names(tmp_path):
    events = synthetic(n=500, t0=AEDAT4_T0)
    array = np.zeros(500, dtype=[("timestamp", "<i8"), ("x", "<i2"), ("y", "<i2"), ("polarity", "i1")])
    array["timestamp"], array["x"], array["y"], array["polarity"] = events["t"], events["x"], events["y"], events["p"]
    np.save(tmp_path / "dv.npy", array)
    assert_events(read_events(tmp_path / "dv.npy")[0], events)


def test_tonic_gesture_layout_milliseconds_become_microseconds(tmp_path):
    table = np.array([[5, 6, 1, 1.5], [7, 8, 0, 2.001], [9, 10, 1, 1234.567]])  # x, y, p, t [ms]
    np.save(tmp_path / "0.npy", table)
    events, _ = read_events(tmp_path / "0.npy")
    assert_events(events, {"x": [5, 7, 9], "y": [6, 8, 10], "p": [1, 0, 1], "t": [1500, 2001, 1_234_567]})


# ------------------------------------------------------------------------- format chosen by content

MISLEADING_NAME = {"aedat4": "rec.aedat", "aedat31": "rec.aedat4", "aedat2": "rec.npy", "npy": "rec.txt", "tonic_npy": "rec.aedat4", "npz_events": "rec.npy", "npz_xytp": "rec.txt",
                   "text": "rec.aedat"}

@pytest.mark.parametrize("fmt", MAKERS)
@pytest.mark.parametrize("naming", ["misleading", "none"])
def test_detect_format_ignores_the_extension(files, tmp_path, fmt, naming):
    path, _, _ = files[fmt]
    renamed = tmp_path / (MISLEADING_NAME[fmt] if naming == "misleading" else "recording")
    shutil.copy(path, renamed)
    assert detect_format(renamed) == MAKERS[fmt][1]


@pytest.mark.parametrize("fmt", MAKERS)
@pytest.mark.parametrize("naming", ["misleading", "none"])
def test_read_ignores_the_extension(files, tmp_path, fmt, naming):
    path, expected, _ = files[fmt]
    renamed = tmp_path / (MISLEADING_NAME[fmt] if naming == "misleading" else "recording")
    shutil.copy(path, renamed)
    events, info = read_events(renamed)
    assert info.format == MAKERS[fmt][1]
    assert_events(events, expected)


# -------------------------------------------------------------------------------------- streaming

CHUNK_PARAMS = [
    pytest.param(fmt, size, id=f"{fmt}-{size}")
    for fmt in MAKERS for size in [1, 3, 7, 64, 1000]
]


@pytest.mark.parametrize("fmt, chunk_events", CHUNK_PARAMS)
def test_chunks_concatenate_to_the_whole(files, fmt, chunk_events):
    path, expected, _ = files[fmt]
    with open_recording(path) as recording:
        chunks = list(recording.chunks(chunk_events=chunk_events))
    assert len(chunks) > 1
    assert_events(concat(chunks), expected)


@pytest.mark.parametrize("fmt", ["aedat4", "aedat31", "aedat2", "npy", "tonic_npy"])
@pytest.mark.parametrize("chunk_events", [4, 7, 64, 600])
def test_chunk_size_is_bounded(files, fmt, chunk_events):
    """AEDAT 4 (slices of dv-processing's packets), npy and AEDAT 2.0: at most chunk_events per chunk. AEDAT 3.1 decodes blocks of chunk_events * 8 bytes
    that grow to hold a whole packet when one is bigger, so the bound is the larger of the two."""
    path, expected, meta = files[fmt]
    bound = max(chunk_events, meta["biggest_packet_bytes"] // 8) if fmt == "aedat31" else chunk_events
    sizes = [len(c) for c in open_recording(path).chunks(chunk_events=chunk_events)]
    assert sum(sizes) == len(expected["t"])
    assert max(sizes) <= bound


def gap(t) -> int:
    """Index of the first event after the quiet gap."""
    return int(np.argmax(np.diff(t))) + 1


SELECTIONS = {
    "head": lambda t: (None, t[N // 3]),
    "tail": lambda t: (t[N // 3] + 1, None),
    "inside": lambda t: (t[400] + 1, t[2600]),
    "exact event times": lambda t: (t[700], t[900]),
    "one timestamp": lambda t: (t[1201], t[1201] + 1),
    "start in the gap": lambda t: (t[gap(t) - 1] + GAP_US // 2, t[gap(t) + 300]),
    "end in the gap": lambda t: (t[100], t[gap(t) - 1] + GAP_US // 2),
    "start at the gap's end": lambda t: (t[gap(t)], t[-5]),
    "end at the gap's end": lambda t: (t[gap(t) - 200], t[gap(t)]),
    "everything and more": lambda t: (t[0] - 10**6, t[-1] + 10**6),
}
SELECTION_FORMATS = ["aedat4", "aedat31", "aedat2", "npy", "tonic_npy", "npz_xytp", "text"]


@pytest.mark.parametrize("fmt", SELECTION_FORMATS)
@pytest.mark.parametrize("selection", SELECTIONS)
def test_time_selection(files, fmt, selection):
    path, expected, _ = files[fmt]
    start, end = (None if v is None else int(v) for v in SELECTIONS[selection](expected["t"]))
    want = selected(expected, start, end)
    assert len(want["t"]) > 0
    with open_recording(path) as recording:
        assert_events(recording.read(start, end), want)
        assert_events(concat(recording.chunks(start, end, chunk_events=50)), want)


@pytest.mark.parametrize("fmt", SELECTION_FORMATS)
def test_selection_without_events_names_it(files, fmt):
    path, expected, _ = files[fmt]
    t = expected["t"]
    start, end = int(t[gap(t) - 1]) + 1000, int(t[gap(t) - 1]) + GAP_US // 2  # inside the quiet gap
    with pytest.raises(EventFileError) as error:
        read_events(path, start, end)
    assert str(error.value) == f"{path}: no events between t={start} and t={end} us"


# ------------------------------------------------------------------------------------ bad input

@pytest.mark.parametrize("case", aw.BAD_FILES)
def test_bad_input_is_one_line_naming_file_and_fault(tmp_path, case):
    path, problem = aw.BAD_FILES[case](tmp_path)
    with pytest.raises(EventFileError) as error:
        read_events(path)
    message = str(error.value)
    assert message.startswith(f"{path}: ")
    assert problem in message
    assert "\n" not in message


def test_malformed_text_lines_are_refused(tmp_path):
    path = tmp_path / "gait.txt"
    path.write_text("10 1 2 1\n20 3 4 x\n30 5 6 0\n")
    with pytest.raises(EventFileError, match=r"line 2 is not 't x y p'"):
        read_events(path)


def test_text_lines_with_wrong_field_counts_are_refused(tmp_path):
    path = tmp_path / "gait.txt"
    path.write_text("10 1 2 1\n20 3 4 1 40\n5 6 1\n50 7 8 0\n")
    with pytest.raises(EventFileError, match="line 2"):
        read_events(path)


@pytest.mark.parametrize("fmt", ["aedat2", "aedat31", "npy"])
def test_backwards_across_a_chunk_boundary(tmp_path, fmt):
    k = np.arange(200)
    t = 1000 + 10 * k
    t[150] = t[149] - 3  # the first event of the fourth chunk of 50 goes back in time
    path = tmp_path / f"back.{fmt}"
    if fmt == "aedat2":
        aw.write_aedat2(path, aw.dvs128_address(k % 128, k % 128, k % 2), t)
    elif fmt == "aedat31":
        aw.write_aedat31(path, aw.polarity_packets(k % 128, k % 128, t, k % 2, sizes=[50]))
    else:
        array = np.zeros(200, dtype=[("x", "<i2"), ("y", "<i2"), ("t", "<i8"), ("p", "u1")])
        array["x"], array["y"], array["t"], array["p"] = k % 128, k % 128, t, k % 2
        np.save(path, array)
    seen = 0
    with pytest.raises(EventFileError) as error:
        for chunk in open_recording(path).chunks(chunk_events=50):
            seen += len(chunk)
    assert seen == 150  # the fault sat at a chunk boundary
    assert str(error.value) == f"{path}: timestamps go backwards at event 150 (t={t[150]} us after t={t[149]} us)"


def test_outside_the_sensor_given_by_npz(tmp_path):
    np.savez(tmp_path / "e.npz", x=[1, 2, 70], y=[1, 2, 3], t=[1, 2, 3], p=[0, 1, 0], sensor_size=[64, 64])
    with pytest.raises(EventFileError, match=r"event 2 at \(x=70, y=3\) lies outside the 64x64 sensor"):
        read_events(tmp_path / "e.npz")


# ----------------------------------------------------------------------------- masnn's own writers

def test_write_text_round_trip(tmp_path):
    from masnn.datasets.io.writers import write_text

    events = synthetic(n=800, t0=3_000_000)
    array = np.zeros(800, dtype=EVENT_DTYPE)
    for k in "xytp":
        array[k] = events[k]
    write_text(tmp_path / "e.txt", array)
    table = np.loadtxt(tmp_path / "e.txt", dtype=np.int64)
    for column, k in enumerate("txyp"):
        np.testing.assert_array_equal(table[:, column], events[k])
    assert_events(read_events(tmp_path / "e.txt")[0], events)


def test_write_npz_round_trip(tmp_path):
    from masnn.datasets.io.writers import write_npz

    events = synthetic(n=800, t0=3_000_000)
    array = np.zeros(800, dtype=EVENT_DTYPE)  # what every reader yields
    for k in "xytp":
        array[k] = events[k]
    write_npz(tmp_path / "e.npz", array, (240, 180))
    with np.load(tmp_path / "e.npz") as archive:  # one plain array per field, readable without masnn
        assert tuple(archive["sensor_size"]) == (240, 180)
        for k in "xytp":
            np.testing.assert_array_equal(archive[k], events[k])
    read, info = read_events(tmp_path / "e.npz")
    assert info.sensor_size == (240, 180)
    assert_events(read, events)
