"""`masnn live` without a source or a model: the framer's windows against offline framing, and the hand-off's
drop policy."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from masnn.datasets.transforms.framing import UnsortedEvents
from masnn.datasets.transforms.pipeline import FramingConfig
from masnn.datasets.transforms.stream import iter_time_frames
from masnn.live.framer import LiveWindow, WindowFramer
from masnn.live.handoff import Handoff


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
