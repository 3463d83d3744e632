"""Damaged and lying files, each built by hand here: every one ends in exactly one EventFileError naming the file
(or, where salvage is right, in events and a warning), never in a hang, a traceback, a wrapped value or a
shifted clock. The expected messages and events are written out by hand, not computed by masnn.

Prophesee files are written from the EVT 2.0 description (32-bit little-endian words, the type in bits 28-31:
0/1 CD OFF/ON with t & 63 in bits 22-27, x in 11-21, y in 0-10; 8 TIME_HIGH with t >> 6 in bits 0-27).
"""
from __future__ import annotations

import warnings

import aedat_test_writers as aw
import numpy as np
import pytest
from reader_test_helpers import concat, run_isolated

from masnn.datasets.events import EventFileError
from masnn.datasets.io.readers import open_recording, read_events
from masnn.datasets.io.recording import MAX_TIME_JUMP_US


def refused(path, **options) -> str:
    """The one-line problem of the EventFileError reading ``path`` raises (the file named first)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a refusal comes alone, without warnings before it
        with pytest.raises(EventFileError) as error:
            read_events(path, **options)
    message = str(error.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    return message[len(f"{path}: "):]


def plain_events(n=200, t_type="<i8", x_type="<i8"):
    array = np.zeros(n, dtype=[("t", t_type), ("x", x_type), ("y", "<i8"), ("p", "u1")])
    array["t"], array["x"], array["y"], array["p"] = 1000 + 10 * np.arange(n), np.arange(n) % 128, 5, 1
    return array


def save(path, array):
    np.save(path, array)
    return path


# --------------------------------------------------------------------------------- values in numpy and text

def test_x_beyond_int16_is_refused_not_wrapped(tmp_path):
    array = plain_events()
    array["x"][50] = 65541  # int16 would make it 5, a pixel inside the sensor
    assert refused(save(tmp_path / "e.npy", array)) == "event 50 has x=65541, beyond a 16-bit coordinate"


def test_negative_x_beyond_int16_is_refused(tmp_path):
    array = plain_events()
    array["x"][7] = -65531  # int16 would make it 5 as well
    assert refused(save(tmp_path / "e.npy", array), sensor_size=(128, 128)) == (
        "event 7 has x=-65531, beyond a 16-bit coordinate")


def test_one_stray_x_does_not_define_the_sensor(tmp_path):
    array = plain_events()
    array["x"][120] = 30000
    path = save(tmp_path / "e.npy", array)
    assert refused(path) == ("event 120 has x=30000, beyond the largest common sensor (1280x720); the file states "
                             "no size: give the sensor size if the camera really is that large")
    # stated by the caller, the size is used as given, and the event lies inside it
    events, info = read_events(path, sensor_size=(30001, 128))
    assert info.sensor_size == (30001, 128) and events["x"][120] == 30000


def test_stray_y_is_named(tmp_path):
    array = plain_events()
    array["y"][9] = 900
    assert refused(save(tmp_path / "e.npy", array)).startswith("event 9 has y=900, beyond the largest common sensor")


def test_largest_common_sensor_is_still_inferred(tmp_path):
    array = plain_events()
    array["x"][3], array["y"][4] = 1279, 719
    assert read_events(save(tmp_path / "e.npy", array))[1].sensor_size == (1280, 720)


@pytest.mark.parametrize("index", [0, 70, 199])
def test_nan_time_in_a_float_npy_is_refused(tmp_path, index):
    array = plain_events(t_type="<f8")
    array["t"][index] = np.nan
    assert refused(save(tmp_path / "e.npy", array)) == f"event {index} has t=nan, not a number"


@pytest.mark.parametrize("value, problem", [(np.inf, "an infinite value"), (1070.5, "not a whole number"),
                                            (1e30, "beyond 64-bit microseconds")])
def test_other_impossible_float_times_are_refused(tmp_path, value, problem):
    array = plain_events(t_type="<f8")
    array["t"][70] = value
    assert refused(save(tmp_path / "e.npy", array)) == f"event 70 has t={value}, {problem}"


def test_float_times_that_are_whole_are_read(tmp_path):
    array = plain_events(t_type="<f8")
    events, _ = read_events(save(tmp_path / "e.npy", array))
    assert events["t"].tolist() == (1000 + 10 * np.arange(200)).tolist()


@pytest.mark.parametrize("row, problem", [(1, "t=nan, not a number"), (2, "x=7.5, not a whole number")])
def test_tonic_table_values_are_checked(tmp_path, row, problem):
    table = np.array([[5, 6, 1, 1.5], [7, 8, 0, 2.0], [9, 10, 1, 1234.567]])  # x, y, p, t [ms]
    table[row, 3 if row == 1 else 0] = np.nan if row == 1 else 7.5
    assert refused(save(tmp_path / "0.npy", table)) == f"event {row} has {problem}"


def test_unsigned_times_beyond_int64_are_refused(tmp_path):
    array = np.zeros(3, dtype=[("t", "<u8"), ("x", "<i2"), ("y", "<i2"), ("p", "u1")])
    array["t"] = [1, 2, 2**63 + 5]
    assert refused(save(tmp_path / "e.npy", array)) == f"event 2 has t={2**63 + 5}, beyond 64-bit microseconds"


def test_text_number_beyond_64_bits_is_one_line(tmp_path):
    path = tmp_path / "gait.txt"
    path.write_text("10 1 2 1\n20 3 4 1\n99999999999999999999 5 6 0\n")
    assert refused(path) == "line 3 holds a number beyond 64 bits: b'99999999999999999999 5 6 0\\n'"


def test_text_x_beyond_int16_is_refused(tmp_path):
    path = tmp_path / "gait.txt"
    path.write_text("10 1 2 1\n20 65541 4 1\n")
    assert refused(path) == "event 1 has x=65541, beyond a 16-bit coordinate"


# ----------------------------------------------------------------------------------------------- npz and npy

def test_npz_with_corrupt_bytes_is_one_line(tmp_path):
    path = tmp_path / "e.npz"
    k = np.arange(1000)
    np.savez_compressed(path, x=k % 128, y=k % 128, t=k, p=k % 2)
    data = bytearray(path.read_bytes())
    data[200:260] = bytes(b ^ 0x55 for b in data[200:260])  # inside x.npy's deflate stream
    path.write_bytes(bytes(data))
    assert refused(path).startswith("is not a readable .npz file (")


@pytest.mark.parametrize("stored, problem", [
    ([128], "'sensor_size' must be (width, height), not [128]"),
    ([[128, 128]], "'sensor_size' must be (width, height), not [[128, 128]]"),
    ([3000000, 3000000], "'sensor_size' gives a sensor size of 3000000x3000000: not whole sides from 1 to 2048"),
    ([0, 128], "'sensor_size' gives a sensor size of 0x128: not whole sides from 1 to 2048"),
])
def test_npz_sensor_size_is_checked(tmp_path, stored, problem):
    path = tmp_path / "e.npz"
    np.savez(path, x=[1, 2], y=[1, 2], t=[1, 2], p=[0, 1], sensor_size=np.array(stored))
    assert refused(path) == problem
    assert read_events(path, sensor_size=(64, 64))[1].sensor_size == (64, 64)  # a stated size overrides it


def test_npz_sensor_size_in_tonic_form_is_read(tmp_path):
    path = tmp_path / "e.npz"
    np.savez(path, x=[1, 2], y=[1, 2], t=[1, 2], p=[0, 1], sensor_size=np.array([346, 260, 2]))
    assert read_events(path)[1].sensor_size == (346, 260)


def test_npz_columns_of_unequal_length_are_refused(tmp_path):
    path = tmp_path / "e.npz"
    np.savez(path, x=[1, 2, 3], y=[1, 2], t=[1, 2], p=[0, 1])
    assert refused(path) == "has x/y/t/p arrays of unequal or not 1-D shapes (x (3,), y (2,), t (2,), p (2,))"


def test_npz_column_of_text_is_refused(tmp_path):
    path = tmp_path / "e.npz"
    np.savez(path, x=np.array(["a", "b"]), y=[1, 2], t=[1, 2], p=[0, 1])
    assert refused(path) == "field x holds <U1, not numbers"


@pytest.mark.parametrize("damage", ["unbalanced brace", "garbage dict", "bad version"])
def test_npy_with_a_damaged_header_is_one_line(tmp_path, damage):
    path = save(tmp_path / "e.npy", plain_events())
    data = bytearray(path.read_bytes())
    if damage == "unbalanced brace":
        data[data.index(b"}")] = ord(" ")  # numpy's parser then meets the end inside a statement
    elif damage == "garbage dict":
        data[10:20] = b"(((((((((("
    else:
        data[6] = 9
    path.write_bytes(bytes(data))
    assert refused(path).startswith("is not a readable .npy file (")


def test_npy_of_structured_rows_in_two_dimensions_is_refused(tmp_path):
    path = save(tmp_path / "e.npy", plain_events(20).reshape(4, 5))
    assert "not events" in refused(path)


# ------------------------------------------------------------------------------------------ timestamp jumps

def test_zeroed_timestamps_before_real_ones_are_a_jump(tmp_path):
    array = plain_events()
    array["t"][:100] = 0
    array["t"][100:] += 1_700_000_000_000_000  # Unix-time microseconds
    t = int(array["t"][100])
    assert refused(save(tmp_path / "e.npy", array)) == (
        f"timestamp jumps 1700000000 s at event 100 (t={t} us after t=0 us): corrupt, no recording pauses 24 h "
        "without an event")


def test_jump_from_the_int64_minimum_is_caught_without_overflow(tmp_path):
    array = plain_events(3)
    array["t"] = [np.iinfo(np.int64).min, 5, 10]  # t[1] - t[0] overflows int64
    assert refused(save(tmp_path / "e.npy", array)).startswith("timestamp jumps 9223372036855 s at event 1 ")


@pytest.mark.parametrize("chunk_events", [1, 7, 1000])
def test_a_day_is_the_longest_pause(tmp_path, chunk_events):
    array = plain_events(20)
    array["t"][10:] += MAX_TIME_JUMP_US - 10  # events 9 and 10 exactly a day apart
    path = save(tmp_path / "day.npy", array)
    assert len(concat(open_recording(path).chunks(chunk_events=chunk_events))) == 20
    array["t"][15:] += 1 + MAX_TIME_JUMP_US
    path = save(tmp_path / "longer.npy", array)
    with pytest.raises(EventFileError, match=r"timestamp jumps 86400 s at event 15 "):
        list(open_recording(path).chunks(chunk_events=chunk_events))


@pytest.mark.parametrize("suffix", [".npy", ".npz"])
def test_opening_an_array_file_checks_its_time_range(tmp_path, suffix):
    """What commands plan from (frames to allocate, windows to walk) is real: the jump is refused when the file is
    opened, before any event is streamed, even where it sits in the last event."""
    array = plain_events(10)
    array["t"][9] = 10**12
    path = tmp_path / f"e{suffix}"
    if suffix == ".npy":
        np.save(path, array)
    else:
        np.savez(path, **{k: array[k] for k in "xytp"})
    with pytest.raises(EventFileError, match=r"timestamp jumps 1000000 s at event 9 \(t=1000000000000 us after t=1080 us\)"):
        open_recording(path)


def test_a_step_back_is_named_where_streaming_meets_it(tmp_path):
    array = plain_events(10)
    array["t"][9] = 5
    recording = open_recording(save(tmp_path / "e.npy", array))
    assert recording.info.time_range == (1000, 5)
    with pytest.raises(EventFileError, match=r"timestamps go backwards at event 9 \(t=5 us after t=1080 us\)"):
        recording.read()


def test_structured_fields_that_are_not_single_numbers_are_refused(tmp_path):
    array = np.zeros(3, dtype=[("t", "<i8"), ("x", "<i2", (2,)), ("y", "<i2"), ("p", "u1")])
    assert "not events" in refused(save(tmp_path / "e.npy", array))


def test_repeated_timestamps_are_fine(tmp_path):
    array = plain_events(10)
    array["t"] = 42
    assert read_events(save(tmp_path / "e.npy", array))[0]["t"].tolist() == [42] * 10


def test_corrupt_aedat31_overflow_counter_is_a_jump(tmp_path):
    k = np.arange(40)
    path = tmp_path / "overflow.aedat"
    aw.write_aedat31(path, [aw.polarity_packet(k % 128, k % 128, 1000 + 10 * k, k % 2),
                            aw.polarity_packet(k % 128, k % 128, (100 << 31) + 10 * k, k % 2)])
    assert refused(path) == (f"timestamp jumps 214748 s at event 40 (t={100 << 31} us after t=1390 us): corrupt, "
                             "no recording pauses 24 h without an event")


# ------------------------------------------------------------------------------------------------ AEDAT 2.0

def write_aedat2_times(path, t):
    n = len(t)
    aw.write_aedat2(path, aw.dvs128_address(np.arange(n), np.arange(n), np.ones(n)), t)
    return path


def test_aedat2_lone_timestamp_spike_is_refused_not_unwrapped(tmp_path):
    path = write_aedat2_times(tmp_path / "spike.aedat", [10, 20, 30, 0xFFFFFFF0, 40, 50])
    byte = len(b"".join(line.encode() + b"\r\n" for line in aw.AEDAT2_HEADER)) + 3 * 8
    assert refused(path) == (f"corrupt timestamp at byte {byte}: 0xfffffff0 lies 72 min after the event before "
                             "(0x0000001e), neither a step forward nor a 32-bit clock wrap")


def test_aedat2_smaller_spike_is_a_step_backwards(tmp_path):
    path = write_aedat2_times(tmp_path / "spike.aedat", [10, 20, 0x70000000, 30, 40])
    assert refused(path) == f"timestamps go backwards at event 3 (t=30 us after t={0x70000000} us)"


@pytest.mark.parametrize("chunk_events", [2, 1000])
def test_aedat2_real_wrap_is_still_unwrapped(tmp_path, chunk_events):
    # a wrap, then steps of up to 31 minutes (below 2**31 us) to a second wrap
    t = [(1 << 32) - 30, (1 << 32) - 20, (1 << 32) - 5, (1 << 32) + 3, (1 << 32) + 40, (1 << 32) + 0x60000000,
         (1 << 32) + 0xD0000000, (1 << 33) - 2, (1 << 33) + 7]
    path = write_aedat2_times(tmp_path / "wrap.aedat", t)
    events = concat(open_recording(path).chunks(chunk_events=chunk_events))
    assert events["t"].tolist() == t


def test_aedat2_corrupt_external_event_time_is_ignored(tmp_path):
    path = tmp_path / "external.aedat"
    address = list(aw.dvs128_address([1, 2, 3], [4, 5, 6], [1, 1, 1]))
    address.insert(1, 0x8000 | 0x11)
    aw.write_aedat2(path, address, [100, 0xFFFFFFF0, 200, 300])
    assert read_events(path)[0]["t"].tolist() == [100, 200, 300]


# ---------------------------------------------------------------------------------------------- text headers

def test_header_that_never_ends_is_refused(tmp_path):
    path = tmp_path / "endless.aedat"
    path.write_bytes(b"#!AER-DAT2.0\r\n" + b"# preference line\r\n" * 60_000)  # 1.1 MB of header, no data
    assert refused(path) == "header runs past 1 MB without ending"


def test_aedat2_cut_inside_its_header(tmp_path):
    path = tmp_path / "cut.aedat"
    path.write_bytes(b"#!AER-DAT2.0\r\n# AEChip: ch.unizh.ini.jaer.chip.retina.DV")
    assert refused(path) == "ends inside header line 2 ('# AEChip: ch.unizh.ini.jaer.chip.retina.DV')"


@pytest.mark.parametrize("line, problem", [
    ("#Source 1:", "AEDAT 3.1 header names no camera (#Source line); the sensor size is unknown"),
    ("#Source 1", "AEDAT 3.1 header names no camera (#Source line); the sensor size is unknown"),
])
def test_aedat31_source_without_value(tmp_path, line, problem):
    path = tmp_path / "nosource.aedat"
    header = aw.aedat31_header().replace(b"#Source 1: DVS128", line.encode())
    path.write_bytes(header + aw.polarity_packet([1], [1], [1], [1]))
    assert refused(path) == problem


def test_aedat31_unknown_format_line(tmp_path):
    path = tmp_path / "compressed.aedat"
    header = aw.aedat31_header().replace(b"#Format: RAW", b"#Format: SerializedTSCompressed")
    path.write_bytes(header + aw.polarity_packet([1], [1], [1], [1]))
    assert refused(path) == "AEDAT 3.1 header line '#Format: SerializedTSCompressed': only RAW packets can be read"


def test_aedat31_packet_capacity_beyond_the_file_allocates_nothing_huge(tmp_path):
    """The packet claims 16 GB of events; read with 6 GB of address space, the events before it come back."""
    k = np.arange(40)
    bad = aw.packet_header(1, 8, 0, 0x7FFFFFFF, 4, 4) + bytes(32)
    path = tmp_path / "huge.aedat"
    aw.write_aedat31(path, [aw.polarity_packet(k % 128, k % 128, 1000 + 10 * k, k % 2), bad])
    done = run_isolated(f"""
        import warnings
        from masnn.datasets.io.readers import read_events
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            events, _ = read_events({str(path)!r})
        print(events["t"].tolist(), [str(w.message) for w in caught])
        """, timeout=300, memory=6 << 30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(str((1000 + 10 * k).tolist()) + f" ['{path}: ends inside an AEDAT 3.1 packet")
