"""AEDAT 4.0 reader and its packet decoder against dv-processing: compressions, truncated and corrupt files,
batch and buffer sizes, faults named with their event, a missing packet index, resolution and camera, time
selections through the packet table against the same selection of a whole read; masnn's AEDAT 4.0 writer
read by dv-processing. Damaged files: test_aedat4_damaged."""
from __future__ import annotations

import struct
import warnings

import numpy as np
import pytest
from aedat4_damage import DECODED_HERE, recorded, set_table_position
from reader_test_helpers import AEDAT4_T0, N, assert_events, read_dv, synthetic, write_dv

from masnn.datasets.events import EVENT_DTYPE, EventFileError, TruncatedRecordingWarning
from masnn.datasets.io import lz4_frame
from masnn.datasets.io.readers import open_recording, read_events
from masnn.datasets.io.writers import write_aedat4


@pytest.mark.parametrize("compression", ["NONE", "LZ4", "LZ4_HIGH", "ZSTD", "ZSTD_HIGH"])
def test_aedat4_reads_every_compression_as_dv_processing_does(tmp_path, compression):
    events = synthetic(t0=AEDAT4_T0)
    path = tmp_path / "rec.aedat4"
    write_dv(path, events, compression=compression)
    with open_recording(path) as recording:
        ours = recording.read()
    reference = read_dv(path)
    for k in "txyp":
        np.testing.assert_array_equal(ours[k], reference[k])


def test_aedat4_lz4_without_liblz4_is_read_by_dv_processing(tmp_path, monkeypatch):
    from masnn.datasets.io import aedat4

    monkeypatch.setattr(aedat4, "DECODED_HERE", (0,))  # as where no liblz4 is found: uncompressed files only
    events = synthetic(t0=AEDAT4_T0)
    path = tmp_path / "rec.aedat4"
    write_dv(path, events, compression="LZ4")
    with open_recording(path) as recording:
        assert not recording._decoded_here
        ours = recording.read()
    for k in "txyp":
        np.testing.assert_array_equal(ours[k], events[k])


PACKET_BREAKS = tuple(range(250, N, 250))  # 12 packets


needs_liblz4 = pytest.mark.skipif(not lz4_frame.AVAILABLE, reason="no liblz4: LZ4 files are left to dv-processing")


@pytest.mark.parametrize("compression", ["NONE", pytest.param("LZ4", marks=needs_liblz4)])
@pytest.mark.parametrize("keep", [0.3, 0.75])
def test_truncated_aedat4_keeps_the_complete_packets_and_warns(tmp_path, keep, compression):
    # a recording cut short (the writer killed): no packet index, the last packet cut in two; dv-processing
    # refuses such a file
    events = synthetic(t0=AEDAT4_T0)
    full, cut = tmp_path / "full.aedat4", tmp_path / "cut.aedat4"
    write_dv(full, events, breaks=PACKET_BREAKS, compression=compression)
    data = full.read_bytes()
    cut.write_bytes(data[: int(len(data) * keep)])
    with pytest.warns(TruncatedRecordingWarning, match="cut short"):
        with open_recording(cut) as recording:
            info, got = recording.info, recording.read()
    assert len(got) in PACKET_BREAKS
    for k in "txyp":
        np.testing.assert_array_equal(got[k], events[k][: len(got)])
    assert info.time_range == (events["t"][0], events["t"][len(got) - 1])
    assert (info.width, info.height, info.camera) == (128, 128, "DVS128")


@needs_liblz4
def test_aedat4_with_a_corrupt_packet_keeps_the_packets_before_it(tmp_path):
    events = synthetic(t0=AEDAT4_T0)
    path = tmp_path / "rec.aedat4"
    write_dv(path, events, breaks=PACKET_BREAKS)
    data = bytearray(path.read_bytes())
    lz4_magic = b"\x04\x22\x4d\x18"  # each packet is one LZ4 frame
    third = data.index(lz4_magic, data.index(lz4_magic, data.index(lz4_magic) + 1) + 1)
    data[third : third + 4] = b"\0\0\0\0"
    path.write_bytes(bytes(data))
    with pytest.warns(TruncatedRecordingWarning, match="stops decoding"):
        with open_recording(path) as recording:
            got = recording.read()
    for k in "txyp":
        np.testing.assert_array_equal(got[k], events[k][: PACKET_BREAKS[1]])


