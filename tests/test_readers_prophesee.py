"""Prophesee files written by hand from the EVT 2.0 description, intact and damaged: their header checked before
expelliarmus sees the file, expelliarmus run in a child process whose hang, crash or printed error becomes one
EventFileError and never reaches the terminal.

EVT 2.0: a '%' text header, then 32-bit little-endian words with the type in bits 28-31: 0/1 CD OFF/ON with
t & 63 in bits 22-27, x in bits 11-21, y in bits 0-10; 8 TIME_HIGH with t >> 6 in bits 0-27.
"""
from __future__ import annotations

import struct

import numpy as np
import pytest
from reader_test_helpers import assert_events, concat, run_isolated

from masnn.datasets.events import EventFileError, TruncatedRecordingWarning
from masnn.datasets.io import prophesee
from masnn.datasets.io.readers import detect_format, open_recording, read_events

HEADER = "% Date 2020-09-14 09:03:25\n% evt 2.0\n% geometry 640x480\n% plugin_name hal_plugin_gen3_fx3\n"
CD_OFF, CD_ON, TIME_HIGH = 0x0, 0x1, 0x8


def evt2_words(t, x, y, p) -> list[int]:
    words, high = [], None
    for ti, xi, yi, pi in zip(t, x, y, p):
        if ti >> 6 != high:
            high = ti >> 6
            words.append((TIME_HIGH << 28) | high)
        words.append(((CD_ON if pi else CD_OFF) << 28) | ((ti & 63) << 22) | (xi << 11) | yi)
    return words


def sample_events(n=100):
    k = np.arange(n)
    return {"t": 5_000 + 37 * k, "x": (13 * k) % 640, "y": (7 * k) % 480, "p": k % 2}


def write_raw(path, header=HEADER, words=None, tail=b""):
    events = sample_events()
    words = evt2_words(*(events[k].tolist() for k in "txyp")) if words is None else words
    path.write_bytes(header.encode("latin-1") + struct.pack(f"<{len(words)}I", *words) + tail)
    return path


