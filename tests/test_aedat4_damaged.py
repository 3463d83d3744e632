"""Damaged AEDAT 4.0 files: each gives the events before its fault with a warning naming the file, or one
EventFileError naming the file; never a crash, a hang or a traceback. The cases that once crashed or hung
dv-processing are read in a child process with a time limit (``aedat4_damage.read_in_child``), so that a
regression fails its test instead of killing pytest."""
from __future__ import annotations

import struct
import sys

import numpy as np
import pytest
from aedat4_damage import (
    DECODED_HERE,
    PACKET_BREAKS,
    assert_honest,
    assert_one_line_naming,
    edit_table,
    header_field,
    needs_liblz4,
    packet_positions,
    read_in_child,
    recorded,
    replace_once,
    set_table_position,
    table_field,
)
from reader_test_helpers import N, assert_events, selected

from masnn.datasets.events import EventFileError, TruncatedRecordingWarning
from masnn.datasets.io import aedat4_dv
from masnn.datasets.io.readers import open_recording, read_events

# ---------------------------------------------------------------------------------- the packet table

@pytest.mark.parametrize("compression", DECODED_HERE)
def test_table_position_minus_one_is_read_from_the_start(tmp_path, compression):
    # dv-processing crashed (segmentation fault) opening such an uncompressed file
    path, events = recorded(tmp_path, compression)
    set_table_position(path, -1)
    t = events["t"]
    whole, middle = read_in_child(tmp_path, [(path, None, None), (path, int(t[700]), int(t[2100]))])
    for outcome, expected in [(whole, events), (middle, selected(events, t[700], t[2100]))]:
        assert outcome["error"] is None
        assert_events(outcome["events"], expected)
        assert outcome["warnings"], "a file without its packet index is read with a warning"
        assert_honest(outcome, path)
    assert whole["time_range"] == [t[0], t[-1]]


@pytest.mark.parametrize("position", [1 << 40, -5, 100])
def test_table_position_outside_the_packets_is_not_followed(tmp_path, position):
    path, events = recorded(tmp_path, "NONE")
    set_table_position(path, position)
    with pytest.warns(TruncatedRecordingWarning) as caught:  # the packets, then the table read as one
        got, info = read_events(path)
    assert_events(got, events)
    for warning in caught:
        assert_one_line_naming(str(warning.message), path)


@pytest.mark.parametrize("compression", DECODED_HERE)
@pytest.mark.parametrize("offset", [1 << 40, -8, 830 + 3])
def test_table_entry_pointing_elsewhere_is_not_followed(tmp_path, compression, offset):
    # dv-processing crashed (segmentation fault) in getEventsTimeRange on a packet with a huge offset
    path, events = recorded(tmp_path, compression)

    def point_elsewhere(table):
        where = table_field(table, 4, 0)
        table[where : where + 8] = struct.pack("<q", offset)

    edit_table(path, point_elsewhere)
    t = events["t"]
    whole, middle = read_in_child(tmp_path, [(path, None, None), (path, int(t[1100]), int(t[1300]))])
    for outcome, expected in [(whole, events), (middle, selected(events, t[1100], t[1300]))]:
        assert outcome["error"] is None
        assert_events(outcome["events"], expected)
        assert any("packet index" in message for message in outcome["warnings"]), outcome["warnings"]
        assert_honest(outcome, path)