SMALL_BUFFERS = {  # batches of one to three packets; scratch and output buffers smaller than a packet
    "tiny": dict(BATCH_BYTES=2048, SCRATCH_BYTES=512, OUT_BYTES=1000),
    "a packet": dict(BATCH_BYTES=4096, SCRATCH_BYTES=4096, OUT_BYTES=4500),
    "default": {},
}


@pytest.mark.parametrize("compression", ["NONE", pytest.param("LZ4", marks=needs_liblz4)])
@pytest.mark.parametrize("buffers", SMALL_BUFFERS)
def test_aedat4_decoded_in_any_batch_and_buffer_size_reads_as_written(tmp_path, monkeypatch, compression, buffers):
    from masnn.datasets.io import aedat4_packets

    for name, value in SMALL_BUFFERS[buffers].items():
        monkeypatch.setattr(aedat4_packets, name, value)
    events = synthetic(t0=AEDAT4_T0)
    path = tmp_path / "rec.aedat4"
    write_dv(path, events, breaks=PACKET_BREAKS, compression=compression)
    with open_recording(path) as recording:
        assert recording._decoded_here
        kept = recording.read()  # holds every chunk: no buffer may be reused under it
        copied = np.concatenate([chunk.copy() for chunk in recording.chunks(chunk_events=97)])  # lets each go
    assert_events(kept, events)
    assert_events(copied, events)


def _patch_event(data: bytearray, events: dict, i: int, **changes) -> None:
    """Rewrites event i of an uncompressed AEDAT 4.0 file in place (t, x, y: int64, int16, int16)."""
    old = struct.pack("<qhh", *(int(events[k][i]) for k in "txy"))
    assert data.count(old) == 1
    new = {k: int(events[k][i]) for k in "txy"} | changes
    where = data.index(old)
    data[where : where + 12] = struct.pack("<qhh", new["t"], new["x"], new["y"])


@pytest.mark.parametrize("batch_bytes", [2048, 1 << 20])  # batches of one packet, or all in one
@pytest.mark.parametrize("i, fault", [(777, "outside"), (1300, "backwards"), (PACKET_BREAKS[3], "backwards")])
def test_aedat4_fault_found_while_decoding_is_named_with_its_event(tmp_path, monkeypatch, batch_bytes, i, fault):
    from masnn.datasets.io import aedat4_packets

    monkeypatch.setattr(aedat4_packets, "BATCH_BYTES", batch_bytes)
    events = synthetic(t0=AEDAT4_T0)
    path = tmp_path / "rec.aedat4"
    write_dv(path, events, breaks=PACKET_BREAKS, compression="NONE")
    data = bytearray(path.read_bytes())
    t = events["t"]
    if fault == "outside":
        _patch_event(data, events, i, x=200)
        expected = f"event {i} at (x=200, y={events['y'][i]}) lies outside the 128x128 sensor"
    else:
        _patch_event(data, events, i, t=int(t[i - 1]) - 5)
        expected = f"timestamps go backwards at event {i} (t={t[i - 1] - 5} us after t={t[i - 1]} us)"
    path.write_bytes(bytes(data))
    with pytest.raises(EventFileError) as error:
        with open_recording(path) as recording:
            assert recording._decoded_here
            recording.read()
    assert str(error.value) == f"{path}: {expected}"


def test_aedat4_without_its_packet_index_is_read_whole_with_a_warning(tmp_path):
    events = synthetic(t0=AEDAT4_T0)
    full, cut = tmp_path / "full.aedat4", tmp_path / "cut.aedat4"
    write_dv(full, events, breaks=PACKET_BREAKS, compression="NONE")
    data = full.read_bytes()
    cut.write_bytes(data[: len(data) - 20])  # inside the index written after the last packet
    with pytest.warns(TruncatedRecordingWarning, match="packet index is cut short; its packets were read from the start"):
        recording = open_recording(cut)
    with recording:
        got = recording.read()
        middle = recording.read(int(events["t"][1000]), int(events["t"][1500]))
    for k in "txyp":
        np.testing.assert_array_equal(got[k], events[k])
        np.testing.assert_array_equal(middle[k], events[k][1000:1500])


