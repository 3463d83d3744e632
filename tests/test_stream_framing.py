"""Streamed framing (masnn.datasets.transforms.stream, and iter_time_frames on it): chunks, however cut, give
the frames of the whole stream framed at once, against tonic's ToFrame and plain loops."""
from __future__ import annotations

import math

import numpy as np
import pytest
from framing_helpers import H, W, garbage_frames, hand_frames, random_events, tonic_frames

from masnn.datasets.events import make_events
from masnn.datasets.io.readers import open_recording
from masnn.datasets.transforms import framing, stream
from masnn.datasets.transforms.denoise import DenoiseBackgroundActivity
from masnn.datasets.transforms.framing import frames_by_time
from masnn.datasets.transforms.pipeline import FramingConfig, iter_recording_frames
from masnn.datasets.transforms.spatial import SpatialMap
from masnn.datasets.transforms.stream import StreamFramer, iter_time_frames


@pytest.fixture(autouse=True)
def garbage_in_fresh_memory(monkeypatch):
    """As in test_framing.py: frame memory the framer has not cleared holds garbage, not the system's zeros."""
    monkeypatch.setattr(stream, "uncleared_frames", garbage_frames)


def bursty_events(seed, n=2000, dt=1_000):
    """Bursts separated by long empty gaps (tens of frames); the span is not a multiple of dt."""
    rng = np.random.default_rng(seed)
    bursts = []
    t = 5_000
    for _ in range(6):
        m = n // 6
        bursts.append(t + np.sort(rng.integers(0, 3 * dt, m)))
        t += int(rng.integers(20, 90)) * dt + int(rng.integers(1, dt))
    t = np.concatenate(bursts)
    events = make_events(rng.integers(0, W, len(t)), rng.integers(0, H, len(t)), t, rng.integers(0, 2, len(t)))
    if (int(t[-1]) - int(t[0])) % dt == 0:  # keep away from the exact-multiple edge (tested separately)
        events = events[:-1]
    return events


def chunks_of(events, size, with_empty=False):
    out = []
    for begin in range(0, len(events), size):
        out.append(events[begin : begin + size])
        if with_empty:
            out.append(events[:0])
    return out


@pytest.mark.parametrize("chunk_size", [1, 7, 333, 5000])
@pytest.mark.parametrize("block_frames", [1, 3, 64])
def test_iter_time_frames_concatenate_to_whole(chunk_size, block_frames):
    dt = 1_000
    events = bursty_events(chunk_size + block_frames, dt=dt)
    blocks = list(iter_time_frames(chunks_of(events, chunk_size, with_empty=chunk_size == 7), (W, H), dt, block_frames=block_frames))
    assert all(0 < len(b) <= block_frames for b in blocks)
    assert all(b.shape[1:] == (2, H, W) for b in blocks)
    streamed = np.concatenate(blocks)
    np.testing.assert_array_equal(streamed, frames_by_time(events, (W, H), dt, include_incomplete=True))
    np.testing.assert_array_equal(streamed, tonic_frames(events, time_window=dt, include_incomplete=True))
    assert streamed.sum() == len(events)


def test_iter_time_frames_one_chunk_spanning_long_gaps():
    dt = 1_000
    events = make_events([1, 2, 3, 4], [1, 2, 3, 4], [0, 10, 250_500, 999_999], [1, 0, 1, 0])
    blocks = list(iter_time_frames([events], (W, H), dt, block_frames=3))
    assert all(len(b) <= 3 for b in blocks)
    streamed = np.concatenate(blocks)
    hand = hand_frames(events, dt * np.arange(1001))
    assert streamed.shape == (1000, 2, H, W)
    np.testing.assert_array_equal(streamed, hand)
    np.testing.assert_array_equal(streamed, tonic_frames(events, time_window=dt, include_incomplete=True))


def test_iter_time_frames_keeps_a_last_event_on_a_window_boundary():
    # tonic's include_incomplete count, which frames_by_time keeps, has 2 windows and drops t=100;
    # the stream opens a third frame for it (documented in iter_time_frames)
    dt = 50
    events = make_events([0, 1, 2], [0, 1, 2], [0, 50, 100], [0, 1, 1])
    streamed = np.concatenate(list(iter_time_frames([events], (W, H), dt)))
    in_memory = frames_by_time(events, (W, H), dt, include_incomplete=True)
    np.testing.assert_array_equal(in_memory, tonic_frames(events, time_window=dt, include_incomplete=True))
    assert streamed.shape[0] == in_memory.shape[0] + 1 == 3
    np.testing.assert_array_equal(streamed[:2], in_memory)
    assert streamed[2].sum() == 1 and streamed[2, 1, 2, 2] == 1


