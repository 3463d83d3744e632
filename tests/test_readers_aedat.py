"""AEDAT 2.0 and 3.1 readers against the test-side writers (aedat_test_writers.py, built from the format
description) and tonic: packets, invalid and external events, timestamp overflow, y flip, truncated files;
masnn's AEDAT 3.1 writer read by tonic."""
from __future__ import annotations

import aedat_test_writers as aw
import numpy as np
import pytest
from reader_test_helpers import assert_events, concat, synthetic

from masnn.datasets.events import EVENT_DTYPE, TruncatedRecordingWarning
from masnn.datasets.io.readers import open_recording, read_events


def test_aedat31_packet_details(tmp_path):
    """Two polarity packets around a type-2 packet with 20-byte events; an invalid event; an overflow."""
    path = tmp_path / "small.aedat"
    aw.write_aedat31(path, [
        aw.polarity_packet([1, 2, 3], [4, 5, 6], [10, 20, 30], [1, 0, 1], valid=[1, 0, 1]),
        aw.other_packet(event_type=2, event_size=20, n=3),
        aw.polarity_packet([127, 0], [127, 99], [(5 << 31) | 7, (5 << 31) | 8], [0, 1]),
    ])
    events, info = read_events(path)
    assert_events(events, {"x": [1, 3, 127, 0], "y": [4, 6, 127, 99], "t": [10, 30, (5 << 31) | 7, (5 << 31) | 8],
                           "p": [1, 1, 0, 1]})
    assert (info.format, info.camera, info.sensor_size) == ("AEDAT 3.1", "DVS128", (128, 128))


def test_aedat2_flips_y_and_unwraps_timestamps(tmp_path):
    """masnn's origin is the top-left pixel: jAER's row y becomes 127 - y. ON is address bit 0 clear."""
    path = tmp_path / "small.aedat"
    jaer_x, jaer_y, on = [0, 127, 10, 64], [0, 127, 100, 3], [1, 0, 1, 0]
    address = list(aw.dvs128_address(jaer_x, jaer_y, on))
    address.insert(2, 0x8000 | 0x42)  # an external event: skipped
    t = [(1 << 32) - 10, (1 << 32) - 5, (1 << 32) - 5, (1 << 32) + 3, (1 << 32) + 9]  # stored modulo 2**32
    aw.write_aedat2(path, address, t)
    events, info = read_events(path)
    assert_events(events, {"x": [0, 127, 10, 64], "y": [127, 0, 27, 124], "p": [1, 0, 1, 0],
                           "t": [(1 << 32) - 10, (1 << 32) - 5, (1 << 32) + 3, (1 << 32) + 9]})
    assert (info.format, info.camera, info.sensor_size) == ("AEDAT 2.0", "DVS128-V1 0042", (128, 128))


@pytest.mark.parametrize("cut_kind", ["mid-event", "whole event", "inside the packet header", "after the packet header"])
@pytest.mark.parametrize("chunk_events", [5, 1 << 20])
def test_truncated_aedat31_keeps_complete_events_and_warns(tmp_path, cut_kind, chunk_events):
    path, x, y, t, p = aw.truncated_aedat31(tmp_path, cut_kind)
    with pytest.warns(TruncatedRecordingWarning, match="ends inside an AEDAT 3.1 packet") as record:
        events = concat(open_recording(path).chunks(chunk_events=chunk_events))
    assert_events(events, {"x": x, "y": y, "t": t, "p": p})
    assert str(record[0].message).startswith(str(path))


@pytest.mark.parametrize("cut", [3, 7])
def test_truncated_aedat2_keeps_complete_events_and_warns(tmp_path, cut):
    k = np.arange(300)
    path = tmp_path / "cut.aedat"
    aw.write_aedat2(path, aw.dvs128_address(k % 128, k % 100, k % 3 == 0), 500 + 4 * k, cut=cut)
    with pytest.warns(TruncatedRecordingWarning, match="ends inside an address/timestamp pair"):
        events, _ = read_events(path)
    assert_events(events, {"x": k[:-1] % 128, "y": 127 - k[:-1] % 100, "t": 500 + 4 * k[:-1], "p": k[:-1] % 3 == 0})


def test_test_writer_agrees_with_tonic(tmp_path):
    """Guards the reference itself: tonic's AEDAT 3.1 reader sees the words the test writer meant."""
    import tonic.io

    events = synthetic(n=500)
    path = tmp_path / "w.aedat"
    aw.write_aedat31(path, aw.polarity_packets(events["x"], events["y"], events["t"], events["p"], sizes=[64]))
    version, start, _ = tonic.io.read_aedat_header_from_file(str(path))
    words = tonic.io.get_aer_events_from_file(str(path), version, start)
    assert version == 3.1
    np.testing.assert_array_equal(words["timeStamp"], events["t"])
    np.testing.assert_array_equal(words["address"] >> 17, events["x"])
    np.testing.assert_array_equal((words["address"] >> 2) & 0x7FFF, events["y"])


def test_write_aedat31_is_read_by_tonic(tmp_path):
    import tonic.io

    from masnn.datasets.io.writers import write_aedat31

    events = synthetic(n=1000, t0=1_000_000)
    array = np.zeros(1000, dtype=EVENT_DTYPE)
    for k in "xytp":
        array[k] = events[k]
    path = tmp_path / "w.aedat"
    write_aedat31(path, array, packet_events=128)
    version, start, _ = tonic.io.read_aedat_header_from_file(str(path))
    assert version == 3.1
    words = tonic.io.get_aer_events_from_file(str(path), version, start)
    address = words["address"].astype(np.int64)
    assert np.all(address & 1 == 1)  # valid bit
    np.testing.assert_array_equal(words["timeStamp"], events["t"])
    np.testing.assert_array_equal(address >> 17, events["x"])
    np.testing.assert_array_equal((address >> 2) & 0x7FFF, events["y"])
    np.testing.assert_array_equal((address >> 1) & 1, events["p"])
    assert_events(read_events(path)[0], events)