def test_aedat4_resolution_and_camera_from_file(tmp_path):
    events = synthetic(n=1000, t0=AEDAT4_T0, width=346, height=260)
    events["x"][0], events["y"][0] = 345, 259
    path = tmp_path / "davis.aedat4"
    write_dv(path, events, camera="DAVIS346", size=(346, 260), breaks=(500,))
    recording = open_recording(path)
    assert (recording.info.format, recording.info.camera, recording.info.sensor_size) == ("AEDAT 4.0", "DAVIS346", (346, 260))
    assert recording.info.time_range == (events["t"][0], events["t"][-1])
    assert_events(recording.read(), events)


def test_write_aedat4_is_read_by_dv_processing(tmp_path):
    import dv_processing as dv

    events = synthetic(n=1500, t0=AEDAT4_T0, width=346, height=260)
    array = np.zeros(1500, dtype=EVENT_DTYPE)
    for k in "xytp":
        array[k] = events[k]
    path = tmp_path / "w.aedat4"
    write_aedat4(path, array, (346, 260), camera="DAVIS346")
    assert tuple(dv.io.MonoCameraRecording(str(path)).getEventResolution()) == (346, 260)
    assert_events(array, read_dv(path))
    assert_events(read_events(path)[0], events)


# ------------------------------------------------------------------------------- time selections

def _windows(t):
    gap = int(np.argmax(np.diff(t)))  # the quiet gap in the middle of the synthetic recording
    return [
        (None, int(t[100])), (int(t[100]), None), (int(t[0]), int(t[-1]) + 1), (None, None),
        (int(t[gap]) + 1, int(t[gap + 1])),  # inside the gap: no events
        (int(t[0]) - 1000, int(t[0])), (int(t[-1]) + 1, int(t[-1]) + 1000),  # before and after: none
        (int(t[1234]), int(t[1234]) + 1), (int(t[PACKET_BREAKS[1]]), int(t[PACKET_BREAKS[4]])),
        (int(t[PACKET_BREAKS[1]]) - 1, int(t[PACKET_BREAKS[1]]) + 1), (int(t[gap]), int(t[gap + 1]) + 1),
        (int(t[2999]), int(t[2999]) + 5), (int(t[500]), int(t[400])),  # an end before the start: none
    ]


def _assert_selection_as_whole(recording, whole, start, end):
    t = whole["t"]
    keep = np.ones(len(t), bool) if start is None else t >= start
    keep &= True if end is None else t < end
    if not keep.any():
        with pytest.raises(EventFileError, match="no events"):
            recording.read(start, end)
    else:
        np.testing.assert_array_equal(recording.read(start, end), whole[keep])


@pytest.mark.parametrize("compression", DECODED_HERE)
@pytest.mark.parametrize("table", ["table", "no table"])
def test_time_selections_equal_the_same_selection_of_a_whole_read(tmp_path, compression, table):
    path, events = recorded(tmp_path, compression)
    if table == "no table":
        set_table_position(path, -1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TruncatedRecordingWarning)
        with open_recording(path) as recording:
            assert (recording._packets is not None) == (table == "table")
            whole = recording.read()
            assert_events(whole, events)
            for start, end in _windows(events["t"]):
                _assert_selection_as_whole(recording, whole, start, end)


def test_time_selections_of_masnn_written_file(tmp_path):
    events = np.zeros(45_000, EVENT_DTYPE)
    rng = np.random.default_rng(3)
    events["t"] = AEDAT4_T0 + np.cumsum(rng.integers(0, 30, len(events)))
    events["x"], events["y"], events["p"] = rng.integers(0, 346, len(events)), rng.integers(0, 260, len(events)), 1
    path = tmp_path / "masnn.aedat4"
    write_aedat4(path, events, (346, 260), camera="DAVIS346")  # packets of 10 000 events
    with open_recording(path) as recording:
        whole = recording.read()
        np.testing.assert_array_equal(whole, events)
        assert recording.info.time_range == (events["t"][0], events["t"][-1])
        t = events["t"]
        for start, end in [(int(t[9999]), int(t[10001])), (int(t[5]), int(t[44_000])), (int(t[-1]), None)]:
            _assert_selection_as_whole(recording, whole, start, end)