@pytest.mark.parametrize("chunk_size", [1, 50, 5000])
@pytest.mark.parametrize("block_frames", [3, 64])
@pytest.mark.parametrize(
    "start_offset,length",
    [(0, 60 * 1_000), (-2_500, 37 * 1_000 + 1), (4_321, 123 * 1_000 - 7), (-10_000, 5_000), (50_000, 400_000)],
)
def test_iter_time_frames_with_start_and_end(chunk_size, block_frames, start_offset, length):
    dt = 1_000
    events = bursty_events(11, dt=dt)
    start = int(events["t"][0]) + start_offset
    end = start + length
    blocks = list(iter_time_frames(chunks_of(events, chunk_size), (W, H), dt, start=start, end=end, block_frames=block_frames))
    assert all(0 < len(b) <= block_frames for b in blocks)
    streamed = np.concatenate(blocks)
    n_frames = math.ceil((end - start) / dt)
    assert streamed.shape == (n_frames, 2, H, W)
    # events at or after ``end`` are cut even when the last frame would reach past it
    inside = events[(events["t"] >= start) & (events["t"] < end)]
    edges = np.minimum(start + dt * np.arange(n_frames + 1), end)
    np.testing.assert_array_equal(streamed, hand_frames(events, edges))
    theirs = tonic_frames(inside, time_window=dt, start_time=start, end_time=end, include_incomplete=True) if len(inside) else np.zeros_like(streamed)
    np.testing.assert_array_equal(streamed, theirs)
    if (end - start) % dt == 0:
        np.testing.assert_array_equal(streamed, tonic_frames(events, time_window=dt, start_time=start, end_time=end))


def test_iter_time_frames_window_without_events_is_all_empty():
    events = random_events(12, n=100, span=10_000)
    start = int(events["t"][-1]) + 1_000_000
    streamed = np.concatenate(list(iter_time_frames([events], (W, H), 15_000, start=start, end=start + 60 * 15_000, block_frames=7)))
    assert streamed.shape == (60, 2, H, W) and streamed.sum() == 0


def test_iter_time_frames_rejects_chunks_out_of_order():
    events = random_events(13, n=200)
    with pytest.raises(ValueError):
        # the second chunk goes back in time (to events still after the stream's start)
        list(iter_time_frames([events[:150], events[100:]], (W, H), 1_000))


def test_first_index_at_or_after_matches_searchsorted():
    events = random_events(14, n=500, span=1_000)
    for t in [0, int(events["t"][0]), int(events["t"][250]), int(events["t"][-1]), int(events["t"][-1]) + 1, 10_500]:
        assert framing.first_index_at_or_after(events, t) == np.searchsorted(events["t"], t, "left")


@pytest.mark.parametrize("block_frames", [1, 7, 64])
@pytest.mark.parametrize("seed", [0, 1])
def test_stream_framer_in_random_chunks_equals_denoising_and_mapping_the_whole_first(block_frames, seed):
    """A DAVIS346 recording -> 32x32 centre crop, denoised, from a start well after its first event, fed in
    random-sized chunks (empty ones too): the frames of filtering the whole recording, mapping its pixels,
    then tonic's ToFrame. Events before the start are not counted but still support later ones."""
    from masnn.bench.common import moving_blob_events

    sensor, dt, n_frames, filter_time = (346, 260), 10_000, 40, 2_000
    events = moving_blob_events(40_000, 600_000, sensor, seed=seed, t0=5_000)
    start = int(events["t"][0]) + 123_457
    end = start + n_frames * dt
    config = FramingConfig(dt_us=dt, n_frames=n_frames, size=32, mode="crop", denoise_us=filter_time)
    framer = StreamFramer.from_config(config, sensor, start, end, block_frames=block_frames)
    cuts = np.sort(np.random.default_rng(seed).integers(0, len(events), 80))
    blocks = list(framer.iter_blocks(np.split(events, cuts)))
    assert all(0 < len(b) <= block_frames for b in blocks)

    kept = DenoiseBackgroundActivity(sensor, filter_time)(events)
    assert 0 < len(kept) < len(events)
    mapped = SpatialMap(sensor, (32, 32), "crop")(kept)
    theirs = tonic_frames(mapped, 32, 32, time_window=dt, start_time=start, end_time=end)
    assert theirs.shape == (n_frames, 2, 32, 32) and theirs.sum() > 0
    np.testing.assert_array_equal(np.concatenate(blocks), theirs)


def test_recording_frames_warm_the_filter_up_before_start(tmp_path):
    """iter_recording_frames reads from one filter time before ``start``: the window's first events are
    supported by the ones just before it, as inside a longer window, and those are not counted."""
    from masnn.bench.common import moving_blob_events

    sensor, dt, n_frames, filter_time = (346, 260), 10_000, 30, 2_000
    events = moving_blob_events(30_000, 500_000, sensor, seed=3, t0=5_000)
    path = tmp_path / "blob.npz"
    np.savez(path, **{name: events[name] for name in ("x", "y", "t", "p")}, sensor_size=np.array(sensor))
    start = int(events["t"][0]) + 200_003
    end = start + n_frames * dt
    config = FramingConfig(dt_us=dt, n_frames=n_frames, size=32, denoise_us=filter_time)
    with open_recording(path) as recording:
        ours = np.concatenate(list(iter_recording_frames(recording, config, start, end)))

    def filtered_from(read_from):
        kept = DenoiseBackgroundActivity(sensor, filter_time)(events[events["t"] >= read_from])
        return tonic_frames(SpatialMap(sensor, (32, 32))(kept), 32, 32, time_window=dt, start_time=start, end_time=end)

    np.testing.assert_array_equal(ours, filtered_from(start - filter_time))
    assert not np.array_equal(ours, filtered_from(start))  # a cold filter would drop some of the first events


def test_stream_framer_refuses_stream_time_going_back():
    events = random_events(15, n=300)
    framer = StreamFramer((W, H), 1_000)
    list(framer.add(events[100:]))
    with pytest.raises(framing.UnsortedEvents, match="went back"):
        framer.add(events[:100])  # refused at once, before any block is drawn