def refused(path, capfd=None, **options) -> str:
    with pytest.raises(EventFileError) as error:
        read_events(path, **options)
    message = str(error.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    if capfd is not None:
        assert capfd.readouterr() == ("", "")  # nothing of expelliarmus' own reached the terminal
    return message[len(f"{path}: "):]


# ------------------------------------------------------------------------------------------------ intact files

def test_hand_written_evt2_is_read_exactly(tmp_path):
    events, info = read_events(write_raw(tmp_path / "rec.raw"))
    assert_events(events, sample_events())
    assert (info.format, info.sensor_size, info.camera) == ("Prophesee EVT2", (640, 480), "hal_plugin_gen3_fx3")


def test_format_is_chosen_by_content_not_name(tmp_path):
    path = write_raw(tmp_path / "rec.npy")
    assert detect_format(path) == "Prophesee"
    assert_events(read_events(path)[0], sample_events())


@pytest.mark.parametrize("chunk_events", [1, 5, 64])
def test_chunks_are_bounded_and_complete(tmp_path, chunk_events):
    chunks = list(open_recording(write_raw(tmp_path / "rec.raw")).chunks(chunk_events=chunk_events))
    assert max(len(c) for c in chunks) <= chunk_events
    assert_events(concat(chunks), sample_events())


def test_time_selection(tmp_path):
    expected = sample_events()
    start, end = int(expected["t"][20]), int(expected["t"][60])
    keep = (expected["t"] >= start) & (expected["t"] < end)
    assert_events(read_events(write_raw(tmp_path / "rec.raw"), start, end)[0], {k: v[keep] for k, v in expected.items()})


def test_size_from_the_format_line(tmp_path):
    path = write_raw(tmp_path / "rec.raw", header="% format EVT2;height=480;width=640\n% evt 2.0\n")
    assert read_events(path)[1].sensor_size == (640, 480)


def test_abandoned_read_stops_the_child(tmp_path, monkeypatch):
    started = []
    original = prophesee._ChildDecoder.__init__

    def spy(self, *args):
        original(self, *args)
        started.append(self)

    monkeypatch.setattr(prophesee._ChildDecoder, "__init__", spy)
    chunks = open_recording(write_raw(tmp_path / "rec.raw")).chunks(chunk_events=1)
    next(chunks)
    chunks.close()
    assert started[0]._process.poll() is not None


# ----------------------------------------------------------------------------------------------------- headers

@pytest.mark.parametrize("header, problem", [
    ("% evt 2.0\n% geometry 3000000x3000000\n",
     "header line '% geometry 3000000x3000000' gives a sensor size of 3000000x3000000: not whole sides from 1 to 2048"),
    ("% evt 2.0\n% geometry 640x\n", "header line '% geometry 640x' is not a geometry WIDTHxHEIGHT"),
    ("% evt 2.0\n% geometry\n", "header line '% geometry' has no value"),
    ("% evt 2.0\n% geometry 640x480\n% plugin_name\n", "header line '% plugin_name' has no value"),
    ("% evt\n% geometry 640x480\n", "header line '% evt' has no value"),
    ("% evt 4.0\n% geometry 640x480\n",
     "header line '% evt 4.0' names an encoding that cannot be read (EVT 2.0, EVT 3.0, DAT)"),
    ("% geometry 640x480\n% plugin_name hal_plugin_gen3_fx3\n",
     "Prophesee header names no encoding (no '% evt', '% format' or DAT line)"),
    ("% evt 2.0\n% plugin_name hal_plugin_unknown\n", "Prophesee header gives no sensor size; pass it explicitly"),
])
def test_bad_header_lines_are_one_line(tmp_path, header, problem):
    assert refused(write_raw(tmp_path / "rec.raw", header=header)) == problem


def test_stated_size_overrides_a_header_without_one(tmp_path):
    path = write_raw(tmp_path / "rec.raw", header="% evt 2.0\n% plugin_name hal_plugin_unknown\n")
    assert read_events(path, sensor_size=(640, 480))[1].sensor_size == (640, 480)


def test_header_without_events(tmp_path):
    assert refused(write_raw(tmp_path / "rec.raw", words=[])) == "has no events after its header"


CUT_CODE = """
    from masnn.datasets.events import EventFileError
    from masnn.datasets.io.readers import read_events
    try:
        read_events({path!r})
    except EventFileError as e:
        print(e)
"""


def test_cut_inside_the_header_is_refused_not_a_hang(tmp_path):
    """expelliarmus looks for the end of the header line forever; run apart, so a regression fails, not stalls."""
    path = tmp_path / "cut.raw"
    path.write_bytes(HEADER.encode()[:-12])
    done = run_isolated(CUT_CODE.format(path=str(path)), timeout=120)
    assert (done.stdout, done.stderr) == (f"{path}: ends inside header line 4 ('% plugin_name hal_plug')\n", "")


def test_real_header_cut_inside_is_refused_not_a_hang(tmp_path, real_data):
    data = (real_data / "prophesee_evt2_640x480.raw").read_bytes()
    header_end = data.index(b"% evt 2.0\n") + len(b"% evt 2.0\n")
    path = tmp_path / "cut.raw"
    path.write_bytes(data[: header_end - 4])
    done = run_isolated(CUT_CODE.format(path=str(path)), timeout=120)
    assert (done.stdout, done.stderr) == (f"{path}: ends inside header line 7 ('% evt')\n", "")


# ---------------------------------------------------------------------------------------------- damaged data

def test_unknown_word_is_refused_with_expelliarmus_words_and_nothing_printed(tmp_path, capfd):
    events = sample_events()
    words = evt2_words(*(events[k].tolist() for k in "txyp"))
    words.insert(60, 0x3 << 28)  # no EVT 2.0 word has type 3
    problem = refused(write_raw(tmp_path / "rec.raw", words=words), capfd)
    assert problem.startswith("cannot be decoded as Prophesee EVT2: expelliarmus stopped after ")
    assert problem.endswith(" events, before the end of the file (it said: ERROR: event type not recognised: 0x3.)")


def test_cut_inside_a_word_keeps_the_events_before_it(tmp_path):
    path = write_raw(tmp_path / "rec.raw", tail=b"\x01\x02\x03")
    with pytest.warns(TruncatedRecordingWarning, match=r"ends inside an event word \(3 bytes left over\)") as caught:
        events, _ = read_events(path)
    assert_events(events, sample_events())
    assert str(caught[0].message).startswith(f"{path}: ")


def test_coordinates_outside_the_geometry_are_refused(tmp_path):
    events = sample_events()
    events["x"][30] = 700
    words = evt2_words(*(events[k].tolist() for k in "txyp"))
    assert refused(write_raw(tmp_path / "rec.raw", words=words)) == (
        f"event 30 at (x=700, y={events['y'][30]}) lies outside the 640x480 sensor")


def test_a_hanging_decoder_is_stopped(tmp_path, monkeypatch):
    monkeypatch.setattr(prophesee, "_CHILD", "import time; time.sleep(60)")
    monkeypatch.setattr(prophesee, "QUIET_LIMIT_S", 1.0)
    monkeypatch.setattr(prophesee, "SLOWEST_EVENTS_PER_S", 10**12)
    assert refused(write_raw(tmp_path / "rec.raw")) == (
        "cannot be decoded as Prophesee EVT2: expelliarmus stopped answering for 1 s (a decoder hang)")


def test_a_crashing_decoder_is_one_line(tmp_path, monkeypatch, capfd):
    monkeypatch.setattr(prophesee, "_CHILD", "import os; os.write(2, b'segfault in C\\n'); os.abort()")
    assert refused(write_raw(tmp_path / "rec.raw"), capfd) == (
        "cannot be decoded as Prophesee EVT2: expelliarmus crashed (SIGABRT) after 0 events (it said: segfault in C)")