@pytest.mark.parametrize("edit", ["entry count huge", "entry count zero", "not FTAB", "cut in the middle"])
def test_malformed_table_is_not_used(tmp_path, edit):
    path, events = recorded(tmp_path, "NONE")

    def damage(table):
        if edit.startswith("entry count"):
            where = table_field(table, None)
            table[where : where + 4] = struct.pack("<I", 0x7FFFFFFF if edit == "entry count huge" else 0)
        elif edit == "not FTAB":
            table[8:12] = b"XTAB"
        else:
            del table[len(table) // 2 :]

    edit_table(path, damage)
    with pytest.warns(TruncatedRecordingWarning, match="packet index"):
        recording = open_recording(path)
    with recording:
        assert_events(recording.read(), events)
        t = events["t"]
        assert_events(recording.read(int(t[10]), int(t[20])), selected(events, t[10], t[20]))


@pytest.mark.parametrize("field, change", [(3, +1), (4, -1), (2, +1)])  # first time, last time, count
def test_packet_that_disagrees_with_the_table_stops_a_selection_with_a_warning(tmp_path, field, change):
    path, events = recorded(tmp_path, "NONE")

    def shift(table):
        where = table_field(table, 5, field)
        table[where : where + 8] = struct.pack("<q", struct.unpack_from("<q", table, where)[0] + change)

    edit_table(path, shift)
    t = events["t"]
    with open_recording(path) as recording:
        assert_events(recording.read(), events)  # a whole read walks the packets themselves
        with pytest.warns(TruncatedRecordingWarning, match="other events than the packet index says"):
            got = recording.read(int(t[1000]), int(t[2000]))
    # the events up to the end of the packet that disagrees (they passed the checks), then the warning
    up_to_it = {k: v[: PACKET_BREAKS[5]] for k, v in events.items()}
    assert_events(got, selected(up_to_it, t[1000], t[2000]))


# ------------------------------------------------------------------------------------- the packets

@needs_liblz4
@pytest.mark.parametrize("byte", ["frame flags", "block size", "end mark"])
def test_flipped_lz4_byte_keeps_the_packets_before_it(tmp_path, byte):
    # dv-processing spun forever (deaf to Ctrl-C) on one corrupt LZ4 byte in masnn frames and classify
    path, events = recorded(tmp_path, "LZ4")
    data = bytearray(path.read_bytes())
    third = packet_positions(path)[2] + 8
    size = struct.unpack_from("<i", data, third - 4)[0]
    where = {"frame flags": third + 4, "block size": third + 7, "end mark": third + size - 2}[byte]
    data[where] ^= 0x5A
    path.write_bytes(bytes(data))
    t = events["t"]
    whole, before, after, across = read_in_child(tmp_path, [
        (path, None, None), (path, int(t[100]), int(t[400])), (path, int(t[1600]), int(t[2600])),
        (path, int(t[100]), int(t[2600]))])
    assert whole["error"] is None and across["error"] is None
    assert_events(whole["events"], {k: v[:500] for k, v in events.items()})
    assert_events(across["events"], selected(events, t[100], t[500]))
    for outcome in (whole, across):
        assert any("stops decoding" in message for message in outcome["warnings"]), outcome["warnings"]
        assert_honest(outcome, path)
    # selections that do not reach the damaged packet never decompress it
    assert_events(before["events"], selected(events, t[100], t[400]))
    assert_events(after["events"], selected(events, t[1600], t[2600]))
    assert before["warnings"] == after["warnings"] == []
    assert whole["time_range"] == [t[0], t[-1]]


@pytest.mark.parametrize("compression", DECODED_HERE)
def test_random_byte_flips_never_crash_hang_or_lie(tmp_path, compression):
    path, events = recorded(tmp_path, compression)
    data = path.read_bytes()
    rng = np.random.default_rng(7)
    cases = []
    for i, where in enumerate(rng.integers(0, len(data), 60)):
        damaged = bytearray(data)
        damaged[where] ^= int(rng.integers(1, 256))
        target = tmp_path / f"flip{i}.aedat4"
        target.write_bytes(bytes(damaged))
        cases += [(target, None, None), (target, int(events["t"][900]), int(events["t"][2200]))]
    for (target, _, _), outcome in zip(cases, read_in_child(tmp_path, cases, timeout=120)):
        assert_honest(outcome, target)


@pytest.mark.parametrize("compression", DECODED_HERE)
def test_file_cut_anywhere_gives_its_events_or_one_error(tmp_path, compression):
    path, events = recorded(tmp_path, compression)
    data = path.read_bytes()
    cuts = []
    for keep in (0.01, 0.03, 0.5, 0.99):  # in the header, the first packet, the middle, the table
        cut = tmp_path / f"cut{keep}.aedat4"
        cut.write_bytes(data[: int(len(data) * keep)])
        cuts.append((cut, None, None))
    outcomes = read_in_child(tmp_path, cuts)
    for (cut, _, _), outcome in zip(cuts, outcomes):
        assert_honest(outcome, cut)
        if outcome["error"] is None:
            got = outcome["events"]
            assert_events(got, {k: v[: len(got)] for k, v in events.items()})
            assert outcome["warnings"]
    assert [outcome["error"] is None for outcome in outcomes] == [False, False, True, True]
    assert len(outcomes[3]["events"]) == N


# ---------------------------------------------------------------------------------------- the header

def _edit_xml(old: bytes, new: bytes):
    def edit(data: bytearray):
        assert len(old) == len(new)  # the header keeps its size
        replace_once(data, old, new)
    return edit


def _set_header_size(size: int):
    def edit(data: bytearray):
        data[14:18] = struct.pack("<i", size)
    return edit


def _set_compression(value: int):
    def edit(data: bytearray):
        where = header_field(bytes(data), 0)
        data[where : where + 4] = struct.pack("<i", value)
    return edit


def _set_root_offset(data: bytearray):
    data[18:22] = struct.pack("<I", 1 << 30)


SIZE_Y_LINE_END = b'">128</attr>\n                <attr key="source"'
SIZE_X_LINE_END = b'"int">128</attr>\n                <attr key="sizeY"'
HEADER_DAMAGE = {  # name: (edit, what the error says)
    "sizeX renamed": (_edit_xml(b'key="sizeX"', b'key="sizeQ"'), "the event stream's sizeX is missing"),
    "sizeY not a number": (_edit_xml(SIZE_Y_LINE_END, SIZE_Y_LINE_END.replace(b"128", b"1a8")),
                           "the event stream's sizeY '1a8' is not a sensor size"),
    "sizeX zero": (_edit_xml(SIZE_X_LINE_END, SIZE_X_LINE_END.replace(b"128", b"000")),
                   "the event stream's sizeX '000' is not a sensor size"),
    "typeIdentifier renamed": (_edit_xml(b'key="typeIdentifier"', b'key="typeIdentifies"'), "has no event stream"),
    "stream id not a number": (_edit_xml(b'<node name="0"', b'<node name="z"'),
                               "the event stream's id 'z' is not a stream number"),
    "XML broken": (_edit_xml(b"</dv>", b"</dx>"), "is not readable XML"),
    "header size negative": (_set_header_size(-4), "the header claims -4 bytes"),
    "header size huge": (_set_header_size(1 << 30), f"the header claims {1 << 30} bytes"),
    "header root offset huge": (_set_root_offset, "the header points outside itself"),
    "compression unknown": (_set_compression(9), "unknown compression 9"),
}


@needs_liblz4
@pytest.mark.parametrize("damage", HEADER_DAMAGE)
def test_damaged_header_is_one_error_naming_the_file(tmp_path, damage):
    edit, expected = HEADER_DAMAGE[damage]
    path, _ = recorded(tmp_path, "LZ4")
    data = bytearray(path.read_bytes())
    edit(data)
    path.write_bytes(bytes(data))
    with pytest.raises(EventFileError) as error:
        with open_recording(path) as recording:
            recording.read()
    assert_one_line_naming(str(error.value), path)
    assert expected in str(error.value)


def test_header_without_sensor_size_is_read_with_one_given(tmp_path):
    path, events = recorded(tmp_path, "NONE")
    data = bytearray(path.read_bytes())
    replace_once(data, b'key="sizeX"', b'key="width"')
    replace_once(data, b'key="sizeY"', b'key="heigh"')
    path.write_bytes(bytes(data))
    with pytest.raises(EventFileError, match="gives no sensor size"):
        open_recording(path)
    assert_events(read_events(path, sensor_size=(128, 128))[0], events)


# ------------------------------------------------------------------- files left to dv-processing

def test_zstd_file_with_a_corrupt_byte_gives_events_or_one_error(tmp_path):
    path, events = recorded(tmp_path, "ZSTD")
    data = path.read_bytes()
    cases = []
    for i, where in enumerate(np.linspace(packet_positions(path)[1] + 4, len(data) - 2, 4).astype(int)):
        damaged = bytearray(data)
        damaged[where] ^= 0xA5
        target = tmp_path / f"zstd{i}.aedat4"
        target.write_bytes(bytes(damaged))
        cases.append((target, None, None))
    cases.append((cases[0][0], int(events["t"][500]), int(events["t"][2500])))
    for (target, _, _), outcome in zip(cases, read_in_child(tmp_path, cases, timeout=120)):
        assert_honest(outcome, target)


def test_zstd_file_without_table_or_cut_short_warns(tmp_path):
    path, events = recorded(tmp_path, "ZSTD")
    sixth = packet_positions(path)[5]
    set_table_position(path, -1)
    cut = tmp_path / "cut.aedat4"
    cut.write_bytes(path.read_bytes()[: sixth + 20])
    whole, part = read_in_child(tmp_path, [(path, None, None), (cut, None, None)])
    assert_events(whole["events"], events)
    assert_events(part["events"], {k: v[: PACKET_BREAKS[4]] for k, v in events.items()})
    for outcome, target in [(whole, path), (part, cut)]:
        assert outcome["warnings"] and outcome["error"] is None
        assert_honest(outcome, target)
    assert "cut short" in part["warnings"][-1]


def test_zstd_table_position_outside_the_file_is_one_error(tmp_path):
    path, _ = recorded(tmp_path, "ZSTD")
    set_table_position(path, 1 << 40)
    with pytest.raises(EventFileError, match="packet index position .* lies outside"):
        open_recording(path)


@pytest.mark.parametrize("child, expected", [
    ("import os, signal; os.kill(os.getpid(), signal.SIGSEGV)", "dv-processing crashed on this file (signal 11)"),
    ("import time; time.sleep(30)", "dv-processing did not finish within 1 s"),
    ("raise SystemExit('no dv here')", "dv-processing failed on this file (no dv here)"),
])
def test_dv_processing_crash_or_spin_is_one_line(tmp_path, monkeypatch, child, expected):
    path, _ = recorded(tmp_path, "ZSTD")
    monkeypatch.setattr(aedat4_dv, "_child_command", lambda *args: [sys.executable, "-c", child])
    monkeypatch.setattr(aedat4_dv, "BASE_SECONDS", 1.0)
    monkeypatch.setattr(aedat4_dv, "SECONDS_PER_BYTE", 0.0)
    with pytest.raises(EventFileError) as error:
        open_recording(path)
    assert str(error.value) == f"{path}: {expected}"


def test_dv_processing_error_in_the_child_is_one_line(tmp_path):
    written, _ = recorded(tmp_path, "ZSTD")
    path = written.rename(tmp_path / "rec.bin")  # dv-processing opens it through a link named .aedat4
    data = bytearray(path.read_bytes())
    first = packet_positions(path)[0]
    data[first + 8 : first + 40] = bytes(32)  # the first packet's Zstandard frame
    path.write_bytes(bytes(data))
    (outcome,) = read_in_child(tmp_path, [(path, None, None)])
    assert_honest(outcome, path)
